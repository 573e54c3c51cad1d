"""Guardrails on responses, end to end with the real SDKs: a cloud key the provider streams back is
redacted before the client sees it, whatever the chunking — the mock cuts the answer at every byte
offset around the key (`x-mock-split-at`) — on OpenAI chat, Anthropic messages and Gemini (SSE and
the JSON-array stream); a non-streamed answer is redacted in place; with `block`, the stream ends with
the dialect's in-stream error before any of the key is sent. The record names the rule with a masked
preview, and the key appears in no log, record or journal."""

from __future__ import annotations

import base64
import json
import random
import sqlite3
import string
import time
import uuid

import anthropic
import httpx
import openai
import pytest

from conftest import mock_policy, start_agent, stop

WARN_PII = """
[[guardrails.rules]]
categories = ["pii"]
direction = "response"
action = "warn"
"""

BLOCK = """
[[guardrails.rules]]
categories = ["secret"]
direction = "response"
action = "block"
"""


def fake_aws_key() -> str:
    rnd = random.Random(uuid.uuid4().int)
    return "AKIA" + "".join(rnd.choice(string.ascii_uppercase + "234567") for _ in range(16))


@pytest.fixture(scope="module")
def agent(mock, tmp_path_factory):
    a = start_agent(tmp_path_factory.mktemp("rguard"), mock_policy(mock, WARN_PII))
    yield a
    stop(a.proc)


@pytest.fixture(scope="module")
def blocking(mock, tmp_path_factory):
    a = start_agent(tmp_path_factory.mktemp("rblock"), mock_policy(mock, BLOCK))
    yield a
    stop(a.proc)


def answer_headers(text: str, *cuts: int) -> dict:
    h = {"x-mock-answer-b64": base64.b64encode(text.encode()).decode()}
    if cuts:
        h["x-mock-split-at"] = ",".join(str(c) for c in cuts)
    return h


def oai(a):
    return openai.OpenAI(api_key="sk-guard", base_url=a.base_url("openai") + "/v1", max_retries=0,
                         http_client=httpx.Client(trust_env=False, timeout=10))


def written(a) -> bytes:
    """Everything the agent wrote that could hold a value: log, records, journal."""
    out = a.log().encode() + json.dumps(a.records()).encode()
    for name in ("journal.db", "journal.db-wal"):
        p = a.state_dir / name
        if p.exists():
            out += p.read_bytes()
    return out


def test_a_streamed_key_is_redacted_at_every_split(agent):
    key = fake_aws_key()
    text = f"Sure. Your key is {key} — rotate it soon."
    start = text.index(key)
    expected = text.replace(key, "[REDACTED:aws_access_key]")
    claude = anthropic.Anthropic(api_key="sk-ant-guard", base_url=agent.base_url("anthropic"), max_retries=0,
                                 http_client=anthropic.DefaultHttpxClient(trust_env=False))
    for cut in range(start - 1, start + len(key) + 2):
        tag = f"s{cut}-{uuid.uuid4().hex[:6]}"
        stream = oai(agent).chat.completions.create(
            model="gpt-4o-mini", stream=True, extra_query={"m": tag}, extra_headers=answer_headers(text, cut, cut + 3),
            messages=[{"role": "user", "content": "what is my key?"}])
        got = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert got == expected, f"openai, split at {cut}"

        with claude.messages.stream(model="claude-sonnet-4-5", max_tokens=256, extra_query={"m": f"{tag}-a"},
                                    extra_headers=answer_headers(text, cut, cut + 7),
                                    messages=[{"role": "user", "content": "what is my key?"}]) as s:
            got = "".join(s.text_stream)
        assert got == expected, f"anthropic, split at {cut}"

    rec = agent.wait_record(path=f"/v1/chat/completions?m={tag}")
    [hit] = rec["guardrails"]
    assert (hit["rule"], hit["direction"], hit["action"], hit["pointer"]) == \
        ("aws_access_key", "response", "redact", "/content/0")
    assert hit["preview"] == f"{key[:4]}…{key[-3:]}"
    assert rec["outcome"] == "completed"
    assert key.encode() not in written(agent)


def test_gemini_streams_and_whole_answers_are_redacted(agent):
    key = fake_aws_key()
    text = f"The deploy key: {key}\nDone."
    expected = text.replace(key, "[REDACTED:aws_access_key]")
    base = agent.base_url("gemini")
    body = {"contents": [{"role": "user", "parts": [{"text": "show me"}]}]}
    for cut in (text.index(key) + 2, text.index(key) + 11):
        h = {"x-goog-api-key": "k", **answer_headers(text, cut)}
        r = httpx.post(f"{base}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", json=body,
                       headers=h, trust_env=False, timeout=30)
        parts = [json.loads(l[5:]) for l in r.text.splitlines() if l.startswith("data:")]
        got = "".join(p["text"] for f in parts for c in f["candidates"] for p in c["content"]["parts"] if "text" in p)
        assert got == expected and key not in r.text

        r = httpx.post(f"{base}/v1beta/models/gemini-2.5-flash:streamGenerateContent", json=body, headers=h,
                       trust_env=False, timeout=30)
        arr = r.json()
        got = "".join(p["text"] for f in arr for c in f["candidates"] for p in c["content"]["parts"] if "text" in p)
        assert got == expected and key not in r.text

    # Not streamed: the one JSON answer, rewritten in place.
    r = oai(agent).chat.completions.create(model="gpt-4o-mini", extra_headers=answer_headers(text),
                                           messages=[{"role": "user", "content": "show me"}])
    assert r.choices[0].message.content == expected


def test_a_blocked_key_ends_the_stream_with_an_error_before_it_is_sent(blocking):
    key = fake_aws_key()
    text = f"Here it is: {key} and more text after it."
    tag = uuid.uuid4().hex[:8]
    got = ""
    with pytest.raises(openai.APIError) as e:
        stream = oai(blocking).chat.completions.create(
            model="gpt-4o-mini", stream=True, extra_query={"m": tag},
            extra_headers=answer_headers(text, text.index(key), text.index(key) + 6),
            messages=[{"role": "user", "content": "what is my key?"}])
        for c in stream:
            if c.choices:
                got += c.choices[0].delta.content or ""
    assert "aws_access_key" in str(e.value) and key not in str(e.value)
    assert got == "Here it is: ", "the text before the key goes out, none of the key"
    rec = blocking.wait_record(path=f"/v1/chat/completions?m={tag}")
    assert rec["decided_by"] == "inspect_response:guardrails"
    assert rec["outcome"] == "incomplete"
    assert [(h["rule"], h["action"]) for h in rec["guardrails"]] == [("aws_access_key", "block")]
    assert key.encode() not in written(blocking)


def test_a_warned_finding_in_a_response_is_journaled_and_the_text_left_alone(agent):
    tag = uuid.uuid4().hex[:8]
    text = "Write to jane.doe@example.org for the invoice."
    stream = oai(agent).chat.completions.create(
        model="gpt-4o-mini", stream=True, extra_query={"m": tag}, extra_headers=answer_headers(text, 12),
        messages=[{"role": "user", "content": "who do I write to?"}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == text
    rec = agent.wait_record(path=f"/v1/chat/completions?m={tag}")
    assert [(h["rule"], h["direction"], h["action"]) for h in rec["guardrails"]] == [("email", "response", "warn")]
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(f"file:{agent.state_dir / 'journal.db'}?mode=ro", uri=True) as db:
            events = [json.loads(b)["details"] for (b,) in db.execute(
                "SELECT body FROM journal WHERE kind = 'event' AND outcome = 'guardrail_warn'")]
        mine = [e for e in events if e["request_id"] == rec["id"]]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [(e["direction"], e["rules"]) for e in mine] == [("response", ["email"])]
    assert b"jane.doe@example.org" not in written(agent)
