"""The Realtime API's WebSocket upgrade through the agent: recognised as `realtime`, passed through byte
for byte in both base-URL and proxy mode, and recorded when the connection closes."""

from __future__ import annotations

import socket
import ssl
import threading

from certs import make_ca, make_leaf, pem
from conftest import free_port, policy_with_override

UPGRADE = (b"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer sk-rt\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def realtime_upstream(tmp_path):
    """A TLS server standing in for api.openai.com's realtime endpoint: 101, then an upper-casing echo."""
    ca_cert, ca_key = make_ca("Realtime Upstream Root")
    leaf, key = make_leaf(ca_cert, ca_key, "api.openai.com")
    (tmp_path / "rt-ca.pem").write_bytes(pem(ca_cert))
    (tmp_path / "rt.pem").write_bytes(leaf)
    (tmp_path / "rt.key").write_bytes(key)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(tmp_path / "rt.pem", tmp_path / "rt.key")
    port = free_port()
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", port))
    lsock.listen(8)
    seen = []

    def serve(conn):
        try:
            with sctx.wrap_socket(conn, server_side=True) as s:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = s.recv(4096)
                    if not chunk:
                        return
                    head += chunk
                seen.append(head.decode())
                s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
                while True:
                    data = s.recv(4096)
                    if not data:
                        return
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
    return port, tmp_path / "rt-ca.pem", seen, lsock


def read_head(s) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, f"connection closed after {head!r}"
        head += chunk
    return head


def test_realtime_upgrade_is_passed_through_in_both_modes(fresh_agent, mock, tmp_path):
    port, ca, seen, lsock = realtime_upstream(tmp_path)
    agent = fresh_agent(policy_with_override(mock, "api.openai.com", f"127.0.0.1:{port}", ca))
    try:
        # Base-URL mode.
        with socket.create_connection(("127.0.0.1", agent.port), timeout=10) as s:
            s.sendall(UPGRADE.replace(b"{path}", b"/openai/v1/realtime?model=gpt-realtime")
                      .replace(b"{host}", f"127.0.0.1:{agent.port}".encode()))
            head = read_head(s)
            assert head.startswith(b"HTTP/1.1 101"), head
            assert b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
            s.sendall(b"hello realtime")
            assert s.recv(100) == b"HELLO REALTIME"
        assert "GET /v1/realtime?model=gpt-realtime" in seen[-1]
        assert "upgrade: websocket" in seen[-1].lower()
        rec = agent.wait_record(operation="realtime", mode="base_url")
        assert (rec["status"], rec["outcome"], rec["credential"]) == (101, "completed", "bearer")
        assert rec["response_bytes"] == len(b"HELLO REALTIME")
        # Realtime sessions are not metered yet: their cost is unknown, and the record says why.
        assert rec["cost_status"] == "unknown" and "does not meter realtime" in rec["cost_note"]

        # Proxy mode: CONNECT, TLS with the Airlock CA, then the same upgrade inside.
        cctx = ssl.create_default_context(cafile=str(agent.ca_cert))
        cctx.set_alpn_protocols(["http/1.1"])
        with socket.create_connection(("127.0.0.1", agent.port), timeout=10) as raw:
            raw.sendall(b"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n\r\n")
            assert read_head(raw).startswith(b"HTTP/1.1 200")
            with cctx.wrap_socket(raw, server_hostname="api.openai.com") as s:
                s.sendall(UPGRADE.replace(b"{path}", b"/v1/realtime?model=gpt-realtime")
                          .replace(b"{host}", b"api.openai.com"))
                assert read_head(s).startswith(b"HTTP/1.1 101")
                s.sendall(b"proxy mode")
                assert s.recv(100) == b"PROXY MODE"
        rec = agent.wait_record(operation="realtime", mode="proxy")
        assert (rec["status"], rec["outcome"]) == (101, "completed")
    finally:
        lsock.close()
