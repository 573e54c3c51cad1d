"""Bad input and broken upstreams: the client gets the upstream's answer or a clear error in its
provider's dialect, a record is made every time, and the agent keeps serving."""

from __future__ import annotations

import json
import socket
import ssl
import time

import anthropic
import httpx
import openai
import pytest


def post(agent, prefix, path, body=None, headers=None, content=None, timeout=30):
    h = {"authorization": "Bearer sk", "x-api-key": "sk-ant", "anthropic-version": "2023-06-01", **(headers or {})}
    return httpx.post(f"{agent.base_url(prefix)}{path}", json=body, content=content, headers=h,
                      trust_env=False, timeout=timeout)


def still_serving(agent):
    r = post(agent, "openai", "/v1/chat/completions", {"model": "alive-check", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200


def test_malformed_json_gets_the_upstreams_answer_and_a_record(agent):
    r = post(agent, "openai", "/v1/chat/completions", content=b'{"model": "broken", "messages": [',
             headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    rid = r.headers["x-airlock-request-id"]
    rec = agent.wait_record(id=rid)
    assert (rec["status"], rec["outcome"], rec["model"]) == (400, "completed", None)
    still_serving(agent)


def test_unknown_path_on_an_intercepted_host_passes_through(agent):
    r = post(agent, "openai", "/v1/no/such/endpoint", {"model": "x"})
    assert r.status_code == 404
    assert "error" in r.json()
    rec = agent.wait_record(id=r.headers["x-airlock-request-id"])
    assert rec["status"] == 404 and rec["operation"].startswith("other:")
    still_serving(agent)


@pytest.mark.parametrize("fault, status", [("500", 500), ("503", 503), ("429", 429)])
def test_upstream_errors_reach_the_client_as_the_upstream_sent_them(agent, fault, status):
    r = post(agent, "openai", "/v1/chat/completions", {"model": f"fault-{fault}", "messages": []},
             headers={"x-mock-fault": fault})
    assert r.status_code == status
    if fault == "429":
        assert r.headers["retry-after"] == "1"
    rec = agent.wait_record(model=f"fault-{fault}")
    assert rec["status"] == status and rec["outcome"] == "completed"
    still_serving(agent)


def test_sdk_sees_upstream_429_as_a_rate_limit(agent):
    client = openai.OpenAI(api_key="sk", base_url=agent.base_url("openai/v1"), max_retries=0,
                           http_client=httpx.Client(trust_env=False))
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="sdk-429", messages=[{"role": "user", "content": "x"}],
                                       extra_headers={"x-mock-fault": "429"})


def test_upstream_reset_before_answering_is_a_502_in_each_dialect(agent):
    r = post(agent, "openai", "/v1/chat/completions", {"model": "reset-openai", "messages": []},
             headers={"x-mock-fault": "reset"})
    assert r.status_code == 502
    err = r.json()
    assert err["error"]["code"] == "upstream_unreachable" and err["airlock"]["type"] == "upstream_unreachable"
    assert "api.openai.com" in err["error"]["message"]
    rec = agent.wait_record(model="reset-openai")
    assert (rec["status"], rec["outcome"]) == (502, "upstream_failed") and rec["error"]

    r = post(agent, "anthropic", "/v1/messages", {"model": "reset-claude", "max_tokens": 5, "messages": []},
             headers={"x-mock-fault": "reset"})
    assert r.status_code == 502
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "api_error"
    client = anthropic.Anthropic(api_key="sk-ant", base_url=agent.base_url("anthropic"), max_retries=0,
                                 http_client=anthropic.DefaultHttpxClient(trust_env=False))
    with pytest.raises(anthropic.InternalServerError) as e:
        client.messages.create(model="reset-claude-sdk", max_tokens=5, messages=[{"role": "user", "content": "x"}],
                               extra_headers={"x-mock-fault": "reset"})
    assert "api.anthropic.com" in str(e.value)
    still_serving(agent)


def test_stream_cut_mid_way_ends_with_an_error_frame_and_an_estimated_incomplete_record(agent):
    body = {"model": "cut-stream", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    frames = []
    with httpx.stream("POST", f"{agent.base_url('openai')}/v1/chat/completions", json=body, trust_env=False,
                      headers={"authorization": "Bearer sk", "x-mock-fault": "reset-mid-stream",
                               "x-mock-output-words": "20"}, timeout=30) as r:
        assert r.status_code == 200
        frames = [json.loads(l[6:]) for l in r.iter_lines() if l.startswith("data: {")]
    assert any(f.get("choices") for f in frames), "the chunks before the cut reached the client"
    err = frames[-1]["error"]
    assert err["code"] == "upstream_stream_broken" and "api.openai.com" in err["message"]
    rec = agent.wait_record(model="cut-stream")
    assert (rec["status"], rec["outcome"]) == (200, "incomplete")
    assert "broke off" in rec["error"]
    # No usage arrived: it is estimated from the text that went each way, and flagged.
    assert rec["usage_estimated"] is True
    assert rec["usage"]["output_tokens"] > 0 and rec["usage"]["input_tokens"] == 1
    still_serving(agent)


def test_sdks_raise_the_in_stream_error_of_their_own_dialect(agent):
    client = openai.OpenAI(api_key="sk", base_url=agent.base_url("openai/v1"), max_retries=0,
                           http_client=httpx.Client(trust_env=False))
    stream = client.chat.completions.create(model="cut-sdk", stream=True, messages=[{"role": "user", "content": "x"}],
                                            extra_headers={"x-mock-fault": "reset-mid-stream", "x-mock-output-words": "20"})
    with pytest.raises(openai.APIError, match="broke in the middle"):
        for _ in stream:
            pass
    ac = anthropic.Anthropic(api_key="sk-ant", base_url=agent.base_url("anthropic"), max_retries=0,
                             http_client=anthropic.DefaultHttpxClient(trust_env=False))
    with pytest.raises(anthropic.APIError, match="broke in the middle"):
        with ac.messages.stream(model="cut-claude", max_tokens=50, messages=[{"role": "user", "content": "x"}],
                                extra_headers={"x-mock-fault": "reset-mid-stream", "x-mock-output-words": "20"}) as s:
            for _ in s.text_stream:
                pass
    rec = agent.wait_record(model="cut-claude")
    assert rec["outcome"] == "incomplete" and rec["usage_estimated"] is True
    # Anthropic's message_start carried the exact input; only the output is estimated.
    assert rec["usage"]["input_tokens"] == 1
    still_serving(agent)


def test_client_going_away_mid_stream_is_recorded(agent):
    body = {"model": "client-gone", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    with httpx.stream("POST", f"{agent.base_url('openai')}/v1/chat/completions", json=body, trust_env=False,
                      headers={"authorization": "Bearer sk", "x-mock-chunk-delay-ms": "200",
                               "x-mock-output-words": "20"}, timeout=30) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                break  # leave after the first chunk
    rec = agent.wait_record(model="client-gone", timeout=15)
    assert rec["outcome"] == "client_closed"
    still_serving(agent)


def test_huge_body_is_refused_in_the_callers_dialect_without_reading_it_all(agent):
    big = b'{"model":"huge","messages":[{"role":"user","content":"' + b"x" * (100 << 20) + b'"}]}'
    r = post(agent, "openai", "/v1/chat/completions", content=big, headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"
    assert "64 MiB" in r.json()["error"]["message"] and "limits.max_request_body_mib" in r.json()["error"]["message"]
    r = post(agent, "anthropic", "/v1/messages", content=big, headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large"
    r = post(agent, "gemini", "/v1beta/models/g:generateContent", content=big,
             headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 413 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    rejected = [x for x in agent.records() if x["outcome"] == "rejected" and x["status"] == 413]
    assert len(rejected) >= 3
    still_serving(agent)


def test_slow_upstream_headers_show_in_time_to_first_byte(agent):
    r = post(agent, "openai", "/v1/chat/completions", {"model": "slow-headers", "messages": []},
             headers={"x-mock-fault": "slow-headers:400"})
    assert r.status_code == 200
    rec = agent.wait_record(model="slow-headers")
    assert rec["ttfb_ms"] >= 400


def test_garbage_on_the_listener_does_not_hurt_the_agent(agent):
    for payload in [b"\x16\x03\x01\x00\x05hello", b"GET / HTTP/9.9\r\n\r\n", b"\x00" * 1000, b"CONNECT\r\n\r\n"]:
        with socket.create_connection(("127.0.0.1", agent.port), timeout=5) as s:
            s.sendall(payload)
            s.settimeout(5)
            try:
                s.recv(1024)
            except (socket.timeout, ConnectionResetError):
                pass
    # A CONNECT to an intercepted host followed by garbage instead of a ClientHello.
    with socket.create_connection(("127.0.0.1", agent.port), timeout=5) as s:
        s.sendall(b"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n\r\n")
        assert s.recv(1024).startswith(b"HTTP/1.1 200")
        s.sendall(b"this is not TLS\r\n\r\n")
        s.settimeout(5)
        try:
            s.recv(1024)
        except (socket.timeout, ConnectionResetError):
            pass
    # A client that does not trust the Airlock CA fails its handshake; the agent shrugs.
    with socket.create_connection(("127.0.0.1", agent.port), timeout=5) as s:
        s.sendall(b"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n\r\n")
        s.recv(1024)
        with pytest.raises(ssl.SSLCertVerificationError):
            ssl.create_default_context().wrap_socket(s, server_hostname="api.openai.com")
    still_serving(agent)
