"""Org credentials against a real Secret Service: gnome-keyring, unlocked inside its own D-Bus
session (dbus-run-session), with airlockd in that session. `inject` replaces the app's key with the
org's (the mock sees the org key, the client never does), `deny_personal` refuses keys not on the
org's list, and the secret is in no log, journal row, status output, process list or file other
than the credential store. Without a session bus the agent falls back to a 0600 file and says so."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from conftest import Agent, binary, mock_policy, start_agent, stop, wait_for_file


def fp(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


ORG_ANTHROPIC = "sk-ant-org-" + uuid.uuid4().hex


def policy(mock) -> str:
    return mock_policy(mock, f'''
[credentials.openai]
mode = "inject"
secret = "openai-org"
[credentials.anthropic]
mode = "deny_personal"
allowed_fingerprints = ["{fp(ORG_ANTHROPIC)}"]
''')


@pytest.fixture
def keyring_agent(mock, tmp_path):
    """airlockd in a D-Bus session of its own with an unlocked gnome-keyring."""
    home = tmp_path / "home"
    home.mkdir()
    state = tmp_path / "state"
    (tmp_path / "policy.toml").write_text(policy(mock))
    wrapper = tmp_path / "with-keyring.sh"
    wrapper.write_text("#!/bin/sh\nprintf 'e2e-login' | gnome-keyring-daemon --unlock --components=secrets >/dev/null 2>&1\n"
                       "exec \"$@\"\n")
    log_path = tmp_path / "airlockd.log"
    env = {**os.environ, "HOME": str(home), "AIRLOCK_LOG": "info,airlock_agent=debug"}
    for k in ("DBUS_SESSION_BUS_ADDRESS", "AIRLOCK_CREDENTIAL_STORE"):
        env.pop(k, None)
    proc = subprocess.Popen(["dbus-run-session", "--", "sh", str(wrapper), str(binary("airlockd")), "--listen",
                             "127.0.0.1:0", "--state-dir", str(state), "--policy", str(tmp_path / "policy.toml")],
                            stdout=open(log_path, "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        info = wait_for_file(state / "airlockd.json", proc, "airlockd")
    except RuntimeError as e:
        os.killpg(proc.pid, signal.SIGKILL)
        raise RuntimeError(f"{e}\n{log_path.read_text()}") from None
    agent = Agent(proc, info["listen"], state, log_path, {})
    agent.api("/airlock/v1/health")
    agent.daemon_pid = info["pid"]
    yield agent
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def session_env(pid: int) -> dict:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    env = dict(kv.decode().split("=", 1) for kv in raw if b"=" in kv)
    return {**os.environ, "DBUS_SESSION_BUS_ADDRESS": env["DBUS_SESSION_BUS_ADDRESS"], "HOME": env["HOME"]}


def test_inject_sends_the_org_key_and_the_secret_shows_up_nowhere_else(keyring_agent, mock):
    a = keyring_agent
    assert a.status()["credentials"]["store"] == "os", a.status()["credentials"]
    secret = "sk-org-SECRET-" + uuid.uuid4().hex
    personal = "sk-personal-" + uuid.uuid4().hex
    p = subprocess.run([str(binary("airlock")), "--addr", a.addr, "--state-dir", str(a.state_dir),
                        "credentials", "set", "openai-org"], input=secret, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and "set openai-org" in p.stdout and secret not in p.stdout + p.stderr, (p.stdout, p.stderr)
    listed = json.loads(a.cli("credentials", "list", "--json").stdout)
    assert [c["name"] for c in listed["credentials"]] == ["openai-org"] and secret not in json.dumps(listed)
    # It really is in the Secret Service, under the agent's session.
    found = subprocess.run(["secret-tool", "lookup", "service", "airlock", "username", "openai-org"],
                           capture_output=True, text=True, timeout=30, env=session_env(a.daemon_pid))
    assert found.stdout == secret, (found.stdout, found.stderr)

    tag = uuid.uuid4().hex[:8]
    client = openai.OpenAI(api_key=personal, base_url=a.base_url("openai") + "/v1", max_retries=0,
                           http_client=httpx.Client(trust_env=False, timeout=10))
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", extra_query={"m": tag},
                                                           messages=[{"role": "user", "content": "hi"}])
    assert secret not in raw.http_response.text and secret not in str(raw.headers)
    seen = [r for r in mock.requests() if tag in (r.get("query") or "")]
    assert len(seen) == 1
    headers = {k.lower(): v for k, v in seen[0]["headers"].items()} if isinstance(seen[0]["headers"], dict) \
        else {k.lower(): v for k, v in seen[0]["headers"]}
    assert headers["authorization"] == f"Bearer {secret}", "the provider did not get the org key"
    assert personal not in json.dumps(seen[0]), "the personal key reached the provider"
    rec = a.wait_record(path=f"/v1/chat/completions?m={tag}")
    assert rec["credential"] == "injected:openai-org" and rec["credential_fingerprint"] == fp(personal)

    # Nowhere else: logs, journal, status, process list, state files.
    status = a.cli("status", "--json").stdout + a.cli("status").stdout
    assert secret not in status
    assert secret not in a.log()
    for f in a.state_dir.rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f"the secret is in {f}"
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            assert secret.encode() not in cmdline.read_bytes(), cmdline
        except (PermissionError, FileNotFoundError, ProcessLookupError):
            pass

    # Removed: the agent says it is missing instead of sending the personal key on.
    assert "removed openai-org" in a.cli("credentials", "rm", "openai-org").stdout
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 503 and e.value.response.json()["airlock"]["type"] == "credential_missing"
    assert "airlock credentials set openai-org" in e.value.response.json()["error"]["message"]


def test_deny_personal_refuses_keys_not_on_the_orgs_list(keyring_agent, mock):
    a = keyring_agent
    def call(key):
        c = anthropic.Anthropic(api_key=key, base_url=a.base_url("anthropic"), max_retries=2,
                                http_client=anthropic.DefaultHttpxClient(trust_env=False))
        return c.messages.create(model="claude-haiku-4-5", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    assert call(ORG_ANTHROPIC).content
    personal = "sk-ant-api03-personal-" + uuid.uuid4().hex
    with pytest.raises(anthropic.PermissionDeniedError) as e:
        call(personal)
    body = e.value.response.json()
    assert body["error"]["type"] == "permission_error" and "organisation's keys" in body["error"]["message"]
    assert personal not in body["error"]["message"]
    refused = [r for r in a.records() if r.get("decided_by") == "authorize:credentials"]
    assert len(refused) == 1 and refused[0]["credential_fingerprint"] == fp(personal), "refused once, not retried"


def test_without_a_session_bus_the_store_is_a_private_file(mock, tmp_path):
    a = start_agent(tmp_path / "agent", policy(mock), env={"DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent/bus"})
    try:
        c = a.status()["credentials"]
        assert c["store"] == "file" and "not available" in c["file_because"], c
        secret = "sk-org-file-" + uuid.uuid4().hex
        p = subprocess.run([str(binary("airlock")), "--addr", a.addr, "--state-dir", str(a.state_dir),
                            "credentials", "set", "openai-org"], input=secret, capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        f = a.state_dir / "credentials.json"
        assert oct(f.stat().st_mode & 0o777) == "0o600" and secret in f.read_text()
        assert "file" in a.cli("credentials", "list").stdout
        # argv is refused: there is no way to pass the secret on the command line.
        p = a.cli("credentials", "set", "openai-org", secret, check=False)
        assert p.returncode != 0
    finally:
        stop(a.proc)
