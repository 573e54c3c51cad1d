"""OpenAI-compatible providers and Azure through the agent with the real openai SDK: each host's
deviations (Groq's x_groq usage, xAI's usage before the finish chunk, OpenRouter's comment keep-alives,
Azure's deployment URLs and filter chunks) are metered exactly, and what the client receives is what the
provider sent."""

from __future__ import annotations

import httpx
import openai
import pytest

from conftest import tokens

PROVIDERS = [
    # (provider, base-URL path, model)
    ("groq", "groq/openai/v1", "llama-3.3-70b-versatile"),
    ("xai", "xai/v1", "grok-4"),
    ("openrouter", "openrouter/api/v1", "openai/gpt-4o-mini"),
    ("mistral", "mistral/v1", "mistral-large-latest"),
    ("deepseek", "deepseek/v1", "deepseek-chat"),
    ("together", "together/v1", "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
]


def client(agent, path, **kw):
    return openai.OpenAI(api_key="sk-compat", base_url=agent.base_url(path), max_retries=0,
                         http_client=httpx.Client(trust_env=False), **kw)


@pytest.mark.parametrize("provider, path, model", PROVIDERS, ids=[p[0] for p in PROVIDERS])
def test_compatible_provider_streams_are_metered_exactly(agent, provider, path, model):
    c = client(agent, path)
    tag = f"compat-{provider}"
    chunks = list(c.chat.completions.create(model=model, stream=True, messages=[{"role": "user", "content": "three words here"}],
                                            extra_headers={"x-e2e": tag}))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == f"This is a mock reply from {model}."
    # The client did not ask for usage and sees none (Groq sends its own x_groq usage regardless).
    assert all(ch.usage is None for ch in chunks)
    rec = agent.wait_record(provider=provider, model=model, stream=True)
    assert tokens(rec) == (3, len(text.split()))
    assert rec["outcome"] == "completed"


def test_groq_usage_under_x_groq_reaches_the_client_unchanged(agent):
    r = httpx.post(f"{agent.base_url('groq/openai/v1')}/chat/completions", trust_env=False,
                   headers={"authorization": "Bearer gsk"},
                   json={"model": "groq-raw", "stream": True, "messages": [{"role": "user", "content": "x y"}]})
    frames = [l for l in r.text.splitlines() if l.startswith("data: {")]
    assert '"x_groq"' in frames[-1] and '"usage"' in frames[-1]
    rec = agent.wait_record(model="groq-raw")
    assert rec["usage_injected"] is True and tokens(rec) == (2, 7)


def test_xai_usage_before_the_finish_chunk_is_stripped_and_metered(agent, mock):
    r = httpx.post(f"{agent.base_url('xai/v1')}/chat/completions", trust_env=False,
                   headers={"authorization": "Bearer xai", "x-e2e": "xai-raw"},
                   json={"model": "grok-raw", "stream": True, "messages": [{"role": "user", "content": "q"}]})
    frames = [l for l in r.text.splitlines() if l.startswith("data: ")]
    assert frames[-1] == "data: [DONE]"
    assert not any('"usage"' in f for f in frames), "the usage the agent asked for never reaches the client"
    assert '"finish_reason":"stop"' in frames[-2]
    upstream = [q for q in mock.requests() if q["headers"].get("x-e2e") == "xai-raw"][-1]
    assert upstream["body"]["stream_options"] == {"include_usage": True}
    rec = agent.wait_record(model="grok-raw")
    assert tokens(rec) == (1, 7)


def test_openrouter_keepalive_comments_pass_through(agent):
    r = httpx.post(f"{agent.base_url('openrouter/api/v1')}/chat/completions", trust_env=False,
                   headers={"authorization": "Bearer or"},
                   json={"model": "openai/gpt-4o", "stream": True, "messages": [{"role": "user", "content": "q"}]})
    assert ": OPENROUTER PROCESSING" in r.text
    assert r.headers["x-generation-id"].startswith("gen-")
    rec = agent.wait_record(provider="openrouter", model="openai/gpt-4o")
    assert rec["cost_status"] == "priced", rec  # priced from OpenAI's own table
    assert rec["cost_note"] == "openai/gpt-4o"


def test_azure_deployment_urls_stream_and_price_by_the_underlying_model(agent):
    az = openai.AzureOpenAI(api_key="azure-key", azure_endpoint=agent.base_url("azure/mockres"),
                            api_version="2024-10-21", max_retries=0, http_client=httpx.Client(trust_env=False))
    r = az.chat.completions.create(model="prod-gpt4o", messages=[{"role": "user", "content": "hello azure"}])
    assert r.model == "gpt-4o-2024-08-06"
    rec = agent.wait_record(provider="azure", model="prod-gpt4o", stream=False)
    assert rec["host"] == "mockres.openai.azure.com"
    assert rec["path"] == "/openai/deployments/prod-gpt4o/chat/completions?api-version=2024-10-21"
    assert (rec["credential"], rec["response_model"]) == ("api_key", "gpt-4o-2024-08-06")
    assert tokens(rec) == (2, 7) and rec["cost_status"] == "priced"

    chunks = list(az.chat.completions.create(model="prod-gpt4o", stream=True,
                                             messages=[{"role": "user", "content": "stream azure"}]))
    assert chunks[0].choices == [] and chunks[0].prompt_filter_results, "Azure's filter chunk comes first"
    assert all(c.usage is None for c in chunks)
    rec = agent.wait_record(provider="azure", model="prod-gpt4o", stream=True)
    assert tokens(rec) == (2, 7) and rec["usage_injected"] is True


def test_reasoning_tokens_are_metered_per_provider(agent):
    c = client(agent, "openai/v1")
    r = c.chat.completions.create(model="o4-mini", messages=[{"role": "user", "content": "think"}],
                                  extra_headers={"x-mock-reasoning-tokens": "40"})
    assert r.usage.completion_tokens_details.reasoning_tokens == 40
    rec = agent.wait_record(model="o4-mini")
    assert (rec["usage"]["output_tokens"], rec["usage"]["reasoning_tokens"]) == (47, 40)
    g = httpx.post(f"{agent.base_url('gemini')}/v1beta/models/gemini-2.5-flash:generateContent", trust_env=False,
                   headers={"x-goog-api-key": "k", "x-mock-reasoning-tokens": "30"},
                   json={"contents": [{"role": "user", "parts": [{"text": "think hard"}]}]})
    assert g.json()["usageMetadata"]["thoughtsTokenCount"] == 30
    rec = agent.wait_record(model="gemini-2.5-flash")
    # Gemini's thoughts are billed as output on top of the candidates.
    assert (rec["usage"]["input_tokens"], rec["usage"]["output_tokens"], rec["usage"]["reasoning_tokens"]) == (2, 37, 30)


def test_anthropic_cache_writes_including_one_hour(agent):
    r = httpx.post(f"{agent.base_url('anthropic')}/v1/messages", trust_env=False,
                   headers={"x-api-key": "k", "anthropic-version": "2023-06-01", "x-mock-cached-tokens": "3",
                            "x-mock-cache-write-tokens": "2", "x-mock-cache-write-1h-tokens": "1"},
                   json={"model": "claude-sonnet-4-5", "max_tokens": 50,
                         "messages": [{"role": "user", "content": "one two three four five six seven eight"}]})
    u = r.json()["usage"]
    assert (u["input_tokens"], u["cache_read_input_tokens"], u["cache_creation_input_tokens"]) == (2, 3, 3)
    rec = agent.wait_record(id=r.headers["x-airlock-request-id"])
    ru = rec["usage"]
    assert (ru["input_tokens"], ru["cache_read_tokens"], ru["cache_write_tokens"], ru["cache_write_1h_tokens"]) == (8, 3, 3, 1)
    assert rec["cost_status"] == "priced"
