"""The agent's own upstream client as an operator configures it: an explicit upstream proxy in policy
carries its calls, and pooled connections idle past the policy's timeout are closed."""

from __future__ import annotations

import socket
import subprocess
import threading
import time

import httpx

from conftest import free_port, mock_policy, tokens


def connect_proxy(target_port: int):
    """A minimal HTTP CONNECT proxy sending every tunnel to 127.0.0.1:target_port; records CONNECT lines."""
    seen: list[str] = []
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)

    def pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def handle(conn):
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                return
            head += chunk
        seen.append(head.split(b"\r\n")[0].decode())
        up = socket.create_connection(("127.0.0.1", target_port))
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        threading.Thread(target=pipe, args=(conn, up), daemon=True).start()
        threading.Thread(target=pipe, args=(up, conn), daemon=True).start()

    def accept():
        while True:
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return lsock, seen


def test_policy_upstream_proxy_carries_the_agents_own_calls(fresh_agent, mock):
    lsock, seen = connect_proxy(mock.port)
    try:
        port = lsock.getsockname()[1]
        policy = mock_policy(mock).replace("[upstream]\n", f'[upstream]\nproxy = "http://127.0.0.1:{port}"\n', 1)
        a = fresh_agent(policy)
        r = httpx.post(f"{a.base_url('openai')}/v1/chat/completions", trust_env=False, timeout=20,
                       headers={"authorization": "Bearer sk"},
                       json={"model": "via-corp-proxy", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200, r.text
        assert seen and seen[0] == "CONNECT api.openai.com:443 HTTP/1.1", seen
        assert tokens(a.wait_record(model="via-corp-proxy")) == (1, 7)
    finally:
        lsock.close()


def agent_connections_to(pid: int, port: int) -> int:
    out = subprocess.run(["ss", "-tnpH", "state", "established", f"( dport = :{port} )"],
                         capture_output=True, text=True, check=True).stdout
    return sum(1 for line in out.splitlines() if f"pid={pid}," in line)


def test_idle_pooled_connections_are_closed_after_the_policy_timeout(fresh_agent, mock):
    policy = mock_policy(mock).replace("pool_idle_timeout_secs = 30", "pool_idle_timeout_secs = 1", 1)
    a = fresh_agent(policy)
    r = httpx.post(f"{a.base_url('openai')}/v1/chat/completions", trust_env=False, timeout=20,
                   headers={"authorization": "Bearer sk"},
                   json={"model": "idle-test", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200
    assert agent_connections_to(a.proc.pid, mock.port) == 1, "the connection is kept for reuse"
    deadline = time.monotonic() + 10
    while agent_connections_to(a.proc.pid, mock.port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert agent_connections_to(a.proc.pid, mock.port) == 0, "idle past 1 s, the pooled connection was closed"


def test_upstream_negotiates_http2_unless_the_policy_keeps_to_http1(fresh_agent, mock):
    def version_seen(agent, marker):
        r = httpx.post(f"{agent.base_url('openai')}/v1/chat/completions", trust_env=False, timeout=20,
                       headers={"authorization": "Bearer sk", "x-e2e": marker},
                       json={"model": marker, "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200
        return [q for q in mock.requests() if q["headers"].get("x-e2e") == marker][-1]["version"]

    a = fresh_agent()
    assert version_seen(a, "proto-default") == "HTTP/2.0"
    b = fresh_agent(mock_policy(mock).replace("[upstream]\n", "[upstream]\nhttp2 = false\n", 1))
    assert version_seen(b, "proto-h1") == "HTTP/1.1"
