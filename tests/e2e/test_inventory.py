"""The shadow-AI inventory and failed tunnels, end to end.

Tunnels to three hosts on the shipped AI app list and one host off it go through a real airlockd to a
TLS server of the test's own on 127.0.0.1 (the policy's upstream overrides send those names there, as an
admin would send them to a gateway; no DNS is asked). `airlock inventory --json` must show the three,
seen and not inspected, with the local process that opened each, and not the fourth. The same command
reads the AI tools configured in a home directory of the test's own, without following a symbolic link
and without printing the secrets in those files.

Failed tunnels run in a network namespace with only loopback (`unshare -n`), so that the name that does
not resolve is not asked of any real DNS server: a refused port, an unresolvable name, an upstream proxy
that never answers and one that refuses must each get 502/504 with the reason, an info log line with the
host and reason, and a count in `airlock status`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs import authority_key_id, make_ca, pem
import httpx

from conftest import DEFAULT_POLICY, binary, have, mock_policy, start_agent, stop

LISTED = {  # host -> (app, category) as policies/ai-domains.toml names them
    "claude.ai": ("Claude", "chat"),
    "www.perplexity.ai": ("Perplexity", "search"),
    "huggingface.co": ("Hugging Face", "model_hub"),
}
UNLISTED = "intranet.unlisted.example"


def leaf_for(ca_cert, ca_key, names: list[str]) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(authority_key_id(ca_cert, ca_key), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return pem(cert), key_pem


class TlsServer:
    """Answers every HTTPS request with 200 and the Host it was asked for, after a short think (as a
    model's answer takes): the agent looks up a tunnel's process while the tunnel is open, and a
    connection of a few milliseconds from a process that exits at once can end before that."""

    THINK_SECS = 0.3

    def __init__(self, tmp: Path, names: list[str]):
        ca_cert, ca_key = make_ca("inventory test origin CA")
        self.ca_file = tmp / "origin-ca.pem"
        self.ca_file.write_bytes(pem(ca_cert))
        cert, key = leaf_for(ca_cert, ca_key, names)
        (tmp / "origin.pem").write_bytes(cert)
        (tmp / "origin.key").write_bytes(key)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(tmp / "origin.pem", tmp / "origin.key")
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = tls.recv(4096)
                    if not chunk:
                        return
                    head += chunk
                host = next((l.split(b":", 1)[1].strip() for l in head.split(b"\r\n")
                             if l.lower().startswith(b"host:")), b"no-host")
                body = host.split(b":")[0]
                time.sleep(self.THINK_SECS)
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def close(self):
        self.sock.close()


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("https_proxy", "http_proxy", "all_proxy", "no_proxy")}
    env.pop("AIRLOCK_ADDR", None)
    env.update(extra)
    return env


def curl_via(agent, url: str, ca: Path) -> str:
    p = subprocess.run(["curl", "-sS", "--max-time", "20", "--proxy", agent.proxy_url, "--cacert", str(ca), url],
                       capture_output=True, text=True, env=clean_env(), timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout


PY_CLIENT = r'''
import http.client, ssl, sys
proxy_port, host, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3]
c = http.client.HTTPSConnection("127.0.0.1", proxy_port, timeout=20, context=ssl.create_default_context(cafile=ca))
c.set_tunnel(host, 443)
c.request("GET", "/")
r = c.getresponse()
print(r.status, r.read().decode())
'''


def test_inventory_lists_the_ai_apps_seen_in_tunnels_with_their_process(tmp_path, mock):
    if not have("curl"):
        pytest.skip("curl is not installed")
    server = TlsServer(tmp_path, [*LISTED, UNLISTED])
    policy = mock_policy(mock) + "".join(
        f'\n[upstream.overrides."{h}"]\naddress = "127.0.0.1:{server.port}"\n' for h in [*LISTED, UNLISTED])
    agent = start_agent(tmp_path / "agent", policy)
    try:
        assert curl_via(agent, "https://claude.ai/", server.ca_file) == "claude.ai"
        assert curl_via(agent, "https://huggingface.co/models", server.ca_file) == "huggingface.co"
        assert curl_via(agent, f"https://{UNLISTED}/", server.ca_file) == UNLISTED, "the unlisted tunnel works"
        py = subprocess.run([sys.executable, "-c", PY_CLIENT, str(agent.port), "www.perplexity.ai", str(server.ca_file)],
                            capture_output=True, text=True, env=clean_env(), timeout=30)
        assert py.stdout.strip() == "200 www.perplexity.ai", py.stderr
        # An intercepted AI call (base-URL mode, to the mock) counts as inspected.
        r = httpx.post(f"{agent.base_url('openai')}/v1/chat/completions", trust_env=False, timeout=20,
                       headers={"authorization": "Bearer sk-test"},
                       json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200, r.text

        # Sightings are recorded as each tunnel closes; wait for all three.
        deadline = time.monotonic() + 15
        while True:
            seen = [r for r in agent.api("/airlock/v1/inventory")["apps"] if not r["inspected"]]
            if len(seen) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.1)

        home = tmp_path / "home"
        home.mkdir()
        p = subprocess.run([str(binary("airlock")), "--addr", agent.addr, "--state-dir", str(agent.state_dir),
                            "inventory", "--json"], capture_output=True, text=True, timeout=60,
                           env=clean_env(HOME=str(home)), cwd=home)
        assert p.returncode == 0, p.stderr
        inv = json.loads(p.stdout)
        assert inv["agent"]["running"] is True
        rows = {r["host"]: r for r in inv["traffic"]["apps"] if not r["inspected"]}
        assert set(rows) == set(LISTED), f"exactly the three listed hosts, not {UNLISTED}: {sorted(rows)}"
        [inspected] = [r for r in inv["traffic"]["apps"] if r["inspected"]]
        assert (inspected["host"], inspected["app"], inspected["requests"]) == ("api.openai.com", "OpenAI API", 1), inspected
        assert UNLISTED not in p.stdout
        exe_of = {"claude.ai": "curl", "huggingface.co": "curl", "www.perplexity.ai": "python"}
        for host, (app, category) in LISTED.items():
            r = rows[host]
            assert (r["app"], r["category"], r["inspected"], r["connections"]) == (app, category, False, 1), r
            assert r["bytes_up"] > 0 and r["bytes_down"] > 0, r
            [proc] = r["processes"]
            assert (proc["exe"] or "").startswith(exe_of[host]), json.dumps([r, agent.api("/airlock/v1/inventory")["recent"]])
            assert isinstance(proc["pid"], int) and proc["pid"] > 0, r
            assert proc["uid"] == os.getuid() and proc["user"], r

        human = subprocess.run([str(binary("airlock")), "--addr", agent.addr, "--state-dir", str(agent.state_dir),
                                "inventory"], capture_output=True, text=True, timeout=60,
                               env=clean_env(HOME=str(home)), cwd=home)
        assert human.returncode == 0, human.stderr
        line = next(l for l in human.stdout.splitlines() if "claude.ai" in l)
        assert "Claude" in line and "no (seen, tunnelled)" in line and "curl (pid " in line, human.stdout
        line = next(l for l in human.stdout.splitlines() if "api.openai.com" in l)
        assert "OpenAI API" in line and "yes" in line, human.stdout
        assert UNLISTED not in human.stdout

        status = agent.status()
        assert status["tunnels"]["opened"] == 4
        assert status["tunnels"]["failed"]["total"] == 0
        log = agent.log()
        assert "AI app seen in a tunnel, not inspected" in log and "claude.ai" in log
    finally:
        stop(agent.proc)
        server.close()


def test_inventory_reads_configured_tools_without_following_links_or_printing_secrets(tmp_path):
    home = tmp_path / "home"
    project = home / "src" / "app"
    project.mkdir(parents=True)
    (home / ".cursor").mkdir()
    (home / ".cursor" / "mcp.json").write_text(json.dumps({"mcpServers": {
        "github": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-github", "--token", "ghp_SECRETcursor0123456789"],
                   "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_SECRETenv0123456789abcdef"}},
        "remote": {"url": "https://user:SECRETpw@mcp.example.com/mcp?api_key=SECRETquery",
                   "headers": {"Authorization": "Bearer SECRETheader0123456789"}}}}))
    elsewhere = tmp_path / "not-in-home.json"
    elsewhere.write_text(json.dumps({"mcpServers": {"hidden-server": {"command": "x"}}}))
    (home / ".claude.json").symlink_to(elsewhere)
    (home / ".codex").mkdir()
    (home / ".codex" / "config.toml").write_text('[mcp_servers.ctx]\ncommand = "npx"\nargs = ["-y", "@upstash/context7-mcp"]\n'
                                                 '[mcp_servers.ctx.env]\nCONTEXT7_API_KEY = "SECRETcodex0123456789abc"\n')
    (home / ".gemini").mkdir()
    (home / ".gemini" / "settings.json").write_text('{"mcpServers": {"broken": ')
    (project / ".mcp.json").write_text(json.dumps({"mcpServers": {"project-db": {"command": "uvx", "args": ["mcp-server-sqlite"]}}}))

    # No agent runs for this state directory: the configuration side still answers.
    state = tmp_path / "state"
    p = subprocess.run([str(binary("airlock")), "--state-dir", str(state), "--addr", "127.0.0.1:9",
                        "inventory", "--json"], capture_output=True, text=True, timeout=60,
                       env=clean_env(HOME=str(home), XDG_CONFIG_HOME=""), cwd=project)
    assert p.returncode == 0, p.stderr
    assert "SECRET" not in p.stdout, p.stdout
    assert "hidden-server" not in p.stdout, "the symbolic link was followed"
    inv = json.loads(p.stdout)
    assert inv["agent"]["running"] is False and inv["traffic"] is None
    files = {(f["tool"], Path(f["path"]).name, f["state"]): f for f in inv["config_files"]}
    cursor = files[("Cursor", "mcp.json", "found")]
    servers = {s["name"]: s for s in cursor["mcp_servers"]}
    assert servers["github"]["env"] == ["GITHUB_PERSONAL_ACCESS_TOKEN"]
    assert servers["github"]["args"][:2] == ["-y", "@modelcontextprotocol/server-github"]
    assert servers["remote"]["url"] == "https://mcp.example.com/mcp"
    assert servers["remote"]["headers"] == ["Authorization"]
    link = files[("Claude Code", ".claude.json", "unreadable")]
    assert "symbolic link" in link["reason"]
    assert files[("Codex", "config.toml", "found")]["mcp_servers"][0]["env"] == ["CONTEXT7_API_KEY"]
    assert "not valid JSON" in files[("Gemini CLI", "settings.json", "unreadable")]["reason"]
    assert files[("Claude Code", ".mcp.json", "found")]["mcp_servers"][0]["name"] == "project-db"

    human = subprocess.run([str(binary("airlock")), "--state-dir", str(state), "--addr", "127.0.0.1:9", "inventory"],
                           capture_output=True, text=True, timeout=60, env=clean_env(HOME=str(home)), cwd=project)
    assert human.returncode == 0, human.stderr
    assert "SECRET" not in human.stdout
    assert "~/.claude.json: unreadable: is a symbolic link (not followed)" in human.stdout, human.stdout
    assert "github (stdio): npx -y @modelcontextprotocol/server-github --token <redacted>" in human.stdout, human.stdout


FAILED_TUNNELS = r'''
import json, socket, subprocess, sys, threading, time
from pathlib import Path
airlockd, airlock, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
policy_text = sys.stdin.read()

# An upstream proxy that refuses denied.example and never answers anything else.
proxy = socket.socket(); proxy.bind(("127.0.0.1", 0)); proxy.listen(8)
held = []
def serve_proxy():
    while True:
        try:
            c, _ = proxy.accept()
        except OSError:
            return
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = c.recv(4096)
            if not chunk:
                break
            head += chunk
        if head.startswith(b"CONNECT denied.example"):
            c.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"); c.close()
        else:
            held.append(c)
threading.Thread(target=serve_proxy, daemon=True).start()

closed = socket.socket(); closed.bind(("127.0.0.1", 0)); closed_port = closed.getsockname()[1]; closed.close()
policy = work / "policy.toml"
policy.write_text(policy_text.replace("[upstream]\n",
    f'[upstream]\nproxy = "http://127.0.0.1:{proxy.getsockname()[1]}"\nno_proxy = ["nowhere.invalid"]\n', 1)
    .replace("connect_timeout_secs = 10", "connect_timeout_secs = 1", 1))
state = work / "state"
log = open(work / "airlockd.log", "w")
p = subprocess.Popen([airlockd, "--listen", "127.0.0.1:0", "--state-dir", str(state), "--policy", str(policy)],
                     stdout=log, stderr=subprocess.STDOUT, env={"PATH": "/usr/bin:/bin", "AIRLOCK_LOG": "info"})
try:
    deadline = time.monotonic() + 20
    while not (state / "airlockd.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    port = int(json.loads((state / "airlockd.json").read_text())["listen"].rsplit(":", 1)[1])

    def connect(target):
        s = socket.create_connection(("127.0.0.1", port), timeout=20)
        s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = dict(l.split(": ", 1) for l in lines[1:] if ": " in l)
        s.close()
        return {"status_line": lines[0], "reason": headers.get("x-airlock-tunnel-failure"), "body": body.decode(errors="replace")}

    results = {
        "refused": connect(f"127.0.0.1:{closed_port}"),
        "dns": connect("nowhere.invalid:443"),
        "timeout": connect("slow.example:443"),
        "proxy_refused": connect("denied.example:443"),
    }
    curl = subprocess.run(["curl", "-sS", "--max-time", "20", "--proxy", f"http://127.0.0.1:{port}", "https://nowhere.invalid/"],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    results["curl"] = {"code": curl.returncode, "stderr": curl.stderr}
    cli = [airlock, "--state-dir", str(state)]
    st = subprocess.run(cli + ["status", "--json"], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(work)})
    results["status"] = json.loads(st.stdout) if st.returncode == 0 else {"error": st.stderr}
    human = subprocess.run(cli + ["status"], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(work)})
    results["status_text"] = human.stdout + human.stderr
finally:
    p.terminate(); p.wait(10)
    for c in held:
        c.close()
results["log"] = (work / "airlockd.log").read_text()
print(json.dumps(results))
'''


def test_failed_tunnels_say_why_are_logged_and_counted(tmp_path):
    if not (have("unshare") and have("ip") and have("curl")):
        pytest.skip("needs unshare, ip and curl")
    script = tmp_path / "failed_tunnels.py"
    script.write_text(FAILED_TUNNELS)
    setup = f"ip link set lo up && exec {sys.executable} {script} {binary('airlockd')} {binary('airlock')} {tmp_path}"
    p = subprocess.run(["unshare", "-n", "sh", "-c", setup], input=DEFAULT_POLICY, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])

    expect = {"refused": "502", "dns": "502", "timeout": "504", "proxy_refused": "502"}
    for reason, status in expect.items():
        r = out[reason]
        assert r["status_line"].split(" ")[1] == status, (reason, r)
        assert r["reason"] == reason, (reason, r)
    assert out["dns"]["status_line"] == "HTTP/1.1 502 DNS Lookup Failed"
    assert "nowhere.invalid:443" in out["dns"]["body"]
    assert out["timeout"]["status_line"] == "HTTP/1.1 504 Connect Timed Out"
    assert "through the upstream proxy" in out["proxy_refused"]["body"]
    assert out["curl"]["code"] != 0 and "502" in out["curl"]["stderr"], out["curl"]

    failed = out["status"]["tunnels"]["failed"]
    assert (failed["refused"], failed["dns"], failed["timeout"], failed["proxy_refused"]) == (1, 2, 1, 1), failed
    assert failed["total"] == 5
    assert out["status"]["tunnels"]["opened"] == 0
    assert "Tunnels:       0 opened, 5 could not connect (dns 2, refused 1, timeout 1, proxy_refused 1)" in out["status_text"], out["status_text"]

    lines = [l for l in out["log"].splitlines() if "tunnel could not connect" in l]
    assert len(lines) == 5, out["log"]
    assert all("INFO" in l.split("tunnel could not connect")[0] for l in lines), lines
    assert any("nowhere.invalid" in l and '"dns"' in l for l in lines), lines
    assert any("denied.example" in l and '"proxy_refused"' in l for l in lines), lines
    assert any(f"127.0.0.1" in l and '"refused"' in l for l in lines), lines


def test_a_path_scoped_host_counts_read_requests_as_inspected_and_passed_through_ones_as_seen(mock, tmp_path):
    """Gemini CLI's Code Assist backend is intercepted for its generate paths only; its onboarding call is
    passed through unread, so the inventory shows the host twice: inspected, and seen."""
    host = "cloudcode-pa.googleapis.com"
    policy = mock_policy(mock) + f'\n[upstream.overrides."{host}"]\naddress = "127.0.0.1:{mock.port}"\nca_file = "{mock.ca_file}"\n'
    agent = start_agent(tmp_path / "agent", policy)
    try:
        auth = {"authorization": "Bearer ya29.e2e-inventory"}
        body = {"model": "gemini-2.5-flash", "project": "mock-project",
                "request": {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}}
        with httpx.Client(proxy=agent.proxy_url, verify=ssl.create_default_context(cafile=str(agent.bundle)),
                          trust_env=False, timeout=30) as c:
            r = c.post(f"https://{host}/v1internal:generateContent", json=body, headers=auth)
            assert r.status_code == 200, r.text
            r = c.post(f"https://{host}/v1internal:loadCodeAssist", headers=auth,
                       json={"metadata": {"ideType": "IDE_UNSPECIFIED", "pluginType": "GEMINI"}})
            assert r.status_code == 200 and "x-airlock-request-id" not in r.headers
        rows = {(r["host"], r["inspected"]): r for r in agent.api("/airlock/v1/inventory")["apps"]}
        inspected, seen = rows[(host, True)], rows[(host, False)]
        assert (inspected["app"], inspected["category"], inspected["requests"]) == ("Gemini Code Assist", "coding", 1), inspected
        assert (seen["app"], seen["requests"]) == ("Gemini Code Assist", 1), seen
    finally:
        stop(agent.proc)
