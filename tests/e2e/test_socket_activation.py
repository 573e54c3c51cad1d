"""Socket activation, as systemd's airlockd.socket / airlockd-control.socket give it: the proxy port and
the control socket are made and held by the service manager — here `systemd-socket-activate` (from
Debian's systemd package) with `--fdname=proxy:control` — and airlockd is restarted under them by a
small loop standing in for `Restart=always` (each instance started with LISTEN_PID set to its own
pid). While clients keep opening connections through the proxy (the bare health check, and HTTPS
through CONNECT to an intercepted host with the mock provider behind), the daemon is stopped with
SIGTERM and killed with SIGKILL several times: no connection is ever refused (the port stays open and
connections wait in its backlog for the next instance); only a connection the old instance had
already accepted can end with it (dropped by a SIGKILL, or — on a tunnel opened just before a SIGTERM
— answered 503 by the stopping agent), and after each restart `airlock status`
verifies the new instance again — its pid holds the sockets systemd made and wrote every answer
(kernel credentials). The same check run as an unprivileged user against an agent running as a
service user, whose open files that user cannot see, still verifies it. And a control socket made by
the service manager but held, or answered, by something other than the runtime file's pid is
refused."""

from __future__ import annotations

import json
import os
import pwd
import grp
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from conftest import binary, free_port, mock_policy, shared_binary, stop

ACTIVATE = shutil.which("systemd-socket-activate") or "/usr/bin/systemd-socket-activate"
UNTRUSTED = 4
CLEAN = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "AIRLOCK_ADDR", "AIRLOCK_STATE_DIR",
         "AIRLOCK_SOCKET", "NO_PROXY", "no_proxy", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES",
         "NOTIFY_SOCKET")

pytestmark = pytest.mark.skipif(not os.path.exists(ACTIVATE),
                                reason="systemd-socket-activate (Debian's systemd package) is not installed")

# Restart=always, RestartSec: each airlockd gets LISTEN_PID=its own pid ($$ of the sh that execs it)
# and inherits the listening sockets (fds 3 and 4) that stay open in this loop between instances.
LOOP = r"""#!/bin/sh
trap 'kill -TERM $child 2>/dev/null; wait $child; exit 0' TERM INT
while [ ! -e "$AIRLOCK_TEST_DIR/stop" ]; do
    sh -c 'LISTEN_PID=$$ exec "$@"' airlockd "$@" &
    child=$!
    echo "$child" >> "$AIRLOCK_TEST_DIR/pids"
    wait $child
    sleep 0.2
done
"""


def clean_env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CLEAN}
    env.update(extra or {})
    return env


@dataclass
class Activated:
    """airlockd restarted under sockets held by systemd-socket-activate."""
    proc: subprocess.Popen
    port: int
    state: Path
    work: Path
    runner: list = field(default_factory=list)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def runtime(self) -> Path:
        return self.state / "airlockd.json"

    def daemon_pid(self, other_than: int | None = None, timeout: float = 30) -> int:
        """The pid in the runtime file once it names a live airlockd (not `other_than`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the socket holder exited ({self.proc.returncode}):\n{self.log()}")
            try:
                pid = json.loads(self.runtime.read_text())["pid"]
                if pid != other_than and os.path.exists(f"/proc/{pid}"):
                    return pid
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                pass
            time.sleep(0.02)
        raise AssertionError(f"no new airlockd wrote {self.runtime} within {timeout}s:\n{self.log()}")

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run(self.runner + [str(shared_binary("airlock")), "--state-dir", str(self.state), *args],
                           capture_output=True, text=True, env=clean_env(), timeout=60, cwd="/")
        if check and p.returncode != 0:
            raise AssertionError(f"airlock {' '.join(args)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}\n{self.log()}")
        return p

    def log(self) -> str:
        return (self.work / "activate.log").read_text(errors="replace")[-6000:]


def start_activated(work: Path, policy_text: str, daemon_prefix: list[str] | None = None,
                    state_owner: tuple[int, int] | None = None) -> Activated:
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o755)
    state = work / "state"
    state.mkdir()
    os.chmod(state, 0o711)
    if state_owner:
        os.chown(state, *state_owner)
    policy = work / "policy.toml"
    policy.write_text(policy_text)
    os.chmod(policy, 0o644)
    loop = work / "loop.sh"
    loop.write_text(LOOP)
    os.chmod(loop, 0o755)
    port = free_port()
    sock = state / "airlock.sock"
    daemon = [*(daemon_prefix or []), str(shared_binary("airlockd")), "--listen", f"127.0.0.1:{port}",
              "--state-dir", str(state), "--policy", str(policy)]
    argv = [ACTIVATE, "-l", f"127.0.0.1:{port}", "-l", str(sock), "--fdname=proxy:control",
            "-E", "AIRLOCK_TEST_DIR", "-E", "AIRLOCK_LOG", "-E", "PATH", str(loop), *daemon]
    env = clean_env({"AIRLOCK_TEST_DIR": str(work), "AIRLOCK_LOG": "info,airlock_agent=debug"})
    proc = subprocess.Popen(argv, stdout=open(work / "activate.log", "w"), stderr=subprocess.STDOUT, env=env,
                            cwd="/")
    a = Activated(proc, port, state, work)
    deadline = time.monotonic() + 10
    while not sock.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise AssertionError(f"systemd-socket-activate did not bind {sock}:\n{a.log()}")
        time.sleep(0.02)
    # SocketMode=0666, as airlockd-control.socket sets it (systemd-socket-activate has no such flag).
    os.chmod(sock, 0o666)
    # Like systemd, it starts the service on the first connection: this one waits in the backlog.
    assert health(port) == 200
    a.daemon_pid()
    return a


def stop_activated(a: Activated) -> None:
    (a.work / "stop").touch()
    stop(a.proc)


def health(port: int, timeout: float = 30) -> int:
    """One GET of the bare health check on a connection of its own; the status code."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET /airlock/v1/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    if not data.startswith(b"HTTP/1.1 "):
        raise ConnectionResetError(f"no HTTP answer: {data[:80]!r}")
    return int(data[9:12])


class Stopping(Exception):
    """The stopping instance answered, with its own refusal, a request sent on a connection it had
    accepted before the signal (503 journal_unavailable: it closed its journal before the request
    came)."""


@dataclass
class Tally:
    ok: int = 0
    refused: list = field(default_factory=list)
    broken: list = field(default_factory=list)
    stopping: int = 0
    kind: str = "term"


def client_loop(stop_event: threading.Event, tally: Tally, once) -> None:
    """Opens one connection after another until told to stop. A refused connection is the failure this
    whole arrangement exists to prevent; one reset after it was accepted can only be a killed instance
    dropping what it had accepted (SIGKILL), and is tried again on a new connection."""
    while not stop_event.is_set():
        kind = tally.kind
        try:
            once()
            tally.ok += 1
        except Stopping:
            tally.stopping += 1
        except ConnectionRefusedError as e:
            tally.refused.append(repr(e))
        except (httpx.ConnectError, ) as e:
            if "refused" in str(e).lower():
                tally.refused.append(repr(e))
            else:
                tally.broken.append((kind, repr(e)))
        except (OSError, httpx.HTTPError, AssertionError) as e:
            tally.broken.append((kind, repr(e)))
        time.sleep(0.005)


def test_connections_during_restarts_are_answered_and_each_instance_verifies(mock, tmp_path):
    a = start_activated(tmp_path / "activated", mock_policy(mock))
    try:
        status = json.loads(a.cli("status", "--json").stdout)
        pid = a.daemon_pid()
        assert status["running"] and status["pid"] == pid
        assert "service manager made the control socket" in status["verified"], status["verified"]
        assert status["listeners"]["activated"] is True
        assert sorted(status["listeners"]["inherited"]) == ["control", "proxy"]
        assert status["listen"] == a.addr, "the port systemd holds, not --listen"
        text = a.cli("status").stdout
        assert "(sockets held by the service manager)" in text, text
        runtime = json.loads(a.runtime.read_text())
        assert runtime["activated"] is True

        bundle = a.state / "ca" / "bundle.pem"
        tls = ssl.create_default_context(cafile=str(bundle))

        def via_connect():
            # A new CONNECT tunnel (and TLS session with a leaf from the device CA) each time.
            with httpx.Client(proxy=f"http://{a.addr}", verify=tls, trust_env=False, timeout=30) as c:
                r = c.post("https://api.openai.com/v1/chat/completions", headers={"authorization": "Bearer sk"},
                           json={"model": "activation-1", "messages": [{"role": "user", "content": "hi"}]})
            if r.status_code == 503 and "journal_unavailable" in r.text:
                raise Stopping()
            assert r.status_code == 200, r.text

        def via_health():
            assert health(a.port) == 200

        stop_event = threading.Event()
        tallies = [Tally(), Tally()]
        threads = [threading.Thread(target=client_loop, args=(stop_event, t, f), daemon=True)
                   for t, f in zip(tallies, (via_health, via_connect))]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)
            for sig in (signal.SIGTERM, signal.SIGKILL, signal.SIGTERM, signal.SIGKILL, signal.SIGTERM):
                for t in tallies:
                    t.kind = "kill" if sig == signal.SIGKILL else "term"
                before = [t.ok for t in tallies]
                os.kill(pid, sig)
                gone = time.monotonic() + 20
                while os.path.exists(f"/proc/{pid}") and time.monotonic() < gone:
                    time.sleep(0.005)
                # Asked between instances, the CLI waits for the next one rather than refusing the
                # service manager's socket (a clean stop removed the runtime file; a kill left it
                # naming a dead pid).
                status = json.loads(a.cli("status", "--json").stdout)
                new = a.daemon_pid(other_than=pid)
                assert status["pid"] == new, status
                assert "service manager" in status["verified"]
                pid = new
                # Clients got through on the new instance too before the next round.
                deadline = time.monotonic() + 20
                while any(t.ok <= b + 2 for t, b in zip(tallies, before)) and time.monotonic() < deadline:
                    time.sleep(0.05)
        finally:
            stop_event.set()
            for t in threads:
                t.join(timeout=60)
        health_tally, connect_tally = tallies
        for name, t in (("health", health_tally), ("CONNECT", connect_tally)):
            assert t.refused == [], f"{name}: connections refused while airlockd restarted: {t.refused[:5]}"
            assert t.ok > 20, f"{name}: only {t.ok} requests went through"
        # A health check is answered at once, so a SIGTERM never catches one half done.
        assert [b for b in health_tally.broken if b[0] == "term"] == [], f"{health_tally.broken[:5]}\n{a.log()}"
        # A tunnel the old instance accepted just before it stopped ends with it: dropped at exit, or
        # answered 503 by the stopping agent once its journal closed (it does not drain open
        # connections yet). At most a couple per restart; every one of them was accepted, none refused.
        dropped = len(connect_tally.broken) + connect_tally.stopping
        assert dropped <= 10, f"CONNECT: {dropped} tunnels ended with their instance: {connect_tally.broken[:5]}"
        pids = (a.work / "pids").read_text().split()
        assert len(pids) >= 6, pids
    finally:
        stop_activated(a)


def test_airlockd_tells_the_service_manager_when_it_serves_and_when_it_stops(mock, tmp_path):
    """Type=notify: READY=1 on $NOTIFY_SOCKET once the listeners serve, STOPPING=1 at SIGTERM."""
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(30)
    state = tmp_path / "state"
    policy = tmp_path / "policy.toml"
    policy.write_text(mock_policy(mock))
    proc = subprocess.Popen([str(binary("airlockd")), "--listen", "127.0.0.1:0", "--state-dir", str(state),
                             "--policy", str(policy)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=clean_env({"NOTIFY_SOCKET": str(notify_path)}))
    try:
        ready = notify.recv(4096).decode()
        assert "READY=1" in ready.splitlines(), ready
        # Ready means serving: the runtime file is there and the port answers.
        port = int(json.loads((state / "airlockd.json").read_text())["listen"].rsplit(":", 1)[1])
        assert health(port) == 200
        proc.send_signal(signal.SIGTERM)
        stopping = notify.recv(4096).decode()
        assert "STOPPING=1" in stopping.splitlines(), stopping
        assert proc.wait(timeout=20) == 0
    finally:
        stop(proc)
        notify.close()


# --- an unprivileged user verifying an agent that runs as a service user --------------------------

@pytest.fixture
def two_users():
    """A service user for the agent (like `airlock`) and an ordinary user, both removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("making local users needs root (useradd)")
    for tool in ("useradd", "userdel", "setpriv"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is missing")
    made = []
    try:
        for _ in range(2):
            name = f"alq{uuid.uuid4().hex[:10]}"
            p = subprocess.run(["useradd", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", name],
                               capture_output=True, text=True)
            if p.returncode != 0:
                pytest.skip(f"useradd could not make a user here: {p.stderr.strip()}")
            made.append(pwd.getpwnam(name))
        yield made[0], made[1]
    finally:
        for u in made:
            subprocess.run(["userdel", u.pw_name], capture_output=True)
            try:
                grp.getgrnam(u.pw_name)
                subprocess.run(["groupdel", u.pw_name], capture_output=True)
            except KeyError:
                pass


def setpriv(user) -> list[str]:
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]


def test_an_ordinary_user_verifies_a_service_users_activated_agent(mock, two_users):
    service, alice = two_users
    # Where both users can reach (pytest's temporary directories are private to root), under a
    # root-owned directory nobody else may write, as /var/lib is.
    base = Path(tempfile.mkdtemp(prefix="airlock-act-", dir="/run"))
    base.chmod(0o755)
    ca = base / "mock-ca.pem"
    shutil.copy(mock.ca_file, ca)
    ca.chmod(0o644)
    policy = mock_policy(mock).replace(str(mock.ca_file), str(ca))
    a = start_activated(base / "svc", policy, daemon_prefix=setpriv(service),
                        state_owner=(service.pw_uid, service.pw_gid))
    try:
        pid = a.daemon_pid()
        # Root (us) sees the pid holding the sockets.
        mine = json.loads(a.cli("status", "--json").stdout)
        assert mine["pid"] == pid and "which holds it" in mine["verified"], mine["verified"]
        # Alice cannot read the service user's /proc/<pid>/fd: the writer of every answer, and the
        # socket inode the verified agent reports for the root-owned port, carry it.
        a.runner = setpriv(alice)
        hers = json.loads(a.cli("status", "--json").stdout)
        assert hers["pid"] == pid
        assert "service manager made the control socket" in hers["verified"]
        assert "which holds it" not in hers["verified"]
        assert "as it reports" in hers["verified"], hers["verified"]
        env = a.cli("env").stdout
        assert f"http://{a.addr}" in env
        # And again after a restart.
        os.kill(pid, signal.SIGTERM)
        new = a.daemon_pid(other_than=pid)
        assert json.loads(a.cli("status", "--json").stdout)["pid"] == new
    finally:
        stop_activated(a)
        shutil.rmtree(base, ignore_errors=True)


# --- a socket made by the service manager but not held or answered by the runtime file's pid -------

FAKE = r"""
import json, os, socket, sys
pid = int(open(sys.argv[1]).read()) if os.path.exists(sys.argv[1]) else 0
srv = socket.socket(fileno=3)
while True:
    c, _ = srv.accept()
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = c.recv(65536)
        if not chunk:
            break
        data += chunk
    if data:
        pid = int(open(sys.argv[1]).read())
        body = json.dumps({"agent": "airlockd", "pid": pid, "ca": {"fingerprint_sha256": ""}}).encode()
        c.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
    c.close()
"""

# The holder case: a `sleep` started before the fake inherits the socket, so the runtime file's pid
# does hold it, but the fake answers.
HOLDER = r"""#!/bin/sh
sleep 600 &
echo $! > "$AIRLOCK_TEST_DIR/holder.pid"
exec "$@"
"""


@pytest.mark.parametrize("case", ["not_held", "held_but_answered_by_another"])
def test_a_service_managers_socket_not_served_by_the_runtime_pid_is_refused(tmp_path, case):
    work = tmp_path / case[:8]  # a unix socket's path is short
    work.mkdir()
    state = work / "state"
    state.mkdir()
    os.chmod(state, 0o711)
    (work / "fake.py").write_text(FAKE)
    holder_sh = work / "holder.sh"
    holder_sh.write_text(HOLDER)
    os.chmod(holder_sh, 0o755)
    sock = state / "airlock.sock"
    pidfile = work / "runtime.pid"
    argv = [ACTIVATE, "-l", str(sock), "--fdname=control", "-E", "AIRLOCK_TEST_DIR"]
    fake = [sys.executable, str(work / "fake.py"), str(pidfile)]
    argv += [str(holder_sh), *fake] if case == "held_but_answered_by_another" else fake
    proc = subprocess.Popen(argv, stdout=open(work / "activate.log", "w"), stderr=subprocess.STDOUT,
                            env=clean_env({"AIRLOCK_TEST_DIR": str(work)}))
    bystander = None
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert time.monotonic() < deadline and proc.poll() is None, (work / "activate.log").read_text()
            time.sleep(0.02)
        # Start the "service" (systemd-socket-activate waits for a first connection).
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(sock))
        if case == "not_held":
            bystander = subprocess.Popen(["sleep", "600"])
            rt_pid = bystander.pid
        else:
            holder = work / "holder.pid"
            while not holder.exists() or not holder.read_text().strip():
                assert time.monotonic() < deadline, (work / "activate.log").read_text()
                time.sleep(0.02)
            rt_pid = int(holder.read_text())
        pidfile.write_text(str(rt_pid))
        runtime = state / "airlockd.json"
        runtime.write_text(json.dumps({"listen": f"127.0.0.1:{free_port()}", "pid": rt_pid, "uid": os.geteuid(),
                                       "activated": True, "inherited": ["proxy", "control"]}))
        os.chmod(runtime, 0o644)
        p = subprocess.run([str(binary("airlock")), "--state-dir", str(state), "status"], capture_output=True,
                           text=True, env=clean_env(), timeout=60)
        assert p.returncode == UNTRUSTED, f"{p.returncode}\n{p.stdout}\n{p.stderr}"
        why = "does not hold it" if case == "not_held" else "the answer was written by pid"
        assert why in p.stderr, p.stderr
        assert "It is not your Airlock agent" in p.stderr, p.stderr
    finally:
        if bystander:
            bystander.kill()
            bystander.wait()
        proc.kill()
        proc.wait()
        if case == "held_but_answered_by_another" and (work / "holder.pid").exists():
            try:
                os.kill(int((work / "holder.pid").read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
