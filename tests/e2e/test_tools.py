"""The real AI tools people run, installed from the registries at pinned versions, through the agent
against the mock: Claude Code (`claude -p`) and Gemini CLI (`gemini -p`) from npm, under `airlock run`
(proxy variables) and `airlock run --base-url`, and LangChain (`langchain-openai`) from PyPI. Every
tool runs inside a network namespace with only loopback (`netns.py`), with its telemetry, error
reporting and update checks off as it documents, so nothing it tries can leave the machine.

Each test checks what the tool printed, and that each model call the mock answered has exactly one
record with the model asked for and the tokens the mock counted for that request (the mock counts
one token per word of the request's text), and then reports its row of the coverage matrix.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

import coverage
from conftest import stop
from netns import NsAgent, NsMock, open_netns, start_stack

REPLY = "This is a mock reply from {model}."


def tools_dir() -> Path:
    d = os.environ.get("AIRLOCK_TEST_TOOLS_DIR")
    if not d:
        pytest.fail("AIRLOCK_TEST_TOOLS_DIR is not set: run the suite with scripts/test.sh, which installs the tools")
    return Path(d) / "node_modules"


def node_bin() -> str:
    node = os.environ.get("AIRLOCK_TEST_NODE")
    if not node:
        pytest.fail("AIRLOCK_TEST_NODE is not set: run the suite with scripts/test.sh, which installs Node 24")
    return str(Path(node).parent)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    netns = open_netns()
    try:
        mock, agent = start_stack(netns, tmp_path_factory.mktemp("tools"))
    except BaseException:
        netns.close()
        raise
    yield mock, agent
    stop(agent.proc)
    stop(mock.proc)
    netns.close()


def words(text: str | None) -> int:
    return len(text.split()) if isinstance(text, str) else 0


def content_words(v) -> int:
    """The mock's count: a string, or the `text` of each part/block."""
    if isinstance(v, str):
        return words(v)
    if isinstance(v, list):
        return sum(words(p) if isinstance(p, str) else words(p.get("text")) if isinstance(p, dict) else 0
                   for p in v)
    return 0


def expected_input(req: dict) -> int:
    """The input tokens the mock answered `req` with (its body, as logged)."""
    body = req["body"] or {}
    if "contents" in body or "systemInstruction" in body:  # Gemini
        system = (body.get("systemInstruction") or {}).get("parts")
        contents = body.get("contents")
        contents = contents if isinstance(contents, list) else [contents or {}]
        return content_words(system) + sum(content_words(c.get("parts")) for c in contents)
    system = body.get("system") if "system" in body else None
    return content_words(system) + sum(content_words(m.get("content")) for m in body.get("messages", []))


def model_calls(mock: NsMock, *suffixes: str) -> list[dict]:
    """The mock's logged POSTs whose path ends with one of `suffixes` (the model calls), oldest first."""
    return [r for r in mock.requests()
            if r["method"] == "POST" and r["path"].split("?")[0].endswith(suffixes)]


def gemini_model(req: dict) -> str:
    return req["path"].rsplit("/models/", 1)[1].split(":", 1)[0]


def assert_records_match(agent: NsAgent, calls: list[dict], before: int, model_of, operations: set[str],
                         mode: str) -> list[dict]:
    """One completed, exactly metered record per model call, in order, with the call's model and the
    mock's token counts; returns the records."""
    assert calls, "the tool made no model call"
    records = [r for r in agent.records()[before:] if r["operation"] in operations]
    assert len(records) == len(calls), (calls, records)
    for call, rec in zip(calls, records):
        assert rec["model"] == model_of(call), (call["path"], rec)
        assert (rec["mode"], rec["outcome"], rec["status"]) == (mode, "completed", 200), rec
        assert rec["usage_estimated"] is False, rec
        assert rec["usage"]["input_tokens"] == expected_input(call), (rec["usage"], call["path"])
        assert rec["usage"]["output_tokens"] == len(REPLY.format(model=rec["model"]).split()), rec["usage"]
    return records


def tool_env(home: Path, extra: dict) -> dict:
    home.mkdir(parents=True, exist_ok=True)
    return {"HOME": str(home), "PATH": f"{node_bin()}:{os.environ['PATH']}", "TERM": "dumb", "CI": "1", **extra}


# ---------------------------------------------------------------- Claude Code

CLAUDE_ENV = {
    # Telemetry, error reporting, auto-update and other non-essential traffic off (Claude Code's docs).
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "ANTHROPIC_API_KEY": "sk-ant-e2e-claude-code",
}
CLAUDE_MODEL = "claude-sonnet-4-5"


@pytest.mark.parametrize("route", ["run", "base-URL"])
def test_claude_code_print_mode_is_metered_exactly(stack, tmp_path, route):
    mock, agent = stack
    claude = tools_dir() / ".bin" / "claude"
    mock.clear()
    before = len(agent.records())
    flags = ["--base-url"] if route == "base-URL" else []
    p = agent.cli("run", *flags, "--", claude, "-p", "Say hello to Airlock", "--model", CLAUDE_MODEL,
                  "--output-format", "json", "--max-turns", "1",
                  env=tool_env(tmp_path / "home", CLAUDE_ENV), check=False, timeout=300)
    assert p.returncode == 0, f"{p.stdout}\n{p.stderr}"
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["result"] == REPLY.format(model=CLAUDE_MODEL), out
    calls = model_calls(mock, "/v1/messages")
    records = assert_records_match(agent, calls, before, lambda c: c["body"]["model"], {"messages"},
                                   "proxy" if route == "run" else "base_url")
    assert CLAUDE_MODEL in {r["model"] for r in records}
    # What Claude Code itself counted from the answers agrees with the records.
    for model, used in out["modelUsage"].items():
        mine = [r["usage"] for r in records if r["model"] == model]
        assert (sum(u["input_tokens"] for u in mine), sum(u["output_tokens"] for u in mine)) == (
            used["inputTokens"], used["outputTokens"]), (model, used)
    version = coverage.node_package(tools_dir(), "@anthropic-ai/claude-code")
    coverage.report("Claude Code (`claude -p`)", version, route, coverage.metered(*records))


# ---------------------------------------------------------------- Gemini CLI

GEMINI_MODEL = "gemini-2.5-flash"
GEMINI_SETTINGS = {
    # Usage statistics (Clearcut), OpenTelemetry, auto-update and its notification off (the settings of
    # Gemini CLI 0.61's schema); API-key auth.
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
    "security": {"auth": {"selectedType": "gemini-api-key"}},
}
GEMINI_ENV = {
    "GEMINI_API_KEY": "AIza-e2e-gemini-cli",
    "GEMINI_TELEMETRY_ENABLED": "false",
    # Headless runs refuse an untrusted folder; the test's temporary directory is trusted.
    "GEMINI_CLI_TRUST_WORKSPACE": "true",
    "GEMINI_CLI_NO_RELAUNCH": "true",
}


@pytest.mark.parametrize("route", ["run", "base-URL"])
def test_gemini_cli_print_mode_is_metered_exactly(stack, tmp_path, route):
    mock, agent = stack
    gemini = tools_dir() / ".bin" / "gemini"
    home = tmp_path / "home"
    (home / ".gemini").mkdir(parents=True)
    (home / ".gemini" / "settings.json").write_text(json.dumps(GEMINI_SETTINGS))
    mock.clear()
    before = len(agent.records())
    flags = ["--base-url"] if route == "base-URL" else []
    env = tool_env(home, GEMINI_ENV)
    p = agent.cli("run", *flags, "--", gemini, "-p", "Say hello to Airlock", "-m", GEMINI_MODEL,
                  "--output-format", "json", env=env, check=False, timeout=300)
    assert p.returncode == 0, f"{p.stdout}\n{p.stderr}"
    out = json.loads(p.stdout[p.stdout.index("{"):])
    assert out["response"].strip() == REPLY.format(model=GEMINI_MODEL), out
    calls = model_calls(mock, ":generateContent", ":streamGenerateContent")
    records = assert_records_match(agent, calls, before, gemini_model,
                                   {"generate_content", "stream_generate_content"},
                                   "proxy" if route == "run" else "base_url")
    assert GEMINI_MODEL in {r["model"] for r in records}
    for model, stats in out["stats"]["models"].items():
        mine = [r["usage"] for r in records if r["model"] == model]
        assert (sum(u["input_tokens"] for u in mine), sum(u["output_tokens"] for u in mine)) == (
            stats["tokens"]["prompt"], stats["tokens"]["candidates"]), (model, stats["tokens"])
    version = coverage.node_package(tools_dir(), "@google/gemini-cli")
    coverage.report("Gemini CLI (`gemini -p`)", version, route, coverage.metered(*records))


# ---------------------------------------------------------------- LangChain (langchain-openai)

LANGCHAIN_APP = textwrap.dedent("""
    import json
    from langchain_openai import ChatOpenAI
    llm = ChatOpenAI(model="lc-chat-1", api_key="sk-langchain", max_retries=0, stream_usage=True)
    answer = llm.invoke("hello from langchain")
    text = "".join(chunk.content for chunk in llm.stream("stream from langchain"))
    print(json.dumps({"answer": answer.content, "usage": answer.usage_metadata, "streamed": text}))
""")


@pytest.mark.parametrize("route", ["run", "base-URL"])
def test_langchain_openai_is_metered_exactly(stack, tmp_path, route):
    mock, agent = stack
    app = tmp_path / "app.py"
    app.write_text(LANGCHAIN_APP)
    mock.clear()
    before = len(agent.records())
    flags = ["--base-url"] if route == "base-URL" else []
    # LangSmith tracing is off unless asked for; say so anyway.
    env = tool_env(tmp_path / "home", {"LANGSMITH_TRACING": "false", "LANGCHAIN_TRACING_V2": "false"})
    p = agent.cli("run", *flags, "--", sys.executable, app, env=env, check=False, timeout=120)
    assert p.returncode == 0, f"{p.stdout}\n{p.stderr}"
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["answer"] == out["streamed"] == REPLY.format(model="lc-chat-1")
    assert (out["usage"]["input_tokens"], out["usage"]["output_tokens"]) == (3, 7)
    calls = model_calls(mock, "/v1/chat/completions")
    records = assert_records_match(agent, calls, before, lambda c: c["body"]["model"], {"chat_completions"},
                                   "proxy" if route == "run" else "base_url")
    assert [r["stream"] for r in records] == [False, True]
    coverage.report("LangChain (`langchain-openai`)", coverage.python_package("langchain-openai"), route,
                    coverage.metered(*records))
