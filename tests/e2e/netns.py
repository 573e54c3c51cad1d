"""A network namespace with only loopback, holding a mock provider and an agent of its own, for real
tools that may phone home (telemetry, update checks, feature flags): whatever they try beyond the
agent cannot leave the machine.

`unshare -n` makes the namespace (lo brought up first); everything that must meet in it — the mock,
airlockd, `airlock run` and the tool — is started in it with `nsenter --net`, and the test reads the
mock's request log from inside it too (loopback there is not the host's); the agent's control API is a
unix socket, which the namespace does not hide. Both need root, as the test machines and CI have.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import Agent, Mock, binary, mock_policy, stop, wait_for_file


def find_ip() -> str:
    for p in (shutil.which("ip"), "/usr/sbin/ip", "/sbin/ip"):
        if p and os.path.exists(p):
            return p
    pytest.fail("ip (iproute2) is missing: scripts/test.sh installs it")


@dataclass
class Netns:
    holder: subprocess.Popen

    def cmd(self, argv: list[str]) -> list[str]:
        """`argv` run inside the namespace."""
        return ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", "--", *[str(a) for a in argv]]

    def close(self) -> None:
        """Ends the namespace's holder; the namespace goes when its last process does."""
        self.holder.kill()
        self.holder.wait()

    def curl(self, *args: str, timeout: float = 30) -> str:
        p = subprocess.run(self.cmd(["curl", "-sS", "--fail-with-body", "--max-time", str(int(timeout)), *args]),
                           capture_output=True, text=True, timeout=timeout + 10)
        if p.returncode != 0:
            raise AssertionError(f"curl {' '.join(args)} in the namespace failed: {p.stdout}{p.stderr}")
        return p.stdout


def open_netns() -> Netns:
    if os.geteuid() != 0:
        pytest.fail("the real-tool tests run the tools inside `unshare -n`, which needs root (as CI has)")
    for tool in ("unshare", "nsenter", "curl"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is missing (util-linux, curl)")
    holder = subprocess.Popen(["unshare", "-n", "sh", "-c", f'{find_ip()} link set lo up && echo up && exec sleep 3600'],
                              stdout=subprocess.PIPE, text=True)
    line = holder.stdout.readline().strip() if holder.stdout else ""
    if line != "up":
        holder.kill()
        pytest.fail(f"could not make a network namespace with loopback up (got {line!r})")
    ns = Netns(holder)
    links = subprocess.run(ns.cmd([find_ip(), "-o", "link", "show"]), capture_output=True, text=True).stdout
    names = [line.split(":")[1].strip() for line in links.splitlines() if line.strip()]
    if names != ["lo"]:
        ns.close()
        pytest.fail(f"the namespace should have loopback only, it has {names}")
    return ns


class NsMock(Mock):
    netns: Netns

    def requests(self) -> list[dict]:
        out = self.netns.curl("--cacert", str(self.ca_file), "--connect-to", f"api.openai.com:443:127.0.0.1:{self.port}",
                              "https://api.openai.com/__mock/requests")
        return json.loads(out)["requests"]

    def clear(self) -> None:
        self.netns.curl("-X", "DELETE", "--cacert", str(self.ca_file),
                        "--connect-to", f"api.openai.com:443:127.0.0.1:{self.port}",
                        "https://api.openai.com/__mock/requests")


class NsAgent(Agent):
    netns: Netns

    # The control API is a unix socket in the state directory: reachable from outside the namespace
    # (a path socket belongs to the file system, not to a network namespace), so `Agent.api` serves.

    def cli(self, *args: str, env: dict | None = None, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess:
        """`airlock` run inside the namespace with exactly `env` (plus PATH and HOME if not given)."""
        full_env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **(env or {})}
        argv = [str(binary("airlock")), "--addr", self.addr, "--state-dir", str(self.state_dir), *args]
        p = subprocess.run(self.netns.cmd(argv), capture_output=True, text=True, env=full_env, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"airlock {' '.join(args)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
        return p


def start_stack(netns: Netns, workdir: Path) -> tuple[NsMock, NsAgent]:
    """A mock and an agent (the mock policy) inside `netns`."""
    md = workdir / "mock"
    md.mkdir(parents=True)
    ready = md / "ready.json"
    mproc = subprocess.Popen(netns.cmd([binary("airlock-mock"), "--listen", "127.0.0.1:0", "--cert-dir", md,
                                        "--ready-file", ready]),
                             stdout=open(md / "mock.log", "w"), stderr=subprocess.STDOUT)
    try:
        info = wait_for_file(ready, mproc, "airlock-mock")
    except RuntimeError:
        stop(mproc)
        raise
    mock = NsMock(mproc, info["port"], info.get("plain_port"), Path(info["ca_file"]))
    mock.netns = netns
    ad = workdir / "agent"
    ad.mkdir()
    state = ad / "state"
    (ad / "policy.toml").write_text(mock_policy(mock))
    log_path = ad / "airlockd.log"
    aproc = subprocess.Popen(netns.cmd([binary("airlockd"), "--listen", "127.0.0.1:0", "--state-dir", state,
                                        "--policy", ad / "policy.toml"]),
                             stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
                             env={**os.environ, "AIRLOCK_LOG": "info,airlock_agent=debug"})
    try:
        runtime = wait_for_file(state / "airlockd.json", aproc, "airlockd")
    except RuntimeError as e:
        stop(mproc)
        raise RuntimeError(f"{e}\n--- airlockd log ---\n{log_path.read_text()}") from None
    agent = NsAgent(aproc, runtime["listen"], state, log_path)
    agent.netns = netns
    agent.api("/airlock/v1/health")
    return mock, agent
