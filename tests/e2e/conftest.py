"""End-to-end harness: real airlockd, real mock provider, real clients.

Fixtures start the mock provider (tests/mock-provider) and airlockd with a policy that sends the
provider hosts to the mock (an upstream override, trusting the mock's CA), exactly as an on-prem
gateway would be configured. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("AIRLOCK_BIN_DIR", ROOT / "target" / "debug"))
DEFAULT_POLICY = (ROOT / "policies" / "default.toml").read_text()
MOCK_HOSTS = ["api.openai.com", "api.anthropic.com", "generativelanguage.googleapis.com", "api.groq.com",
              "api.x.ai", "openrouter.ai", "api.mistral.ai", "api.deepseek.com", "api.together.xyz",
              "mockres.openai.azure.com"]


def binary(name: str) -> Path:
    path = BIN_DIR / name
    if not path.exists():
        pytest.exit(f"{path} is missing: run `cargo build --workspace --bins` (scripts/test.sh does)", 2)
    return path


_SHARED_BIN: Path | None = None


def shared_binary(name: str) -> Path:
    """A copy of a built binary that other users can run (the build dir may sit in root's 0700 home),
    for tests that run the CLI or the agent as another user."""
    global _SHARED_BIN
    if _SHARED_BIN is None:
        import tempfile
        _SHARED_BIN = Path(tempfile.mkdtemp(prefix="airlock-e2e-bin-"))
        os.chmod(_SHARED_BIN, 0o755)
    dst = _SHARED_BIN / name
    if not dst.exists():
        shutil.copy2(binary(name), dst)
        os.chmod(dst, 0o755)
    return dst


def pytest_sessionfinish(session, exitstatus):
    """The shared copies are a few hundred MB of debug binaries: gone with the session."""
    if _SHARED_BIN is not None:
        shutil.rmtree(_SHARED_BIN, ignore_errors=True)


def wait_for_file(path: Path, proc: subprocess.Popen, what: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready")
        if path.exists():
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:
                pass  # half-written; try again
        time.sleep(0.02)
    raise RuntimeError(f"{what} did not become ready within {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Mock:
    proc: subprocess.Popen
    port: int
    plain_port: int | None
    ca_file: Path

    def requests(self) -> list[dict]:
        r = httpx.get(f"https://127.0.0.1:{self.port}/__mock/requests",
                      verify=ssl.create_default_context(cafile=str(self.ca_file)),
                      headers={"host": "api.openai.com"}, trust_env=False)
        r.raise_for_status()
        return r.json()["requests"]


@pytest.fixture(scope="session")
def mock(tmp_path_factory) -> Mock:
    d = tmp_path_factory.mktemp("mock")
    ready = d / "ready.json"
    log = open(d / "mock.log", "w")
    proc = subprocess.Popen(
        [binary("airlock-mock"), "--listen", "127.0.0.1:0", "--plain-listen", "127.0.0.1:0",
         "--cert-dir", str(d), "--ready-file", str(ready)],
        stdout=log, stderr=subprocess.STDOUT,
    )
    info = wait_for_file(ready, proc, "airlock-mock")
    yield Mock(proc, info["port"], info.get("plain_port"), Path(info["ca_file"]))
    stop(proc)


def mock_policy(mock: Mock, extra: str = "") -> str:
    """The embedded default policy plus overrides sending the provider hosts to the mock."""
    text = DEFAULT_POLICY + "\n"
    for host in MOCK_HOSTS:
        text += (f'\n[upstream.overrides."{host}"]\naddress = "127.0.0.1:{mock.port}"\n'
                 f'ca_file = "{mock.ca_file}"\n')
    return text + extra


@dataclass
class Agent:
    proc: subprocess.Popen
    addr: str
    state_dir: Path
    log_path: Path
    env: dict = field(default_factory=dict)

    @property
    def port(self) -> int:
        return int(self.addr.rsplit(":", 1)[1])

    @property
    def proxy_url(self) -> str:
        return f"http://{self.addr}"

    @property
    def ca_cert(self) -> Path:
        return self.state_dir / "ca" / "airlock-ca.pem"

    @property
    def bundle(self) -> Path:
        return self.state_dir / "ca" / "bundle.pem"

    def base_url(self, prefix: str) -> str:
        return f"http://{self.addr}/{prefix}"

    @property
    def control_socket(self) -> Path:
        return self.state_dir / "airlock.sock"

    def control(self, method: str, path: str, **kw) -> httpx.Response:
        """A request to the control API over its unix socket (as this test process's user)."""
        return control_request(self.control_socket, method, path, **kw)

    def api(self, path: str) -> dict:
        r = self.control("GET", path)
        r.raise_for_status()
        return r.json()

    def status(self) -> dict:
        return self.api("/airlock/v1/status")

    def records(self, limit: int = 1000) -> list[dict]:
        return self.api(f"/airlock/v1/requests?limit={limit}")["records"]

    def wait_record(self, timeout: float = 10.0, **match) -> dict:
        """The newest finished record whose fields equal `match` (records finish when bodies end)."""
        deadline = time.monotonic() + timeout
        while True:
            for r in reversed(self.records()):
                if all(r.get(k) == v for k, v in match.items()):
                    return r
            if time.monotonic() > deadline:
                raise AssertionError(f"no record matching {match}; have {self.records()[-5:]}")
            time.sleep(0.02)

    def cli(self, *args: str, env: dict | None = None, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess:
        full_env = {**os.environ, **(env or {})}
        for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "AIRLOCK_ADDR"):
            full_env.pop(k, None)
        p = subprocess.run([str(binary("airlock")), "--addr", self.addr, "--state-dir", str(self.state_dir), *args],
                           capture_output=True, text=True, env=full_env, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"airlock {' '.join(args)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
        return p

    def log(self) -> str:
        return self.log_path.read_text()


def control_request(socket_path: Path, method: str, path: str, **kw) -> httpx.Response:
    """One request over the control socket at `socket_path` (HTTP over a unix socket)."""
    kw.setdefault("timeout", 10)
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket_path)), base_url="http://airlock",
                      trust_env=False) as c:
        return c.request(method, path, **kw)


def start_agent(workdir: Path, policy_text: str | None, env: dict | None = None,
                listen: str = "127.0.0.1:0", extra_args: list[str] | None = None,
                state: Path | None = None) -> Agent:
    """Starts airlockd; `state` reuses an existing state directory (the same device restarting)."""
    workdir.mkdir(parents=True, exist_ok=True)
    state = state or workdir / "state"
    (state / "airlockd.json").unlink(missing_ok=True)
    args = [str(binary("airlockd")), "--listen", listen, "--state-dir", str(state)]
    if policy_text is not None:
        policy = workdir / "policy.toml"
        policy.write_text(policy_text)
        args += ["--policy", str(policy)]
    args += extra_args or []
    log_path = workdir / "airlockd.log"
    full_env = {**os.environ, "AIRLOCK_LOG": "info,airlock_agent=debug", **(env or {})}
    proc = subprocess.Popen(args, stdout=open(log_path, "w"), stderr=subprocess.STDOUT, env=full_env)
    try:
        info = wait_for_file(state / "airlockd.json", proc, "airlockd")
    except RuntimeError as e:
        raise RuntimeError(f"{e}\n--- airlockd log ---\n{log_path.read_text()}") from None
    agent = Agent(proc, info["listen"], state, log_path, env or {})
    agent.api("/airlock/v1/health")
    return agent


@pytest.fixture(scope="session")
def agent(mock, tmp_path_factory) -> Agent:
    a = start_agent(tmp_path_factory.mktemp("agent"), mock_policy(mock))
    yield a
    stop(a.proc)
    assert a.proc.returncode == 0, f"airlockd exited {a.proc.returncode} on SIGTERM:\n{a.log()}"


@pytest.fixture
def fresh_agent(mock, tmp_path):
    """An agent of the test's own (for tests that restart, rotate or break things)."""
    started: list[Agent] = []

    def make(policy_text: str | None = None, **kw) -> Agent:
        a = start_agent(tmp_path / f"agent{len(started)}", mock_policy(mock) if policy_text is None else policy_text, **kw)
        started.append(a)
        return a

    yield make
    for a in started:
        stop(a.proc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proxy_env(agent: Agent) -> dict:
    """What `airlock env` exports, as a dict (read from the real CLI)."""
    out = agent.cli("env").stdout
    env = {}
    for line in out.splitlines():
        assert line.startswith("export "), line
        k, v = line[len("export "):].split("=", 1)
        env[k] = v.strip("'")
    return env


def have(cmd: str) -> bool:
    return shutil.which(cmd) is not None


def tokens(record: dict) -> tuple[int, int]:
    """(input, output) tokens of a record, asserting they are exact, not estimated."""
    assert record["usage"] is not None, record
    assert record["usage_estimated"] is False, record
    return record["usage"]["input_tokens"], record["usage"]["output_tokens"]


def policy_with_override(mock: Mock, host: str, address: str, ca_file: Path | str) -> str:
    """The mock policy, but with `host` sent to `address` trusting `ca_file`."""
    policy = mock_policy(mock)
    old = f'[upstream.overrides."{host}"]\naddress = "127.0.0.1:{mock.port}"\nca_file = "{mock.ca_file}"'
    assert old in policy
    return policy.replace(old, f'[upstream.overrides."{host}"]\naddress = "{address}"\nca_file = "{ca_file}"')
