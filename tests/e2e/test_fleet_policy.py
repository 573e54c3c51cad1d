"""An enrolled device against a real policy server: nginx serves signed bundles over HTTPS on
127.0.0.1 (with ETags, as any static origin does). A new version is picked up within one interval,
a 304 costs no verification, every bad bundle is refused with its reason code while the previous
policy keeps governing an SDK call, a server that is down leaves the last good policy in force, a
bundle written into the drop folder is applied, keys rotate, a restart with the server unreachable
comes up governed by the last good bundle, and without any valid policy the enrollment's fail mode
decides."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import openai
import pytest

from certs import make_ca, make_leaf, pem
from conftest import binary, free_port, mock_policy, start_agent, stop

FLEET = "acme-laptops"


def airlock(*args: str) -> subprocess.CompletedProcess:
    p = subprocess.run([str(binary("airlock")), *args], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"airlock {' '.join(args)}: {p.stdout}\n{p.stderr}"
    return p


class Nginx:
    """nginx serving `root` over HTTPS on 127.0.0.1 with a certificate from its own CA."""

    def __init__(self, workdir: Path):
        self.root = workdir / "www"
        self.root.mkdir(parents=True)
        self.port = free_port()
        ca_cert, ca_key = make_ca("Policy Server Test CA")
        leaf, key = make_leaf(ca_cert, ca_key, "localhost")
        self.ca_file = workdir / "server-ca.pem"
        self.ca_file.write_bytes(pem(ca_cert))
        (workdir / "server.pem").write_bytes(leaf)
        (workdir / "server.key").write_bytes(key)
        self.conf = workdir / "nginx.conf"
        # Run as root (the test's user), nginx's workers would drop to nobody and not read the files.
        user = "user root root;" if os.geteuid() == 0 else ""
        self.conf.write_text(f"""
{user}
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log;
worker_processes 1;
events {{ worker_connections 64; }}
http {{
    access_log {workdir}/access.log;
    client_body_temp_path {workdir}/tmp;
    proxy_temp_path {workdir}/tmp;
    fastcgi_temp_path {workdir}/tmp;
    uwsgi_temp_path {workdir}/tmp;
    scgi_temp_path {workdir}/tmp;
    server {{
        listen 127.0.0.1:{self.port} ssl;
        ssl_certificate {workdir}/server.pem;
        ssl_certificate_key {workdir}/server.key;
        location / {{ root {self.root}; etag on; }}
    }}
}}
""")
        (workdir / "tmp").mkdir()
        self.proc = None
        self.start()

    def start(self):
        nginx = os.environ.get("AIRLOCK_TEST_NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = subprocess.Popen([nginx, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                httpx.get(f"https://localhost:{self.port}/", verify=str(self.ca_file), trust_env=False, timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("nginx did not start")

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}/laptops.bundle"

    def publish(self, bundle: Path):
        tmp = self.root / ".laptops.bundle.tmp"
        shutil.copyfile(bundle, tmp)
        os.replace(tmp, self.root / "laptops.bundle")

    def publish_bytes(self, data: bytes):
        tmp = self.root / ".laptops.bundle.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, self.root / "laptops.bundle")


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    for name in ("a", "b", "stranger"):
        airlock("policy", "keygen", str(d / f"{name}.key"))
    return d


def build(keys: Path, tmp: Path, policy_text: str, version: int, key: str = "a", fleet: str = FLEET,
          extra: tuple[str, ...] = ()) -> Path:
    src = tmp / f"v{version}-{key}-{fleet}.toml"
    src.write_text(policy_text)
    out = tmp / f"v{version}-{key}-{fleet}.bundle"
    airlock("policy", "build", str(src), "--key", str(keys / f"{key}.key"), "--fleet", fleet,
            "--version", str(version), "--out", str(out), *extra)
    return out


def named(mock, name: str) -> str:
    return mock_policy(mock).replace('name = "airlock-default"', f'name = "{name}"', 1)


def enroll(config: Path, keys: Path, url: str | None, ca_file: Path | None, fail_mode: str = "open",
           key_names=("a",)):
    config.mkdir(parents=True, exist_ok=True)
    pubkeys = ",\n".join('"""' + (keys / f"{k}.key.pub").read_text() + '"""' for k in key_names)
    lines = [f'fleet = "{FLEET}"', f"pubkeys = [\n{pubkeys}\n]", "interval_secs = 1", f'fail_mode = "{fail_mode}"']
    if url:
        lines.append(f'url = "{url}"')
    if ca_file:
        lines.append(f'ca_file = "{ca_file}"')
    (config / "enrollment.toml").write_text("\n".join(lines) + "\n")


def start_enrolled(workdir: Path, config: Path, state: Path | None = None):
    return start_agent(workdir, None, extra_args=["--config-dir", str(config)], state=state)


def wait_policy(agent, timeout: float = 10, **want) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        p = agent.status()["policy"]
        if all(p.get(k) == v for k, v in want.items()):
            return p
        if time.monotonic() > deadline:
            raise AssertionError(f"policy never had {want}: {p}")
        time.sleep(0.1)


def wait_refusal(agent, reason: str, timeout: float = 10, after: str | None = None) -> dict:
    """The policy status once a refusal for `reason` newer than the one at `after` is recorded."""
    deadline = time.monotonic() + timeout
    while True:
        p = agent.status()["policy"]
        r = p.get("last_refusal") or {}
        if r.get("reason") == reason and r.get("at") != after:
            return p
        if time.monotonic() > deadline:
            raise AssertionError(f"no {reason} refusal: {p}")
        time.sleep(0.1)


def sdk_call(agent, marker: str) -> dict:
    client = openai.OpenAI(api_key="sk-fleet", base_url=agent.base_url("openai") + "/v1", max_retries=0,
                           http_client=httpx.Client(trust_env=False, timeout=20))
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": marker}],
                                   extra_query={"m": marker})
    return agent.wait_record(path=f"/v1/chat/completions?m={marker}")


def test_an_enrolled_device_follows_the_fleet_and_refuses_every_bad_bundle(mock, keys, tmp_path):
    server = Nginx(tmp_path / "nginx")
    config = tmp_path / "config"
    enroll(config, keys, server.url, server.ca_file)
    server.publish(build(keys, tmp_path, named(mock, "fleet-v1"), 1))
    agent = start_enrolled(tmp_path / "agent", config)
    try:
        p = wait_policy(agent, version=1, fleet=FLEET)
        assert p["name"] == "fleet-v1" and p["source"] == f"bundle from {server.url}"
        sdk_call(agent, "v1")

        # Unchanged: 304s, no verification spent.
        verified = agent.status()["policy"]["counters"]["verifications"]
        before = agent.status()["policy"]["counters"]["not_modified"]
        time.sleep(3.5)
        c = agent.status()["policy"]["counters"]
        assert c["not_modified"] >= before + 2, c
        assert c["verifications"] == verified, c

        # A new version within one interval (1 s, jittered, plus the fetch).
        server.publish(build(keys, tmp_path, named(mock, "fleet-v2"), 2))
        t0 = time.monotonic()
        wait_policy(agent, version=2, name="fleet-v2", timeout=5)
        assert time.monotonic() - t0 < 3

        v2 = agent.status()["policy"]["bundle"]["digest"]
        good = build(keys, tmp_path, named(mock, "fleet-v3"), 3).read_bytes()
        # Forged: the payload edited (another policy name), the signature kept.
        env = json.loads(good)
        payload = base64.b64decode(env["payload"]).replace(b"fleet-v3", b"forged-3")
        env["payload"] = base64.b64encode(payload).decode()
        tampered = json.dumps(env).encode()
        expired_src = build(keys, tmp_path, named(mock, "expired"), 9, extra=("--expires-in", "1s"))
        time.sleep(1.2)
        bad = [
            ("bad_signature", tampered),
            ("unknown_key", build(keys, tmp_path, named(mock, "x"), 10, key="stranger").read_bytes()),
            ("wrong_fleet", build(keys, tmp_path, named(mock, "x"), 11, fleet="other-fleet").read_bytes()),
            ("rollback", build(keys, tmp_path, named(mock, "old"), 1).read_bytes()),
            ("expired", expired_src.read_bytes()),
            ("malformed", good[: len(good) // 2]),
            ("malformed", b'{"payloadType": "application/vnd.airlock.policy+json", "payload": '),
            ("too_large", b" " * (4 * 1024 * 1024 + 1)),
            ("invalid_policy", build_unchecked(keys, tmp_path, 12)),
        ]
        for n, (reason, data) in enumerate(bad):
            previous = (agent.status()["policy"]["last_refusal"] or {}).get("at")
            server.publish_bytes(data)
            p = wait_refusal(agent, reason, after=previous)
            assert p["version"] == 2 and p["bundle"]["digest"] == v2, (reason, p)
            assert p["last_refusal"]["source"] == server.url
            assert p["last_refusal"]["at"]
            sdk_call(agent, f"after-{n}-{reason}")
            # The next bad bundle must be told apart from this one.
            server.publish(build(keys, tmp_path, named(mock, "fleet-v2"), 2))
            time.sleep(1.5)
        # Each refusal is also a log line with its reason code.
        assert "policy bundle refused" in agent.log() and "too_large" in agent.log()

        # The server goes down: the last good policy stays.
        server.stop()
        time.sleep(3)
        p = agent.status()["policy"]
        assert p["version"] == 2 and p["counters"]["fetch_failures"] >= 1, p
        sdk_call(agent, "server-down")

        # The drop folder.
        drop = config / "policy.d"
        tmp = drop / ".v3.bundle.tmp"
        tmp.write_bytes(good)
        os.replace(tmp, drop / "v3.bundle")
        p = wait_policy(agent, version=3, name="fleet-v3")
        assert p["source"] == "bundle from policy.d/v3.bundle"

        # Key rotation: a bundle signed by A names B as the next key.
        rotate = build(keys, tmp_path, named(mock, "fleet-v4"), 4,
                       extra=("--next-key", str(keys / "b.key.pub")))
        shutil.copyfile(rotate, drop / "v4.bundle")
        wait_policy(agent, version=4)
        previous = (agent.status()["policy"]["last_refusal"] or {}).get("at")
        shutil.copyfile(build(keys, tmp_path, named(mock, "a-after-rotation"), 5, key="a"), drop / "v5a.bundle")
        wait_refusal(agent, "unknown_key", after=previous)
        shutil.copyfile(build(keys, tmp_path, named(mock, "fleet-v5"), 5, key="b"), drop / "v5b.bundle")
        wait_policy(agent, version=5, name="fleet-v5")
    finally:
        stop(agent.proc)
        server.stop()

    # Restart with the server unreachable: the last good bundle governs before any network.
    again = start_enrolled(tmp_path / "agent2", config, state=agent.state_dir)
    try:
        p = wait_policy(again, version=5, name="fleet-v5", timeout=5)
        assert p["source"] == "bundle from last good bundle"
        sdk_call(again, "after-restart")
    finally:
        stop(again.proc)


def build_unchecked(keys: Path, tmp: Path, version: int) -> bytes:
    """A correctly signed bundle whose policy does not compile (built by hand: `airlock policy build`
    refuses such a policy). Uses Python's cryptography with the fleet key."""
    import base64
    import json as _json
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    key = load_pem_private_key((keys / "a.key").read_bytes(), password=None)
    payload = _json.dumps({"fleet": FLEET, "version": version, "issued_at": "2026-01-01T00:00:00Z",
                           "expires_at": None, "min_agent_version": "0.1.0",
                           "policy": {"schema": 1, "upstream": {"proxy": "socks5://nope:1"}}}).encode()
    ptype = b"application/vnd.airlock.policy+json"
    pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype, len(payload), payload)
    keyid = _json.loads(build(keys, tmp, "schema = 1\n", 999).read_text())["signatures"][0]["keyid"]
    env = {"payloadType": ptype.decode(), "payload": base64.b64encode(payload).decode(),
           "signatures": [{"keyid": keyid, "sig": base64.b64encode(key.sign(pae)).decode()}]}
    return _json.dumps(env).encode()


def test_an_enrolled_device_refuses_a_policy_file(keys, tmp_path):
    config = tmp_path / "config"
    enroll(config, keys, None, None)
    policy = tmp_path / "p.toml"
    policy.write_text("schema = 1\n")
    p = subprocess.run([str(binary("airlockd")), "--listen", "127.0.0.1:0", "--state-dir", str(tmp_path / "s"),
                        "--config-dir", str(config), "--policy", str(policy)], capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert f'enrolled in fleet "{FLEET}"' in p.stderr and "--policy" in p.stderr and "airlock unenroll" in p.stderr


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
def test_without_any_valid_policy_the_enrollments_fail_mode_decides(mock, keys, tmp_path, fail_mode):
    config = tmp_path / "config"
    # The server never answers: nothing listens on its port.
    enroll(config, keys, f"https://localhost:{free_port()}/laptops.bundle", None, fail_mode=fail_mode)
    agent = start_enrolled(tmp_path / "agent", config)
    try:
        client = openai.OpenAI(api_key="sk-fleet", base_url=agent.base_url("openai") + "/v1", max_retries=0,
                               http_client=httpx.Client(trust_env=False, timeout=20))
        p = agent.status()["policy"]
        assert p["version"] is None
        if fail_mode == "closed":
            with pytest.raises(openai.APIStatusError) as e:
                client.models.list()
            assert e.value.status_code == 503
            body = e.value.response.json()
            assert body["airlock"]["type"] == "policy_unavailable"
            assert "no valid policy has arrived yet" in body["error"]["message"]
            assert p["refusing_ai_hosts"]
        else:
            assert p["refusing_ai_hosts"] is None
            # Open: forwarded and recorded under the embedded default (here the real host is
            # unreachable, which the agent reports as an upstream failure, not a policy refusal).
            with pytest.raises(openai.APIStatusError) as e:
                client.models.list()
            assert e.value.response.json()["airlock"]["type"] != "policy_unavailable"
    finally:
        stop(agent.proc)


def test_airlock_enroll_writes_the_enrollment_the_daemon_follows_and_unenroll_removes_it(mock, keys, tmp_path):
    config = tmp_path / "config"
    p = airlock("enroll", "--fleet", FLEET, "--pubkey", str(keys / "a.key.pub"), "--pubkey", str(keys / "b.key.pub"),
                "--interval", "1", "--fail-mode", "closed", "--config-dir", str(config))
    assert f'enrolled in fleet "{FLEET}": 2 pinned key(s)' in p.stdout
    shown = json.loads(airlock("enroll", "--show", "--json", "--config-dir", str(config)).stdout)
    assert (shown["fleet"], shown["fail_mode"], len(shown["pinned_keys"]), shown["url"]) == (FLEET, "closed", 2, None)
    agent = start_enrolled(tmp_path / "agent", config)
    try:
        p = agent.status()["policy"]
        assert p["enrollment"]["pinned_keys"] == shown["pinned_keys"] and p["refusing_ai_hosts"]
        # No URL: a bundle signed by the second pinned key, dropped in, ends the fail-closed state.
        shutil.copyfile(build(keys, tmp_path, named(mock, "dropped"), 1, key="b"), config / "policy.d" / "v1.bundle")
        wait_policy(agent, version=1, name="dropped", refusing_ai_hosts=None)
        sdk_call(agent, "enrolled-by-cli")
    finally:
        stop(agent.proc)
    p = airlock("unenroll", "--config-dir", str(config))
    assert "left the fleet" in p.stdout and not (config / "enrollment.toml").exists()
    r = subprocess.run([str(binary("airlock")), "enroll", "--show", "--config-dir", str(config)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "not enrolled" in r.stdout


def test_airlock_policy_apply_and_show_go_through_the_control_socket(mock, keys, tmp_path):
    config = tmp_path / "config"
    enroll(config, keys, None, None)
    agent = start_enrolled(tmp_path / "agent", config)
    try:
        good = build(keys, tmp_path, named(mock, "applied-by-cli"), 1)
        p = agent.cli("policy", "apply", str(good))
        assert "applied: version 1" in p.stdout
        assert "unchanged: version 1" in agent.cli("policy", "apply", str(good)).stdout
        env = json.loads(build(keys, tmp_path, named(mock, "applied-by-cli"), 2).read_text())
        env["payload"] = base64.b64encode(base64.b64decode(env["payload"]).replace(b"applied-by-cli", b"forged-by-cli")).decode()
        forged = tmp_path / "forged.bundle"
        forged.write_text(json.dumps(env))
        p = agent.cli("policy", "apply", str(forged), check=False)
        assert p.returncode == 1 and p.stderr.startswith("refused: bad_signature:"), (p.stdout, p.stderr)
        shown = json.loads(agent.cli("policy", "show", "--json").stdout)
        assert (shown["version"], shown["name"], shown["source"]) == (1, "applied-by-cli", "bundle from airlock policy apply")
        assert shown["last_refusal"]["reason"] == "bad_signature"
        text = agent.cli("policy", "show").stdout
        assert "version:      1" in text and "last refusal: bad_signature from airlock policy apply" in text
        rec = sdk_call(agent, "applied-by-cli")
        assert rec["policy"] == {"name": "applied-by-cli", "version": 1}, rec
        # Both decisions are journal events, in order, in the verified chain.
        rows = [json.loads(l) for l in agent.cli("journal", "export").stdout.splitlines() if l.strip()]
        events = [(r["event"], r["details"].get("version"), r["details"].get("reason")) for r in rows if "event" in r]
        assert events == [("policy_applied", 1, None), ("policy_refused", None, "bad_signature")], events
        assert "chain intact" in agent.cli("journal", "verify").stdout
    finally:
        stop(agent.proc)


def test_an_agent_that_is_not_enrolled_says_so_when_given_a_bundle(agent, keys, tmp_path):
    p = agent.cli("policy", "apply", str(build(keys, tmp_path, "schema = 1\n", 1)), check=False)
    assert p.returncode == 1 and p.stderr.startswith("refused: not_enrolled:") and "airlock enroll" in p.stderr


def test_enrolling_re_enrolling_and_leaving_take_effect_while_the_daemon_runs(mock, keys, tmp_path):
    """No restart: `airlock enroll` on a running daemon makes it follow the fleet within seconds
    (and says so), a new enrollment with another fleet and key replaces the old trust, a broken
    enrollment file is shown and changes nothing, and `airlock unenroll` puts the policy the daemon
    was started with back in force."""
    config = tmp_path / "config"  # does not exist yet: the daemon must notice it appearing
    agent = start_agent(tmp_path / "agent", named(mock, "started-with"), extra_args=["--config-dir", str(config)])
    try:
        p = agent.status()["policy"]
        assert p["enrollment"] is None and p["name"] == "started-with"
        bundle_a1 = build(keys, tmp_path, named(mock, "fleet-a"), 1)
        r = agent.cli("policy", "apply", str(bundle_a1), check=False)
        assert r.returncode == 1 and r.stderr.startswith("refused: not_enrolled:")

        r = agent.cli("enroll", "--fleet", FLEET, "--pubkey", str(keys / "a.key.pub"), "--config-dir", str(config))
        assert f'airlockd follows fleet "{FLEET}" now' in r.stdout, r.stdout
        # Enrolled with no bundle yet and fail mode open: the embedded default governs, not the file.
        p = wait_policy(agent, name="airlock-default")
        assert p["enrollment"]["fleet"] == FLEET and p["version"] is None and p["refusing_ai_hosts"] is None
        assert "applied: version 1" in agent.cli("policy", "apply", str(bundle_a1)).stdout
        wait_policy(agent, name="fleet-a", version=1, fleet=FLEET)
        sdk_call(agent, "live-enrolled")

        # Another fleet, another key: the old fleet's bundles stop counting at once.
        other = "acme-contractors"
        r = agent.cli("enroll", "--fleet", other, "--pubkey", str(keys / "b.key.pub"), "--fail-mode", "closed",
                      "--config-dir", str(config))
        assert f'airlockd follows fleet "{other}" now' in r.stdout, r.stdout
        p = wait_policy(agent, version=None)
        assert p["enrollment"]["fleet"] == other and p["refusing_ai_hosts"], p
        r = agent.cli("policy", "apply", str(build(keys, tmp_path, named(mock, "fleet-a-2"), 2)), check=False)
        assert r.returncode == 1 and r.stderr.startswith("refused: unknown_key:"), r.stderr
        bundle_b1 = build(keys, tmp_path, named(mock, "fleet-b"), 1, key="b", fleet=other)
        assert "applied: version 1" in agent.cli("policy", "apply", str(bundle_b1)).stdout
        wait_policy(agent, name="fleet-b", fleet=other, refusing_ai_hosts=None)
        sdk_call(agent, "re-enrolled")

        # A broken file: shown, and nothing changes.
        good = (config / "enrollment.toml").read_text()
        (config / "enrollment.toml").write_text(good + "\nfleeet = 'typo'\n")
        deadline = time.monotonic() + 10
        while not agent.status()["policy"].get("enrollment_error"):
            assert time.monotonic() < deadline, agent.status()["policy"]
            time.sleep(0.1)
        p = agent.status()["policy"]
        assert "enrollment.toml" in p["enrollment_error"] and "fleeet" in p["enrollment_error"], p
        assert (p["enrollment"]["fleet"], p["name"]) == (other, "fleet-b")
        sdk_call(agent, "broken-enrollment-file")
        (config / "enrollment.toml").write_text(good)
        wait_policy(agent, enrollment_error=None)

        r = agent.cli("unenroll", "--config-dir", str(config))
        assert "airlockd left the fleet" in r.stdout, r.stdout
        p = wait_policy(agent, name="started-with", enrollment=None, version=None)
        assert p["source"].endswith("policy.toml"), p
        r = agent.cli("policy", "apply", str(bundle_b1), check=False)
        assert r.returncode == 1 and r.stderr.startswith("refused: not_enrolled:")
        sdk_call(agent, "left-the-fleet")
    finally:
        stop(agent.proc)
    assert agent.proc.returncode == 0, agent.log()
