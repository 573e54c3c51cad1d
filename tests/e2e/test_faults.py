"""Upstream faults through the agent, with real SDKs where SDKs are what users run: a stream cut at any
byte still ends in an error the SDK raises (never malformed JSON), compressed streams are metered and
stripped exactly, a host that refuses the agent's own stream_options is retried without it, stalls end
in time, and broken, empty, mislabelled or malformed answers reach the client without hurting the agent
or losing a record."""

from __future__ import annotations

import json
import random
import ssl
import time

import anthropic
import httpx
import openai
import pytest

from conftest import mock_policy, policy_with_override, free_port, tokens

CHAT = "/openai/v1/chat/completions"


def oai_client(agent, **kw) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test", base_url=agent.base_url("openai/v1"), max_retries=0,
                         http_client=httpx.Client(trust_env=False, timeout=30), **kw)


def stream_bytes(agent, model: str, headers: dict, body_extra: dict | None = None) -> tuple[int, dict, bytes]:
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "cut me anywhere"}],
            **(body_extra or {})}
    with httpx.stream("POST", f"http://{agent.addr}{CHAT}", json=body, trust_env=False, timeout=30,
                      headers={"authorization": "Bearer sk", **headers}) as r:
        data = b"".join(r.iter_raw())
        return r.status_code, dict(r.headers), data


def still_serving(agent) -> None:
    r = httpx.post(f"http://{agent.addr}{CHAT}", trust_env=False, headers={"authorization": "Bearer sk"},
                   json={"model": "alive-check", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200


# A stream cut at any byte ends with an error event the SDK raises.

def upstream_stream_length(agent) -> int:
    """The length of the upstream's stream for the request the cut tests send (identity, usage asked)."""
    _, _, data = stream_bytes(agent, "cut-probe", {"x-mock-output-words": "12", "x-mock-compress": "off"},
                              {"stream_options": {"include_usage": True}})
    return len(data)


def test_a_stream_cut_at_any_byte_ends_in_an_error_event_the_sdk_raises(agent):
    total = upstream_stream_length(agent)
    rng = random.Random(20261201)
    offsets = sorted({1, 5, 6, 7, total // 2, total - 3, total - 1, *rng.sample(range(8, total - 4), 14)})
    client = oai_client(agent)
    for n in offsets:
        model = f"cut-at-{n}"
        got = []
        with pytest.raises(openai.APIError) as err:
            for chunk in client.chat.completions.create(
                    model=model, stream=True, messages=[{"role": "user", "content": "cut me anywhere"}],
                    extra_headers={"x-mock-fault": f"reset-at:{n}", "x-mock-output-words": "12"}):
                got.append(chunk)
        # The SDK raised the agent's error event, not a JSON error about half a line.
        assert "broke in the middle" in str(err.value), (n, str(err.value))
        rec = agent.wait_record(model=model)
        assert rec["outcome"] == "incomplete" and rec["usage_estimated"] is True, (n, rec)
    still_serving(agent)


def test_raw_stream_cut_mid_frame_has_only_whole_frames_before_the_error(agent):
    total = upstream_stream_length(agent)
    for n in [total // 3, total // 2 + 1, total - 2]:
        status, _, data = stream_bytes(agent, f"raw-cut-{n}", {"x-mock-fault": f"reset-at:{n}",
                                                               "x-mock-output-words": "12"})
        assert status == 200
        text = data.decode()
        frames = [f for f in text.split("\n\n") if f]
        for f in frames:
            assert f.startswith("data: "), repr(f)
            payload = f[len("data: "):]
            if payload != "[DONE]":
                json.loads(payload)  # every frame the client got is whole
        assert json.loads(frames[-1][len("data: "):])["error"]["code"] == "upstream_stream_broken"
        assert text.endswith("\n\n")


def test_anthropic_stream_cut_mid_frame_raises_in_the_sdk(agent):
    ac = anthropic.Anthropic(api_key="sk-ant", base_url=agent.base_url("anthropic"), max_retries=0,
                             http_client=anthropic.DefaultHttpxClient(trust_env=False))
    for n in [40, 333, 777]:
        with pytest.raises(anthropic.APIError, match="broke in the middle"):
            with ac.messages.stream(model=f"claude-cut-{n}", max_tokens=50,
                                    messages=[{"role": "user", "content": "x"}],
                                    extra_headers={"x-mock-fault": f"reset-at:{n}",
                                                   "x-mock-output-words": "20"}) as s:
                for _ in s.text_stream:
                    pass
        assert agent.wait_record(model=f"claude-cut-{n}")["outcome"] == "incomplete"


# Compression: the agent never strips or appends inside someone else's compression.

def test_a_client_accepting_gzip_gets_a_stripped_stream_and_exact_usage(agent, mock):
    status, headers, data = stream_bytes(agent, "gzip-client", {"accept-encoding": "gzip, br, zstd",
                                                                "x-e2e": "gzip-client",
                                                                "x-mock-output-words": "5"})
    assert status == 200
    assert "content-encoding" not in headers, "the agent asked upstream for an uncompressed stream"
    assert b'"usage"' not in data, "the injected usage chunk did not reach the client"
    assert data.rstrip().endswith(b"data: [DONE]")
    seen = [q for q in mock.requests() if q["headers"].get("x-e2e") == "gzip-client"][-1]
    assert seen["accept_encoding"] == "identity" and seen["body"]["stream_options"] == {"include_usage": True}
    rec = agent.wait_record(model="gzip-client")
    assert tokens(rec) == (3, 5) and rec["usage_injected"] is True


@pytest.mark.parametrize("coding", ["gzip", "br", "zstd", "deflate"])
def test_an_upstream_compressing_a_stream_anyway_is_decoded_for_the_client(agent, coding):
    model = f"forced-{coding}"
    status, headers, data = stream_bytes(agent, model, {"x-mock-compress": coding, "x-mock-output-words": "6"})
    assert status == 200 and "content-encoding" not in headers
    frames = [f for f in data.decode().split("\n\n") if f]
    assert frames[-1] == "data: [DONE]"
    assert b'"usage"' not in data
    content = "".join(json.loads(f[6:])["choices"][0]["delta"].get("content", "")
                      for f in frames[:-1] if json.loads(f[6:])["choices"])
    assert content.split() == f"This is a mock reply from {model}.".split()[:6]
    rec = agent.wait_record(model=model)
    assert tokens(rec) == (3, 6)


def test_compressed_json_answers_are_read_and_metered(agent, fresh_agent, mock):
    """With guardrails on (the default) a gzip answer is decoded so it can be inspected, and the client
    gets it plain (every client accepts identity); with guardrails off it passes untouched."""
    def ask(a, model):
        return httpx.post(f"http://{a.addr}{CHAT}", trust_env=False,
                          headers={"authorization": "Bearer sk", "accept-encoding": "gzip"},
                          json={"model": model, "messages": [{"role": "user", "content": "one two"}]})

    r = ask(agent, "gzip-json")
    assert r.status_code == 200 and "content-encoding" not in r.headers
    assert r.json()["model"] == "gzip-json"
    assert tokens(agent.wait_record(model="gzip-json")) == (2, 7)

    plain = fresh_agent(mock_policy(mock, "[guardrails]\nenabled = false\n"))
    r = ask(plain, "gzip-json-off")
    assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
    assert r.json()["model"] == "gzip-json-off"
    assert tokens(plain.wait_record(model="gzip-json-off")) == (2, 7)


def test_a_compressed_stream_cut_mid_way_still_ends_with_a_readable_error(agent):
    status, headers, data = stream_bytes(agent, "gzip-cut", {"x-mock-compress": "gzip",
                                                             "x-mock-fault": "reset-mid-frame",
                                                             "x-mock-output-words": "20"})
    assert status == 200 and "content-encoding" not in headers
    last = [f for f in data.decode().split("\n\n") if f][-1]
    assert json.loads(last[6:])["error"]["code"] == "upstream_stream_broken"


# Hosts that refuse the agent's own stream_options.

def test_a_host_refusing_stream_options_is_retried_without_it_and_remembered(fresh_agent, mock):
    a = fresh_agent()
    client = oai_client(a)
    chunks = list(client.chat.completions.create(
        model="strict-1", stream=True, messages=[{"role": "user", "content": "a b c"}],
        extra_headers={"x-mock-reject-params": "stream_options", "x-e2e": "strict-1"}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).split()[:3] == ["This", "is", "a"]
    tries = [q for q in mock.requests() if q["headers"].get("x-e2e") == "strict-1"]
    assert [q["status"] for q in tries] == [400, 200]
    assert "stream_options" in tries[0]["body"] and "stream_options" not in tries[1]["body"]
    rec = a.wait_record(model="strict-1")
    assert rec["status"] == 200 and rec["usage_injected"] is False and rec["usage_estimated"] is True
    assert a.status()["upstream"]["hosts_without_stream_options"] == ["api.openai.com"]
    # The next stream to that host goes once, as the client sent it.
    list(client.chat.completions.create(
        model="strict-2", stream=True, messages=[{"role": "user", "content": "x"}],
        extra_headers={"x-mock-reject-params": "stream_options", "x-e2e": "strict-2"}))
    tries = [q for q in mock.requests() if q["headers"].get("x-e2e") == "strict-2"]
    assert [q["status"] for q in tries] == [200]


def test_an_older_azure_api_version_is_retried_and_a_newer_one_still_metered(fresh_agent, mock):
    a = fresh_agent()
    old = openai.AzureOpenAI(api_key="azure-key", azure_endpoint=a.base_url("azure/mockres"),
                             api_version="2024-06-01", max_retries=0,
                             http_client=httpx.Client(trust_env=False, timeout=30))
    chunks = list(old.chat.completions.create(model="gpt4o-prod", stream=True,
                                              messages=[{"role": "user", "content": "hi"}],
                                              extra_headers={"x-e2e": "azure-old"}))
    assert any(c.choices and c.choices[0].delta.content for c in chunks)
    tries = [q for q in mock.requests() if q["headers"].get("x-e2e") == "azure-old"]
    assert [q["status"] for q in tries] == [400, 200]
    assert a.wait_record(model="gpt4o-prod")["usage_estimated"] is True
    new = openai.AzureOpenAI(api_key="azure-key", azure_endpoint=a.base_url("azure/mockres"),
                             api_version="2024-10-21", max_retries=0,
                             http_client=httpx.Client(trust_env=False, timeout=30))
    list(new.chat.completions.create(model="gpt4o-new", stream=True, messages=[{"role": "user", "content": "hi"}],
                                     extra_headers={"x-e2e": "azure-new"}))
    tries = [q for q in mock.requests() if q["headers"].get("x-e2e") == "azure-new"]
    assert [q["status"] for q in tries] == [200] and "stream_options" in tries[0]["body"]
    rec = a.wait_record(model="gpt4o-new")
    assert rec["usage_injected"] is True and rec["usage_estimated"] is False


def test_a_400_that_is_not_about_stream_options_reaches_the_client_as_it_was(agent, mock):
    client = oai_client(agent)
    with pytest.raises(openai.BadRequestError) as e:
        list(client.chat.completions.create(model="bad-other", stream=True, messages=[{"role": "user", "content": "x"}],
                                            extra_headers={"x-mock-reject-params": "temperature", "x-e2e": "bad-other"},
                                            temperature=0.5))
    assert "temperature" in str(e.value)
    assert len([q for q in mock.requests() if q["headers"].get("x-e2e") == "bad-other"]) == 1


# Stalls end in time.

def test_a_stream_that_stalls_forever_is_ended_with_an_error_event(fresh_agent, mock):
    a = fresh_agent(mock_policy(mock, "\n[limits]\nstream_idle_timeout_secs = 1\n"))
    t0 = time.monotonic()
    status, _, data = stream_bytes(a, "stall-forever", {"x-mock-fault": "stall-mid-stream",
                                                        "x-mock-output-words": "10"})
    assert status == 200 and time.monotonic() - t0 < 5
    last = [f for f in data.decode().split("\n\n") if f][-1]
    err = json.loads(last[6:])["error"]
    assert err["code"] == "upstream_stream_stalled" and "1 s" in err["message"]
    rec = a.wait_record(model="stall-forever")
    assert rec["outcome"] == "incomplete" and "stalled" in rec["error"]


def test_a_provider_that_never_answers_gets_a_504_in_the_callers_dialect(fresh_agent, mock):
    a = fresh_agent(mock_policy(mock, "\n[limits]\nresponse_header_timeout_secs = 1\n"))
    r = httpx.post(f"{a.base_url('anthropic')}/v1/messages", trust_env=False, timeout=10,
                   headers={"x-api-key": "k", "anthropic-version": "2023-06-01", "x-mock-fault": "stall-headers"},
                   json={"model": "never-answers", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 504
    assert r.json()["error"]["type"] == "timeout_error" and r.json()["airlock"]["type"] == "upstream_timeout"
    assert "limits.response_header_timeout_secs" in r.json()["error"]["message"]
    rec = a.wait_record(model="never-answers")
    assert rec["outcome"] == "upstream_failed" and rec["status"] == 504


def test_a_refused_upstream_connection_is_a_502_in_each_dialect(fresh_agent, mock):
    dead = f"127.0.0.1:{free_port()}"
    policy = policy_with_override(mock, "api.anthropic.com", dead, mock.ca_file)
    a = fresh_agent(policy)
    r = httpx.post(f"{a.base_url('anthropic')}/v1/messages", trust_env=False, timeout=20,
                   headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
                   json={"model": "refused", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 502 and r.json()["error"]["type"] == "api_error"
    assert "could not connect" in r.json()["error"]["message"]
    assert a.wait_record(model="refused")["outcome"] == "upstream_failed"


# Empty, mislabelled and malformed answers.

@pytest.mark.parametrize("fault, status", [("500-empty", 500), ("503-empty", 503), ("429-empty", 429), ("502-html", 502)])
def test_error_statuses_without_provider_bodies_reach_the_client(agent, fault, status):
    model = f"bodyless-{fault}"
    r = httpx.post(f"http://{agent.addr}{CHAT}", trust_env=False, headers={"authorization": "Bearer sk",
                                                                         "x-mock-fault": fault},
                   json={"model": model, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == status
    rec = agent.wait_record(model=model)
    assert (rec["status"], rec["outcome"]) == (status, "completed")
    assert rec["cost_status"] == "unknown" and str(status) in rec["cost_note"]
    still_serving(agent)


@pytest.mark.parametrize("fault", ["invalid-json-frame", "invalid-utf8-frame", "wrong-content-type"])
def test_malformed_streams_reach_the_client_and_are_recorded(agent, fault):
    model = f"malformed-{fault}"
    status, headers, data = stream_bytes(agent, model, {"x-mock-fault": fault, "x-mock-output-words": "8",
                                                        "x-mock-compress": "off"})
    assert status == 200 and data.rstrip().endswith(b"data: [DONE]")
    rec = agent.wait_record(model=model)
    assert rec["outcome"] == "completed" and rec["usage"] is not None
    if fault == "wrong-content-type":
        assert headers["content-type"].startswith("text/html")
    still_serving(agent)


def test_a_100_mib_frame_from_upstream_passes_through_with_bounded_memory(agent):
    def rss_kib() -> int:
        for line in open(f"/proc/{agent.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    before = rss_kib()
    peak = before
    body = {"model": "huge-frame", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    got = 0
    with httpx.stream("POST", f"http://{agent.addr}{CHAT}", json=body, trust_env=False, timeout=120,
                      headers={"authorization": "Bearer sk", "x-mock-fault": "huge-frame:100",
                               "x-mock-compress": "off"}) as r:
        for chunk in r.iter_raw():
            got += len(chunk)
            peak = max(peak, rss_kib())
    assert got > 100 << 20
    rec = agent.wait_record(model="huge-frame", timeout=30)
    assert rec["outcome"] == "completed" and rec["response_bytes"] == got
    # The frame was passed on as it came, never held whole: the agent grew by far less than 100 MiB.
    assert peak - before < 48 << 10, (before, peak)
    still_serving(agent)
