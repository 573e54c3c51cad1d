"""Subscription and tool backends end to end, each driven by a client speaking what the tool sends:
Codex signed in with ChatGPT (chatgpt.com, only /backend-api/codex/ inspected, the rest of the host
forwarded unread), Gemini CLI signed in with Google (Code Assist's envelope on cloudcode-pa), GitHub
Copilot (OpenAI paths without /v1, Anthropic /v1/messages, per-seat billing), Claude Code with a
subscription login (OAuth bearer tokens), and local model servers (Ollama, LM Studio, vLLM) reached by
base-URL prefixes over plain HTTP. Every record is checked field by field against what the client saw."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import uuid

import anthropic
import httpx
import openai
import pytest

from certs import make_ca, make_leaf, pem
from conftest import DEFAULT_POLICY, binary, free_port, mock_policy, policy_with_override, start_agent, stop, tokens

BACKEND_HOSTS = ["chatgpt.com", "cloudcode-pa.googleapis.com", "api.githubcopilot.com",
                 "api.individual.githubcopilot.com", "api.business.githubcopilot.com",
                 "api.enterprise.githubcopilot.com", "proxy.individual.githubcopilot.com",
                 "proxy.business.githubcopilot.com", "proxy.enterprise.githubcopilot.com",
                 "copilot-proxy.githubusercontent.com"]
LOCAL_PORTS = {"ollama": 11434, "lmstudio": 1234, "vllm": 8000}
# What Codex sends signed in with ChatGPT (codex-rs: base URL https://chatgpt.com/backend-api/codex).
CHATGPT_TOKEN = "eyJhbGciOiJSUzI1NiJ9.e30.sig"
CODEX_HEADERS = {"chatgpt-account-id": "acct-e2e", "originator": "codex_cli_rs",
                 "openai-beta": "responses=experimental", "session_id": "sess-e2e", "version": "0.171.0"}


def backends_policy(mock) -> str:
    """The default policy with the backend hosts sent to the mock and the local servers at its plain port."""
    text = mock_policy(mock)
    for prefix, port in LOCAL_PORTS.items():
        text = text.replace(f'local = "http://127.0.0.1:{port}"', f'local = "http://127.0.0.1:{mock.plain_port}"')
    for host in BACKEND_HOSTS:
        text += f'\n[upstream.overrides."{host}"]\naddress = "127.0.0.1:{mock.port}"\nca_file = "{mock.ca_file}"\n'
    return text


@pytest.fixture(scope="module")
def agent(mock, tmp_path_factory):
    assert mock.plain_port, "the mock's plain listener serves the local-server tests"
    a = start_agent(tmp_path_factory.mktemp("backends"), backends_policy(mock))
    yield a
    stop(a.proc)


@pytest.fixture
def http(agent):
    """An HTTP client going through the agent as a proxy, trusting the device CA (as `airlock env` sets up)."""
    with httpx.Client(proxy=agent.proxy_url, verify=ssl.create_default_context(cafile=str(agent.bundle)),
                      trust_env=False, timeout=30) as c:
        yield c


def sse_events(body: str) -> list[dict]:
    """The JSON `data:` payloads of an event stream."""
    out = []
    for frame in body.replace("\r\n", "\n").split("\n\n"):
        data = "\n".join(line[len("data: "):] for line in frame.split("\n") if line.startswith("data: "))
        if data and data != "[DONE]":
            out.append(json.loads(data))
    return out


def marked(agent, marker: str) -> list[dict]:
    return [r for r in agent.records() if marker in r["path"]]


# --- Codex signed in with ChatGPT -------------------------------------------------------------------

def test_codex_chatgpt_responses_stream_is_metered_with_oauth_and_subscription(agent, http, mock):
    body = {"model": "gpt-5-codex", "instructions": "You are Codex.", "stream": True, "store": False,
            "input": [{"type": "message", "role": "user",
                       "content": [{"type": "input_text", "text": "list the files please"}]}],
            "tool_choice": "auto", "parallel_tool_calls": False, "prompt_cache_key": "sess-e2e"}
    r = http.post("https://chatgpt.com/backend-api/codex/responses?e2e=codex1", json=body,
                  headers={"authorization": f"Bearer {CHATGPT_TOKEN}", "accept": "text/event-stream",
                           **CODEX_HEADERS})
    assert r.status_code == 200, r.text
    events = sse_events(r.text)
    done = [e for e in events if e["type"] == "response.completed"]
    assert len(done) == 1
    usage = done[0]["response"]["usage"]
    rec = agent.wait_record(path="/backend-api/codex/responses?e2e=codex1")
    assert (rec["provider"], rec["host"], rec["mode"]) == ("chatgpt", "chatgpt.com", "proxy")
    assert (rec["operation"], rec["model"], rec["stream"]) == ("responses", "gpt-5-codex", True)
    assert rec["response_model"] == done[0]["response"]["model"]
    assert tokens(rec) == (usage["input_tokens"], usage["output_tokens"])
    assert rec["credential"] == "oauth"
    assert rec["cost_status"] == "subscription" and rec["cost_usd"] is None
    assert "subscription" in rec["cost_note"]
    assert rec["outcome"] == "completed"
    seen = [m for m in mock.requests() if m["query"] == "e2e=codex1"]
    assert [(m["host"], m["path"]) for m in seen] == [("chatgpt.com", "/backend-api/codex/responses")]
    for k, v in CODEX_HEADERS.items():
        assert seen[0]["headers"][k] == v, k


def test_codex_chatgpt_through_its_base_url_with_the_openai_sdk(agent):
    # Codex's chatgpt_base_url (or any Responses client) pointed at the agent's /chatgpt prefix.
    client = openai.OpenAI(api_key=CHATGPT_TOKEN, base_url=agent.base_url("chatgpt") + "/backend-api/codex",
                           default_headers=CODEX_HEADERS, max_retries=0,
                           http_client=httpx.Client(trust_env=False, timeout=30))
    stream = client.responses.create(model="gpt-5", input="hello from the sdk", stream=True, store=False,
                                     extra_query={"e2e": "codex-sdk"})
    completed = [e for e in stream if e.type == "response.completed"]
    assert len(completed) == 1
    u = completed[0].response.usage
    rec = agent.wait_record(path="/backend-api/codex/responses?e2e=codex-sdk")
    assert (rec["mode"], rec["operation"], rec["model"]) == ("base_url", "responses", "gpt-5")
    assert tokens(rec) == (u.input_tokens, u.output_tokens)
    assert (rec["credential"], rec["cost_status"]) == ("oauth", "subscription")
    # gpt-5 has an API price, so the note says what the same usage would cost there.
    assert "at API list prices (openai/gpt-5)" in rec["cost_note"]


def test_the_rest_of_chatgpt_com_is_forwarded_unread_and_unrecorded(agent, http, mock):
    before = len(agent.records())
    raw = b'{"action":"next",  "messages":[{"content":"not for the agent"}]}'
    r = http.post("https://chatgpt.com/backend-api/conversation?e2e=pass1", content=raw,
                  headers={"authorization": f"Bearer {CHATGPT_TOKEN}", "content-type": "application/json",
                           "oai-device-id": "dev-e2e", "x-e2e-marker": "pass1"})
    # The mock serves no ChatGPT web app: its own 404 comes back unchanged, not an Airlock answer.
    assert r.status_code == 404
    assert "x-airlock-request-id" not in r.headers
    assert "Invalid URL" in r.json()["error"]["message"]
    seen = [m for m in mock.requests() if m["query"] == "e2e=pass1"]
    assert len(seen) == 1
    assert seen[0]["host"] == "chatgpt.com" and seen[0]["path"] == "/backend-api/conversation"
    assert seen[0]["headers"]["oai-device-id"] == "dev-e2e"
    assert seen[0]["headers"]["authorization"] == f"Bearer {CHATGPT_TOKEN}"
    assert seen[0]["body_len"] == len(raw), "the body is forwarded byte for byte"
    # A spelling of the inspected path that the upstream would read the same is still inspected.
    r = http.post("https://chatgpt.com/backend-api//Codex/responses?e2e=pass2",
                  json={"model": "gpt-5", "input": "x", "stream": False, "store": False},
                  headers={"authorization": f"Bearer {CHATGPT_TOKEN}"})
    assert "x-airlock-request-id" in r.headers
    records = agent.records()
    assert not [x for x in records if "pass1" in x["path"]], "nothing outside the scope is recorded"
    assert len(records) == before + 1


def echo_upgrade_upstream(tmp_path, host: str):
    """A TLS server for `host` that answers any upgrade with 101 and then echoes upper-cased bytes."""
    ca_cert, ca_key = make_ca("Upgrade Upstream Root")
    leaf, key = make_leaf(ca_cert, ca_key, host)
    (tmp_path / "up-ca.pem").write_bytes(pem(ca_cert))
    (tmp_path / "up.pem").write_bytes(leaf)
    (tmp_path / "up.key").write_bytes(key)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(tmp_path / "up.pem", tmp_path / "up.key")
    lsock = socket.create_server(("127.0.0.1", 0))
    heads = []

    def serve(conn):
        try:
            with sctx.wrap_socket(conn, server_side=True) as s:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = s.recv(4096)
                    if not chunk:
                        return
                    head += chunk
                heads.append(head.decode())
                s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                while data := s.recv(4096):
                    s.sendall(data.upper())
        except (ssl.SSLError, OSError):
            return

    def accept():
        while True:
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return lsock, tmp_path / "up-ca.pem", heads


def test_an_upgrade_outside_the_scope_is_spliced_unread(mock, tmp_path):
    lsock, ca, heads = echo_upgrade_upstream(tmp_path, "api.openai.com")
    policy = policy_with_override(mock, "api.openai.com", f"127.0.0.1:{lsock.getsockname()[1]}", ca)
    rule = 'host = "api.openai.com"\nprovider = "openai"\nprefix = "openai"\n'
    assert rule in policy
    policy = policy.replace(rule, rule + 'paths = ["/v1/chat/"]\n')
    a = start_agent(tmp_path / "scoped", policy)
    try:
        cctx = ssl.create_default_context(cafile=str(a.ca_cert))
        cctx.set_alpn_protocols(["http/1.1"])
        with socket.create_connection(("127.0.0.1", a.port), timeout=10) as raw:
            raw.sendall(b"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n\r\n")
            assert raw.recv(4096).startswith(b"HTTP/1.1 200")
            with cctx.wrap_socket(raw, server_hostname="api.openai.com") as s:
                s.sendall(b"GET /v1/realtime?model=m HTTP/1.1\r\nHost: api.openai.com\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          b"Sec-WebSocket-Version: 13\r\nX-Client: e2e\r\n\r\n")
                head = b""
                while b"\r\n\r\n" not in head:
                    head += s.recv(4096)
                assert head.startswith(b"HTTP/1.1 101"), head
                assert b"x-airlock-request-id" not in head.lower()
                s.sendall(b"spliced bytes")
                assert s.recv(100) == b"SPLICED BYTES"
        assert heads[-1].startswith("GET /v1/realtime?model=m HTTP/1.1")
        assert "x-client: e2e" in heads[-1].lower() and "upgrade: websocket" in heads[-1].lower()
        assert not [r for r in a.records() if r["operation"] == "realtime"], "outside the scope: no record"
    finally:
        lsock.close()
        stop(a.proc)


# --- Gemini CLI / Code Assist signed in with Google ---------------------------------------------------

def code_assist_body(model: str, text: str) -> dict:
    # gemini-cli packages/core/src/code_assist/converter.ts toGenerateContentRequest
    return {"model": model, "project": "mock-project", "user_prompt_id": uuid.uuid4().hex,
            "request": {"contents": [{"role": "user", "parts": [{"text": text}]}],
                        "systemInstruction": {"role": "user", "parts": [{"text": "You are Gemini CLI."}]},
                        "generationConfig": {"temperature": 0, "thinkingConfig": {"includeThoughts": True}},
                        "session_id": "sess-gemini"}}


def test_gemini_cli_code_assist_stream_is_unwrapped_and_metered(agent, http):
    r = http.post("https://cloudcode-pa.googleapis.com/v1internal:streamGenerateContent",
                  params={"alt": "sse", "e2e": "ca1"}, json=code_assist_body("gemini-2.5-pro", "explain this repo"),
                  headers={"authorization": "Bearer ya29.e2e-oauth", "x-mock-reasoning-tokens": "7",
                           "user-agent": "GeminiCLI/0.61.0 (linux; x64)"})
    assert r.status_code == 200, r.text
    events = sse_events(r.text)
    assert events and all(set(e) == {"response", "traceId"} for e in events), "the client gets Code Assist's envelope"
    meta = events[-1]["response"]["usageMetadata"]
    rec = agent.wait_record(path="/v1internal:streamGenerateContent?alt=sse&e2e=ca1")
    assert (rec["provider"], rec["host"]) == ("gemini_code_assist", "cloudcode-pa.googleapis.com")
    assert (rec["operation"], rec["model"], rec["stream"]) == ("stream_generate_content", "gemini-2.5-pro", True)
    assert rec["response_model"] == events[-1]["response"]["modelVersion"]
    assert rec["usage"]["input_tokens"] == meta["promptTokenCount"]
    assert rec["usage"]["reasoning_tokens"] == meta["thoughtsTokenCount"] == 7
    assert tokens(rec)[1] == meta["candidatesTokenCount"] + meta["thoughtsTokenCount"]
    assert (rec["credential"], rec["cost_status"], rec["cost_usd"]) == ("oauth", "subscription", None)
    assert "at API list prices (gemini/gemini-2.5-pro)" in rec["cost_note"]


def test_code_assist_generate_and_count_tokens_and_unscoped_calls(agent, http):
    auth = {"authorization": "Bearer ya29.e2e-oauth"}
    r = http.post("https://cloudcode-pa.googleapis.com/v1internal:generateContent?e2e=ca2",
                  json=code_assist_body("gemini-2.5-flash", "route this"), headers=auth)
    assert r.status_code == 200, r.text
    meta = r.json()["response"]["usageMetadata"]
    rec = agent.wait_record(path="/v1internal:generateContent?e2e=ca2")
    assert (rec["operation"], rec["model"], rec["stream"]) == ("generate_content", "gemini-2.5-flash", False)
    assert tokens(rec) == (meta["promptTokenCount"], meta["candidatesTokenCount"])
    # gemini-cli's toCountTokenRequest: the model sits inside the request, with Gemini's models/ prefix.
    r = http.post("https://cloudcode-pa.googleapis.com/v1internal:countTokens?e2e=ca3", headers=auth,
                  json={"request": {"model": "models/gemini-2.5-flash",
                                    "contents": [{"role": "user", "parts": [{"text": "four words right here"}]}]}})
    assert r.json() == {"totalTokens": 4}
    rec = agent.wait_record(path="/v1internal:countTokens?e2e=ca3")
    assert (rec["operation"], rec["model"], rec["credential"]) == ("count_tokens", "gemini-2.5-flash", "oauth")
    # Onboarding is outside the inspected paths: answered by the upstream, never recorded.
    r = http.post("https://cloudcode-pa.googleapis.com/v1internal:loadCodeAssist?e2e=ca4", headers=auth,
                  json={"metadata": {"ideType": "IDE_UNSPECIFIED", "pluginType": "GEMINI"}})
    assert r.status_code == 200 and r.json()["currentTier"]["id"] == "standard-tier"
    assert "x-airlock-request-id" not in r.headers
    assert not marked(agent, "e2e=ca4")


# --- GitHub Copilot ------------------------------------------------------------------------------------

COPILOT_HEADERS = {"Copilot-Integration-Id": "vscode-chat", "Editor-Version": "vscode/1.99.0",
                   "Editor-Plugin-Version": "copilot-chat/0.30.0", "OpenAI-Intent": "conversation-panel",
                   "X-GitHub-Api-Version": "2025-05-01"}


def copilot_client(agent, prefix="copilot") -> openai.OpenAI:
    return openai.OpenAI(api_key="tid=e2e;exp=9999999999;sku=copilot_for_business", base_url=agent.base_url(prefix),
                         default_headers=COPILOT_HEADERS, max_retries=0,
                         http_client=httpx.Client(trust_env=False, timeout=30))


def test_copilot_chat_completions_without_v1_are_metered_per_seat(agent):
    client = copilot_client(agent)
    stream = client.chat.completions.create(model="gpt-4.1", stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "fix the bug"}],
                                            extra_query={"e2e": "cp1"})
    chunks = list(stream)
    usage = [c.usage for c in chunks if c.usage][-1]
    rec = agent.wait_record(path="/chat/completions?e2e=cp1")
    assert (rec["provider"], rec["host"], rec["mode"]) == ("github_copilot", "api.githubcopilot.com", "base_url")
    assert (rec["operation"], rec["model"]) == ("chat_completions", "gpt-4.1")
    assert tokens(rec) == (usage.prompt_tokens, usage.completion_tokens)
    assert (rec["credential"], rec["cost_status"], rec["cost_usd"]) == ("oauth", "subscription", None)
    assert "github_copilot is paid by subscription or seat" in rec["cost_note"]


def test_copilot_embeddings_responses_models_and_business_host_through_the_proxy(agent, http):
    client = copilot_client(agent, "copilot-enterprise")
    e = client.embeddings.create(model="text-embedding-3-small", input=["a", "b c"], extra_query={"e2e": "cp2"})
    rec = agent.wait_record(path="/embeddings?e2e=cp2")
    assert (rec["host"], rec["operation"]) == ("api.enterprise.githubcopilot.com", "embeddings")
    assert rec["usage"]["input_tokens"] == e.usage.prompt_tokens
    resp = client.responses.create(model="gpt-5", input="refactor this", extra_query={"e2e": "cp5"})
    rec = agent.wait_record(path="/responses?e2e=cp5")
    assert (rec["operation"], rec["model"], rec["stream"]) == ("responses", "gpt-5", False)
    assert tokens(rec) == (resp.usage.input_tokens, resp.usage.output_tokens)
    r = http.get("https://api.business.githubcopilot.com/models?e2e=cp3",
                 headers={"authorization": "Bearer tid=e2e", **COPILOT_HEADERS})
    assert r.status_code == 200 and r.json()["data"]
    rec = agent.wait_record(path="/models?e2e=cp3")
    assert (rec["host"], rec["operation"], rec["mode"]) == ("api.business.githubcopilot.com", "models", "proxy")


def test_copilot_claude_models_speak_anthropic_messages(agent):
    # vscode-copilot-chat sends Claude models to CAPI's /v1/messages (ModelSupportedEndpoint.Messages).
    client = anthropic.Anthropic(auth_token="tid=e2e", base_url=agent.base_url("copilot"), max_retries=0,
                                 default_headers=COPILOT_HEADERS,
                                 http_client=anthropic.DefaultHttpxClient(trust_env=False, timeout=30))
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=64, extra_query={"e2e": "cp4"},
                                messages=[{"role": "user", "content": "hello claude"}]) as s:
        final = s.get_final_message()
    rec = agent.wait_record(path="/v1/messages?e2e=cp4")
    assert (rec["provider"], rec["operation"], rec["model"]) == ("github_copilot", "messages", "claude-sonnet-4-5")
    assert tokens(rec) == (final.usage.input_tokens, final.usage.output_tokens)
    assert rec["cost_status"] == "subscription"


# Copilot's inline completions (ghost text), as the Copilot language server sends them: a legacy
# completions body with prompt and suffix and no model (the engine in the URL names it), always streamed.
GHOST_HEADERS = {"Editor-Version": "vscode/1.99.0", "Editor-Plugin-Version": "copilot/1.300.0",
                 "Copilot-Integration-Id": "vscode-chat", "OpenAI-Intent": "copilot-ghost",
                 "OpenAI-Organization": "github-copilot", "X-Request-Id": "5f0c6a2e-e2e"}


def ghost_body(prompt: str, suffix: str) -> dict:
    return {"prompt": prompt, "suffix": suffix, "max_tokens": 500, "temperature": 0, "top_p": 1, "n": 1,
            "stop": ["\n\n"], "stream": True, "nwo": "acme/widgets",
            "extra": {"language": "python", "next_indent": 4, "trim_by_indentation": True,
                      "prompt_tokens": 9, "suffix_tokens": 2}}


def est(text: str) -> int:
    """The agent's estimate for text it could not meter: about four bytes a token, rounded up."""
    return -(-len(text.encode()) // 4)


@pytest.mark.parametrize("host", ["proxy.individual.githubcopilot.com", "copilot-proxy.githubusercontent.com"])
def test_copilot_inline_completions_are_metered_by_engine_with_estimated_tokens(agent, http, host):
    prompt, suffix = "# path: widgets/math.py\ndef add(a, b):\n    ", "\n\nprint(add(1, 2))\n"
    marker = f"e2e=gh-{host.split('.')[0]}"
    with http.stream("POST", f"https://{host}/v1/engines/gpt-41-copilot/completions?{marker}",
                     headers={"Authorization": "Bearer tid=e2e;exp=9999999999;sku=copilot_for_business",
                              **GHOST_HEADERS}, json=ghost_body(prompt, suffix)) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        body = r.read().decode()
    events = sse_events(body)
    assert body.rstrip().endswith("data: [DONE]")
    assert not any("usage" in e for e in events), "the completions proxy reports no usage"
    text = "".join(c["text"] for e in events for c in e["choices"])
    assert text and events[-1]["choices"][0]["finish_reason"] == "stop"
    rec = agent.wait_record(path=f"/v1/engines/gpt-41-copilot/completions?{marker}")
    assert (rec["provider"], rec["host"], rec["mode"]) == ("github_copilot", host, "proxy")
    assert (rec["operation"], rec["model"], rec["stream"], rec["status"]) == ("completions", "gpt-41-copilot", True, 200)
    assert rec["usage_estimated"] is True
    assert (rec["usage"]["input_tokens"], rec["usage"]["output_tokens"]) == (est(prompt + suffix), est(text))
    assert (rec["credential"], rec["cost_status"], rec["cost_usd"]) == ("oauth", "subscription", None)


def test_copilot_completions_through_the_base_url_and_the_rest_of_the_proxy_host_unread(agent, http):
    prompt = "fn main() {\n    "
    r = httpx.post(f"{agent.base_url('copilot-proxy-business')}/v1/engines/copilot-codex/completions?e2e=gh3",
                   headers={"Authorization": "Bearer tid=e2e", **GHOST_HEADERS},
                   json={**ghost_body(prompt, "\n}\n"), "stream": False}, trust_env=False, timeout=30)
    assert r.status_code == 200, r.text
    rec = agent.wait_record(path="/v1/engines/copilot-codex/completions?e2e=gh3")
    assert (rec["host"], rec["mode"], rec["model"], rec["stream"]) == (
        "proxy.business.githubcopilot.com", "base_url", "copilot-codex", False)
    assert rec["usage_estimated"] is True
    assert (rec["usage"]["input_tokens"], rec["usage"]["output_tokens"]) == (
        est(prompt + "\n}\n"), est(r.json()["choices"][0]["text"]))
    # Outside /v1/engines/ the host is answered by its upstream, never read or recorded.
    r = http.get("https://proxy.enterprise.githubcopilot.com/_ping?e2e=gh4", headers={"Authorization": "Bearer tid=e2e"})
    assert "x-airlock-request-id" not in r.headers
    assert not marked(agent, "e2e=gh4")


# --- Claude Code with a subscription login --------------------------------------------------------------

def test_claude_oauth_tokens_are_recorded_as_oauth_and_api_keys_stay_keys(agent):
    def client(**kw):
        return anthropic.Anthropic(base_url=agent.base_url("anthropic"), max_retries=0,
                                   http_client=anthropic.DefaultHttpxClient(trust_env=False, timeout=30), **kw)

    oauth = client(auth_token="sk-ant-oat01-e2e-token", default_headers={"anthropic-beta": "oauth-2025-04-20"})
    m = oauth.messages.create(model="claude-sonnet-4-5", max_tokens=32, extra_query={"e2e": "cl1"},
                              messages=[{"role": "user", "content": "hi"}])
    rec = agent.wait_record(path="/v1/messages?e2e=cl1")
    assert (rec["provider"], rec["credential"]) == ("anthropic", "oauth")
    assert tokens(rec) == (m.usage.input_tokens, m.usage.output_tokens)
    assert rec["cost_status"] == "subscription" and rec["cost_usd"] is None
    assert "at API list prices" in rec["cost_note"]
    # Claude Code with ANTHROPIC_API_KEY sends x-api-key; this SDK sends an API key as a bearer token.
    # Either way a key is not a sign-in: priced per token.
    r = httpx.post(f"{agent.base_url('anthropic')}/v1/messages?e2e=cl2", trust_env=False, timeout=30,
                   headers={"x-api-key": "sk-ant-api03-e2e", "anthropic-version": "2023-06-01"},
                   json={"model": "claude-sonnet-4-5", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    rec = agent.wait_record(path="/v1/messages?e2e=cl2")
    assert (rec["credential"], rec["cost_status"]) == ("x_api_key", "priced")
    assert rec["cost_usd"] > 0
    client(api_key="sk-ant-api03-e2e").messages.create(model="claude-sonnet-4-5", max_tokens=32, extra_query={"e2e": "cl3"},
                                                       messages=[{"role": "user", "content": "hi"}])
    rec = agent.wait_record(path="/v1/messages?e2e=cl3")
    assert (rec["credential"], rec["cost_status"]) == ("bearer", "priced")


# --- Local model servers --------------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", sorted(LOCAL_PORTS))
def test_local_servers_are_metered_and_never_billed(agent, mock, prefix):
    client = openai.OpenAI(api_key="ollama", base_url=agent.base_url(prefix) + "/v1", max_retries=0,
                           http_client=httpx.Client(trust_env=False, timeout=30))
    stream = client.chat.completions.create(model="llama3.2", stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "hello local model"}],
                                            extra_query={"e2e": f"local-{prefix}"})
    usage = [c.usage for c in stream if c.usage][-1]
    rec = agent.wait_record(path=f"/v1/chat/completions?e2e=local-{prefix}")
    assert (rec["provider"], rec["host"], rec["mode"]) == (prefix, f"127.0.0.1:{mock.plain_port}", "base_url")
    assert (rec["operation"], rec["model"]) == ("chat_completions", "llama3.2")
    assert tokens(rec) == (usage.prompt_tokens, usage.completion_tokens)
    assert (rec["cost_status"], rec["cost_usd"]) == ("local", 0.0)
    assert "on this machine" in rec["cost_note"]
    seen = [m for m in mock.requests() if m["query"] == f"e2e=local-{prefix}"]
    assert seen and seen[0]["listener"] == "plain", "plain HTTP to the loopback server"


def test_ollama_native_chat_ndjson_stream_and_generate(agent, mock):
    url = agent.base_url("ollama")
    lines = []
    with httpx.stream("POST", f"{url}/api/chat?e2e=ol1", trust_env=False, timeout=30,
                      json={"model": "llama3.2", "messages": [{"role": "user", "content": "why is the sky blue"}]}) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert lines[-1]["done"] is True and not any(x["done"] for x in lines[:-1])
    rec = agent.wait_record(path="/api/chat?e2e=ol1")
    assert (rec["provider"], rec["operation"], rec["model"], rec["stream"]) == ("ollama", "chat", "llama3.2", True)
    assert tokens(rec) == (lines[-1]["prompt_eval_count"], lines[-1]["eval_count"])
    assert (rec["cost_status"], rec["cost_usd"], rec["credential"]) == ("local", 0.0, "none")
    r = httpx.post(f"{url}/api/generate?e2e=ol2", trust_env=False, timeout=30,
                   json={"model": "llama3.2", "prompt": "one two three", "stream": False})
    whole = r.json()
    rec = agent.wait_record(path="/api/generate?e2e=ol2")
    assert (rec["operation"], rec["stream"]) == ("generate", False)
    assert tokens(rec) == (whole["prompt_eval_count"], whole["eval_count"]) == (3, whole["eval_count"])


def test_a_local_server_on_the_agents_own_port_is_refused_as_a_loop(mock, tmp_path):
    port = free_port()
    policy = DEFAULT_POLICY.replace('local = "http://127.0.0.1:11434"', f'local = "http://127.0.0.1:{port}"')
    a = start_agent(tmp_path / "loop", policy, listen=f"127.0.0.1:{port}")
    try:
        r = httpx.post(f"{a.base_url('ollama')}/v1/chat/completions", trust_env=False, timeout=10,
                       json={"model": "m", "messages": []})
        assert r.status_code == 508 and r.json()["airlock"]["type"] == "loop_detected"
    finally:
        stop(a.proc)


def test_status_shows_path_scopes_billing_and_local_servers(agent, mock):
    s = agent.status()
    hosts = {h["host"]: h for h in s["interception_hosts"]}
    assert hosts["chatgpt.com"]["paths"] == ["/backend-api/codex/"]
    assert hosts["chatgpt.com"]["billing"] == "subscription" and hosts["chatgpt.com"]["intercepted"] is True
    assert hosts["api.openai.com"]["paths"] == [] and hosts["api.openai.com"]["billing"] == "per_token"
    local = {l["prefix"]: l for l in s["local_servers"]}
    assert set(local) == set(LOCAL_PORTS)
    assert local["ollama"] == {"address": f"127.0.0.1:{mock.plain_port}", "provider": "ollama", "api": "ollama",
                               "prefix": "ollama", "paths": []}
    assert not [h for h in s["interception_hosts"] if "127.0.0.1" in h["host"]]
    # The PAC file sends wholly inspected hosts only: chatgpt.com stays DIRECT for browsers.
    pac = httpx.get(f"http://{agent.addr}/proxy.pac", trust_env=False).text
    assert "api.githubcopilot.com" in pac and "chatgpt.com" not in pac


@pytest.mark.parametrize("rule,message", [
    ('host = "chatgpt.com"\nprovider = "chatgpt"\npaths = ["backend-api/codex/"]',
     'path prefix "backend-api/codex/" does not start with "/"'),
    ('local = "http://10.1.2.3:11434"\nprovider = "ollama"\nprefix = "lan"', "is not on this machine"),
    ('local = "https://127.0.0.1:11434"\nprovider = "ollama"\nprefix = "tls"', "plain http://"),
])
def test_bad_path_scopes_and_local_servers_are_refused_by_policy_check(tmp_path, rule, message):
    policy = tmp_path / "p.toml"
    policy.write_text(f"schema = 1\n[[hosts]]\n{rule}\n")
    p = subprocess.run([str(binary("airlockd")), "--check", "--policy", str(policy)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert message in p.stdout + p.stderr, p.stdout + p.stderr
