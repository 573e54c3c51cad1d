"""Signed policy bundles from the admin's side: `airlock policy keygen` writes a private key only its
owner can read and never overwrites one, `build` signs a DSSE envelope that `verify` accepts and that
Python's `cryptography` verifies independently, `verify` refuses a tampered bundle (bad_signature), a
bundle for another fleet (wrong_fleet) and one from an unrelated key (unknown_key) with exit 1,
`lint` reports a bad source with the compiler's words, and `diff` prints one line per changed setting
and exits like diff(1). No agent runs: these commands work on files only."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import DEFAULT_POLICY, binary

PAYLOAD_TYPE = "application/vnd.airlock.policy+json"


def airlock(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    """`airlock policy ARGS` with no state directory or agent around (HOME points at an empty dir)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_")}
    env["HOME"] = str(cwd)
    return subprocess.run([str(binary("airlock")), "policy", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=60)


def ok(p: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "fleet.toml").write_text(DEFAULT_POLICY)
    return tmp_path


def keygen(work: Path, name: str) -> str:
    """A key pair named `name`; returns its key id."""
    return keygen_id(ok(airlock("keygen", name, cwd=work)).stdout)


def build(work: Path, key: str, out: str, *extra: str, fleet: str = "acme", version: int = 3,
          src: str = "fleet.toml") -> subprocess.CompletedProcess:
    return airlock("build", src, "--key", key, "--fleet", fleet, "--version", str(version), "--out", out,
                   *extra, cwd=work)


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites(work: Path):
    p = ok(airlock("keygen", "fleet.key", cwd=work))
    private, public = work / "fleet.key", work / "fleet.key.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    key_text = private.read_text()
    assert key_text.startswith("-----BEGIN PRIVATE KEY-----")
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    # The id and the .pub path are printed, the private key never.
    assert "fleet.key.pub" in p.stdout
    key_id = keygen_id(p.stdout)
    assert len(key_id) == 16 and all(c in "0123456789abcdef" for c in key_id)
    body = "".join(line for line in key_text.splitlines() if not line.startswith("-----"))
    assert body not in p.stdout + p.stderr and body[:16] not in p.stdout + p.stderr

    again = airlock("keygen", "fleet.key", cwd=work)
    assert again.returncode == 1
    assert "already exists" in again.stderr and "never overwritten" in again.stderr
    assert private.read_text() == key_text, "the existing key is untouched"

    # A signing key others can read is refused by build.
    private.chmod(0o644)
    refused = build(work, "fleet.key", "b.json")
    assert refused.returncode == 1 and "chmod 600" in refused.stderr, refused.stderr
    assert not (work / "b.json").exists()


def keygen_id(stdout: str) -> str:
    return next(line.split()[-1] for line in stdout.splitlines() if line.startswith("key id:"))


def test_build_then_verify_round_trip(work: Path):
    key_id = keygen(work, "fleet.key")
    p = ok(build(work, "fleet.key", "fleet.bundle", "--expires-in", "30d", version=7))
    for want in ("fleet:    acme", "version:  7", f"key id:   {key_id}", "digest:   sha256:", "expires:  20"):
        assert want in p.stdout, p.stdout
    # Rebuilding over an existing bundle is fine (written atomically).
    ok(build(work, "fleet.key", "fleet.bundle", "--expires-in", "30d", version=7))

    v = ok(airlock("verify", "fleet.bundle", "--pubkey", "fleet.key.pub", "--fleet", "acme", cwd=work))
    first = v.stdout.splitlines()[0]
    assert first.startswith(f"valid: fleet acme version 7 signed by {key_id}, expires 20"), v.stdout

    # The envelope is DSSE with our type and key id; the payload is the bundle's JSON.
    env = json.loads((work / "fleet.bundle").read_text())
    assert env["payloadType"] == PAYLOAD_TYPE
    assert env["signatures"][0]["keyid"] == key_id
    payload = json.loads(base64.b64decode(env["payload"], validate=True))
    assert (payload["fleet"], payload["version"], payload["policy"]["schema"]) == ("acme", 7, 1)
    assert payload["expires_at"].endswith("Z") and payload["issued_at"].endswith("Z")


def test_the_signature_verifies_with_python_cryptography(work: Path):
    """Interop: another Ed25519 implementation verifies our signature over DSSE's PAE and reads our key
    files."""
    pytest.importorskip("cryptography")
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

    keygen(work, "fleet.key")
    ok(build(work, "fleet.key", "fleet.bundle"))
    env = json.loads((work / "fleet.bundle").read_text())
    body = base64.b64decode(env["payload"], validate=True)
    pae = b"DSSEv1 %d %s %d %s" % (len(PAYLOAD_TYPE), PAYLOAD_TYPE.encode(), len(body), body)
    public = load_pem_public_key((work / "fleet.key.pub").read_bytes())
    sig = base64.b64decode(env["signatures"][0]["sig"], validate=True)
    public.verify(sig, pae)  # raises InvalidSignature if wrong
    with pytest.raises(InvalidSignature):
        public.verify(sig, pae + b" ")
    private = load_pem_private_key((work / "fleet.key").read_bytes(), None)
    assert private.public_key().public_bytes_raw() == public.public_bytes_raw()


def test_verify_refuses_tampered_wrong_fleet_and_unknown_key_bundles(work: Path):
    keygen(work, "fleet.key")
    other_id = keygen(work, "other.key")
    ok(build(work, "fleet.key", "good.bundle"))

    # Flip one byte of the payload: the signature no longer verifies.
    env = json.loads((work / "good.bundle").read_text())
    body = bytearray(base64.b64decode(env["payload"]))
    at = body.index(b'"acme"') + 1
    body[at] ^= 0x01  # "acme" -> "`cme"
    env["payload"] = base64.b64encode(bytes(body)).decode()
    (work / "tampered.bundle").write_text(json.dumps(env))
    p = airlock("verify", "tampered.bundle", "--pubkey", "fleet.key.pub", cwd=work)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.startswith("refused: bad_signature: "), p.stderr

    p = airlock("verify", "good.bundle", "--pubkey", "fleet.key.pub", "--fleet", "globex", cwd=work)
    assert p.returncode == 1 and p.stderr.startswith("refused: wrong_fleet: "), p.stderr
    assert '"acme"' in p.stderr and '"globex"' in p.stderr

    ok(build(work, "other.key", "other.bundle"))
    p = airlock("verify", "other.bundle", "--pubkey", "fleet.key.pub", cwd=work)
    assert p.returncode == 1 and p.stderr.startswith("refused: unknown_key: "), p.stderr
    assert other_id in p.stderr
    # Trusting both keys accepts it.
    ok(airlock("verify", "other.bundle", "--pubkey", "fleet.key.pub", "--pubkey", "other.key.pub", cwd=work))

    (work / "junk.bundle").write_text("{\"payloadType\": 1}")
    p = airlock("verify", "junk.bundle", "--pubkey", "fleet.key.pub", cwd=work)
    assert p.returncode == 1 and p.stderr.startswith("refused: malformed: "), p.stderr


def test_lint_passes_a_good_source_and_names_what_is_wrong_in_a_bad_one(work: Path):
    p = ok(airlock("lint", "fleet.toml", cwd=work))
    assert p.stdout.startswith("fleet.toml: valid (") and "intercepted hosts" in p.stdout, p.stdout

    (work / "bad.toml").write_text('schema = 1\n[[hosts]]\nhost = "not a host"\nprovider = "openai"\n')
    p = airlock("lint", "bad.toml", cwd=work)
    assert p.returncode == 1 and p.stdout == ""
    assert "bad.toml" in p.stderr and "not a DNS name" in p.stderr, p.stderr
    # build refuses the same source, naming the file, and writes nothing.
    keygen(work, "fleet.key")
    p = build(work, "fleet.key", "bad.bundle", src="bad.toml")
    assert p.returncode == 1 and "bad.toml" in p.stderr and not (work / "bad.bundle").exists()


def test_diff_prints_changed_settings_and_bundle_metadata(work: Path):
    changed = DEFAULT_POLICY + '\n[[hosts]]\nhost = "llm.corp.example"\nprovider = "corp"\napi = "openai"\n'
    (work / "changed.toml").write_text(changed)
    p = airlock("diff", "fleet.toml", "fleet.toml", cwd=work)
    assert p.returncode == 0 and p.stdout.strip() == "no differences", p.stdout

    p = airlock("diff", "fleet.toml", "changed.toml", cwd=work)
    assert p.returncode == 1, p.stderr
    lines = p.stdout.splitlines()
    assert any(line.startswith("+ hosts[") and line.endswith('.host = "llm.corp.example"') for line in lines), lines
    assert any(line.endswith('.api = "openai"') for line in lines), lines
    assert all(line[:2] in ("+ ", "- ", "~ ") for line in lines), lines
    assert not any("= null" in line for line in lines), "unset settings are not listed"

    # A bundle of the same source differs in nothing; two bundles show their metadata.
    keygen(work, "fleet.key")
    ok(build(work, "fleet.key", "v3.bundle"))
    ok(build(work, "fleet.key", "v4.bundle", "--expires-in", "12h", src="changed.toml", version=4))
    p = airlock("diff", "fleet.toml", "v3.bundle", cwd=work)
    assert p.returncode == 0 and "no differences" in p.stdout, p.stdout + p.stderr
    p = airlock("diff", "v3.bundle", "v4.bundle", cwd=work)
    assert p.returncode == 1
    assert "~ bundle.version: 3 → 4" in p.stdout, p.stdout
    assert "~ bundle.expires_at: null → \"20" in p.stdout, p.stdout
    assert 'host = "llm.corp.example"' in p.stdout

    p = airlock("diff", "fleet.toml", "missing.toml", cwd=work)
    assert p.returncode == 2 and "missing.toml" in p.stderr
    help_text = " ".join(ok(airlock("diff", "--help", cwd=work)).stdout.split()).lower()
    assert "signatures are not verified" in help_text, help_text
