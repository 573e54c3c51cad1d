"""WebSocket sessions the agent reads: the Responses API's WebSocket mode (`GET /v1/responses`, Codex's
default transport) and the Realtime API, through the agent in base-URL and proxy (HTTPS_PROXY/CONNECT)
mode, with and without permessage-deflate, driven by a real client (the `websockets` library) and by
the real Codex CLI.

What a user would notice: every `response.create` on a socket has a record of its own with its model,
exact tokens and cost (warm-ups marked as such, `previous_response_id` kept); what the client receives
is what the provider sent; a message a policy stage refuses gets the Responses `error` event on the
same socket, never reaches the provider, and the socket stays usable. The refusing stage lives in a
test binary (`tests/stage-agent`), never in the shipped daemon.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

import coverage
from conftest import ROOT, Agent, binary, mock_policy, stop, wait_for_file
from netns import Netns, open_netns

DENIED = "gpt-denied-model"
POLICY_DENIED = "gpt-policy-denied"  # denied by the policy's own [models] rules, not by the test stage
MODEL = "gpt-5"
PRICES = json.loads((ROOT / "policies" / "prices.json").read_text())["models"]
INSTRUCTIONS = "You are a careful coding agent"  # 6 words: the mock counts a token per word


def start_stage_agent(workdir: Path, policy_text: str, deny: str = DENIED, wrap=None) -> Agent:
    """The agent with the test stage denying `deny` (tests/stage-agent), like conftest's start_agent."""
    workdir.mkdir(parents=True, exist_ok=True)
    state = workdir / "state"
    policy = workdir / "policy.toml"
    policy.write_text(policy_text)
    args = [str(binary("airlock-stage-agent")), "--listen", "127.0.0.1:0", "--state-dir", str(state),
            "--policy", str(policy), "--deny-models", deny]
    log_path = workdir / "agent.log"
    env = {**os.environ, "AIRLOCK_LOG": os.environ.get("AIRLOCK_TEST_LOG", "info,airlock_agent=debug")}
    proc = subprocess.Popen(wrap(args) if wrap else args, stdout=open(log_path, "w"), stderr=subprocess.STDOUT, env=env)
    try:
        info = wait_for_file(state / "airlockd.json", proc, "airlock-stage-agent")
    except RuntimeError as e:
        raise RuntimeError(f"{e}\n--- agent log ---\n{log_path.read_text()}") from None
    return Agent(proc, info["listen"], state, log_path)


@pytest.fixture
def stage_agent(mock, tmp_path):
    started: list[Agent] = []

    def make(extra_policy: str = "") -> Agent:
        a = start_stage_agent(tmp_path / f"agent{len(started)}", mock_policy(mock, extra_policy))
        a.api("/airlock/v1/health")
        started.append(a)
        return a

    yield make
    for a in started:
        stop(a.proc)


def open_socket(agent: Agent, mode: str, path: str = "/v1/responses", deflate: bool = True, headers=None):
    """A WebSocket to the Responses (or Realtime) endpoint through the agent."""
    headers = {"Authorization": "Bearer sk-ws-test", "OpenAI-Beta": "responses_websockets=2026-02-06",
               **(headers or {})}
    compression = "deflate" if deflate else None
    if mode == "base_url":
        return connect(f"ws://{agent.addr}/openai{path}", additional_headers=headers, compression=compression,
                       proxy=None, open_timeout=10, max_size=None)
    ctx = ssl.create_default_context(cafile=str(agent.ca_cert))
    return connect(f"wss://api.openai.com{path}", additional_headers=headers, compression=compression,
                   proxy=agent.proxy_url, ssl=ctx, open_timeout=10, max_size=None)


def create(model: str = MODEL, **fields) -> dict:
    return {"type": "response.create", "model": model, "instructions": INSTRUCTIONS, "store": False,
            "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hello to the socket"}]}],
            **fields}


def until_terminal(ws) -> list[dict]:
    """Server events up to and including the terminal one."""
    events = []
    while True:
        ev = json.loads(ws.recv(timeout=10))
        events.append(ev)
        if ev["type"] in ("response.completed", "response.incomplete", "response.failed", "error", "response.done"):
            return events


def records_of(agent: Agent, socket_id: str, want: int, timeout: float = 10) -> list[dict]:
    """The records of the socket's messages (in message order), once `want` of them are finished."""
    deadline = time.monotonic() + timeout
    while True:
        recs = [r for r in agent.records() if (r.get("websocket") or {}).get("socket") == socket_id
                and r["websocket"]["message"] > 0]
        if len(recs) >= want or time.monotonic() > deadline:
            return sorted(recs, key=lambda r: r["websocket"]["message"])
        time.sleep(0.05)


def socket_record(agent: Agent, socket_id: str) -> dict:
    return agent.wait_record(id=socket_id)


# Codex 0.171's default model is newer than the shipped price table, so the test's policy prices it
# (as an administrator would with [prices."openai/<model>"]).
CODEX_MODEL = "gpt-6.2-sol"
CODEX_PRICE = {"input": 2.0, "cache_read": 0.2, "output": 16.0}


def expected_cost(model: str, inp: int, cached: int, out: int) -> float:
    p = CODEX_PRICE if model == CODEX_MODEL else PRICES[f"openai/{model}"]
    return ((inp - cached) * p["input"] + cached * p.get("cache_read", p["input"]) + out * p["output"]) / 1e6


def normalised(events: list[dict]) -> str:
    """Events with the mock's per-call ids and clock taken out, to compare two runs."""
    text = json.dumps(events)
    text = re.sub(r"mock[0-9a-f]{16}", "mockID", text)
    return re.sub(r'"created_at": \d+', '"created_at": 0', text)


def ws_messages(mock) -> list[dict]:
    return [r for r in mock.requests() if r["method"] == "WEBSOCKET"]


@pytest.mark.parametrize("deflate", [True, False], ids=["deflate", "plain"])
@pytest.mark.parametrize("mode", ["base_url", "proxy"])
def test_each_response_create_is_a_record_with_exact_usage_and_cost(stage_agent, mock, mode, deflate):
    agent = stage_agent()
    sent_before = len(ws_messages(mock))
    with open_socket(agent, mode, deflate=deflate) as ws:
        socket_id = ws.response.headers["x-airlock-request-id"]
        ext = ws.protocol.extensions
        if deflate:
            # The agent asks the client to compress each message on its own (so a refused message can
            # be left out); the upstream's own parameters are kept.
            assert len(ext) == 1 and ext[0].name == "permessage-deflate", ext
            assert ext[0].local_no_context_takeover is True
        else:
            assert ext == []
        warm_msg = create(generate=False, input=[])
        ws.send(json.dumps(warm_msg))
        warm = until_terminal(ws)
        warm_id = warm[-1]["response"]["id"]
        turn_msg = create(previous_response_id=warm_id)
        ws.send(json.dumps(turn_msg))
        turn = until_terminal(ws)
    assert [e["type"] for e in warm] == ["response.created", "response.completed"]
    assert warm[-1]["response"]["output"] == [] and warm[-1]["response"]["usage"]["output_tokens"] == 0
    assert turn[-1]["type"] == "response.completed"
    text = "".join(e["delta"] for e in turn if e["type"] == "response.output_text.delta")
    assert text == f"This is a mock reply from {MODEL}."

    # The provider got exactly what the client sent, message for message.
    got = [m["body"] for m in ws_messages(mock)[sent_before:]]
    assert got == [warm_msg, turn_msg]

    recs = records_of(agent, socket_id, 2)
    assert len(recs) == 2, recs
    w, t = recs
    for r in recs:
        assert (r["operation"], r["model"], r["stream"], r["outcome"]) == ("responses", MODEL, True, "completed")
        assert r["mode"] == mode and r["status"] == 200
        assert r["usage_estimated"] is False and r["cost_status"] == "priced"
        assert r["websocket"]["compressed"] is deflate
    assert w["websocket"]["warmup"] is True and "warmup" not in t["websocket"]
    assert (w["usage"]["input_tokens"], w["usage"]["output_tokens"]) == (6, 0)  # instructions only
    assert (t["usage"]["input_tokens"], t["usage"]["output_tokens"]) == (6 + 5, 7)
    assert w["websocket"]["response_id"] == warm_id
    assert t["websocket"]["previous_response_id"] == warm_id
    assert t["websocket"]["response_id"] == turn[-1]["response"]["id"]
    assert t["cost_usd"] == pytest.approx(expected_cost(MODEL, 11, 0, 7), rel=1e-9)
    assert w["cost_usd"] == pytest.approx(expected_cost(MODEL, 6, 0, 0), rel=1e-9)

    s = socket_record(agent, socket_id)
    assert (s["operation"], s["status"], s["outcome"]) == ("responses_websocket", 101, "completed")
    assert s["websocket"]["messages"] == 2 and s["websocket"]["client_close_code"] == 1000
    assert s["cost_status"] == "not_billed"


def test_what_the_client_receives_is_what_the_provider_sent(stage_agent, mock):
    """The same conversation straight to the mock and through the agent: the same events."""
    agent = stage_agent()
    runs = []
    for url, kw in ((f"ws://127.0.0.1:{mock.plain_port}/v1/responses", {}), (None, {})):
        if url:
            ws = connect(url, additional_headers={"Authorization": "Bearer sk-ws-test"}, proxy=None, open_timeout=10)
        else:
            ws = open_socket(agent, "proxy")
        with ws:
            ws.send(json.dumps(create(generate=False, input=[])))
            events = until_terminal(ws)
            ws.send(json.dumps(create()))
            events += until_terminal(ws)
        runs.append(normalised(events))
    assert runs[0] == runs[1]


@pytest.mark.parametrize("mode,deflate", [("base_url", True), ("proxy", True), ("proxy", False)])
def test_a_refused_message_gets_the_error_event_and_the_socket_stays_usable(stage_agent, mock, mode, deflate):
    agent = stage_agent()
    before = len(ws_messages(mock))
    with open_socket(agent, mode, deflate=deflate) as ws:
        socket_id = ws.response.headers["x-airlock-request-id"]
        ws.send(json.dumps(create(DENIED)))
        err = json.loads(ws.recv(timeout=10))
        # A long, compressible message after the refused one: with context takeover it would refer
        # back into the message the provider never got.
        ws.send(json.dumps(create(instructions=INSTRUCTIONS + " " + "Say hello to the socket " * 40)))
        after = until_terminal(ws)
    assert err["type"] == "error" and err["status"] == 403, err
    assert err["error"]["code"] == "model_not_allowed"
    assert DENIED in err["error"]["message"]
    assert err["airlock"]["type"] == "model_not_allowed"
    assert after[-1]["type"] == "response.completed"
    models = [m["body"]["model"] for m in ws_messages(mock)[before:]]
    assert models == [MODEL], "the refused message must never reach the provider"

    refused, ok = records_of(agent, socket_id, 2)
    assert (refused["model"], refused["outcome"], refused["status"]) == (DENIED, "rejected", 403)
    assert refused["decided_by"] == "authorize:deny_models" and refused["cost_status"] == "not_billed"
    assert (ok["model"], ok["outcome"]) == (MODEL, "completed")
    assert ok["usage"]["input_tokens"] == 6 + 200 + 5


def test_a_message_over_the_size_cap_passes_unread_and_the_record_says_so(stage_agent, mock):
    agent = stage_agent("\n[limits]\nmax_request_body_mib = 1\n")
    big = create(input=[{"type": "message", "role": "user",
                         "content": [{"type": "input_text", "text": "word " * 300_000}]}])  # 1.5 MB
    with open_socket(agent, "base_url", deflate=False) as ws:
        socket_id = ws.response.headers["x-airlock-request-id"]
        ws.send(json.dumps(big))
        events = until_terminal(ws)
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["usage"]["input_tokens"] == 6 + 300_000
    [r] = records_of(agent, socket_id, 1)
    assert "passed unread" in r["websocket"]["unread"], r
    # Its answer was small enough to read: the usage is still exact.
    assert r["outcome"] == "completed" and r["usage"]["input_tokens"] == 6 + 300_000
    assert r["model"] is None, "an unread message names no model"
    assert r["usage_estimated"] is False


def test_an_upgrade_answered_426_lets_the_client_fall_back_to_http(stage_agent, mock):
    agent = stage_agent()
    with pytest.raises(InvalidStatus) as e:
        open_socket(agent, "base_url", headers={"x-mock-fault": "426"})
    assert e.value.response.status_code == 426
    # What Codex does next: the same request as an SSE stream over HTTP.
    body = {k: v for k, v in create().items() if k != "type"} | {"stream": True}
    r = httpx.post(agent.base_url("openai/v1/responses"), json=body, trust_env=False, timeout=10,
                   headers={"Authorization": "Bearer sk-ws-test"})
    assert r.status_code == 200 and "response.completed" in r.text
    rec = agent.wait_record(operation="responses", method="POST")
    assert rec["usage"]["output_tokens"] == 7


@pytest.mark.parametrize("mode", ["base_url", "proxy"])
def test_realtime_responses_are_recorded_with_their_usage(stage_agent, mock, mode):
    agent = stage_agent()
    with open_socket(agent, mode, path="/v1/realtime?model=gpt-realtime") as ws:
        socket_id = ws.response.headers["x-airlock-request-id"]
        assert json.loads(ws.recv(timeout=10))["type"] == "session.created"
        ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello realtime world"}]}}))
        assert json.loads(ws.recv(timeout=10))["type"] == "conversation.item.added"
        ws.send(json.dumps({"type": "response.create", "event_id": "evt_1"}))
        first = until_terminal(ws)
        ws.send(json.dumps({"type": "response.create", "event_id": "evt_2"}))
        second = until_terminal(ws)
    assert first[-1]["type"] == second[-1]["type"] == "response.done"
    a, b = records_of(agent, socket_id, 2)
    assert (a["operation"], a["model"]) == ("realtime", "gpt-realtime")
    assert (a["usage"]["input_tokens"], a["usage"]["output_tokens"]) == (3, 7)
    # The conversation so far is the next response's input, as Realtime bills it.
    assert (b["usage"]["input_tokens"], b["usage"]["output_tokens"]) == (3 + 7, 7)
    assert a["websocket"]["response_id"] == first[-1]["response"]["id"]


@pytest.mark.parametrize("mode", ["base_url", "proxy"])
def test_realtime_text_a_client_adds_goes_through_the_request_guardrails(stage_agent, mock, mode):
    """A key typed into a Realtime conversation item never reaches the provider: the client gets Realtime's
    `error` event naming its event, and the socket goes on; an item without findings passes as sent."""
    agent = stage_agent()
    key = "AKIA" + "Z7QWERTYUIOPASDF"
    hello = f"Hello realtime world {time.monotonic_ns()}"
    with open_socket(agent, mode, path="/v1/realtime?model=gpt-realtime") as ws:
        socket_id = ws.response.headers["x-airlock-request-id"]
        assert json.loads(ws.recv(timeout=10))["type"] == "session.created"
        ws.send(json.dumps({"type": "conversation.item.create", "event_id": "evt_key", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": f"my key is {key}"}]}}))
        err = json.loads(ws.recv(timeout=10))
        assert err["type"] == "error" and err["error"]["code"] == "guardrail_violation", err
        assert err["error"]["event_id"] == "evt_key" and key not in json.dumps(err)
        ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": hello}]}}))
        assert json.loads(ws.recv(timeout=10))["type"] == "conversation.item.added"
    sent = [json.dumps(m.get("body")) for m in ws_messages(mock)]
    assert not [m for m in sent if key in m], "the key reached the provider"
    assert [m for m in sent if hello in m], "the clean item went on"
    blocked = [r for r in records_of(agent, socket_id, 1) if r["operation"] == "realtime_event"]
    assert blocked and blocked[0]["outcome"] == "rejected", blocked
    assert blocked[0]["decided_by"] == "inspect_request:guardrails"
    assert any(g["rule"] == "aws_access_key" for g in blocked[0]["guardrails"])
    assert key not in agent.log_path.read_text()


@pytest.mark.parametrize("mode,deflate", [("base_url", True), ("proxy", False)])
def test_a_response_stage_rewrites_the_text_on_a_socket_and_the_records_stay_exact(mock, tmp_path, monkeypatch,
                                                                                   mode, deflate):
    """The test agent's response stage replaces a word in the streamed text: the client sees it replaced,
    on every response of the socket, and each record still has the provider's exact usage."""
    monkeypatch.setenv("AIRLOCK_TEST_REDACT_WORD", "mock")
    agent = start_stage_agent(tmp_path / "agent", mock_policy(mock))
    try:
        agent.api("/airlock/v1/health")
        with open_socket(agent, mode, deflate=deflate) as ws:
            socket_id = ws.response.headers["x-airlock-request-id"]
            if deflate:
                # Asked for by the agent so it may rewrite a server message: the provider compresses
                # each message on its own.
                ext = ws.protocol.extensions
                assert len(ext) == 1 and ext[0].remote_no_context_takeover is True, ext
            turns = []
            for _ in range(2):
                ws.send(json.dumps(create()))
                turns.append(until_terminal(ws))
        recs = records_of(agent, socket_id, 2)
    finally:
        stop(agent.proc)
    for turn in turns:
        assert turn[-1]["type"] == "response.completed"
        text = "".join(e["delta"] for e in turn if e["type"] == "response.output_text.delta")
        assert text == f"This is a [redacted] reply from {MODEL}."
    assert len(recs) == 2, recs
    for r in recs:
        assert (r["operation"], r["model"], r["outcome"], r["status"]) == ("responses", MODEL, "completed", 200)
        assert (r["usage"]["input_tokens"], r["usage"]["output_tokens"]) == (6 + 5, 7)
        assert r["usage_estimated"] is False and r.get("decided_by") is None
        assert r["cost_usd"] == pytest.approx(expected_cost(MODEL, 11, 0, 7), rel=1e-9)


# --- Codex CLI, the real tool ---------------------------------------------------------------------

def _codex_bin() -> Path:
    d = os.environ.get("AIRLOCK_TEST_TOOLS_DIR")
    if not d:
        pytest.skip("AIRLOCK_TEST_TOOLS_DIR is not set (scripts/test.sh installs the pinned Codex CLI there); "
                    "the Codex acceptance test needs the real tool")
    codex = Path(d) / "node_modules" / ".bin" / "codex"
    if not codex.exists():
        pytest.fail(f"{codex} is missing: install tests/e2e/tools (npm ci --prefix tests/e2e/tools)")
    return codex


def _mock_words(text) -> int:
    return len(text.split()) if isinstance(text, str) else 0


def _mock_input_tokens(body: dict) -> int:
    """The mock's count for a Responses create: instructions plus the text of every input item."""
    n = _mock_words(body.get("instructions"))
    items = body.get("input")
    if isinstance(items, str):
        return n + _mock_words(items)
    for item in items or []:
        c = item.get("content")
        if isinstance(c, str):
            n += _mock_words(c)
        elif isinstance(c, list):
            n += sum(_mock_words(p) if isinstance(p, str) else _mock_words(p.get("text")) for p in c if isinstance(p, (str, dict)))
    return n


@pytest.fixture
def codex_stack(tmp_path):
    codex = _codex_bin()
    ns = open_netns()
    md = tmp_path / "mock"
    md.mkdir()
    mproc = subprocess.Popen(ns.cmd([binary("airlock-mock"), "--listen", "127.0.0.1:0", "--cert-dir", md,
                                      "--ready-file", md / "ready.json"]),
                             stdout=open(md / "mock.log", "w"), stderr=subprocess.STDOUT)
    info = wait_for_file(md / "ready.json", mproc, "airlock-mock")

    class M:  # what mock_policy needs
        port = info["port"]
        ca_file = Path(info["ca_file"])

    price = "".join(f"{k} = {v}\n" for k, v in CODEX_PRICE.items())
    policy = mock_policy(M, f'\n[prices."openai/{CODEX_MODEL}"]\n{price}\n[models]\ndeny = ["{POLICY_DENIED}*"]\n')
    agent = start_stage_agent(tmp_path / "agent", policy, wrap=ns.cmd)
    yield codex, ns, M, agent
    stop(agent.proc)
    stop(mproc)
    ns.close()


def _run_codex(codex: Path, ns: Netns, agent: Agent, home: Path, model: str | None) -> subprocess.CompletedProcess:
    home.mkdir(parents=True, exist_ok=True)
    (home / ".codex").mkdir(exist_ok=True)
    # Telemetry, update checks and feedback off as Codex documents; nothing else differs from its
    # defaults (the built-in OpenAI provider, so WebSocket mode).
    (home / ".codex" / "config.toml").write_text('check_for_update_on_startup = false\n\n[analytics]\nenabled = false\n\n'
                                                 '[otel]\nexporter = "none"\n')
    node = os.environ.get("AIRLOCK_TEST_NODE")
    path = os.environ["PATH"] if not node else f"{Path(node).parent}:{os.environ['PATH']}"
    env = {"PATH": path, "HOME": str(home), "CODEX_HOME": str(home / ".codex"), "CODEX_API_KEY": "sk-codex-test",
           "NO_COLOR": "1", "RUST_LOG": "warn"}
    argv = [binary("airlock"), "--addr", agent.addr, "--state-dir", agent.state_dir, "run", "--",
            codex, "exec", "--skip-git-repo-check"]
    if model:
        argv += ["--model", model]
    argv.append("Say hello")
    return subprocess.run(ns.cmd(argv), capture_output=True, text=True, env=env, timeout=180, cwd=home)


def test_codex_cli_each_turn_is_metered_and_a_denied_model_is_refused_in_socket(codex_stack, tmp_path):
    codex, ns, m, agent = codex_stack
    p = _run_codex(codex, ns, agent, tmp_path / "home", None)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    mock_log = json.loads(ns.curl("--cacert", str(m.ca_file), "--connect-to", f"api.openai.com:443:127.0.0.1:{m.port}",
                                  "https://api.openai.com/__mock/requests"))["requests"]
    upgrades = [r for r in mock_log if r["method"] == "GET" and r["path"] == "/v1/responses"]
    assert upgrades and upgrades[0]["status"] == 101, "Codex used WebSocket mode"
    creates = [r["body"] for r in mock_log if r["method"] == "WEBSOCKET" and r["body"].get("type") == "response.create"]
    assert creates, mock_log
    model = creates[-1]["model"]
    assert f"This is a mock reply from {model}." in p.stdout

    records = agent.records()
    turns = sorted([r for r in records if r["operation"] == "responses" and r.get("websocket")],
                   key=lambda r: (r["websocket"]["socket"], r["websocket"]["message"]))
    assert len(turns) == len(creates), (turns, creates)
    for rec, body in zip(turns, creates):
        warm = body.get("generate") is False
        assert rec["model"] == body["model"] and rec["outcome"] == "completed"
        assert rec["usage_estimated"] is False
        assert rec["usage"]["input_tokens"] == _mock_input_tokens(body)
        assert rec["usage"]["output_tokens"] == (0 if warm else 7), rec
        assert bool(rec["websocket"].get("warmup")) is warm
        assert rec["cost_status"] == "priced"
        assert rec["cost_usd"] == pytest.approx(expected_cost(rec["model"], rec["usage"]["input_tokens"],
                                                              rec["usage"]["cache_read_tokens"],
                                                              rec["usage"]["output_tokens"]), rel=1e-9)

    coverage.report("Codex CLI (`codex exec`, WebSocket mode)",
                    coverage.node_package(Path(os.environ["AIRLOCK_TEST_TOOLS_DIR"]) / "node_modules", "@openai/codex"),
                    "run", coverage.metered(*turns))

    # The denied model: refused on the socket, never sent on, and Codex says why.
    p = _run_codex(codex, ns, agent, tmp_path / "home2", DENIED)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert "model_not_allowed" in out or f"the model {DENIED} is not allowed" in out, out
    records = agent.records()
    refused = [r for r in records if r["model"] == DENIED and r.get("websocket")]
    assert refused and all(r["outcome"] == "rejected" and r["decided_by"] == "authorize:deny_models" for r in refused)
    mock_log = json.loads(ns.curl("--cacert", str(m.ca_file), "--connect-to", f"api.openai.com:443:127.0.0.1:{m.port}",
                                  "https://api.openai.com/__mock/requests"))["requests"]
    assert not [r for r in mock_log if (r.get("body") or {}).get("model") == DENIED]

    # A model the policy's own [models] rules deny: the same refusal on the socket, by the shipped gate.
    blocked = f"{POLICY_DENIED}-1"
    p = _run_codex(codex, ns, agent, tmp_path / "home3", blocked)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert "model_blocked" in out or f'does not allow model "{blocked}"' in out, out
    refused = [r for r in agent.records() if r["model"] == blocked and r.get("websocket")]
    assert refused and all(r["outcome"] == "rejected" and r["decided_by"] == "authorize:models" for r in refused), refused
    mock_log = json.loads(ns.curl("--cacert", str(m.ca_file), "--connect-to", f"api.openai.com:443:127.0.0.1:{m.port}",
                                  "https://api.openai.com/__mock/requests"))["requests"]
    assert not [r for r in mock_log if (r.get("body") or {}).get("model") == blocked]

