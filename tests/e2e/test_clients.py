"""Real clients through airlockd against the mock provider: curl, the Python openai and anthropic SDKs,
the Node openai SDK via `airlock run`, in proxy (MITM) mode and base-URL mode. Each test checks what the
client received and the record the agent made."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import textwrap
import threading
import http.client
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

import coverage
from conftest import tokens

from certs import make_ca, make_leaf, pem

REPLY = "This is a mock reply from {model}."


def words(*texts: str) -> int:
    return sum(len(t.split()) for t in texts)


def ctx(cafile: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cafile))


def proxied_httpx(agent) -> httpx.Client:
    """An httpx client configured the way `airlock env` configures one: proxy + merged bundle."""
    return httpx.Client(proxy=agent.proxy_url, verify=ctx(agent.bundle), trust_env=False, timeout=30)


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "30", *args], capture_output=True, text=True, timeout=60)


# ---------------------------------------------------------------- curl


def test_curl_chat_through_the_proxy_is_intercepted_and_recorded(agent, tmp_path):
    body = {"model": "curl-chat-1", "messages": [{"role": "user", "content": "hello there curl"}]}
    headers = tmp_path / "headers.txt"
    p = curl("--proxy", agent.proxy_url, "--cacert", str(agent.ca_cert), "-H", "authorization: Bearer sk-curl",
             "-H", "content-type: application/json", "-d", json.dumps(body), "-D", str(headers),
             "https://api.openai.com/v1/chat/completions")
    assert p.returncode == 0, p.stderr
    payload = p.stdout
    head = headers.read_text()
    data = json.loads(payload)
    assert data["choices"][0]["message"]["content"] == REPLY.format(model="curl-chat-1")
    rid = next(l.split(":", 1)[1].strip() for l in head.splitlines() if l.lower().startswith("x-airlock-request-id"))
    r = agent.wait_record(id=rid)
    assert (r["provider"], r["operation"], r["model"], r["mode"], r["status"], r["outcome"]) == (
        "openai", "chat_completions", "curl-chat-1", "proxy", 200, "completed")
    assert tokens(r) == (words("hello there curl"), 7)
    assert r["stream"] is False
    assert r["request_bytes"] == len(json.dumps(body))
    assert r["response_bytes"] == len(payload.encode())
    assert r["latency_ms"] > 0 and r["ttfb_ms"] is not None and r["ttfb_ms"] <= r["latency_ms"]
    coverage.report("curl", coverage.command_version(["curl", "--version"]), "proxy", coverage.metered(r))


def test_curl_speaks_http2_inside_intercepted_tls(agent):
    p = curl("--http2", "--proxy", agent.proxy_url, "--cacert", str(agent.ca_cert), "-o", "/dev/null",
             "-w", "%{http_version} %{http_code}", "-H", "authorization: Bearer sk-curl",
             "https://api.openai.com/v1/models")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "2 200"


def test_curl_stream_arrives_whole_and_usage_is_recorded(agent):
    body = {"model": "curl-stream-1", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "stream me"}]}
    p = curl("-N", "--proxy", agent.proxy_url, "--cacert", str(agent.ca_cert), "-H", "authorization: Bearer sk",
             "-H", "content-type: application/json", "-d", json.dumps(body),
             "https://api.openai.com/v1/chat/completions")
    assert p.returncode == 0, p.stderr
    frames = [l[len("data: "):] for l in p.stdout.splitlines() if l.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(f) for f in frames[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == REPLY.format(model="curl-stream-1")
    r = agent.wait_record(model="curl-stream-1")
    assert r["stream"] is True and r["outcome"] == "completed"
    assert tokens(r) == (2, 7)


# ---------------------------------------------------------------- Python openai SDK


@pytest.fixture
def oai(agent):
    with proxied_httpx(agent) as http:
        yield openai.OpenAI(api_key="sk-test-openai", http_client=http, max_retries=0)


def test_openai_sdk_chat(agent, oai):
    r = oai.chat.completions.create(model="py-chat-1", messages=[{"role": "user", "content": "one two three"}])
    assert r.choices[0].message.content == REPLY.format(model="py-chat-1")
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (3, 7)
    rec = agent.wait_record(model="py-chat-1")
    assert tokens(rec) == (3, 7)
    assert rec["provider"] == "openai" and rec["mode"] == "proxy"
    coverage.report("OpenAI Python SDK", coverage.python_package("openai"), "proxy", coverage.metered(rec))


def test_openai_sdk_chat_stream(agent, oai):
    stream = oai.chat.completions.create(model="py-stream-1", stream=True, stream_options={"include_usage": True},
                                         messages=[{"role": "user", "content": "a b c d"}])
    text, usage = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert text == REPLY.format(model="py-stream-1")
    assert (usage.prompt_tokens, usage.completion_tokens) == (4, 7)
    rec = agent.wait_record(model="py-stream-1")
    assert rec["stream"] is True and tokens(rec) == (4, 7)


def test_openai_sdk_responses_stream(agent, oai):
    text, final = "", None
    with oai.responses.stream(model="py-responses-1", input="tell me something") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                text += event.delta
        final = stream.get_final_response()
    assert text == REPLY.format(model="py-responses-1")
    assert (final.usage.input_tokens, final.usage.output_tokens) == (3, 7)
    rec = agent.wait_record(model="py-responses-1")
    assert rec["operation"] == "responses" and rec["stream"] is True
    assert tokens(rec) == (3, 7)


def test_openai_sdk_embeddings(agent, oai):
    r = oai.embeddings.create(model="py-embed-1", input=["first text here", "second"])
    assert len(r.data) == 2 and len(r.data[0].embedding) > 0
    assert r.usage.prompt_tokens == 4
    rec = agent.wait_record(model="py-embed-1")
    assert rec["operation"] == "embeddings"
    assert tokens(rec)[0] == 4


def test_openai_sdk_base_url_mode(agent):
    client = openai.OpenAI(api_key="sk-base", base_url=agent.base_url("openai/v1"), max_retries=0,
                           http_client=httpx.Client(trust_env=False))
    r = client.chat.completions.create(model="py-base-1", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == REPLY.format(model="py-base-1")
    stream = client.chat.completions.create(model="py-base-stream-1", stream=True,
                                            messages=[{"role": "user", "content": "hi"}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == REPLY.format(model="py-base-stream-1")
    rec = agent.wait_record(model="py-base-1")
    assert (rec["mode"], rec["host"], rec["path"]) == ("base_url", "api.openai.com", "/v1/chat/completions")
    assert tokens(rec) == (1, 7)
    streamed = agent.wait_record(model="py-base-stream-1")
    assert streamed["outcome"] == "completed"
    coverage.report("OpenAI Python SDK", coverage.python_package("openai"), "base-URL",
                    coverage.metered(rec, streamed))


# ---------------------------------------------------------------- Python anthropic SDK


def test_anthropic_sdk_messages_and_stream_through_the_proxy(agent):
    # The anthropic SDK brings its own HTTP stack (httpx2); configure it as `airlock env` would.
    with anthropic.DefaultHttpxClient(proxy=agent.proxy_url, verify=ctx(agent.bundle), trust_env=False) as http:
        client = anthropic.Anthropic(api_key="sk-ant-test", http_client=http, max_retries=0)
        m = client.messages.create(model="claude-py-1", max_tokens=64,
                                   messages=[{"role": "user", "content": "hello claude"}])
        assert m.content[0].text == REPLY.format(model="claude-py-1")
        assert (m.usage.input_tokens, m.usage.output_tokens) == (2, 7)
        with client.messages.stream(model="claude-py-stream-1", max_tokens=64, system="be brief",
                                    messages=[{"role": "user", "content": "stream please"}]) as s:
            text = "".join(s.text_stream)
            final = s.get_final_message()
    assert text == REPLY.format(model="claude-py-stream-1")
    assert final.usage.output_tokens == 7
    rec = agent.wait_record(model="claude-py-1")
    assert (rec["provider"], rec["operation"], tokens(rec)) == ("anthropic", "messages", (2, 7))
    rec = agent.wait_record(model="claude-py-stream-1")
    assert rec["stream"] is True
    assert tokens(rec) == (final.usage.input_tokens, 7)
    assert final.usage.input_tokens == 4  # "be brief" + "stream please"
    coverage.report("Anthropic Python SDK", coverage.python_package("anthropic"), "proxy", coverage.metered(rec))


def test_anthropic_sdk_base_url_mode(agent):
    client = anthropic.Anthropic(api_key="sk-ant-base", base_url=agent.base_url("anthropic"), max_retries=0,
                                 http_client=anthropic.DefaultHttpxClient(trust_env=False))
    m = client.messages.create(model="claude-base-1", max_tokens=64, messages=[{"role": "user", "content": "x"}])
    assert m.content[0].text == REPLY.format(model="claude-base-1")
    rec = agent.wait_record(model="claude-base-1")
    assert (rec["mode"], rec["provider"], rec["path"]) == ("base_url", "anthropic", "/v1/messages")
    assert tokens(rec) == (1, 7)
    coverage.report("Anthropic Python SDK", coverage.python_package("anthropic"), "base-URL",
                    coverage.metered(rec))


# ---------------------------------------------------------------- Node openai SDK via `airlock run`


NODE_SCRIPT = textwrap.dedent("""
    const mod = require("openai");
    const OpenAI = mod.OpenAI || mod.default || mod;
    (async () => {
      const client = new OpenAI({ apiKey: "sk-node", maxRetries: 0 });
      const r = await client.chat.completions.create({
        model: "node-chat-1", messages: [{ role: "user", content: "from node sdk" }] });
      const stream = await client.chat.completions.create({
        model: "node-stream-1", stream: true, messages: [{ role: "user", content: "stream from node" }] });
      let text = "";
      for await (const c of stream) { if (c.choices.length) text += c.choices[0].delta.content || ""; }
      console.log(JSON.stringify({ content: r.choices[0].message.content, usage: r.usage, streamed: text }));
    })().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
""")


def test_node_openai_sdk_via_airlock_run(agent, tmp_path):
    node = os.environ.get("AIRLOCK_TEST_NODE")
    if not node:
        pytest.fail("AIRLOCK_TEST_NODE is not set: run the suite with scripts/test.sh, which installs Node 24")
    script = tmp_path / "client.cjs"
    script.write_text(NODE_SCRIPT)
    p = agent.cli("run", "--", node, str(script), env={"NODE_PATH": os.environ.get("NODE_PATH", "")}, check=False)
    assert p.returncode == 0, f"{p.stdout}\n{p.stderr}"
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["content"] == REPLY.format(model="node-chat-1")
    assert out["usage"]["prompt_tokens"] == 3
    assert out["streamed"] == REPLY.format(model="node-stream-1")
    rec = agent.wait_record(model="node-chat-1")
    assert rec["mode"] == "proxy" and tokens(rec) == (3, 7)
    streamed = agent.wait_record(model="node-stream-1")
    assert streamed["stream"] is True
    node_modules = Path(os.environ.get("NODE_PATH", "").split(os.pathsep)[0])
    coverage.report("OpenAI Node SDK", coverage.node_package(node_modules, "openai"), "run",
                    coverage.metered(rec, streamed))


# ---------------------------------------------------------------- non-AI host: blind tunnel


@pytest.fixture
def other_tls_server(tmp_path):
    """A second local TLS server, not in the interception set, with a certificate of its own."""
    ca_cert, ca_key = make_ca("Airlock E2E Other Root")
    leaf_pem, key_pem = make_leaf(ca_cert, ca_key, "localhost", cn="airlock-e2e-nonai")
    (tmp_path / "other-ca.pem").write_bytes(pem(ca_cert))
    (tmp_path / "leaf.pem").write_bytes(leaf_pem)
    (tmp_path / "leaf.key").write_bytes(key_pem)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")

    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"hello from the non-AI server"
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.socket = sctx.wrap_socket(srv.socket, server_side=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1], tmp_path / "other-ca.pem"
    srv.shutdown()


def test_non_ai_host_is_tunnelled_undecrypted(agent, other_tls_server):
    port, other_ca = other_tls_server
    before = agent.status()["requests_seen"]
    p = curl("--proxy", agent.proxy_url, "--cacert", str(other_ca), f"https://localhost:{port}/")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "hello from the non-AI server"
    # The client sees the origin's own certificate, not one from the Airlock CA.
    conn = http.client.HTTPSConnection("127.0.0.1", agent.port, context=ctx(other_ca), timeout=10)
    conn.set_tunnel("localhost", port)
    conn.request("GET", "/")
    peer = conn.sock.getpeercert()
    assert conn.getresponse().read() == b"hello from the non-AI server"
    subject = dict(x[0] for x in peer["subject"])
    issuer = dict(x[0] for x in peer["issuer"])
    assert subject["commonName"] == "airlock-e2e-nonai"
    assert issuer["commonName"] == "Airlock E2E Other Root"
    conn.close()
    # Tunnels are not AI calls: nothing is recorded.
    assert agent.status()["requests_seen"] == before
