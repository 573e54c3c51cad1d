"""Hostile clients on the listener: slowloris heads and bodies, floods of headers, thousands of idle
connections, malformed CONNECT targets and lying TLS clients. During each attack a prober keeps sending
ordinary requests, and the test measures that they keep being served; the agent's memory stays under
the stated bound (read from /proc), and it never crashes. A connection from another machine is dropped,
shown for real from a non-loopback address in a network namespace of the test's own."""

from __future__ import annotations

import json
import os
import resource
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from conftest import binary, mock_policy

CHAT = "/openai/v1/chat/completions"

# Stated bounds (README "Limits"): what 5,000 idle connections may cost the agent, and how slow an
# ordinary request may get while the listener is under attack.
IDLE_CONNECTIONS = 5000
IDLE_MEMORY_BOUND_MIB = 96
PROBE_P99_BOUND_S = 0.5


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Prober:
    """Sends ordinary chat requests back to back while an attack runs; counts failures and latency."""

    def __init__(self, agent):
        self.agent = agent
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        with httpx.Client(trust_env=False, timeout=10) as c:
            while not self._stop.is_set():
                t0 = time.monotonic()
                try:
                    r = c.post(f"http://{self.agent.addr}{CHAT}", headers={"authorization": "Bearer sk"},
                               json={"model": "prober", "messages": [{"role": "user", "content": "still there?"}]})
                    if r.status_code != 200:
                        self.failures.append(f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as e:
                    self.failures.append(repr(e))
                self.latencies.append(time.monotonic() - t0)
                time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def check(self):
        assert len(self.latencies) >= 10, "the prober hardly ran"
        assert not self.failures, self.failures[:5]
        lat = sorted(self.latencies)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        assert p99 < PROBE_P99_BOUND_S, f"ordinary requests slowed to p99 {p99:.3f} s during the attack"
        return p99


def raise_nofile(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))


def test_slowloris_heads_and_bodies_are_cut_off_while_others_are_served(fresh_agent, mock):
    a = fresh_agent(mock_policy(mock, "\n[limits]\nheader_read_timeout_secs = 2\nrequest_body_idle_timeout_secs = 2\n"))
    heads = [socket.create_connection(("127.0.0.1", a.port), timeout=10) for _ in range(200)]
    bodies = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", a.port), timeout=10)
        s.sendall(f"POST {CHAT} HTTP/1.1\r\nHost: {a.addr}\r\nContent-Type: application/json\r\n"
                  f"Authorization: Bearer sk\r\nContent-Length: 1000\r\n\r\n{{".encode())
        bodies.append(s)
    closed = 0
    with Prober(a) as probe:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 5 and closed < len(heads):
            closed = 0
            for s in heads:
                try:
                    s.sendall(b"X")  # one more byte of a head that never ends
                except OSError:
                    closed += 1
            time.sleep(0.5)
    probe.check()
    assert closed == len(heads), f"only {closed} of {len(heads)} trickling heads were closed"
    answers = []
    for s in bodies:
        s.settimeout(5)
        try:
            answers.append(s.recv(4096))
        except OSError as e:
            answers.append(repr(e).encode())
        s.close()
    for ans in answers:
        assert ans.startswith(b"HTTP/1.1 408"), ans[:200]
        assert b"request_body_timeout" in ans
    for s in heads:
        s.close()


def test_floods_of_headers_get_431_and_nothing_else_suffers(agent):
    with Prober(agent) as probe:
        time.sleep(1)
        for head in [
            "".join(f"X-Flood-{i}: {i}\r\n" for i in range(10_000)),
            "X-Huge: " + "h" * (1 << 20) + "\r\n",
        ]:
            with socket.create_connection(("127.0.0.1", agent.port), timeout=10) as s:
                try:
                    s.sendall(f"GET /airlock/v1/health HTTP/1.1\r\nHost: {agent.addr}\r\n{head}\r\n".encode())
                except OSError:
                    pass  # the agent may close before taking it all
                s.settimeout(10)
                try:
                    reply = s.recv(4096)
                except OSError:
                    reply = b""
            assert reply == b"" or reply.startswith(b"HTTP/1.1 431"), reply[:100]
        time.sleep(1)
    probe.check()
    assert agent.proc.poll() is None


def test_five_thousand_idle_connections_cost_bounded_memory_and_block_nobody(fresh_agent, mock):
    raise_nofile(IDLE_CONNECTIONS + 1000)
    a = fresh_agent(mock_policy(mock, "\n[limits]\nheader_read_timeout_secs = 60\ntls_handshake_timeout_secs = 60\n"))
    httpx.post(f"http://{a.addr}{CHAT}", headers={"authorization": "Bearer sk"}, trust_env=False,
               json={"model": "warm", "messages": [{"role": "user", "content": "x"}]})
    before = rss_kib(a.proc.pid)
    socks = []
    try:
        for i in range(IDLE_CONNECTIONS):
            s = socket.create_connection(("127.0.0.1", a.port), timeout=10)
            if i % 2:  # half of them start a CONNECT to an intercepted host and never speak TLS
                s.sendall(b"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n\r\n")
            socks.append(s)
        deadline = time.monotonic() + 20
        while a.status()["connections"]["open"] < IDLE_CONNECTIONS:
            assert time.monotonic() < deadline, a.status()["connections"]
            time.sleep(0.1)
        with Prober(a) as probe:
            time.sleep(3)
        p99 = probe.check()
        grown_mib = (rss_kib(a.proc.pid) - before) / 1024
        print(f"\n{IDLE_CONNECTIONS} idle connections: agent RSS +{grown_mib:.1f} MiB, probe p99 {p99 * 1000:.1f} ms")
        assert grown_mib < IDLE_MEMORY_BOUND_MIB, f"{IDLE_CONNECTIONS} idle connections cost {grown_mib:.1f} MiB"
    finally:
        for s in socks:
            s.close()
    deadline = time.monotonic() + 10
    while a.status()["connections"]["open"] > 5:
        assert time.monotonic() < deadline, "closed connections were not released"
        time.sleep(0.1)


def test_the_connection_cap_closes_new_connections_and_recovers(fresh_agent, mock):
    a = fresh_agent(mock_policy(mock, "\n[limits]\nmax_connections = 50\n"))
    socks = [socket.create_connection(("127.0.0.1", a.port), timeout=10) for _ in range(50)]
    deadline = time.monotonic() + 5
    # The status comes over the control socket, which holds no place under the proxy port's cap.
    while a.status()["connections"]["open"] < 50:
        assert time.monotonic() < deadline, a.status()["connections"]
        time.sleep(0.05)
    # Over the cap, a new connection is closed at once.
    try:
        httpx.get(f"http://{a.addr}/airlock/v1/health", trust_env=False, timeout=5)
        assert False, "a connection over the cap was served"
    except httpx.HTTPError:
        pass
    assert a.status()["refused"]["over_connection_limit"] >= 1
    for s in socks:
        s.close()
    deadline = time.monotonic() + 5
    while True:
        try:
            httpx.get(f"http://{a.addr}/airlock/v1/health", trust_env=False, timeout=5).raise_for_status()
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "the port did not recover"
            time.sleep(0.05)


def test_malformed_connect_targets_are_refused_and_hurt_nothing(agent):
    with Prober(agent) as probe:
        time.sleep(1)
        for target in [":443", "api.openai.com:99999", "[::1", "a b c", "http://api.openai.com/",
                       "api.openai.com:", "%00:443", "x" * 5000 + ":443", "api.openai.com:443/path"]:
            with socket.create_connection(("127.0.0.1", agent.port), timeout=10) as s:
                try:
                    s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
                    s.settimeout(10)
                    reply = s.recv(4096)
                except OSError:
                    reply = b""
            assert not reply.startswith(b"HTTP/1.1 200"), (target, reply[:100])
    probe.check()


def test_a_tls_client_naming_another_host_than_it_connected_to_gets_nothing(agent):
    before = agent.status()["requests_seen"]
    with socket.create_connection(("127.0.0.1", agent.port), timeout=10) as raw:
        raw.sendall(b"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n\r\n")
        assert raw.recv(1024).startswith(b"HTTP/1.1 200")
        ctx = ssl.create_default_context(cafile=str(agent.ca_cert))
        try:
            ctx.wrap_socket(raw, server_hostname="bank.example.com")
            assert False, "the agent presented a certificate for a host it does not intercept"
        except (ssl.SSLError, OSError):
            pass
    assert agent.status()["requests_seen"] == before


PEER_PROBE = r'''
import json, socket, subprocess, sys, time, pathlib
airlockd, state = sys.argv[1], pathlib.Path(sys.argv[2])
p = subprocess.Popen([airlockd, "--listen", "127.0.0.1:0", "--state-dir", str(state)],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    rt = state / "airlockd.json"
    for _ in range(400):
        if rt.exists():
            try:
                port = int(json.loads(rt.read_text())["listen"].rsplit(":", 1)[1]); break
            except (ValueError, KeyError):
                pass
        time.sleep(0.05)
    def ask(source):
        s = socket.socket()
        s.bind((source, 0))
        s.settimeout(5)
        s.connect(("127.0.0.1", port))
        seen_as = s.getsockname()[0]
        try:
            s.sendall(f"GET /airlock/v1/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            if b"content-length:" in data.lower():
                head, _, body = data.partition(b"\r\n\r\n")
                n = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
                while len(body) < n:
                    body += s.recv(65536)
                data = head + b"\r\n\r\n" + body
        except OSError:
            data = b""
        s.close()
        return seen_as, data
    foreign_as, foreign = ask("10.199.0.1")
    local_as, local = ask("127.0.0.1")
    u = socket.socket(socket.AF_UNIX)
    u.settimeout(5)
    u.connect(str(state / "airlock.sock"))
    u.sendall(b"GET /airlock/v1/status HTTP/1.1\r\nHost: airlock\r\nConnection: close\r\n\r\n")
    answer = b""
    while chunk := u.recv(65536):
        answer += chunk
    u.close()
    status = json.loads(answer.partition(b"\r\n\r\n")[2] or b"{}")
    print(json.dumps({"foreign_as": foreign_as, "foreign": foreign.decode(errors="replace"),
                      "local": local[:15].decode(), "refused": status.get("refused", {})}))
finally:
    p.terminate(); p.wait(10)
'''


def test_a_connection_from_another_address_is_dropped(tmp_path):
    """In a network namespace of its own, with a veth pair addressed 10.199.0.1: a client bound to that
    address reaches the loopback listener (Linux routes it), and the agent drops it unanswered."""
    script = tmp_path / "peer_probe.py"
    script.write_text(PEER_PROBE)
    setup = ("ip link set lo up && ip link add airlock-a type veth peer name airlock-b && "
             "ip addr add 10.199.0.1/24 dev airlock-a && ip link set airlock-a up && ip link set airlock-b up && "
             f"exec {sys.executable} {script} {binary('airlockd')} {tmp_path / 'state'}")
    p = subprocess.run(["unshare", "-n", "sh", "-c", setup], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["foreign_as"] == "10.199.0.1", "the probe really came from a non-loopback address"
    assert out["foreign"] == "", "the agent answered a non-loopback peer"
    assert out["local"].startswith("HTTP/1.1 200")
    assert out["refused"]["non_loopback_peers"] == 1
