"""`airlock doctor` finds each broken setup and passes a good one: with no agent the `agent` check
fails and says how to start it; a device CA no trust store holds fails `ca-trust` with `airlock setup`;
a shell without the proxy variables fails `shell` with `eval "$(airlock env)"` and passes once that
environment is applied; an enrolled agent whose bundle expired fails `policy`; and an agent whose CA
`airlock setup` trusted, with the environment applied, passes every check (the offline parts warn or
skip) and exits 0, its live self-test seeing the device CA on an intercepted host and a local TLS
server's own certificate through the tunnel. The trust stores are the system ones, so the tests that
read or write them run in a private mount namespace (`unshare -m`) over copies of /etc/ssl and
/usr/local/share/ca-certificates: the machine's own stores are never touched."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from certs import make_ca, make_leaf, pem
from conftest import binary, proxy_env, start_agent, stop

IDS = ["agent", "policy", "ca", "ca-trust", "shell", "self-test", "clock", "bypass"]
CLEAN = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "AIRLOCK_ADDR",
         "AIRLOCK_STATE_DIR", "AIRLOCK_UPSTREAM_PROXY", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
         "CURL_CA_BUNDLE", "NO_COLOR")
FLEET = "doctor-fleet"


def clean_env(home: Path, extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CLEAN}
    env["HOME"] = str(home)
    env.update(extra or {})
    return env


def private_stores(tmp: Path) -> list[str]:
    """A command prefix running its command with copies of the system trust stores mounted over them."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.fail("the trust-store checks run in `unshare -m`, which needs root (as CI has)")
    ssl_copy, local_copy = tmp / "etc-ssl", tmp / "local-ca"
    shutil.copytree("/etc/ssl", ssl_copy, symlinks=True)
    shutil.copytree("/usr/local/share/ca-certificates", local_copy, symlinks=True)
    script = 'mount --bind "$1" /etc/ssl && mount --bind "$2" /usr/local/share/ca-certificates && shift 2 && ' \
             'if [ -n "$SETUP" ]; then "$1" --state-dir "$3" setup --system --only system,java --no-env --yes >&2 || exit 9; fi && ' \
             'exec "$@"'
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", str(ssl_copy), str(local_copy)]


def doctor(state: Path, *args: str, env: dict, prefix: list[str] | None = None,
           as_json: bool = True) -> tuple[int, dict | str, str]:
    cmd = [*(prefix or []), str(binary("airlock")), "--state-dir", str(state), "doctor", *(["--json"] if as_json else []), *args]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    if not as_json:
        return p.returncode, p.stdout, p.stderr
    assert p.stdout.strip(), f"no output (exit {p.returncode}): {p.stderr}"
    out = json.loads(p.stdout)
    assert [c["id"] for c in out["checks"]] == IDS, out
    assert out["ok"] == (p.returncode == 0) and p.returncode in (0, 1), (p.returncode, out)
    return p.returncode, out, p.stderr


def check(out: dict, cid: str) -> dict:
    return next(c for c in out["checks"] if c["id"] == cid)


class TlsServer:
    """A TLS server on 127.0.0.1 with a certificate of its own CA: a host that is tunnelled, not
    intercepted."""

    def __init__(self, tmp: Path):
        ca, key = make_ca("Doctor test site CA")
        leaf, leaf_key = make_leaf(ca, key, "localhost")
        (tmp / "site.pem").write_bytes(leaf + pem(ca))
        (tmp / "site.key").write_bytes(leaf_key)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(tmp / "site.pem", tmp / "site.key")
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.handshakes = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                conn.settimeout(5)
                with self.ctx.wrap_socket(conn, server_side=True):
                    self.handshakes += 1
            except (OSError, ssl.SSLError):
                conn.close()


def test_no_agent_fails_the_agent_check_and_says_how_to_start_it(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    rc, out, _ = doctor(state, env=clean_env(tmp_path))
    assert rc == 1 and out["ok"] is False
    agent = check(out, "agent")
    assert agent["status"] == "fail" and agent["summary"] == "not running"
    assert agent["fix"] == f"airlockd --state-dir {state} (a user agent)", agent
    assert all(c["status"] == "skip" for c in out["checks"][1:]), out
    rc, text, _ = doctor(state, env=clean_env(tmp_path), as_json=False)
    assert rc == 1 and "fail  agent     not running" in text and f"fix: airlockd --state-dir {state}" in text
    assert "\x1b[" not in text  # not a terminal: no colour


def test_doctor_finds_an_untrusted_ca_and_an_unset_shell_and_passes_a_good_setup(fresh_agent, tmp_path):
    agent = fresh_agent()
    home = tmp_path / "home"
    home.mkdir()
    site = TlsServer(tmp_path)
    tunnel = ["--tunnel-host", f"127.0.0.1:{site.port}"]

    # (c) this shell has no proxy or CA variables.
    rc, out, _ = doctor(agent.state_dir, *tunnel, env=clean_env(home))
    shell = check(out, "shell")
    assert rc == 1 and shell["status"] == "fail", shell
    assert "HTTPS_PROXY is not set" in shell["summary"] and shell["fix"].startswith('eval "$(airlock env)"'), shell
    # A NO_PROXY that sends an AI host around the agent is caught too.
    env = clean_env(home, {**proxy_env(agent), "NO_PROXY": "localhost,.openai.com"})
    shell = check(doctor(agent.state_dir, *tunnel, env=env)[1], "shell")
    assert shell["status"] == "fail" and ".openai.com" in shell["summary"], shell
    # With what `airlock env` exports, the shell passes; the self-test runs live.
    _, out, _ = doctor(agent.state_dir, *tunnel, env=clean_env(home, proxy_env(agent)))
    assert check(out, "shell")["status"] == "pass", check(out, "shell")
    test = check(out, "self-test")
    assert test["status"] == "pass", test
    assert test["details"]["intercepted"]["chains_to_device_ca"] is True
    assert test["details"]["tunnelled"]["chains_to_device_ca"] is False and site.handshakes >= 1

    # (b) stores that do not hold this agent's CA (fresh copies of the system ones).
    rc, out, _ = doctor(agent.state_dir, *tunnel, env=clean_env(home, proxy_env(agent)),
                        prefix=private_stores(tmp_path / "untrusted"))
    trust = check(out, "ca-trust")
    assert rc == 1 and trust["status"] == "fail" and trust["fix"] == "airlock setup", trust
    assert "system store" in trust["summary"], trust

    # (e) after `airlock setup` trusted it there, everything passes (offline parts warn or skip).
    env = clean_env(home, {**proxy_env(agent), "SETUP": "1"})
    rc, out, err = doctor(agent.state_dir, *tunnel, env=env, prefix=private_stores(tmp_path / "trusted"))
    bad = [c for c in out["checks"] if c["status"] not in ("pass", "warn", "skip")]
    assert rc == 0 and out["ok"] is True and not bad, (bad, err)
    for cid in ("agent", "policy", "ca", "ca-trust", "shell", "self-test", "clock"):
        assert check(out, cid)["status"] == "pass", check(out, cid)
    assert check(out, "bypass")["status"] in ("pass", "skip"), check(out, "bypass")


def test_the_default_tunnel_host_unreachable_offline_is_a_warning_not_a_failure(fresh_agent, tmp_path):
    agent = fresh_agent()
    _, out, _ = doctor(agent.state_dir, "--tunnel-host", "doctor-offline.invalid:443",
                       env=clean_env(tmp_path, proxy_env(agent)))
    test = check(out, "self-test")
    assert test["status"] == "warn" and "--tunnel-host" in test["summary"], test
    assert test["details"]["intercepted"]["chains_to_device_ca"] is True, test
    assert test["details"]["tunnelled"]["result"] == "connect_refused", test


def airlock(*args: str) -> str:
    p = subprocess.run([str(binary("airlock")), *args], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"airlock {' '.join(args)}: {p.stdout}\n{p.stderr}"
    return p.stdout


def test_an_expired_fleet_bundle_fails_the_policy_check(mock, tmp_path):
    from conftest import mock_policy
    keys, config = tmp_path / "keys", tmp_path / "config"
    keys.mkdir()
    config.mkdir()
    airlock("policy", "keygen", str(keys / "a.key"))
    pub = (keys / "a.key.pub").read_text()
    (config / "enrollment.toml").write_text(
        f'fleet = "{FLEET}"\npubkeys = [\n"""{pub}"""\n]\ninterval_secs = 1\nfail_mode = "open"\n')
    src = tmp_path / "short.toml"
    src.write_text(mock_policy(mock).replace('name = "airlock-default"', 'name = "short-lived"', 1))
    bundle = tmp_path / "short.bundle"
    agent = start_agent(tmp_path / "agent", None, extra_args=["--config-dir", str(config)])
    try:
        airlock("policy", "build", str(src), "--key", str(keys / "a.key"), "--fleet", FLEET, "--version", "1",
                "--out", str(bundle), "--expires-in", "4s")
        assert "applied: version 1" in agent.cli("policy", "apply", str(bundle)).stdout
        deadline = time.monotonic() + 10
        while agent.status()["policy"]["expired"] is not True and time.monotonic() < deadline:
            time.sleep(0.2)
        rc, out, _ = doctor(agent.state_dir, "--tunnel-host", "doctor-offline.invalid:443",
                            env=clean_env(tmp_path, proxy_env(agent)))
        policy = check(out, "policy")
        assert rc == 1 and policy["status"] == "fail", policy
        assert "expired" in policy["summary"] and "airlock policy apply" in policy["fix"], policy
        assert policy["details"]["fleet"] == FLEET and policy["details"]["version"] == 1, policy
    finally:
        stop(agent.proc)
