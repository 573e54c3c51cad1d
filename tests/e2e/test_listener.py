"""The listener as a user meets it: startup errors, the PAC file, absolute-form proxying, browser and
DNS-rebinding guards, the agent never routing through itself, the CLI's status/env/run, and streams that
are passed on chunk by chunk."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import threading
import time

import httpx
import pytest

from conftest import tokens, binary, free_port, proxy_env, start_agent, stop


def run_airlockd(*args, timeout=20):
    return subprocess.run([str(binary("airlockd")), *args], capture_output=True, text=True, timeout=timeout)


def test_port_in_use_is_a_clear_startup_error(agent, tmp_path):
    p = run_airlockd("--listen", agent.addr, "--state-dir", str(tmp_path / "s"))
    assert p.returncode != 0
    assert f"cannot listen on {agent.addr}" in p.stderr
    assert "Another program" in p.stderr and "--listen" in p.stderr
    assert agent.status()["listen"] == agent.addr, "the running agent is unaffected"


def test_non_loopback_listen_address_is_refused(tmp_path):
    p = run_airlockd("--listen", "0.0.0.0:0", "--state-dir", str(tmp_path / "s"))
    assert p.returncode != 0
    assert "loopback only" in p.stderr


def test_bad_policy_is_explained(tmp_path):
    bad = tmp_path / "p.toml"
    bad.write_text('schema = 1\n[[hosts]]\nhost = "api.openai.com"\nprovider = "openai"\nprefixx = "x"\n')
    p = run_airlockd("--policy", str(bad), "--state-dir", str(tmp_path / "s"))
    assert p.returncode != 0
    assert str(bad) in p.stderr and "prefixx" in p.stderr
    ok = run_airlockd("--check")
    assert ok.returncode == 0 and "is valid" in ok.stdout


def test_pac_file_sends_exactly_the_ai_hosts_to_the_proxy(agent):
    r = httpx.get(f"http://{agent.addr}/proxy.pac", trust_env=False)
    assert r.headers["content-type"] == "application/x-ns-proxy-autoconfig"
    pac = r.text
    for host in ["api.openai.com", "api.anthropic.com", "generativelanguage.googleapis.com", "api.mistral.ai"]:
        assert f'if (host == "{host}") return "PROXY {agent.addr}";' in pac
    assert 'dnsDomainIs(host, ".openai.azure.com")' in pac
    assert pac.rstrip().endswith('return "DIRECT";\n}')
    if have_node():
        # Evaluate the PAC for real.
        js = pac + """
            function dnsDomainIs(h, d) { return h.length >= d.length && h.substring(h.length - d.length) == d; }
            console.log(JSON.stringify([FindProxyForURL("https://api.openai.com/v1", "api.openai.com"),
                FindProxyForURL("https://example.com/", "example.com"),
                FindProxyForURL("https://x.openai.azure.com/", "x.openai.azure.com"),
                FindProxyForURL("https://a.b.openai.azure.com/", "a.b.openai.azure.com")]));"""
        out = subprocess.run([os.environ["AIRLOCK_TEST_NODE"], "-e", js], capture_output=True, text=True, check=True)
        assert json.loads(out.stdout) == [f"PROXY {agent.addr}", "DIRECT", f"PROXY {agent.addr}", "DIRECT"]


def have_node() -> bool:
    return bool(os.environ.get("AIRLOCK_TEST_NODE"))


@pytest.fixture
def plain_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"plain {self.path} host={self.headers.get('host')}".encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()


def test_absolute_form_http_to_other_hosts_is_forwarded_unrecorded(agent, plain_server):
    before = agent.status()["requests_seen"]
    r = httpx.get(f"http://127.0.0.1:{plain_server}/hello?x=1", proxy=agent.proxy_url, trust_env=False)
    assert r.status_code == 200
    assert r.text == f"plain /hello?x=1 host=127.0.0.1:{plain_server}"
    assert agent.status()["requests_seen"] == before


def test_absolute_form_http_to_an_ai_host_goes_through_the_pipeline(agent):
    r = httpx.post("http://api.openai.com/v1/chat/completions", proxy=agent.proxy_url, trust_env=False,
                   headers={"authorization": "Bearer sk"},
                   json={"model": "absolute-form-1", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    rec = agent.wait_record(model="absolute-form-1")
    assert rec["mode"] == "proxy" and tokens(rec)[1] == 7


def test_loops_through_the_agent_itself_are_refused(agent):
    r = httpx.get(f"http://127.0.0.1:{agent.port}/airlock/v1/status", proxy=agent.proxy_url, trust_env=False)
    assert r.status_code == 508
    with socket.create_connection(("127.0.0.1", agent.port), timeout=5) as s:
        s.sendall(f"CONNECT 127.0.0.1:{agent.port} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        assert s.recv(1024).startswith(b"HTTP/1.1 508")


def test_agent_ignores_https_proxy_for_its_own_upstream_calls(fresh_agent):
    port = free_port()
    # If the agent honoured HTTPS_PROXY it would send its upstream call to itself, forever.
    a = fresh_agent(listen=f"127.0.0.1:{port}", env={"HTTPS_PROXY": f"http://127.0.0.1:{port}",
                                                      "https_proxy": f"http://127.0.0.1:{port}"})
    r = httpx.post(f"{a.base_url('openai')}/v1/chat/completions", trust_env=False,
                   headers={"authorization": "Bearer sk"},
                   json={"model": "no-loop-1", "messages": [{"role": "user", "content": "hi"}]}, timeout=15)
    assert r.status_code == 200, r.text
    assert a.wait_record(model="no-loop-1")["status"] == 200
    assert a.status()["requests_seen"] == 1


def test_browsers_are_kept_out_of_the_local_api(agent):
    r = httpx.get(f"http://{agent.addr}/airlock/v1/status", headers={"origin": "https://evil.example"}, trust_env=False)
    assert r.status_code == 403 and r.json()["airlock"]["type"] == "browser_request_refused"
    # DNS rebinding: a page at evil.example resolving to 127.0.0.1 sends Host: evil.example
    r = httpx.get(f"http://{agent.addr}/airlock/v1/status", headers={"host": "evil.example"}, trust_env=False)
    assert r.status_code == 421
    r = httpx.get(f"http://localhost:{agent.port}/airlock/v1/health", trust_env=False)
    assert r.status_code == 200


def test_unknown_listener_path_explains_the_modes(agent):
    r = httpx.get(f"http://{agent.addr}/v1/chat/completions", trust_env=False)
    assert r.status_code == 404
    msg = r.json()["error"]["message"]
    assert "/openai" in msg and "/proxy.pac" in msg and "HTTPS_PROXY" in msg


def test_gemini_key_in_query_is_forwarded_but_never_recorded(agent, mock):
    r = httpx.post(f"{agent.base_url('gemini')}/v1beta/models/gemini-key-test:generateContent?key=AIzaSECRET123",
                   json={"contents": [{"role": "user", "parts": [{"text": "hello gemini"}]}]}, trust_env=False)
    assert r.status_code == 200, r.text
    assert r.json()["usageMetadata"]["promptTokenCount"] == 2
    rec = agent.wait_record(model="gemini-key-test")
    assert rec["path"] == "/v1beta/models/gemini-key-test:generateContent?key=REDACTED"
    assert tokens(rec) == (2, 7)
    assert "AIzaSECRET123" not in json.dumps(agent.records()) + agent.log()
    seen = [q for q in mock.requests() if "gemini-key-test" in q["path"]]
    assert seen and "key=AIzaSECRET123" in seen[-1]["query"]


def test_status_env_and_run(agent):
    out = agent.cli("status").stdout
    st = agent.status()
    assert "Airlock agent: running" in out
    assert agent.addr in out and st["ca"]["fingerprint_sha256"] in out and "api.openai.com" in out
    js = json.loads(agent.cli("status", "--json").stdout)
    assert js["running"] is True and js["listen"] == agent.addr
    # The count is the agent's: one more request makes it exactly one more.
    before = js["requests_seen"]
    r = httpx.post(f"{agent.base_url('openai')}/v1/chat/completions", trust_env=False,
                   headers={"authorization": "Bearer sk"},
                   json={"model": "status-count-1", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200
    agent.wait_record(model="status-count-1")
    js = json.loads(agent.cli("status", "--json").stdout)
    assert js["requests_seen"] == before + 1 and js["requests_in_flight"] == 0
    assert f"{before + 1} seen, 0 in flight" in agent.cli("status").stdout

    env = proxy_env(agent)
    for k in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"]:
        assert env[k] == agent.proxy_url
    assert set(env["NO_PROXY"].split(",")) >= {"localhost", "127.0.0.1", "::1"}
    for k in ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"]:
        assert env[k] == str(agent.bundle)
    assert env["NODE_EXTRA_CA_CERTS"] == str(agent.ca_cert)
    assert env["NODE_USE_ENV_PROXY"] == "1"
    # The merged bundle keeps non-AI TLS working: it holds the system roots and then the Airlock CA.
    bundle = agent.bundle.read_text()
    assert bundle.count("BEGIN CERTIFICATE") > 10 and bundle.rstrip().endswith(agent.ca_cert.read_text().rstrip())

    p = agent.cli("run", "--", "sh", "-c", 'echo "$HTTPS_PROXY|$SSL_CERT_FILE|$NODE_EXTRA_CA_CERTS"; exit 7', check=False)
    assert p.returncode == 7, "the command's exit code is passed on"
    assert p.stdout.strip() == f"{agent.proxy_url}|{agent.bundle}|{agent.ca_cert}"
    # curl through `airlock run`, with no flags of its own, is intercepted.
    p = agent.cli("run", "--", "curl", "-sS", "-H", "authorization: Bearer sk", "-H", "content-type: application/json",
                  "-d", '{"model":"run-curl-1","messages":[{"role":"user","content":"hi"}]}',
                  "https://api.openai.com/v1/chat/completions")
    assert json.loads(p.stdout)["model"] == "run-curl-1"
    assert agent.wait_record(model="run-curl-1")["mode"] == "proxy"


def test_cli_says_when_the_agent_is_not_running(tmp_path):
    port = free_port()
    p = subprocess.run([str(binary("airlock")), "--addr", f"127.0.0.1:{port}", "--state-dir", str(tmp_path), "status"],
                       capture_output=True, text=True)
    assert p.returncode == 3
    assert "not running" in p.stdout and "airlockd" in p.stdout
    p = subprocess.run([str(binary("airlock")), "--addr", f"127.0.0.1:{port}", "--state-dir", str(tmp_path), "run", "--", "true"],
                       capture_output=True, text=True)
    assert p.returncode == 1 and "not running" in p.stderr


def test_stream_chunks_are_passed_on_as_they_arrive(agent):
    """Paced chunks reach the client paced: nothing is held back until the end."""
    body = {"model": "paced-1", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    headers = {"authorization": "Bearer sk", "x-mock-chunk-delay-ms": "150", "x-mock-output-words": "6"}
    arrivals = []
    t0 = time.monotonic()
    with httpx.stream("POST", f"{agent.base_url('openai')}/v1/chat/completions", json=body, headers=headers,
                      trust_env=False, timeout=30) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[len("data: "):])
                if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    arrivals.append(time.monotonic() - t0)
    assert len(arrivals) == 6
    # Six words at 150 ms apart: the first arrives long before the last.
    assert arrivals[-1] - arrivals[0] >= 0.6, arrivals
    assert arrivals[0] < arrivals[-1] - 0.5
    rec = agent.wait_record(model="paced-1")
    assert rec["ttfb_ms"] < rec["latency_ms"] - 500
