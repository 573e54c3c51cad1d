"""The CLI trusts only its own agent: with the agent down (its control socket silent), a program of
another user (or of the same user) answering on the agent's port is refused by `airlock env`, `run`,
`status` and `ca show|rotate`, which print no exports, send it nothing and take none of its paths or
hosts; a real agent keeps working, verified by its control socket's peer credentials and its port's
listener, and every path comes from the state directory; a state directory others could write is refused; and the user's own
HTTPS_PROXY is replaced, kept in AIRLOCK_UPSTREAM_PROXY, and explained on stderr."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from conftest import ROOT, binary, free_port, mock_policy, shared_binary, stop, wait_for_file

SYSTEM_PYTHON = "/usr/bin/python3"
UNTRUSTED, UNSAFE_STATE = 4, 5
CORP_PROXY = "http://proxy.corp.example:3128"
CLEAN = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "AIRLOCK_ADDR", "AIRLOCK_UPSTREAM_PROXY",
         "AIRLOCK_STATE_DIR", "NO_PROXY", "no_proxy")


def cli(*args: str, state: Path, addr: str | None = None, env: dict | None = None,
        user: str | None = None) -> subprocess.CompletedProcess:
    """`airlock` with a clean proxy environment (plus `env`), optionally as another user."""
    full_env = {k: v for k, v in os.environ.items() if k not in CLEAN}
    full_env.update(env or {})
    cmd = [str(shared_binary("airlock") if user else binary("airlock")), "--state-dir", str(state)]
    if addr:
        cmd += ["--addr", addr]
    if user:
        cmd = as_user(user) + cmd
    return subprocess.run(cmd + list(args), capture_output=True, text=True, env=full_env, timeout=60, cwd="/")


def as_user(user: str) -> list[str]:
    group = {"nobody": "nogroup"}.get(user, user)
    return ["setpriv", f"--reuid={user}", f"--regid={group}", "--clear-groups"]


def need_other_users(*paths: Path) -> None:
    """Skip unless we are root with setpriv, and nobody can run the binaries and the system python."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run programs as other users")
    for p in [*paths, Path(SYSTEM_PYTHON)]:
        probe = subprocess.run(as_user("nobody") + ["test", "-x", str(p)], capture_output=True)
        if probe.returncode != 0:
            pytest.skip(f"user nobody cannot run {p}")


FAKE_AGENT = r'''
import http.server, json, os, sys
port, status = int(sys.argv[1]), json.loads(sys.argv[2])
status["pid"] = status.get("pid") or os.getpid()  # a poser of its own state directory names itself
status = json.dumps(status)
hits = []
class H(http.server.BaseHTTPRequestHandler):
    def send(self, body):
        b = body.encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def do_GET(self):
        if self.path == "/__hits":
            return self.send(json.dumps(hits))
        hits.append("GET " + self.path)
        self.send(status)
    def do_POST(self):
        hits.append("POST " + self.path)
        self.send(status)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
print("ready", flush=True)
srv.serve_forever()
'''


class FakeAgent:
    """A program posing as airlockd on `port`: its status points at a fake CA and hostile hosts."""

    def __init__(self, port: int, status: dict, user: str | None):
        python = SYSTEM_PYTHON if user or os.path.exists(SYSTEM_PYTHON) else sys.executable
        cmd = [python, "-c", FAKE_AGENT, str(port), json.dumps(status)]
        self.proc = subprocess.Popen(as_user(user) + cmd if user else cmd, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, cwd="/")
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", f"fake agent did not start: {line}{self.proc.stdout.read()}"
        self.port, self.pid = port, self.proc.pid

    def hits(self) -> list[str]:
        return httpx.get(f"http://127.0.0.1:{self.port}/__hits", trust_env=False, timeout=10).json()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def hostile_status(port: int, pid: int | None, fingerprint: str) -> dict:
    """What a poser answers: the pid and fingerprint copied from the (public) runtime file, its own paths."""
    return {
        "agent": "airlockd", "version": "0.1.0", "pid": pid, "listen": f"127.0.0.1:{port}",
        "proxy_url": f"http://127.0.0.1:{port}", "state_dir": "/tmp/evil", "uptime_secs": 1,
        "policy": {"name": "evil", "source": "evil"},
        "ca": {"cert_path": "/tmp/evil/ca.pem", "bundle_path": "/tmp/evil/bundle.pem",
               "fingerprint_sha256": fingerprint, "uncovered_hosts": []},
        "interception_hosts": [{"host": "bank.example.com", "intercepted": True},
                               {"host": "*.evil.example", "intercepted": True}],
        "upstream": {"proxy": None, "proxy_source": None},
        "requests_seen": 0, "requests_in_flight": 0,
    }


@pytest.fixture
def crashed_agent(fresh_agent):
    """An agent killed with SIGKILL: its state directory and runtime file stay, its port is free."""
    a = fresh_agent(listen=f"127.0.0.1:{free_port()}")
    runtime = json.loads((a.state_dir / "airlockd.json").read_text())
    a.proc.kill()
    a.proc.wait()
    assert (a.state_dir / "airlockd.json").exists()
    return a, runtime


def assert_refused_everywhere(state: Path, addr: str | None, fake: FakeAgent, why: str):
    ca_before = (state / "ca" / "airlock-ca.pem").read_bytes()
    commands = [("env",), ("run", "--", "sh", "-c", "echo RAN"), ("status",), ("ca", "show"), ("ca", "rotate"),
                ("ca", "rotate", "--policy", str(ROOT / "policies" / "default.toml"))]
    for args in commands:
        p = cli(*args, state=state, addr=addr)
        assert p.returncode == UNTRUSTED, f"{args}: {p.returncode}\n{p.stdout}\n{p.stderr}"
        assert p.stdout == "", f"{args} printed {p.stdout!r}"
        assert f"something else answers at 127.0.0.1:{fake.port}" in p.stderr, p.stderr
        assert f"pid {fake.pid}" in p.stderr and "It is not your Airlock agent" in p.stderr, p.stderr
        assert why in p.stderr, p.stderr
        assert f"kill {fake.pid}" in p.stderr and "start airlockd" in p.stderr, p.stderr
        assert "/tmp/evil" not in p.stderr
    js = cli("status", "--json", state=state, addr=addr)
    assert js.returncode == UNTRUSTED
    out = json.loads(js.stdout)
    assert out["running"] is False and out["refused"] is True and "something else answers" in out["reason"]
    # Rotation took nothing from the poser: the CA on disk is the same certificate.
    assert (state / "ca" / "airlock-ca.pem").read_bytes() == ca_before
    # The CLI never even asked it anything: the listener was refused before a request was sent.
    assert fake.hits() == []


@pytest.mark.parametrize("user", ["root", "nobody"])
def test_a_program_on_a_dead_agents_port_is_refused(crashed_agent, user):
    a, runtime = crashed_agent
    if user != "root":
        need_other_users(shared_binary("airlock"))
    fake = FakeAgent(a.port, hostile_status(a.port, runtime["pid"], runtime["ca_fingerprint_sha256"]),
                     None if user == "root" else user)
    try:
        if user == "root":
            # Same uid as the agent: the dead pid in the runtime file gives it away.
            why = f"says the agent is pid {runtime['pid']} running as uid 0 (root), but that process is not running"
        else:
            why = "but the socket belongs to uid 65534 (nobody), not uid 0 (root)"
            assert "running as uid 65534 (nobody)" in cli("env", state=a.state_dir).stderr
        for addr in [None, a.addr]:  # the address from the runtime file, and named with --addr as well
            assert_refused_everywhere(a.state_dir, addr, fake, why)
        # `ca path` and `ca export` read only the state directory, which is fine.
        assert cli("ca", "path", state=a.state_dir).stdout.strip() == str(a.ca_cert)
    finally:
        fake.stop()
    # With the poser gone, the agent is simply not running.
    p = cli("status", state=a.state_dir)
    assert p.returncode == 3 and "not running" in p.stdout and f"pid {runtime['pid']}, which no longer listens there" in p.stdout


def test_without_a_runtime_file_whatever_answers_is_refused(crashed_agent):
    a, runtime = crashed_agent
    (a.state_dir / "airlockd.json").unlink()
    fake = FakeAgent(a.port, hostile_status(a.port, runtime["pid"], runtime["ca_fingerprint_sha256"]), None)
    try:
        for args in [("env",), ("status",), ("ca", "rotate")]:
            p = cli(*args, state=a.state_dir, addr=a.addr)
            assert p.returncode == UNTRUSTED, p.stderr
            assert p.stdout == ""
            assert "airlockd.json does not exist" in p.stderr, p.stderr
        assert fake.hits() == []
    finally:
        fake.stop()


def test_rotate_with_the_agent_down_takes_the_embedded_policy(crashed_agent):
    a, _ = crashed_agent
    p = cli("ca", "rotate", state=a.state_dir)
    assert p.returncode == 0, p.stderr
    assert "The agent will use it when it starts" in p.stdout
    shown = json.loads(cli("ca", "show", "--json", state=a.state_dir).stdout)
    assert "api.openai.com" in shown["permitted_domains"] and "openai.azure.com" in shown["permitted_domains"]


def test_a_real_agent_is_verified_and_every_path_comes_from_the_state_dir(fresh_agent, tmp_path):
    a = fresh_agent()
    # Reach the state directory through a symbolic link: the agent reports its real path, the CLI must
    # hand out the one it was given (it never takes paths from the answer).
    link = tmp_path / "state-link"
    link.symlink_to(a.state_dir)
    p = cli("env", state=link)
    assert p.returncode == 0, p.stderr
    env = {k: v.strip("'") for k, v in (l[len("export "):].split("=", 1) for l in p.stdout.splitlines())}
    assert env["HTTPS_PROXY"] == a.proxy_url and env["AIRLOCK_PROXY"] == a.proxy_url
    assert env["SSL_CERT_FILE"] == str(link / "ca" / "bundle.pem")
    assert env["NODE_EXTRA_CA_CERTS"] == str(link / "ca" / "airlock-ca.pem")
    assert "AIRLOCK_UPSTREAM_PROXY" not in env and p.stderr == ""

    st = cli("status", state=a.state_dir)
    assert st.returncode == 0 and "Airlock agent: running" in st.stdout
    assert (f"pid {a.proc.pid} of uid 0 (root) answers on the control socket (peer credentials) and holds the "
            "proxy port's listening socket" in st.stdout), st.stdout
    js = json.loads(cli("status", "--json", state=link).stdout)
    assert js["running"] is True and js["listen"] == a.addr
    assert js["ca"]["cert_path"] == str(link / "ca" / "airlock-ca.pem") and js["state_dir"] == str(link)
    assert js["ca"]["fingerprint_sha256"] == a.status()["ca"]["fingerprint_sha256"]

    run = cli("run", "--", "sh", "-c", 'echo "$HTTPS_PROXY|$CURL_CA_BUNDLE"', state=a.state_dir, addr=a.addr)
    assert run.returncode == 0 and run.stdout.strip() == f"{a.proxy_url}|{a.bundle}"
    assert cli("ca", "show", state=a.state_dir).returncode == 0


def test_an_address_other_than_the_runtime_files_is_refused(fresh_agent):
    a = fresh_agent()
    other = f"127.0.0.1:{free_port()}"
    for kw in [{"addr": other}, {"env": {"AIRLOCK_ADDR": other}}]:
        p = cli("env", state=a.state_dir, **kw)
        assert p.returncode == UNTRUSTED and p.stdout == ""
        assert f"{other}" in p.stderr and f"says {a.addr}" in p.stderr and "Drop --addr" in p.stderr


def test_a_ca_the_agent_does_not_use_is_refused(fresh_agent, tmp_path):
    a = fresh_agent()
    other = fresh_agent()
    original = a.ca_cert.read_bytes()
    shutil.copy(other.ca_cert, a.ca_cert)  # the certificate on disk is no longer the one the agent presents
    try:
        p = cli("env", state=a.state_dir)
        assert p.returncode == UNTRUSTED and p.stdout == ""
        assert f"presents the device CA SHA-256 {a.status()['ca']['fingerprint_sha256']}" in p.stderr, p.stderr
        assert "restart airlockd" in p.stderr
    finally:
        a.ca_cert.write_bytes(original)
    assert cli("env", state=a.state_dir).returncode == 0


def test_a_state_dir_others_can_write_is_refused(fresh_agent):
    a = fresh_agent()
    a.state_dir.chmod(0o777)
    try:
        for args in [("env",), ("status",), ("run", "--", "true"), ("ca", "path"), ("ca", "export")]:
            p = cli(*args, state=a.state_dir)
            assert p.returncode == UNSAFE_STATE, f"{args}: {p.returncode} {p.stderr}"
            assert p.stdout == ""
            assert "writable by its group and every other user (mode 0777)" in p.stderr, p.stderr
            assert f"chmod 711 {a.state_dir}" in p.stderr
    finally:
        a.state_dir.chmod(0o711)
    runtime = a.state_dir / "airlockd.json"
    runtime.chmod(0o666)
    try:
        p = cli("env", state=a.state_dir)
        assert p.returncode == UNSAFE_STATE and "airlockd.json is writable by" in p.stderr, p.stderr
    finally:
        runtime.chmod(0o644)
    assert cli("env", state=a.state_dir).returncode == 0


def test_a_state_dir_another_user_planted_is_refused(fresh_agent, tmp_path):
    """Another user makes a complete, consistent state directory in /tmp (their runtime file, their
    listener, a CA) and a command is pointed at it: it must not pass, because anyone could have made it."""
    need_other_users(shared_binary("airlock"))
    donor = fresh_agent()
    nobody = pwd.getpwnam("nobody")
    planted = Path(tempfile.mkdtemp(prefix="airlock-planted-", dir="/tmp"))
    try:
        (planted / "ca").mkdir()
        shutil.copy(donor.ca_cert, planted / "ca" / "airlock-ca.pem")
        port = free_port()
        fingerprint = donor.status()["ca"]["fingerprint_sha256"]
        fake = FakeAgent(port, hostile_status(port, None, fingerprint), "nobody")
        try:
            (planted / "airlockd.json").write_text(json.dumps(
                {"listen": f"127.0.0.1:{port}", "pid": fake.pid, "uid": nobody.pw_uid,
                 "ca_fingerprint_sha256": fingerprint}))
            for p in [planted, planted / "ca", planted / "ca" / "airlock-ca.pem", planted / "airlockd.json"]:
                os.chown(p, nobody.pw_uid, nobody.pw_gid)
            planted.chmod(0o711)
            p = cli("env", state=planted)
            assert p.returncode == UNSAFE_STATE and p.stdout == "", p.stderr
            assert "belongs to uid 65534 (nobody), not to you or root, and /tmp above it is writable" in p.stderr
            assert fake.hits() == []
        finally:
            fake.stop()
    finally:
        shutil.rmtree(planted)


def test_an_agent_of_another_user_is_verified_by_a_third(tmp_path):
    """airlockd runs as nobody; a user who cannot read its open files (daemon) still verifies it by the
    socket's owner and the pid running as that owner, and root verifies it by the socket itself."""
    need_other_users(shared_binary("airlock"), shared_binary("airlockd"))
    base = Path(tempfile.mkdtemp(prefix="airlock-e2e-", dir="/run"))  # root-owned parents only
    try:
        base.chmod(0o755)
        state = base / "state"
        state.mkdir(mode=0o711)
        os.chown(state, pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid)
        log = open(tmp_path / "airlockd.log", "w")
        proc = subprocess.Popen(as_user("nobody") + [str(shared_binary("airlockd")), "--listen", f"127.0.0.1:{free_port()}",
                                                     "--state-dir", str(state)],
                                stdout=log, stderr=subprocess.STDOUT, cwd="/")
        try:
            wait_for_file(state / "airlockd.json", proc, "airlockd as nobody")
            as_root = cli("status", state=state)
            assert as_root.returncode == 0, as_root.stderr
            assert (f"pid {proc.pid} of uid 65534 (nobody) answers on the control socket (peer credentials) and "
                    "holds the proxy port's listening socket" in as_root.stdout), as_root.stdout
            as_daemon = cli("status", state=state, user="daemon")
            assert as_daemon.returncode == 0, as_daemon.stderr
            assert (f"pid {proc.pid} of uid 65534 (nobody) answers on the control socket (peer credentials) and "
                    "the proxy port's listening socket belongs to that user" in as_daemon.stdout), as_daemon.stdout
            env = cli("env", state=state, user="daemon")
            assert env.returncode == 0 and f"NODE_EXTRA_CA_CERTS='{state}/ca/airlock-ca.pem'" in env.stdout
        finally:
            stop(proc)
    finally:
        shutil.rmtree(base)


def exports(stdout: str) -> dict:
    return {k: v.strip("'") for k, v in (l[len("export "):].split("=", 1) for l in stdout.splitlines())}


def test_the_users_proxy_is_replaced_kept_and_explained(fresh_agent):
    a = fresh_agent()
    p = cli("env", state=a.state_dir, env={"HTTPS_PROXY": CORP_PROXY, "https_proxy": CORP_PROXY})
    assert p.returncode == 0, p.stderr
    env = exports(p.stdout)
    assert env["HTTPS_PROXY"] == env["https_proxy"] == a.proxy_url
    assert env["AIRLOCK_UPSTREAM_PROXY"] == CORP_PROXY
    assert "warning" not in p.stdout
    assert "warning: your HTTPS_PROXY (proxy.corp.example:3128) is replaced by the agent's address" in p.stderr
    assert "does not use that proxy" in p.stderr
    assert f'upstream.proxy = "{CORP_PROXY}"' in p.stderr and f"HTTPS_PROXY={CORP_PROXY}" in p.stderr

    # A second eval in the same shell: HTTPS_PROXY is the agent, the original is remembered.
    again = cli("env", state=a.state_dir, env={"HTTPS_PROXY": a.proxy_url, "AIRLOCK_UPSTREAM_PROXY": CORP_PROXY})
    assert exports(again.stdout)["AIRLOCK_UPSTREAM_PROXY"] == CORP_PROXY
    assert "your earlier proxy (AIRLOCK_UPSTREAM_PROXY=proxy.corp.example:3128)" in again.stderr

    # Credentials are kept for the shell but never shown in a message.
    secret = "http://alice:s3cret@proxy.corp.example:3128"
    p = cli("env", state=a.state_dir, env={"HTTP_PROXY": secret})
    assert "s3cret" not in p.stderr and "alice" not in p.stderr and "credentials" in p.stderr
    assert exports(p.stdout)["AIRLOCK_UPSTREAM_PROXY"] == secret

    run = cli("run", "--", "sh", "-c", 'echo "$HTTPS_PROXY|$AIRLOCK_UPSTREAM_PROXY"', state=a.state_dir,
              env={"HTTPS_PROXY": CORP_PROXY})
    assert run.returncode == 0 and run.stdout.strip() == f"{a.proxy_url}|{CORP_PROXY}"
    assert "does not use that proxy" in run.stderr


def test_an_agent_using_the_users_proxy_says_so(fresh_agent, mock):
    policy = mock_policy(mock).replace("[upstream]\n", f'[upstream]\nproxy = "{CORP_PROXY}"\n', 1)
    a = fresh_agent(policy)
    p = cli("env", state=a.state_dir, env={"HTTPS_PROXY": "http://bob:pw@PROXY.corp.example:3128/"})
    assert p.returncode == 0, p.stderr
    assert exports(p.stdout)["HTTPS_PROXY"] == a.proxy_url
    assert ("the agent keeps sending its traffic through proxy.corp.example:3128 (upstream.proxy in its policy)"
            in p.stderr), p.stderr
    assert "warning" not in p.stderr and "pw" not in p.stderr
    st = cli("status", state=a.state_dir)
    assert f"Upstream:      through {CORP_PROXY} (policy)" in st.stdout
    # A different proxy in the user's environment gets the warning, naming the one the agent uses.
    p = cli("env", state=a.state_dir, env={"HTTPS_PROXY": "http://other.corp.example:8080"})
    assert "warning" in p.stderr and "through proxy.corp.example:3128 (upstream.proxy in its policy) instead" in p.stderr
