"""Every read command of `airlock` takes `--json` and prints one JSON document (or JSON Lines where it
streams) that scripts can parse, for success and for refusal alike."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import ROOT, binary

EXAMPLES = ROOT / "policies" / "examples"

# Commands that read and report: each must offer --json (dashboard, env, run and the writes are not reports).
READ_COMMANDS = [
    ["status"], ["inventory"], ["usage"], ["requests"], ["doctor"],
    ["ca", "show"], ["ca", "path"], ["ca", "trust-status"],
    ["credentials", "list"], ["journal", "verify"],
    ["policy", "show"], ["policy", "explain"], ["policy", "verify"], ["policy", "lint"], ["policy", "diff"],
    ["guard", "scan"], ["guard", "rules"], ["enroll"],
]


def airlock(*args, check=False) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary("airlock")), *map(str, args)], capture_output=True, text=True, timeout=60)


def test_every_read_command_offers_json():
    missing = [" ".join(c) for c in READ_COMMANDS if "--json" not in airlock(*c, "--help").stdout]
    assert not missing, f"read commands without --json: {missing}"


def test_policy_lint_verify_and_diff_answer_in_json_for_success_and_refusal(tmp_path):
    ok = airlock("policy", "lint", "--json", EXAMPLES / "enterprise.toml")
    assert ok.returncode == 0, ok.stderr
    v = json.loads(ok.stdout)
    assert v["valid"] is True and v["intercepted_hosts"] > 0
    bad = tmp_path / "bad.toml"
    bad.write_text('schema = 1\n[pause]\nmax_minutes = 0\n')
    r = airlock("policy", "lint", "--json", bad)
    assert r.returncode == 1 and json.loads(r.stdout)["valid"] is False
    assert "pause.max_minutes" in json.loads(r.stdout)["error"]

    same = airlock("policy", "diff", "--json", EXAMPLES / "enterprise.toml", EXAMPLES / "enterprise.toml")
    assert same.returncode == 0 and json.loads(same.stdout) == {"differences": []}
    other = airlock("policy", "diff", "--json", EXAMPLES / "enterprise.toml", EXAMPLES / "permissive.toml")
    assert other.returncode == 1 and json.loads(other.stdout)["differences"]

    key = tmp_path / "fleet.key"
    assert airlock("policy", "keygen", key).returncode == 0
    bundle = tmp_path / "b.json"
    built = airlock("policy", "build", EXAMPLES / "enterprise.toml", "--key", key, "--fleet", "acme",
                    "--version", "3", "--out", bundle)
    assert built.returncode == 0, built.stderr
    good = airlock("policy", "verify", "--json", bundle, "--pubkey", f"{key}.pub")
    assert good.returncode == 0, good.stderr
    g = json.loads(good.stdout)
    assert (g["valid"], g["fleet"], g["version"]) == (True, "acme", 3) and g["digest"].startswith("sha256:")
    wrong = airlock("policy", "verify", "--json", bundle, "--pubkey", f"{key}.pub", "--fleet", "other")
    w = json.loads(wrong.stdout)
    assert wrong.returncode == 1 and w["valid"] is False and w["reason"] and w["message"]


def test_ca_path_json_names_every_file(agent):
    v = json.loads(agent.cli("ca", "path", "--json").stdout)
    assert Path(v["cert_path"]).exists() and v["cert_path"] == agent.cli("ca", "path").stdout.strip()
    assert "bundle_path" in v and "java_trust_store_path" in v
