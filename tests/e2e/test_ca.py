"""The device CA as users and clients meet it: files and modes, `airlock ca ...`, real TLS clients that
trust the CA accepting intercepted hosts but rejecting anything the CA signs outside its name
constraints, and rotation when the policy grows."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading

import pytest

from certs import load_ca, make_leaf
from conftest import mock_policy, start_agent, stop


def test_ca_files_are_private_and_the_cli_reports_them(agent):
    key = agent.state_dir / "ca" / "private" / "airlock-ca.key"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert oct(key.parent.stat().st_mode & 0o777) == "0o700"
    assert agent.cli("ca", "path").stdout.strip() == str(agent.ca_cert)
    assert agent.cli("ca", "export").stdout == agent.ca_cert.read_text()
    shown = json.loads(agent.cli("ca", "show", "--json").stdout)
    status = agent.status()
    assert shown["fingerprint_sha256"] == status["ca"]["fingerprint_sha256"]
    assert "api.openai.com" in shown["permitted_domains"]
    assert shown["subject"].startswith("Airlock Device CA ")
    human = agent.cli("ca", "show").stdout
    assert status["ca"]["fingerprint_sha256"] in human and "May sign for:" in human
    # The certificate itself: a constrained CA, per openssl.
    text = subprocess.run(["openssl", "x509", "-in", str(agent.ca_cert), "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    assert "X509v3 Name Constraints: critical" in text
    assert "Permitted:" in text and "DNS:api.openai.com" in text
    excluded = text.split("Excluded:")[1]
    assert "IP:0.0.0.0/0.0.0.0" in excluded and "IP:0:0:0:0:0:0:0:0/0:0:0:0:0:0:0:0" in excluded
    assert "ASN1 OID: prime256v1" in text


def serve_once(cert_pem: bytes, key_pem: bytes, tmp_path):
    """A TLS server on 127.0.0.1 presenting `cert_pem`; returns its port."""
    (tmp_path / "srv.pem").write_bytes(cert_pem)
    (tmp_path / "srv.key").write_bytes(key_pem)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(tmp_path / "srv.pem", tmp_path / "srv.key")
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)

    def run():
        for _ in range(4):
            try:
                conn, _ = lsock.accept()
                with sctx.wrap_socket(conn, server_side=True) as s:
                    s.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            except (ssl.SSLError, OSError):
                continue

    threading.Thread(target=run, daemon=True).start()
    return lsock.getsockname()[1]


@pytest.mark.parametrize("name, accepted", [("api.openai.com", True), ("bank.example.com", False)])
def test_python_ssl_trusting_the_ca_rejects_names_outside_its_constraints(agent, tmp_path, name, accepted):
    # Sign a leaf with the CA's own key, as a thief of the key would; a permitted name is the control.
    ca_cert, ca_key = load_ca(agent.ca_cert, agent.state_dir / "ca" / "private" / "airlock-ca.key")
    leaf, key = make_leaf(ca_cert, ca_key, name)
    port = serve_once(leaf, key, tmp_path)
    cctx = ssl.create_default_context(cafile=str(agent.ca_cert))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        if accepted:
            with cctx.wrap_socket(raw, server_hostname=name) as s:
                assert s.getpeercert()["subjectAltName"] == (("DNS", name),)
        else:
            with pytest.raises(ssl.SSLCertVerificationError, match="permitted subtree violation"):
                cctx.wrap_socket(raw, server_hostname=name)


def test_curl_trusting_the_ca_rejects_names_outside_its_constraints(agent, tmp_path):
    ca_cert, ca_key = load_ca(agent.ca_cert, agent.state_dir / "ca" / "private" / "airlock-ca.key")
    leaf, key = make_leaf(ca_cert, ca_key, "bank.example.com")
    port = serve_once(leaf, key, tmp_path)
    p = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", str(agent.ca_cert), "--resolve",
                        f"bank.example.com:{port}:127.0.0.1", f"https://bank.example.com:{port}/"],
                       capture_output=True, text=True)
    assert p.returncode == 60, p.stderr  # CURLE_PEER_FAILED_VERIFICATION
    assert "permitted subtree violation" in p.stderr


def test_rotate_makes_a_ca_covering_a_host_the_policy_added(fresh_agent, mock, tmp_path):
    first = fresh_agent()
    old_fp = first.status()["ca"]["fingerprint_sha256"]
    stop(first.proc)

    # The same device restarts with a policy that intercepts one more host.
    extra = '\n[[hosts]]\nhost = "llm.corp.example"\nprovider = "corp"\napi = "openai"\nprefix = "corp"\n'
    second = start_agent(tmp_path / "restarted", mock_policy(mock, extra), state=first.state_dir)
    try:
        st = second.status()
        assert st["ca"]["fingerprint_sha256"] == old_fp
        assert st["ca"]["uncovered_hosts"] == ["llm.corp.example"]
        host = next(h for h in st["interception_hosts"] if h["host"] == "llm.corp.example")
        assert host["intercepted"] is False
        out = second.cli("status").stdout
        assert "WARNING" in out and "llm.corp.example" in out and "airlock ca rotate" in out
        # Until rotation the host is tunnelled, never served with a leaf clients would reject.
        with socket.create_connection(("127.0.0.1", second.port), timeout=10) as raw:
            raw.sendall(b"CONNECT llm.corp.example:443 HTTP/1.1\r\nHost: llm.corp.example:443\r\n\r\n")
            # Tunnelled, so it fails to connect (502/504, the reason in the status line and header).
            assert raw.recv(1024).split(b"\r\n")[0].split(b" ")[1] in (b"502", b"504")

        rotated = second.cli("ca", "rotate").stdout
        assert "New device CA" in rotated and "running agent now uses it" in rotated
        st = second.status()
        assert st["ca"]["uncovered_hosts"] == []
        assert st["ca"]["fingerprint_sha256"] != old_fp
        assert "llm.corp.example" in st["ca"]["permitted_domains"]
        assert any((first.state_dir / "ca" / "retired").iterdir()), "the old CA is kept for removal from trust stores"
        # The running agent now presents leaves from the new CA for the new host.
        cctx = ssl.create_default_context(cafile=str(second.ca_cert))
        with socket.create_connection(("127.0.0.1", second.port), timeout=10) as raw:
            raw.sendall(b"CONNECT llm.corp.example:443 HTTP/1.1\r\nHost: llm.corp.example:443\r\n\r\n")
            assert raw.recv(1024).startswith(b"HTTP/1.1 200")
            with cctx.wrap_socket(raw, server_hostname="llm.corp.example") as s:
                assert s.getpeercert()["subjectAltName"] == (("DNS", "llm.corp.example"),)
    finally:
        stop(second.proc)


def test_upstream_never_trusts_the_airlock_ca_even_when_policy_names_it(fresh_agent, mock, tmp_path):
    """An upstream presenting an Airlock-signed certificate is a loop through Airlock (or a stolen key):
    the agent refuses it even if a policy lists the Airlock CA as a trusted root."""
    from conftest import free_port, start_agent

    state = tmp_path / "state"
    port = free_port()
    policy = (mock_policy(mock).replace(f'address = "127.0.0.1:{mock.port}"\nca_file = "{mock.ca_file}"',
                                        f'address = "127.0.0.1:{port}"\nca_file = "{state}/ca/airlock-ca.pem"', 1))
    assert f"127.0.0.1:{port}" in policy
    a = start_agent(tmp_path / "w", policy, state=state)
    try:
        ca_cert, ca_key = load_ca(a.ca_cert, state / "ca" / "private" / "airlock-ca.key")
        leaf, key = make_leaf(ca_cert, ca_key, "api.openai.com")
        (tmp_path / "srv.pem").write_bytes(leaf)
        (tmp_path / "srv.key").write_bytes(key)
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(tmp_path / "srv.pem", tmp_path / "srv.key")
        lsock = socket.socket()
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(("127.0.0.1", port))
        lsock.listen(8)

        def accept_all():
            while True:
                try:
                    conn, _ = lsock.accept()
                except OSError:
                    return
                try:
                    with sctx.wrap_socket(conn, server_side=True) as s:
                        s.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                except (ssl.SSLError, OSError):
                    pass

        threading.Thread(target=accept_all, daemon=True).start()
        import httpx
        r = httpx.post(f"{a.base_url('openai')}/v1/chat/completions", json={"model": "own-ca", "messages": []},
                       headers={"authorization": "Bearer sk"}, trust_env=False, timeout=20)
        lsock.close()
        assert r.status_code == 502
        msg = r.json()["error"]["message"]
        assert "own Airlock CA" in msg and "api.openai.com" in msg
        rec = a.wait_record(model="own-ca")
        assert rec["outcome"] == "upstream_failed"
    finally:
        stop(a.proc)
