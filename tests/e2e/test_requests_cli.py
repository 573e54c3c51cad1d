"""`airlock requests` (list, -f, --json, filters), `airlock pause` / `resume` and the health verdict,
end to end: real SDK calls through a real airlockd, the real CLI reading its control API."""

from __future__ import annotations

import json
import os
import select
import socket
import ssl
import subprocess
import time
import uuid

import httpx
import openai
import pytest
from cryptography import x509

from conftest import binary, mock_policy, start_agent, stop

RULES = """
[models]
deny = ["gpt-4.5*"]

[pause]
allow = true
max_minutes = 15
"""


@pytest.fixture(scope="module")
def agent(mock, tmp_path_factory):
    a = start_agent(tmp_path_factory.mktemp("requests"), mock_policy(mock, RULES))
    yield a
    stop(a.proc)


def oai(agent):
    return openai.OpenAI(api_key="sk-req", base_url=agent.base_url("openai") + "/v1", max_retries=0,
                         http_client=httpx.Client(trust_env=False, timeout=10))


def call(agent, model: str, tag: str):
    try:
        oai(agent).chat.completions.create(model=model, extra_query={"m": tag},
                                           messages=[{"role": "user", "content": "hi"}])
    except openai.PermissionDeniedError:
        pass


def test_requests_lists_calls_and_says_why_one_was_refused(agent):
    tag = uuid.uuid4().hex[:8]
    call(agent, "gpt-4o-mini", tag)
    call(agent, "gpt-4.5-preview", tag)
    agent.wait_record(model="gpt-4.5-preview")
    out = agent.cli("requests", "-n", "5").stdout
    lines = out.splitlines()
    assert lines[0].startswith("TIME") and "OUTCOME" in lines[0], out
    ok = next(l for l in lines if "gpt-4o-mini" in l)
    assert "completed 200" in ok and "openai" in ok and "python" in ok, out
    i = next(i for i, l in enumerate(lines) if "gpt-4.5-preview" in l)
    assert "rejected 403" in lines[i], out
    assert "gpt-4.5*" in lines[i + 1] and "[authorize:models]" in lines[i + 1], out
    assert "\x1b[" not in out, "no colour into a pipe"

    rows = [json.loads(l) for l in agent.cli("requests", "--json", "--outcome", "rejected").stdout.splitlines()]
    assert rows and all(r["outcome"] == "rejected" for r in rows)
    assert rows[-1]["model"] == "gpt-4.5-preview" and rows[-1]["decided_by"] == "authorize:models"
    only = agent.cli("requests", "--json", "--model", "4o-mini").stdout.splitlines()
    assert only and all(json.loads(l)["model"] == "gpt-4o-mini" for l in only)


def test_follow_prints_each_new_request_once_as_it_finishes(agent):
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    p = subprocess.Popen([str(binary("airlock")), "--addr", agent.addr, "--state-dir", str(agent.state_dir),
                          "requests", "-f", "--json", "-n", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    lines = Lines(p)
    try:
        first = lines.next(10)
        assert json.loads(first)["id"], first
        tags = [uuid.uuid4().hex[:8] for _ in range(3)]
        for t in tags:
            call(agent, "gpt-4o-mini", t)
        seen = []
        deadline = time.monotonic() + 15
        while len(seen) < 3 and time.monotonic() < deadline:
            seen.append(json.loads(lines.next(deadline - time.monotonic())))
        paths = [r["path"] for r in seen]
        for t in tags:
            assert sum(t in path for path in paths) == 1, f"{t} not printed exactly once: {paths}"
        assert p.poll() is None, "-f keeps running"
    finally:
        p.terminate()
        p.wait(5)


class Lines:
    """Lines of a child's stdout as they come, with a timeout (no buffering hides a ready line)."""

    def __init__(self, p: subprocess.Popen):
        self.p, self.buf = p, b""

    def next(self, timeout: float) -> str:
        deadline = time.monotonic() + max(timeout, 0.1)
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.p.stdout], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"no line within {timeout:.0f}s (have {self.buf!r})")
            chunk = os.read(self.p.stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"airlock requests -f ended: {self.p.stderr.read().decode()}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()


def issuer_through(agent, host: str) -> str:
    """The issuer CN of the certificate a client sees for `host` through the agent's CONNECT."""
    h, port = agent.addr.rsplit(":", 1)
    with socket.create_connection((h, int(port)), timeout=10) as raw:
        raw.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += raw.recv(1)
        assert head.startswith(b"HTTP/1.1 200"), head
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
    return cert.issuer.rfc4514_string()


def test_pause_tunnels_ai_hosts_until_resumed_and_is_journaled(agent):
    s = agent.status()
    assert s["health"]["state"] == "up", s["health"]
    assert s["pause"] == {"allowed": True, "max_minutes": 15, "paused_until": None}
    ours = issuer_through(agent, "api.openai.com")
    assert "Mock Provider" not in ours and "Airlock" in ours, ours

    too_long = agent.cli("pause", "--minutes", "60", check=False)
    assert too_long.returncode == 1 and "1 to 15 minutes" in too_long.stderr, too_long.stderr
    out = agent.cli("pause", "--minutes", "5").stdout
    assert "paused for 5 minutes" in out and "airlock resume" in out, out
    assert agent.status()["pause"]["paused_until"]
    assert "PAUSED" in agent.cli("status").stdout
    paused = issuer_through(agent, "api.openai.com")
    assert paused != ours and "Mock Provider" in paused, f"still intercepted while paused: {paused}"

    assert "resumed" in agent.cli("resume").stdout
    assert agent.status()["pause"]["paused_until"] is None
    assert issuer_through(agent, "api.openai.com") == ours
    assert "was not paused" in agent.cli("resume").stdout

    events = [json.loads(l) for l in agent.cli("journal", "export", "--format", "jsonl").stdout.splitlines()]
    names = [e.get("event") or e.get("body", {}).get("event") for e in events]
    assert "interception_paused" in json.dumps(events) and "interception_resumed" in json.dumps(events), names


def test_a_policy_without_pause_refuses_it(mock, tmp_path):
    a = start_agent(tmp_path / "nopause", mock_policy(mock))
    try:
        assert a.status()["pause"]["allowed"] is False
        p = a.cli("pause", check=False)
        assert p.returncode == 1 and "does not allow pausing" in p.stderr, p.stderr
        assert "Mock Provider" not in issuer_through(a, "api.openai.com")
    finally:
        stop(a.proc)
