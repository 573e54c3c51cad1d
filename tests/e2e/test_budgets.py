"""Budgets and rate limits end to end with the Python openai SDK: a budget crossed at an exact,
computed request and the next one refused (429 budget_exceeded, not retried by the SDK); 20
concurrent requests against a budget that fits 5 admit at most 5; a concurrency limit the SDK's own
retry waits out; a calendar window rolling over on an injected clock; spend that survives kill -9."""

from __future__ import annotations

import concurrent.futures
import json
import signal
import uuid

import httpx
import openai
import pytest

from conftest import mock_policy, start_agent, stop


def client(agent, retries=0, fault=None):
    headers = {"x-mock-fault": fault} if fault else {}
    return openai.OpenAI(api_key="sk-budget", base_url=agent.base_url("openai") + "/v1", max_retries=retries,
                         default_headers=headers, http_client=httpx.Client(trust_env=False, timeout=30))


def chat(c, marker: str, max_tokens: int = 16):
    return c.chat.completions.create(model="gpt-4o-mini", max_tokens=max_tokens, extra_query={"m": marker},
                                     messages=[{"role": "user", "content": "hello budget"}])


def policy(mock, budgets: str) -> str:
    return mock_policy(mock, budgets)


def one_request_costs(mock, tmp_path) -> tuple[int, int]:
    """(actual tokens, reserved estimate) of the standard request, measured under a huge budget."""
    a = start_agent(tmp_path / "probe", policy(mock, '[[budgets]]\nname = "probe"\nlimit_tokens = 1000000000\nwindow = "day"\n'))
    try:
        chat(client(a), "probe")
        rec = a.wait_record(path="/v1/chat/completions?m=probe")
        return rec["usage"]["input_tokens"] + rec["usage"]["output_tokens"], rec["reserved"]["tokens"]
    finally:
        stop(a.proc)


def test_a_budget_is_crossed_at_the_exact_request_and_the_next_is_refused_without_retry(mock, tmp_path):
    actual, estimate = one_request_costs(mock, tmp_path)
    assert 0 < actual < estimate
    # Three fit: 2 spent + an estimate <= limit; the fourth would need 3 spent + an estimate.
    limit = 3 * actual + estimate - 1
    text = policy(mock, f'[[budgets]]\nname = "gpt-daily"\nscope = ["user"]\nmatch = {{ provider = "openai", model = "gpt-4o-mini*" }}\n'
                        f'limit_tokens = {limit}\nwindow = "day"\ntimezone = "Europe/Berlin"\n')
    a = start_agent(tmp_path / "agent", text)
    try:
        tag = uuid.uuid4().hex[:6]
        c = client(a, retries=2)
        for i in range(3):
            chat(c, f"{tag}-{i}")
        with pytest.raises(openai.RateLimitError) as e:
            chat(c, f"{tag}-3")
        body = e.value.response.json()
        assert body["airlock"]["type"] == "budget_exceeded"
        assert e.value.response.headers["x-should-retry"] == "false"
        msg = body["error"]["message"]
        assert 'budget "gpt-daily" (user=' in msg and f"{3 * actual} of {limit} tokens used this day" in msg, msg
        assert "it resets at" in msg and ("+01:00" in msg or "+02:00" in msg), msg
        refused = [r for r in a.records() if f"{tag}-3" in r["path"]]
        assert len(refused) == 1 and refused[0]["decided_by"] == "authorize:budgets", "the SDK retried"
        assert not [r for r in mock.requests() if f"{tag}-3" in (r.get("query") or "")]
        st = a.status()["governance"]["budgets"]
        row = next(b for b in st if b["name"] == "gpt-daily")
        assert (row["used_tokens"], row["limit_tokens"], row["reserved_tokens"]) == (3 * actual, limit, 0), row
        out = a.cli("status").stdout
        assert "gpt-daily" in out, out

        # Killed and restarted: the spend is rebuilt from the journal, the budget stays crossed.
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
        a = start_agent(tmp_path / "agent", text, state=a.state_dir)
        row = next(b for b in a.status()["governance"]["budgets"] if b["name"] == "gpt-daily")
        assert row["used_tokens"] == 3 * actual, row
        with pytest.raises(openai.RateLimitError):
            chat(client(a), f"{tag}-after-restart")
    finally:
        stop(a.proc)


def test_twenty_concurrent_requests_against_a_budget_that_fits_five(mock, tmp_path):
    actual, estimate = one_request_costs(mock, tmp_path)
    text = policy(mock, f'[[budgets]]\nname = "five"\nlimit_tokens = {5 * estimate + estimate - 1}\nwindow = "hour"\n')
    a = start_agent(tmp_path / "agent", text)
    try:
        tag = uuid.uuid4().hex[:6]
        c = client(a, fault="slow-headers:800")

        def one(i):
            try:
                chat(c, f"{tag}-{i}")
                return "ok"
            except openai.RateLimitError as e:
                assert e.response.json()["airlock"]["type"] == "budget_exceeded"
                return "refused"

        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            results = list(pool.map(one, range(20)))
        assert results.count("ok") <= 5 and results.count("ok") >= 1, results
        served = [r for r in mock.requests() if f"m={tag}-" in (r.get("query") or "")]
        assert len(served) == results.count("ok")
    finally:
        stop(a.proc)


def test_a_concurrency_limit_is_waited_out_by_the_sdks_own_retry(mock, tmp_path):
    text = policy(mock, '[[rate_limits]]\nname = "one-at-a-time"\nscope = ["app"]\nconcurrency = 1\n')
    a = start_agent(tmp_path / "agent", text)
    try:
        tag = uuid.uuid4().hex[:6]
        c = client(a, retries=4, fault="slow-headers:1200")
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            done = list(pool.map(lambda i: chat(c, f"{tag}-{i}").choices[0].message.content, range(2)))
        assert all(done)
        limited = [r for r in a.records() if f"{tag}-" in r["path"] and r["decided_by"] == "authorize:rate_limits"]
        assert limited, "the second request was never held back"
        assert all(r["status"] == 429 for r in limited)
        # What the SDK saw: 429 with retry-after and rate_limited.
        with httpx.Client(trust_env=False, timeout=30) as h, concurrent.futures.ThreadPoolExecutor(1) as pool:
            slow = pool.submit(chat, client(a, fault="slow-headers:1500"), f"{tag}-slow")
            import time
            time.sleep(0.4)
            r = h.post(a.base_url("openai") + "/v1/chat/completions", headers={"authorization": "Bearer sk-budget"},
                       json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
            slow.result()
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        assert r.json()["airlock"]["type"] == "rate_limited" and "1 of 1 requests in flight" in r.json()["error"]["message"]
        limits = a.status()["governance"]["rate_limits"]
        assert limits and limits[0]["concurrency"] == 1
    finally:
        stop(a.proc)


def test_a_calendar_day_rolls_over_on_the_injected_clock(mock, tmp_path):
    clock = tmp_path / "clock"
    clock.write_text("1796169540")  # 2026-12-01T23:59:00Z
    actual, estimate = one_request_costs(mock, tmp_path)
    text = policy(mock, f'[[budgets]]\nname = "day"\nlimit_tokens = {estimate}\nwindow = "day"\n')
    a = start_agent(tmp_path / "agent", text, env={"AIRLOCK_TEST_CLOCK_FILE": str(clock)})
    try:
        chat(client(a), "day-1")
        with pytest.raises(openai.RateLimitError) as e:
            chat(client(a), "day-2")
        assert "it resets at 2026-12-02T00:00:00+00:00" in e.value.response.json()["error"]["message"]
        clock.write_text("1796169601")  # 2026-12-02T00:00:01Z
        assert chat(client(a), "day-3").choices[0].message.content
        assert "TEST CLOCK" in a.log()
    finally:
        stop(a.proc)
