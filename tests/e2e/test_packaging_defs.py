"""The packaging definitions that are built on other machines (macOS pkg and launchd, WiX MSI,
Windows service, Homebrew, MDM profiles) stay buildable: scripts/lint-packaging.sh passes on them,
and catches a broken copy of each kind of file, naming it. The MDM example enrollment is one the real
`airlock enroll --show` accepts.
"""

from __future__ import annotations

import json
import os
import plistlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BIN_DIR, ROOT

LINTER = ROOT / "scripts" / "lint-packaging.sh"
PACKAGING = ROOT / "packaging"


def lint(packaging: Path | None = None, without: str = "") -> subprocess.CompletedProcess:
    args = [str(LINTER)] + ([str(packaging)] if packaging else [])
    env = {**os.environ, "AIRLOCK_LINT_WITHOUT": without}
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture
def copy(tmp_path) -> Path:
    """A copy of packaging/ to break (modes kept: the linter checks that scripts are executable)."""
    dst = tmp_path / "packaging"
    shutil.copytree(PACKAGING, dst, symlinks=True)
    return dst


def test_the_packaging_definitions_pass_the_linter():
    r = lint()
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    assert "lint-packaging: ok" in r.stdout


def test_the_fallbacks_pass_too_without_ruby_shellcheck_or_xmllint():
    """Where those tools are missing the structural checks stand in, and still pass."""
    r = lint(without="ruby,shellcheck,xmllint")
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    assert "ruby is not installed" in r.stdout


def test_a_truncated_plist_is_caught_and_named(copy):
    plist = copy / "launchd" / "com.airlock.airlockd.plist"
    plist.write_bytes(plist.read_bytes()[:300])
    r = lint(copy)
    assert r.returncode != 0
    assert "launchd/com.airlock.airlockd.plist: not well-formed XML" in r.stderr, r.stderr


def test_a_plist_missing_a_required_key_is_caught(copy):
    plist = copy / "launchd" / "com.airlock.airlockd.plist"
    d = plistlib.loads(plist.read_bytes())
    del d["KeepAlive"]
    d["UserName"] = "root"
    plist.write_bytes(plistlib.dumps(d))
    r = lint(copy)
    assert r.returncode != 0
    assert "com.airlock.airlockd.plist: required key KeepAlive is missing" in r.stderr, r.stderr
    assert "UserName is 'root', expected '_airlock'" in r.stderr, r.stderr


def test_a_changed_upgrade_code_is_caught(copy):
    wxs = copy / "wix" / "main.wxs"
    text = wxs.read_text()
    code = re.search(r'UpgradeCode="(\{[0-9A-F-]+\})"', text).group(1)
    wxs.write_text(text.replace(code, "{00000000-0000-0000-0000-000000000000}"))
    r = lint(copy)
    assert r.returncode != 0
    assert f"wix/main.wxs: UpgradeCode changed to {{00000000-0000-0000-0000-000000000000}}: it must stay {code}" in r.stderr


def test_powershell_brackets_and_pitfalls_are_caught(copy):
    ps = copy / "windows" / "install-service.ps1"
    ps.write_text(ps.read_text() + '\nif ($true) {\n    Write-Host "in $DataDir: done"\n')
    r = lint(copy)
    assert r.returncode != 0
    assert "windows/install-service.ps1" in r.stderr
    assert '"$DataDir:" in a double-quoted string' in r.stderr, r.stderr
    assert "is never closed" in r.stderr, r.stderr


def test_a_broken_shell_script_and_formula_are_caught(copy):
    sh = copy / "macos" / "scripts" / "postinstall"
    sh.write_text(sh.read_text() + "\nif then\n")
    rb = copy / "homebrew" / "airlock.rb"
    rb.write_text(rb.read_text().replace('depends_on "rust" => :build', 'depends_on "rust"'))
    r = lint(copy, without="ruby")
    assert r.returncode != 0
    assert "macos/scripts/postinstall: sh -n" in r.stderr, r.stderr
    assert 'homebrew/airlock.rb: has no depends_on "rust" => :build' in r.stderr, r.stderr


def test_the_profile_and_the_example_enrollment_are_kept_the_same(copy):
    example = copy / "mdm" / "enrollment.example.toml"
    example.write_text(example.read_text().replace('fail_mode = "closed"', 'fail_mode = "shut"'))
    r = lint(copy)
    assert r.returncode != 0
    assert "mdm/enrollment.example.toml: fail_mode must be open or closed" in r.stderr, r.stderr
    assert "airlock-enrollment.mobileconfig: EnrollmentTOML differs" in r.stderr, r.stderr


def test_build_pkg_checks_its_inputs_and_builds_nothing_without_pkgbuild():
    if shutil.which("pkgbuild"):
        pytest.skip("pkgbuild is here: build-pkg.sh would build a real package")
    r = subprocess.run(["sh", str(PACKAGING / "macos" / "build-pkg.sh")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "no .pkg is built here" in r.stdout


def test_the_mdm_example_enrollment_is_one_airlock_accepts(tmp_path):
    """The example (and so the profile's text) is in the format the agent reads: the real CLI's
    parser, not a copy of its rules."""
    airlock = BIN_DIR / "airlock"
    if not airlock.exists():
        pytest.skip(f"{airlock} is not built")
    config = tmp_path / "config"
    config.mkdir()
    shutil.copy(PACKAGING / "mdm" / "enrollment.example.toml", config / "enrollment.toml")
    r = subprocess.run([str(airlock), "enroll", "--show", "--json", "--config-dir", str(config)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert shown["enrolled"] is True
    assert shown["fleet"] == "acme-laptops"
    assert shown["fail_mode"] == "closed"
    assert len(shown["pinned_keys"]) == 1
    profile = plistlib.loads((PACKAGING / "mdm" / "jamf" / "airlock-enrollment.mobileconfig").read_bytes())
    texts = [p.get("EnrollmentTOML") for p in profile["PayloadContent"]]
    assert (config / "enrollment.toml").read_text() in texts
