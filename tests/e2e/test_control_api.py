"""The control API lives on a unix socket in the state directory, and the caller's peer credentials
decide what they may do: a second local user (made here with useradd) reads the status with
`airlock status`, sees only the records of their own requests, and is refused every write (403, naming
who may) — `airlock ca rotate` included; root and the agent's own user may write; requests carrying
Origin or Referer are refused whoever sends them. The proxy port keeps only proxying, the PAC file and
a bare health check. The socket outlives no clean shutdown, a stale one left by a killed agent does not
stop the next start, and a live one stops a second agent from taking over the state directory. The CLI
talks only to a socket served by the process the runtime file names."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import httpx
import pytest

from conftest import binary, mock_policy, shared_binary, start_agent, stop, wait_for_file

UNTRUSTED = 4
CLEAN = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "AIRLOCK_ADDR", "AIRLOCK_STATE_DIR",
         "AIRLOCK_SOCKET", "NO_PROXY", "no_proxy")


@pytest.fixture(scope="module")
def other_user():
    """A throwaway unprivileged local user (and its group), removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("making a second local user needs root (useradd)")
    for tool in ("useradd", "userdel", "setpriv", "curl"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is missing, so the test cannot act as a second local user")
    name = f"alq{uuid.uuid4().hex[:10]}"
    made = subprocess.run(["useradd", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", name],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"useradd could not make a user here: {made.stderr.strip()}")
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], capture_output=True)
        try:
            grp.getgrnam(name)
            subprocess.run(["groupdel", name], capture_output=True)
        except KeyError:
            pass


def as_user(user) -> list[str]:
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]


def run_as(user, argv: list, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in CLEAN}
    full_env.update(env or {})
    prefix = as_user(user) if user is not None else []
    return subprocess.run(prefix + [str(a) for a in argv], capture_output=True, text=True, env=full_env,
                          timeout=timeout, cwd="/")


def socket_call(user, sock: Path, method: str, path: str, headers: dict | None = None) -> tuple[int, dict]:
    """A raw request over the control socket, sent by `user`'s own curl (None: root)."""
    argv = ["curl", "-sS", "--max-time", "20", "--unix-socket", sock, "-X", method, "-o", "-", "-w", "\n%{http_code}"]
    for k, v in (headers or {}).items():
        argv += ["-H", f"{k}: {v}"]
    p = run_as(user, argv + [f"http://airlock{path}"])
    assert p.returncode == 0, p.stderr
    body, _, code = p.stdout.rpartition("\n")
    return int(code), json.loads(body)


def cli_as(user, agent, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    airlock = shared_binary("airlock") if user is not None else binary("airlock")
    return run_as(user, [airlock, "--state-dir", agent.state_dir, *args], env=env)


def chat_as(user, agent, model: str, proxy_mode: bool = False) -> None:
    """One chat completion through the agent to the mock, sent by `user`'s curl."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]})
    if proxy_mode:
        target = ["--proxy", agent.proxy_url, "--cacert", agent.ca_cert, "https://api.openai.com/v1/chat/completions"]
    else:
        target = [f"{agent.base_url('openai')}/v1/chat/completions"]
    p = run_as(user, ["curl", "-sS", "--fail-with-body", "--max-time", "30", "-H", "authorization: Bearer sk-test",
                      "-H", "content-type: application/json", "-d", body, *target])
    assert p.returncode == 0, f"{p.stdout}\n{p.stderr}"


@pytest.fixture
def shared_agent(mock, tmp_path):
    """An agent run by root with its state where other users can reach it: a root-owned 0755 parent
    (pytest's own temporary directories are private to root)."""
    base = Path(tempfile.mkdtemp(prefix="airlock-ctl-", dir="/run"))
    base.chmod(0o755)
    started = []

    def make(**kw):
        a = start_agent(tmp_path / f"agent{len(started)}", mock_policy(mock), state=base / "state", **kw)
        started.append(a)
        return a

    yield make
    for a in started:
        stop(a.proc)
    shutil.rmtree(base, ignore_errors=True)


def test_another_user_reads_the_status_but_may_not_write(shared_agent, other_user):
    a = shared_agent()
    sock = a.control_socket
    assert stat.S_ISSOCK(os.lstat(sock).st_mode) and stat.S_IMODE(os.lstat(sock).st_mode) == 0o666
    assert stat.S_IMODE(os.stat(a.state_dir).st_mode) == 0o711, "traversable by others, not listable"
    assert a.status()["control_socket"] == str(sock)
    assert json.loads((a.state_dir / "airlockd.json").read_text())["control_socket"] == str(sock)

    code, st = socket_call(other_user, sock, "GET", "/airlock/v1/status")
    assert code == 200 and st["pid"] == a.proc.pid
    assert st["caller"] == {"uid": other_user.pw_uid, "pid": st["caller"]["pid"], "access": "read", "records": "own"}
    assert socket_call(other_user, sock, "GET", "/airlock/v1/health") == (200, {"status": "ok"})
    code, inv = socket_call(other_user, sock, "GET", "/airlock/v1/inventory")
    assert code == 200 and inv["all_users"] is False, inv

    p = cli_as(other_user, a, "status")
    assert p.returncode == 0, p.stderr
    assert "Airlock agent: running" in p.stdout
    assert f"pid {a.proc.pid} of uid 0 (root) answers on the control socket (peer credentials)" in p.stdout, p.stdout
    assert "you may read it, and see your own requests" in p.stdout
    js = json.loads(cli_as(other_user, a, "status", "--json").stdout)
    assert js["running"] is True and js["caller"]["access"] == "read" and js["control_socket"] == str(sock)

    # Writes: refused, saying who may; the CA is not reloaded, and `ca rotate` replaces nothing.
    ca_before = a.ca_cert.read_bytes()
    code, err = socket_call(other_user, sock, "POST", "/airlock/v1/ca/reload")
    assert code == 403 and err["error"]["type"] == "forbidden", err
    msg = err["error"]["message"]
    assert msg.startswith("POST /airlock/v1/ca/reload may only be done by root (uid 0); you are "), msg
    assert f"{other_user.pw_name} (uid {other_user.pw_uid})" in msg and "sudo" in msg, msg
    p = cli_as(other_user, a, "ca", "rotate")
    assert p.returncode == 1 and p.stdout == "", p.stdout
    assert "`airlock ca rotate` may only be done by root" in p.stderr, p.stderr
    assert f"you are uid {other_user.pw_uid} ({other_user.pw_name})" in p.stderr and "sudo" in p.stderr
    assert a.ca_cert.read_bytes() == ca_before
    # Nor may they apply a policy bundle: refused before the body is read, the policy unchanged.
    code, err = socket_call(other_user, sock, "POST", "/airlock/v1/policy/apply")
    assert code == 403 and err["error"]["type"] == "forbidden", err
    assert err["error"]["message"].startswith("POST /airlock/v1/policy/apply may only be done by root"), err
    # Nor set an org credential, though they may list the names.
    code, err = socket_call(other_user, sock, "POST", "/airlock/v1/credentials/set?name=openai-org")
    assert code == 403 and err["error"]["message"].startswith("POST /airlock/v1/credentials/set may only be done by root"), err
    code, names = socket_call(other_user, sock, "GET", "/airlock/v1/credentials")
    assert code == 200 and "credentials" in names, names
    code, pol = socket_call(other_user, sock, "GET", "/airlock/v1/policy")
    assert code == 200 and pol["source"] == a.status()["policy"]["source"], pol
    # Root may.
    code, after = socket_call(None, sock, "POST", "/airlock/v1/ca/reload")
    assert code == 200 and after["ca"]["fingerprint_sha256"] == a.status()["ca"]["fingerprint_sha256"]
    assert "control API: refused a write" in a.log()


def test_each_user_sees_only_their_own_records_and_root_sees_all(shared_agent, other_user):
    a = shared_agent()
    tag = uuid.uuid4().hex[:6]
    chat_as(None, a, f"ctl-root-{tag}")
    chat_as(other_user, a, f"ctl-user-{tag}")
    chat_as(other_user, a, f"ctl-user-proxy-{tag}", proxy_mode=True)
    mine = {f"ctl-user-{tag}", f"ctl-user-proxy-{tag}"}
    root_rec = a.wait_record(model=f"ctl-root-{tag}")
    user_recs = [a.wait_record(model=m) for m in sorted(mine)]
    assert root_rec["uid"] == 0
    assert [r["uid"] for r in user_recs] == [other_user.pw_uid] * 2, user_recs
    assert {r["mode"] for r in user_recs} == {"base_url", "proxy"}

    code, seen = socket_call(other_user, a.control_socket, "GET", "/airlock/v1/requests?limit=1000")
    assert code == 200 and seen["all_users"] is False and seen["uid"] == other_user.pw_uid
    assert {r["model"] for r in seen["records"]} == mine, seen["records"]
    assert all(r["uid"] == other_user.pw_uid for r in seen["records"])
    every = a.records()
    assert {f"ctl-root-{tag}", *mine} <= {r["model"] for r in every}
    # The journal keeps the uid too: exported through the socket, the other user gets their own
    # requests (and no one else's), root gets everyone's; the file itself is the agent's alone.
    p = cli_as(other_user, a, "journal", "export")
    assert p.returncode == 0, p.stderr
    theirs = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    requests = [r for r in theirs if r["journal"]["kind"] != "event"]
    assert {r["model"] for r in requests} == mine, theirs
    assert all(r["journal"]["uid"] == other_user.pw_uid for r in requests)
    everyone = [json.loads(l) for l in a.cli("journal", "export").stdout.splitlines() if l.strip()]
    assert {(r.get("model"), r["journal"]["uid"]) for r in everyone if r.get("model") in mine | {f"ctl-root-{tag}"}} \
        == {(m, other_user.pw_uid) for m in mine} | {(f"ctl-root-{tag}", 0)}
    for f in ("journal.db", "journal.db-wal"):
        assert stat.S_IMODE(os.stat(a.state_dir / f).st_mode) == 0o600, f
    p = cli_as(other_user, a, "journal", "verify")
    assert p.returncode == 0 and "chain intact" in p.stdout, (p.stdout, p.stderr)
    p = cli_as(other_user, a, "journal", "export", "--file", a.state_dir / "journal.db")
    assert p.returncode != 0 and "private to the agent's user" in p.stderr, (p.stdout, p.stderr)


def test_the_agents_own_user_may_write_and_the_refusal_names_it(tmp_path, other_user):
    """airlockd run as nobody: nobody may reload, another user is told "root or nobody (uid 65534)"."""
    base = Path(tempfile.mkdtemp(prefix="airlock-ctl-", dir="/run"))
    try:
        base.chmod(0o755)
        state = base / "state"
        state.mkdir(mode=0o711)
        nobody = pwd.getpwnam("nobody")
        os.chown(state, nobody.pw_uid, nobody.pw_gid)
        log = open(tmp_path / "airlockd.log", "w")
        proc = subprocess.Popen(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                                 str(shared_binary("airlockd")), "--listen", "127.0.0.1:0", "--state-dir", str(state)],
                                stdout=log, stderr=subprocess.STDOUT, cwd="/")
        try:
            wait_for_file(state / "airlockd.json", proc, "airlockd as nobody")
            sock = state / "airlock.sock"
            assert os.lstat(sock).st_uid == nobody.pw_uid
            code, err = socket_call(other_user, sock, "POST", "/airlock/v1/ca/reload")
            assert code == 403, err
            assert "may only be done by root or nobody (uid 65534); you are" in err["error"]["message"], err
            assert "sudo -u nobody" in err["error"]["message"]
            code, ok = socket_call(nobody, sock, "POST", "/airlock/v1/ca/reload")
            assert code == 200 and ok["pid"] == proc.pid, ok
            code, st = socket_call(nobody, sock, "GET", "/airlock/v1/status")
            assert st["caller"]["access"] == "write" and st["caller"]["records"] == "all users"
            assert socket_call(None, sock, "GET", "/airlock/v1/status")[1]["caller"]["access"] == "write"
            # The CLI as the third user: reads, and refuses to rotate naming the agent's user.
            p = run_as(other_user, [shared_binary("airlock"), "--state-dir", state, "status"])
            assert p.returncode == 0, p.stderr
            assert "and the proxy port's listening socket belongs to that user" in p.stdout, p.stdout
            p = run_as(other_user, [shared_binary("airlock"), "--state-dir", state, "ca", "rotate"])
            assert p.returncode == 1 and "may only be done by root or uid 65534 (nobody)" in p.stderr, p.stderr
            stop(proc)
            assert proc.returncode == 0
            assert not sock.exists(), "a clean shutdown removes the socket"
        finally:
            stop(proc)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_requests_a_browser_could_send_are_refused(agent):
    before = agent.log().count("refused a request a browser could have sent")
    for header in [{"Origin": "https://evil.example"}, {"Origin": "null"}, {"Referer": "https://evil.example/x"}]:
        for method, path in [("GET", "/airlock/v1/status"), ("GET", "/airlock/v1/requests"),
                             ("POST", "/airlock/v1/ca/reload")]:
            r = agent.control(method, path, headers=header)
            assert r.status_code == 403, (header, path, r.text)
            assert r.json()["error"]["type"] == "browser_request_refused"
            assert r.headers["x-frame-options"] == "DENY"
            assert r.headers["content-security-policy"] == "default-src 'none'"
    assert agent.log().count("refused a request a browser could have sent") >= before + 9


def test_unknown_paths_wrong_methods_and_big_bodies(agent):
    r = agent.control("GET", "/airlock/v1/nope")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
    assert "GET /airlock/v1/status" in r.json()["error"]["message"]
    assert {"method": "POST", "path": "/airlock/v1/ca/reload", "access": "write"} in r.json()["routes"]
    r = agent.control("DELETE", "/airlock/v1/requests")
    assert r.status_code == 405 and r.headers["allow"] == "GET"
    r = agent.control("POST", "/airlock/v1/ca/reload", content=b"x" * (8 << 20 | 1))
    assert r.status_code == 413 and r.json()["error"]["type"] == "payload_too_large"


def test_the_proxy_port_serves_only_proxying_the_pac_and_health(agent):
    for path in ["/airlock/v1/status", "/airlock/v1/requests", "/airlock/v1/requests?limit=5",
                 "/airlock/v1/inventory", "/airlock/v1/ca/reload", "/airlock"]:
        for method in ["GET", "POST"]:
            r = httpx.request(method, f"http://{agent.addr}{path}", trust_env=False, timeout=10)
            assert r.status_code == 404, (method, path, r.status_code)
            err = r.json()["error"]
            assert err["code"] == "control_api_moved", err
            assert str(agent.control_socket) in err["message"] and "`airlock status`" in err["message"], err
            assert "records" not in r.json()
    r = httpx.get(f"http://{agent.addr}/airlock/v1/health", trust_env=False, timeout=10)
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = httpx.get(f"http://{agent.addr}/proxy.pac", trust_env=False, timeout=10)
    assert r.status_code == 200 and "FindProxyForURL" in r.text
    # The port's own browser protections stay.
    r = httpx.get(f"http://{agent.addr}/airlock/v1/health", headers={"referer": "https://evil.example"},
                  trust_env=False, timeout=10)
    assert r.status_code == 403 and r.json()["airlock"]["type"] == "browser_request_refused"


def test_a_stale_socket_is_replaced_a_live_one_is_refused_and_a_clean_stop_removes_it(fresh_agent, tmp_path):
    a = fresh_agent()
    state, sock = a.state_dir, a.control_socket
    # A second agent on the same state directory is refused, and leaves the first one's files alone.
    second = subprocess.run([str(binary("airlockd")), "--listen", "127.0.0.1:0", "--state-dir", str(state)],
                            capture_output=True, text=True, timeout=30)
    assert second.returncode != 0
    assert f"control socket {sock}: it is served by another running agent (pid {a.proc.pid})" in second.stderr, \
        second.stderr
    assert json.loads((state / "airlockd.json").read_text())["pid"] == a.proc.pid
    assert a.api("/airlock/v1/health") == {"status": "ok"}

    # Killed: the socket file stays behind, answering nobody; the next start replaces it.
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    assert stat.S_ISSOCK(os.lstat(sock).st_mode)
    with pytest.raises(ConnectionRefusedError):
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(str(sock))
        finally:
            s.close()
    b = fresh_agent(state=state)
    assert b.status()["pid"] == b.proc.pid
    assert "replacing the control socket left by an agent that is gone" in b.log()

    # Something that is not a socket at the path is not removed: the agent refuses to start.
    stop(b.proc)
    assert b.proc.returncode == 0
    assert not sock.exists() and not (state / "airlockd.json").exists(), "a clean shutdown removes both"
    sock.write_text("not a socket")
    p = subprocess.run([str(binary("airlockd")), "--listen", "127.0.0.1:0", "--state-dir", str(state)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "exists and is not a socket" in p.stderr, p.stderr
    assert sock.read_text() == "not a socket"


FAKE_SOCKET = r'''
import os, socket, sys
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
os.chmod(path, 0o666)
s.listen(8)
print("ready", flush=True)
got = 0
while True:
    c, _ = s.accept()
    c.settimeout(2)
    try:
        data = c.recv(65536)
    except OSError:
        data = b""
    got += len(data)
    sys.stderr.write(f"got {got}\n"); sys.stderr.flush()
    c.close()
'''


def test_the_cli_talks_only_to_a_socket_served_by_the_agent(fresh_agent, tmp_path):
    """A socket served by another process — even of the agent's own user — is refused before a byte
    is sent, whether named with --socket or $AIRLOCK_SOCKET."""
    a = fresh_agent()
    fake_path = tmp_path / "fake.sock"
    fake = subprocess.Popen([sys.executable, "-c", FAKE_SOCKET, str(fake_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert fake.stdout.readline().strip() == "ready"
        for how in [{"args": ["--socket", str(fake_path)]}, {"env": {"AIRLOCK_SOCKET": str(fake_path)}}]:
            p = run_as(None, [binary("airlock"), "--state-dir", a.state_dir, *how.get("args", []), "status"],
                       env=how.get("env"))
            assert p.returncode == UNTRUSTED, p.stderr
            assert f"something else answers on the control socket {fake_path}" in p.stderr, p.stderr
            assert f"pid {fake.pid}" in p.stderr and f"says the agent is pid {a.proc.pid}" in p.stderr, p.stderr
            assert ("given with --socket" if "args" in how else "given in $AIRLOCK_SOCKET") in p.stderr
        # The real socket, named explicitly, is fine.
        p = run_as(None, [binary("airlock"), "--state-dir", a.state_dir, "--socket", a.control_socket, "status"])
        assert p.returncode == 0, p.stderr
    finally:
        fake.kill()
        _, err = fake.communicate(timeout=10)
    assert "got" not in err or all(line.endswith(" 0") for line in err.split("\n") if line.startswith("got")), err
