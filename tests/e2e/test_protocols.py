"""Provider protocols end to end with real SDKs: usage metered exactly (including when the client did not
ask for it), tool-call and Responses streaming, Gemini through google-genai, Anthropic cache tokens,
compressed request bodies, and cost on every record."""

from __future__ import annotations

import gzip
import json
import ssl

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types as gtypes

from conftest import tokens


def ctx(agent) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(agent.bundle))


@pytest.fixture
def oai(agent):
    with httpx.Client(proxy=agent.proxy_url, verify=ctx(agent), trust_env=False, timeout=30) as http:
        yield openai.OpenAI(api_key="sk-test-openai", http_client=http, max_retries=0)


def test_stream_without_include_usage_is_metered_exactly_and_the_client_sees_no_usage_chunk(agent, oai, mock):
    stream = oai.chat.completions.create(model="gpt-4o-mini", stream=True,
                                         messages=[{"role": "user", "content": "count these five words"}],
                                         extra_headers={"x-mock-output-words": "9", "x-e2e": "no-usage"})
    chunks = list(stream)
    # Exactly what the client would have received without Airlock: no usage anywhere, no empty-choices chunk.
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks).split() == \
        "This is a mock reply from gpt-4o-mini. This is".split()
    rec = agent.wait_record(model="gpt-4o-mini", usage_injected=True)
    assert tokens(rec) == (4, 9)
    assert rec["outcome"] == "completed"
    # Upstream was asked for usage.
    seen = [q for q in mock.requests() if q["headers"].get("x-e2e") == "no-usage"]
    assert seen[-1]["body"]["stream_options"] == {"include_usage": True}


def test_client_that_asked_for_usage_still_gets_it(agent, oai):
    stream = oai.chat.completions.create(model="gpt-4o-mini", stream=True, stream_options={"include_usage": True},
                                         messages=[{"role": "user", "content": "a b"}],
                                         extra_headers={"x-e2e": "asked"})
    usage = [c.usage for c in stream if c.usage]
    assert len(usage) == 1 and (usage[0].prompt_tokens, usage[0].completion_tokens) == (2, 7)


def test_openai_tool_call_streaming(agent, oai):
    tools = [{"type": "function", "function": {"name": "weather", "description": "Weather for a city",
                                               "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                              "required": ["city"]}}}]
    stream = oai.chat.completions.create(model="tool-model-1", stream=True, tools=tools,
                                         stream_options={"include_usage": True},
                                         messages=[{"role": "user", "content": "weather in Paris"}],
                                         extra_headers={"x-mock-tool-call": "1"})
    args, name, usage, finish = "", None, None, None
    for c in stream:
        if c.usage:
            usage = c.usage
        for ch in c.choices:
            finish = ch.finish_reason or finish
            for tc in ch.delta.tool_calls or []:
                name = tc.function.name or name
                args += tc.function.arguments or ""
    assert (name, json.loads(args), finish) == ("weather", {"city": "mock"}, "tool_calls")
    rec = agent.wait_record(model="tool-model-1")
    assert tokens(rec) == (usage.prompt_tokens, usage.completion_tokens) == (3, 4)


def test_responses_stream_cut_short_ends_with_an_error_event_and_is_incomplete(agent, oai):
    stream = oai.responses.create(model="resp-cut", input="hello", stream=True,
                                  extra_headers={"x-mock-fault": "reset-mid-stream", "x-mock-output-words": "12"})
    events = list(stream)
    assert any(e.type == "response.output_text.delta" for e in events)
    # The SDK surfaces a Responses `error` event as a typed event, as it does OpenAI's own.
    last = events[-1]
    assert (last.type, last.code) == ("error", "upstream_stream_broken")
    assert "broke in the middle" in last.message
    rec = agent.wait_record(model="resp-cut")
    assert rec["outcome"] == "incomplete" and rec["usage_estimated"] is True
    assert rec["cost_status"] in ("estimated", "unknown")


def test_anthropic_stream_with_cache_tokens(agent):
    with anthropic.DefaultHttpxClient(proxy=agent.proxy_url, verify=ctx(agent), trust_env=False) as http:
        client = anthropic.Anthropic(api_key="sk-ant", http_client=http, max_retries=0)
        with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100, system="cached system prompt here",
                                    messages=[{"role": "user", "content": "one two three four five"}],
                                    extra_headers={"x-mock-cached-tokens": "4", "x-e2e": "cache"}) as s:
            text = "".join(s.text_stream)
            final = s.get_final_message()
    assert text == "This is a mock reply from claude-sonnet-4-5."
    # Anthropic's input_tokens excludes cache reads: 9 words, 4 of them read from the cache.
    assert (final.usage.input_tokens, final.usage.cache_read_input_tokens) == (5, 4)
    rec = agent.wait_record(model="claude-sonnet-4-5", stream=True)
    u = rec["usage"]
    assert (u["input_tokens"], u["cache_read_tokens"], u["cache_write_tokens"], u["output_tokens"]) == (9, 4, 0, 7)
    assert rec["usage_estimated"] is False
    assert rec["cost_status"] == "priced" and rec["cost_usd"] > 0


def genai_client(agent, proxy: bool) -> genai.Client:
    if proxy:
        opts = gtypes.HttpOptions(client_args={"proxy": agent.proxy_url, "verify": ctx(agent), "trust_env": False})
    else:
        opts = gtypes.HttpOptions(base_url=agent.base_url("gemini"), client_args={"trust_env": False})
    return genai.Client(api_key="AIza-e2e-key", http_options=opts)


@pytest.mark.parametrize("proxy", [True, False], ids=["proxy", "base_url"])
def test_google_genai_generate_and_stream(agent, proxy):
    client = genai_client(agent, proxy)
    model = f"gemini-e2e-{'p' if proxy else 'b'}"
    r = client.models.generate_content(model=model, contents="hello gemini sdk")
    assert r.text == f"This is a mock reply from {model}."
    assert (r.usage_metadata.prompt_token_count, r.usage_metadata.candidates_token_count) == (3, 7)
    rec = agent.wait_record(model=model, operation="generate_content")
    assert tokens(rec) == (3, 7)
    assert rec["mode"] == ("proxy" if proxy else "base_url")
    assert rec["credential"] == "goog_api_key"

    text = "".join(c.text or "" for c in client.models.generate_content_stream(model=model, contents="stream it now"))
    assert text == f"This is a mock reply from {model}."
    rec = agent.wait_record(model=model, operation="stream_generate_content")
    assert tokens(rec) == (3, 7) and rec["stream"] is True and rec["outcome"] == "completed"


def test_gemini_json_array_stream_is_metered(agent):
    """streamGenerateContent without alt=sse streams a JSON array; it is metered the same."""
    r = httpx.post(f"{agent.base_url('gemini')}/v1beta/models/gemini-array:streamGenerateContent",
                   headers={"x-goog-api-key": "k"}, trust_env=False, timeout=30,
                   json={"contents": [{"role": "user", "parts": [{"text": "array form please"}]}]})
    assert r.status_code == 200 and r.text.lstrip().startswith("[")
    rec = agent.wait_record(model="gemini-array")
    assert tokens(rec) == (3, 7) and rec["outcome"] == "completed"


def test_compressed_request_body_is_read_but_forwarded_as_sent(agent, mock):
    body = json.dumps({"model": "gzip-model", "messages": [{"role": "user", "content": "zipped"}]}).encode()
    wire = gzip.compress(body, mtime=0)
    r = httpx.post(f"{agent.base_url('openai')}/v1/chat/completions", content=wire, trust_env=False,
                   headers={"authorization": "Bearer sk", "content-type": "application/json",
                            "content-encoding": "gzip", "x-e2e": "gzip"})
    rec = agent.wait_record(id=r.headers["x-airlock-request-id"])
    assert rec["model"] == "gzip-model", "the agent read the decoded body"
    seen = [q for q in mock.requests() if q["headers"].get("x-e2e") == "gzip"][-1]
    assert seen["headers"]["content-encoding"] == "gzip", "the original bytes went upstream"
    assert seen["body_len"] == len(wire)


def test_gzip_bomb_is_refused(agent):
    bomb = gzip.compress(b'{"model":"bomb","messages":[{"role":"user","content":"' + b"a" * (64 << 20) + b'"}]}')
    r = httpx.post(f"{agent.base_url('openai')}/v1/chat/completions", content=bomb, trust_env=False, timeout=60,
                   headers={"authorization": "Bearer sk", "content-type": "application/json", "content-encoding": "gzip"})
    assert r.status_code == 413
    assert "once decompressed" in r.json()["error"]["message"]


def test_records_carry_cost_and_flag_unknown_models(agent):
    client = openai.OpenAI(api_key="sk", base_url=agent.base_url("openai/v1"), max_retries=0,
                           http_client=httpx.Client(trust_env=False))
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "price me"}])
    rec = agent.wait_record(model="gpt-4o")
    assert rec["cost_status"] == "priced"
    assert tokens(rec) == (2, 7)
    assert rec["cost_note"] == "openai/gpt-4o"
    assert rec["cost_usd"] == pytest.approx(2 * 2.5e-6 + 7 * 10e-6, rel=0.5)  # shipped table, today's gpt-4o rates
    client.chat.completions.create(model="no-such-model-xyz", messages=[{"role": "user", "content": "x"}])
    rec = agent.wait_record(model="no-such-model-xyz")
    assert rec["cost_status"] == "unknown" and rec["cost_usd"] is None
    assert "[prices." in rec["cost_note"]


def test_anthropic_version_and_beta_headers_reach_the_provider_unchanged(agent, mock):
    beta = "prompt-caching-2024-07-31,interleaved-thinking-2025-05-14"
    r = httpx.post(f"{agent.base_url('anthropic')}/v1/messages", trust_env=False,
                   headers={"x-api-key": "k", "anthropic-version": "2023-06-01", "anthropic-beta": beta,
                            "x-e2e": "beta"},
                   json={"model": "claude-beta", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200
    seen = [q for q in mock.requests() if q["headers"].get("x-e2e") == "beta"][-1]
    assert seen["headers"]["anthropic-version"] == "2023-06-01"
    assert seen["headers"]["anthropic-beta"] == beta
    r = httpx.post(f"{agent.base_url('anthropic')}/v1/messages/count_tokens", trust_env=False,
                   headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
                   json={"model": "claude-count", "messages": [{"role": "user", "content": "a b c"}]})
    assert r.json() == {"input_tokens": 3}
    rec = agent.wait_record(model="claude-count")
    assert rec["operation"] == "count_tokens" and rec["usage"] is None, "counting tokens is free"
