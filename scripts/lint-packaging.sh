#!/usr/bin/env bash
# Lints the packaging definitions that are built elsewhere (macOS pkg and launchd plists, the WiX MSI
# source, the Windows service scripts, the Homebrew formula, the MDM examples), so a broken file is
# caught on this Linux machine and not on the first Mac or Windows box that builds it:
#
#   scripts/lint-packaging.sh [PACKAGING_DIR]      (default: packaging/ of this checkout)
#
# - XML (plists, the profile, .wxs, distribution.xml) well-formed: python3's parser, and
#   `xmllint --noout` when it is installed;
# - plists parsed with plistlib and their required keys and values checked; the LaunchDaemon's
#   --config-dir must be the agent's macOS SYSTEM_CONFIG_DIR (agent/src/paths/managed_macos.rs);
# - the .wxs: UpgradeCode a GUID and equal to UPGRADE_CODE below (it must never change), the
#   service, the PATH entry and the setup/uninstall custom actions there; every service SID in the
#   Windows files equal to the one computed from the service name;
# - shell scripts: `sh -n`, executable, and `shellcheck` when it is installed; build-pkg.sh run
#   where pkgbuild is missing (it checks its inputs and exits 0);
# - the Homebrew formula: `ruby -c` when ruby is installed, and always a structural check;
# - PowerShell: brackets balanced outside strings and comments, no "$name:" inside a double-quoted
#   string (PowerShell reads it as a scope-qualified name), $ErrorActionPreference = 'Stop'; and
#   the PowerShell parser itself when pwsh is installed;
# - the MDM JSON and TOML: parsed, the PAC URL on the agent's default listen address, the example
#   enrollment with the fields `airlock enroll` writes and the profile carrying the same text.
#
# Exits non-zero naming each file that fails and why.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PACKAGING=${1:-$ROOT/packaging}
[ -d "$PACKAGING" ] || { echo "lint-packaging: no directory $PACKAGING" >&2; exit 2; }
PACKAGING=$(cd "$PACKAGING" && pwd)
command -v python3 >/dev/null 2>&1 || { echo "lint-packaging: python3 is needed" >&2; exit 2; }

exec python3 - "$PACKAGING" "$ROOT" <<'PY'
import hashlib
import json
import os
import plistlib
import re
import shutil
import struct
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

# Generated once for Airlock's MSI. It must NEVER change: Windows Installer finds the installed
# product to upgrade by it. packaging/wix/main.wxs and packaging/mdm/intune/uninstall.ps1 hold it too.
UPGRADE_CODE = "{BCC00C6D-C15F-4F16-94BA-4CA7DB1B1A56}"
SERVICE_NAME = "airlockd"
MAC_STATE_DIR = "/Library/Application Support/Airlock"

PKG = Path(sys.argv[1])
ROOT = Path(sys.argv[2])
errors: list[str] = []
# Tools to treat as absent even when installed (comma-separated), to exercise the fallbacks.
WITHOUT = set(filter(None, os.environ.get("AIRLOCK_LINT_WITHOUT", "").split(",")))


def which(tool: str) -> str | None:
    return None if tool in WITHOUT else shutil.which(tool)


checked: set[Path] = set()
notes: list[str] = []


def rel(p: Path) -> str:
    try:
        return str(p.relative_to(PKG.parent))
    except ValueError:
        return str(p)


def fail(p: Path, msg: str) -> None:
    errors.append(f"{rel(p)}: {msg}")


def need(path: str) -> Path | None:
    p = PKG / path
    if not p.is_file():
        fail(p, "missing")
        return None
    checked.add(p)
    return p


def rust_const(file: str, name: str) -> str | None:
    """The value of `const NAME: &str = "...";` (or r"...") in a source file of the agent."""
    p = ROOT / file
    try:
        text = p.read_text()
    except OSError:
        return None
    m = re.search(rf'const {name}: &str = r?"([^"]*)";', text)
    return m.group(1) if m else None


def service_sid(name: str) -> str:
    """The SID Windows gives the service `name` (NT SERVICE\\name): S-1-5-80 and the SHA-1 of the
    upper-cased name in UTF-16LE as five little-endian 32-bit numbers."""
    digest = hashlib.sha1(name.upper().encode("utf-16-le")).digest()
    return "S-1-5-80-" + "-".join(str(n) for n in struct.unpack("<5I", digest))


GUID = re.compile(r"^\{[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}\}$")
SID = service_sid(SERVICE_NAME)

# --- XML: every XML file is well-formed -------------------------------------------------------
XML_SUFFIXES = {".plist", ".mobileconfig", ".wxs", ".xml"}
xml_ok: set[Path] = set()
for p in sorted(PKG.rglob("*")):
    if p.is_file() and p.suffix in XML_SUFFIXES:
        checked.add(p)
        try:
            ET.parse(p)
            xml_ok.add(p)
        except ET.ParseError as e:
            fail(p, f"not well-formed XML: {e}")
            continue
        if which("xmllint"):
            r = subprocess.run(["xmllint", "--noout", "--nonet", str(p)], capture_output=True, text=True)
            if r.returncode != 0:
                fail(p, f"xmllint: {r.stderr.strip()}")


def load_plist(p: Path | None) -> dict | None:
    if p is None or p not in xml_ok:
        return None
    try:
        with open(p, "rb") as f:
            value = plistlib.load(f)
    except Exception as e:  # plistlib raises several kinds
        fail(p, f"not a property list: {e}")
        return None
    if not isinstance(value, dict):
        fail(p, "the top level is not a dictionary")
        return None
    return value


def expect(p: Path, d: dict, key: str, want=None, kind=None) -> object:
    if key not in d:
        fail(p, f"required key {key} is missing")
        return None
    v = d[key]
    if kind is not None and not isinstance(v, kind):
        fail(p, f"{key} must be a {kind.__name__}, not {type(v).__name__}")
    elif want is not None and v != want:
        fail(p, f"{key} is {v!r}, expected {want!r}")
    return v


# --- launchd ----------------------------------------------------------------------------------
mac_config = rust_const("agent/src/paths/managed_macos.rs", "SYSTEM_CONFIG_DIR")
if mac_config is None:
    notes.append("agent/src/paths/managed_macos.rs not found: the plist's --config-dir is checked against "
                 f"{MAC_STATE_DIR}/Config")
    mac_config = f"{MAC_STATE_DIR}/Config"
p = need("launchd/com.airlock.airlockd.plist")
d = load_plist(p)
if p and d is not None:
    expect(p, d, "Label", "com.airlock.airlockd", str)
    args = expect(p, d, "ProgramArguments", kind=list)
    if isinstance(args, list):
        if not args or args[0] != "/usr/local/bin/airlockd":
            fail(p, "ProgramArguments must start with /usr/local/bin/airlockd")

        def flag(name: str) -> str | None:
            return args[args.index(name) + 1] if name in args[:-1] else None

        if flag("--state-dir") != MAC_STATE_DIR:
            fail(p, f"ProgramArguments must pass --state-dir {MAC_STATE_DIR!r}")
        if flag("--config-dir") != mac_config:
            fail(p, f"ProgramArguments must pass --config-dir {mac_config!r} (the agent's macOS SYSTEM_CONFIG_DIR)")
    expect(p, d, "RunAtLoad", True, bool)
    expect(p, d, "KeepAlive", True, bool)
    expect(p, d, "UserName", "_airlock", str)
    expect(p, d, "ProcessType", "Background", str)
    for key in ("StandardOutPath", "StandardErrorPath"):
        v = expect(p, d, key, kind=str)
        if isinstance(v, str) and not v.startswith("/Library/Logs/Airlock/"):
            fail(p, f"{key} must be under /Library/Logs/Airlock/")
    if "Sockets" in d and not isinstance(d["Sockets"], dict):
        fail(p, "Sockets must be a dictionary of socket names")

p = need("launchd/com.airlock.tray.plist")
d = load_plist(p)
if p and d is not None:
    expect(p, d, "Label", "com.airlock.tray", str)
    expect(p, d, "ProgramArguments", ["/usr/local/bin/airlock", "tray"], list)
    expect(p, d, "RunAtLoad", True, bool)
    if "UserName" in d:
        fail(p, "a LaunchAgent runs as the logged-in user: no UserName")
need("launchd/README.md")

# --- macOS pkg --------------------------------------------------------------------------------
p = need("macos/distribution.xml")
if p in xml_ok:
    root = ET.parse(p).getroot()
    if root.tag != "installer-gui-script":
        fail(p, f"the root element is {root.tag}, expected installer-gui-script")
    refs = [r for r in root.iter("pkg-ref") if (r.text or "").strip()]
    if [r.text.strip() for r in refs] != ["airlock-component.pkg"]:
        fail(p, "must have one pkg-ref naming airlock-component.pkg (what build-pkg.sh builds)")
    elif refs[0].get("version") != "@VERSION@":
        fail(p, "the pkg-ref's version must be @VERSION@ (build-pkg.sh fills it in)")
    domains = root.find("domains")
    if domains is None or domains.get("enable_localSystem") != "true":
        fail(p, "domains must enable_localSystem (a LaunchDaemon is installed for the whole machine)")
for name in ("macos/README.md",):
    need(name)

# --- shell scripts ----------------------------------------------------------------------------
SHELL_SCRIPTS = ["macos/build-pkg.sh", "macos/scripts/preinstall", "macos/scripts/postinstall",
                 "macos/uninstall.sh", "mdm/jamf/install.sh"]
have_shellcheck = which("shellcheck") is not None
if not have_shellcheck:
    notes.append("shellcheck is not installed: shell scripts checked with sh -n only")
for name in SHELL_SCRIPTS:
    p = need(name)
    if p is None:
        continue
    text = p.read_text()
    if not text.startswith("#!/bin/sh\n"):
        fail(p, "must start with #!/bin/sh (it runs on macOS's /bin/sh)")
    if not os.access(p, os.X_OK):
        fail(p, "is not executable (chmod +x; pkgbuild and Jamf run it directly)")
    r = subprocess.run(["sh", "-n", str(p)], capture_output=True, text=True)
    if r.returncode != 0:
        fail(p, f"sh -n: {r.stderr.strip()}")
        continue
    if have_shellcheck:
        r = subprocess.run(["shellcheck", "--shell=sh", str(p)], capture_output=True, text=True)
        if r.returncode != 0:
            fail(p, "shellcheck:\n" + r.stdout.strip())
    if "set -eu" not in text:
        fail(p, "must `set -eu`")

for name in ("macos/scripts/postinstall", "mdm/jamf/install.sh"):
    p = PKG / name
    if p.is_file() and "setup --system --yes" not in p.read_text():
        fail(p, "must run `airlock setup --system --yes`")
p = PKG / "macos/scripts/preinstall"
if p.is_file() and "dscl . -create \"/Users/$NAME\"" not in p.read_text():
    fail(p, "must create the _airlock user with dscl")
p = PKG / "macos/uninstall.sh"
if p.is_file() and "uninstall --yes" not in p.read_text():
    fail(p, "must run `airlock uninstall --yes`")

build = PKG / "macos/build-pkg.sh"
if build.is_file() and not errors and which("pkgbuild") is None:
    r = subprocess.run(["sh", str(build)], capture_output=True, text=True,
                       env={**os.environ, "VERSION": os.environ.get("VERSION", "0.0.0")})
    if r.returncode != 0:
        fail(build, f"its input check failed: {(r.stderr or r.stdout).strip()}")

# --- WiX ----------------------------------------------------------------------------------------
WIX = "{http://wixtoolset.org/schemas/v4/wxs}"
UTIL = "{http://wixtoolset.org/schemas/v4/wxs/util}"
p = need("wix/main.wxs")
if p in xml_ok:
    root = ET.parse(p).getroot()
    if root.tag != f"{WIX}Wix":
        fail(p, f"the root element is {root.tag}, expected Wix in the WiX v4 namespace")
    package = root.find(f"{WIX}Package")
    if package is None:
        fail(p, "no Package element (WiX v4)")
    else:
        code = package.get("UpgradeCode", "")
        if not GUID.match(code):
            fail(p, f"UpgradeCode {code!r} is not a GUID in braces, upper case")
        elif code != UPGRADE_CODE:
            fail(p, f"UpgradeCode changed to {code}: it must stay {UPGRADE_CODE}, or Windows installs a second "
                    "Airlock beside the first instead of upgrading it")
        if package.find(f"{WIX}MajorUpgrade") is None:
            fail(p, "no MajorUpgrade: a new version would not replace the old one")
    if root.find(f".//{WIX}StandardDirectory[@Id='ProgramFiles64Folder']/{WIX}Directory[@Name='Airlock']") is None:
        fail(p, "binaries must go to ProgramFiles64Folder\\Airlock")
    sources = {f.get("Source", "").replace("\\", "/").rsplit("/", 1)[-1] for f in root.iter(f"{WIX}File")}
    for exe in ("airlockd.exe", "airlock.exe"):
        if exe not in sources:
            fail(p, f"does not install {exe}")
    svc = root.find(f".//{WIX}ServiceInstall[@Name='{SERVICE_NAME}']")
    if svc is None:
        fail(p, f"no ServiceInstall for {SERVICE_NAME}")
    else:
        for attr, want in (("Type", "ownProcess"), ("Start", "auto")):
            if svc.get(attr) != want:
                fail(p, f"ServiceInstall {attr} must be {want}")
        if "--config-dir" not in svc.get("Arguments", "") or "Airlock\\Config" not in svc.get("Arguments", ""):
            fail(p, "ServiceInstall must pass --config-dir ...Airlock\\Config (the agent's Windows SYSTEM_CONFIG_DIR)")
        if svc.find(f"{UTIL}ServiceConfig") is None and svc.find(f"{WIX}ServiceConfigFailureActions") is None:
            fail(p, "ServiceInstall has no recovery actions (util:ServiceConfig)")
    if root.find(f".//{WIX}ServiceControl[@Name='{SERVICE_NAME}']") is None:
        fail(p, f"no ServiceControl for {SERVICE_NAME}")
    env = root.find(f".//{WIX}Environment[@Name='PATH']")
    if env is None or env.get("System") != "yes":
        fail(p, "no system PATH Environment entry")
    commands = {a.get("Id"): a.get("ExeCommand", "") for a in root.iter(f"{WIX}CustomAction")}
    scheduled = {c.get("Action"): c.get("Condition", "") for c in root.iter(f"{WIX}Custom")}
    for needle, when in (("setup --system --yes", "NOT REMOVE"), ("uninstall --yes", 'REMOVE="ALL"')):
        ids = [i for i, cmd in commands.items() if needle in cmd]
        if not ids:
            fail(p, f"no custom action runs `airlock {needle}`")
        elif not any(when in scheduled.get(i, "") for i in ids):
            fail(p, f"the custom action running `airlock {needle}` is not scheduled with a {when} condition")
    guids = [c.get("Guid") for c in root.iter(f"{WIX}Component") if c.get("Guid")]
    for g in guids:
        if not GUID.match(g):
            fail(p, f"Component Guid {g!r} is not a GUID in braces, upper case")
    if len(set(guids)) != len(guids):
        fail(p, "two Components share a Guid")
need("wix/README.md")

win_config = rust_const("agent/src/paths/managed_windows.rs", "SYSTEM_CONFIG_DIR")
if win_config is not None and not win_config.endswith(r"ProgramData\Airlock\Config"):
    fail(ROOT / "agent/src/paths/managed_windows.rs",
         f"SYSTEM_CONFIG_DIR {win_config!r} is not where the MSI and the service scripts put the configuration")

# Every service SID in the Windows definitions is airlockd's.
for p in [PKG / "wix/main.wxs", *sorted((PKG / "windows").glob("*")), *sorted((PKG / "mdm/intune").glob("*"))]:
    if p.is_file():
        for found in set(re.findall(r"S-1-5-80-[0-9-]+[0-9]", p.read_text(errors="replace"))):
            if found != SID:
                fail(p, f"service SID {found} is not {SERVICE_NAME}'s ({SID})")
for name in ("wix/main.wxs", "windows/install-service.ps1"):
    p = PKG / name
    if p.is_file() and SID not in p.read_text():
        fail(p, f"does not grant the service SID {SID} (the ACLs must name the service)")

# --- PowerShell ---------------------------------------------------------------------------------
OPEN, CLOSE = "({[", ")}]"
SCOPES = ("env", "script", "global", "local", "private", "using", "variable", "function", "alias")


def ps_check(p: Path) -> None:
    """Brackets balanced outside strings and comments; no "$name:" in a double-quoted string."""
    s = p.read_text()
    stack: list[tuple[str, int]] = []
    i, n, line = 0, len(s), 1

    def at(k: int) -> str:
        return s[k] if k < n else ""

    while i < n:
        c = s[i]
        if c == "\n":
            line += 1
        if c == "<" and at(i + 1) == "#":
            end = s.find("#>", i + 2)
            if end < 0:
                fail(p, f"line {line}: block comment <# never closed")
                return
            line += s.count("\n", i, end)
            i = end + 2
            continue
        if c == "#":
            end = s.find("\n", i)
            i = n if end < 0 else end
            continue
        if c == "@" and at(i + 1) in "\"'" and at(i + 2) == "\n":
            q = at(i + 1)
            end = s.find(f"\n{q}@", i + 3)
            if end < 0:
                fail(p, f"line {line}: here-string @{q} never closed")
                return
            line += s.count("\n", i, end + 1)
            i = end + 3
            continue
        if c == "'":
            j = i + 1
            while j < n:
                if s[j] == "'" and at(j + 1) == "'":
                    j += 2
                    continue
                if s[j] == "'":
                    break
                j += 1
            if j >= n:
                fail(p, f"line {line}: single-quoted string never closed")
                return
            line += s.count("\n", i, j)
            i = j + 1
            continue
        if c == '"':
            j = i + 1
            while j < n:
                if s[j] == "`":
                    j += 2
                    continue
                if s[j] == '"' and at(j + 1) == '"':
                    j += 2
                    continue
                if s[j] == '"':
                    break
                j += 1
            if j >= n:
                fail(p, f"line {line}: double-quoted string never closed")
                return
            body = s[i + 1:j]
            for m in re.finditer(r"\$([A-Za-z_][A-Za-z0-9_]*):(?![A-Za-z_])", body):
                if m.group(1).lower() not in SCOPES:
                    fail(p, f"line {line + body.count(chr(10), 0, m.start())}: \"${m.group(1)}:\" in a "
                            f"double-quoted string is read as a scope-qualified variable; write $({'$' + m.group(1)}):")
            line += s.count("\n", i, j)
            i = j + 1
            continue
        if c == "`":
            i += 2
            continue
        if c in OPEN:
            stack.append((c, line))
        elif c in CLOSE:
            want = OPEN[CLOSE.index(c)]
            if not stack or stack[-1][0] != want:
                fail(p, f"line {line}: {c!r} closes nothing open" if not stack else
                        f"line {line}: {c!r} closes {stack[-1][0]!r} opened on line {stack[-1][1]}")
                return
            stack.pop()
        i += 1
    if stack:
        fail(p, f"{stack[-1][0]!r} opened on line {stack[-1][1]} is never closed")


PS_SCRIPTS = ["windows/install-service.ps1", "windows/uninstall-service.ps1", "mdm/intune/install.ps1",
              "mdm/intune/detect.ps1", "mdm/intune/uninstall.ps1"]
pwsh = which("pwsh")
if pwsh is None:
    notes.append("pwsh is not installed: PowerShell checked for brackets and pitfalls, not parsed")
for name in PS_SCRIPTS:
    p = need(name)
    if p is None:
        continue
    ps_check(p)
    if "$ErrorActionPreference = 'Stop'" not in p.read_text():
        fail(p, "must set $ErrorActionPreference = 'Stop' (native errors would otherwise be ignored)")
    if pwsh:
        script = ("$e = $null; [void][System.Management.Automation.Language.Parser]::ParseFile($args[0], "
                  "[ref]$null, [ref]$e); if ($e) { $e | ForEach-Object { $_.ToString() }; exit 1 }")
        r = subprocess.run([pwsh, "-NoProfile", "-NonInteractive", "-Command", script, str(p)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            fail(p, "PowerShell parser: " + (r.stdout + r.stderr).strip())
p = PKG / "windows/install-service.ps1"
if p.is_file():
    t = p.read_text()
    for needle, why in (("'failure'", "sc.exe failure recovery actions"), ("'reset='", "a reset period"),
                        ("'own'", "its own process"), ("'auto'", "automatic start")):
        if needle not in t:
            fail(p, f"does not set {why} ({needle})")
p = PKG / "mdm/intune/uninstall.ps1"
if p.is_file() and UPGRADE_CODE not in p.read_text():
    fail(p, f"must find the MSI by its UpgradeCode {UPGRADE_CODE}")
need("windows/README.md")

# --- Homebrew -----------------------------------------------------------------------------------
p = need("homebrew/airlock.rb")
if p is not None:
    t = p.read_text()
    if which("ruby"):
        r = subprocess.run(["ruby", "-c", str(p)], capture_output=True, text=True)
        if r.returncode != 0:
            fail(p, f"ruby -c: {r.stderr.strip()}")
    else:
        notes.append("ruby is not installed: the formula is checked for its structure only")
        opened = len(re.findall(r"^\s*(?:class|def) |\bdo$", t, re.M))
        if opened != len(re.findall(r"^\s*end$", t, re.M)):
            fail(p, "its def/do blocks and `end`s do not pair up")
    for pattern, what in (
        (r"^class Airlock < Formula$", "class Airlock < Formula"),
        (r'^  desc "[^"]+"$', "a desc"),
        (r'^  homepage "https://', "an https homepage"),
        (r'^  url "https://[^"]+"$', "a url"),
        (r'^  sha256 "[0-9a-f]{64}"$', "a sha256 of 64 hex digits"),
        (r'^  license "', "a license"),
        (r'^  depends_on "rust" => :build$', 'depends_on "rust" => :build'),
        (r"^  def install$", "def install"),
        (r'std_cargo_args\(path: "cli"\)', 'cargo install *std_cargo_args(path: "cli")'),
        (r'std_cargo_args\(path: "agent"\)', 'cargo install *std_cargo_args(path: "agent")'),
        (r'generate_completions_from_executable\(bin/"airlock", "completions"\)', "completions from `airlock completions`"),
        (r"^  service do$", "a service do block"),
        (r'run \[opt_bin/"airlockd"', "a service running airlockd"),
        (r"^  test do$", "a test do block"),
        (r"airlockd --check", "a test running airlockd --check"),
        (r"airlock --version", "a test running airlock --version"),
    ):
        if not re.search(pattern, t, re.M):
            fail(p, f"has no {what}")
    if "PLACEHOLDER" not in t:
        fail(p, "the url/sha256 placeholders must be marked PLACEHOLDER")

# --- MDM ----------------------------------------------------------------------------------------
ENROLLMENT_KEYS = {"fleet", "url", "pubkeys", "ca_file", "interval_secs", "fail_mode"}
example = need("mdm/enrollment.example.toml")
example_text = example.read_text() if example else None
if example is not None:
    try:
        import tomllib
    except ImportError:
        tomllib = None
        notes.append("python3 has no tomllib (3.11+): the enrollment example is not parsed")
    if tomllib is not None:
        try:
            e = tomllib.loads(example_text)
        except tomllib.TOMLDecodeError as err:
            fail(example, f"not TOML: {err}")
            e = None
        if e is not None:
            unknown = set(e) - ENROLLMENT_KEYS
            if unknown:
                fail(example, f"fields the agent refuses (deny_unknown_fields): {sorted(unknown)}")
            if not isinstance(e.get("fleet"), str) or not e["fleet"].strip():
                fail(example, "fleet must be a non-empty string")
            keys = e.get("pubkeys")
            if not isinstance(keys, list) or not keys or not all(
                    isinstance(k, str) and k.startswith("-----BEGIN PUBLIC KEY-----") for k in keys):
                fail(example, "pubkeys must be a non-empty list of PEM public keys")
            if "url" in e and not str(e["url"]).startswith("https://"):
                fail(example, "url must be https://")
            if e.get("fail_mode", "open") not in ("open", "closed"):
                fail(example, "fail_mode must be open or closed")
            if not isinstance(e.get("interval_secs", 300), int) or e.get("interval_secs", 300) < 1:
                fail(example, "interval_secs must be a whole number of seconds, at least 1")

p = need("mdm/jamf/airlock-enrollment.mobileconfig")
d = load_plist(p)
if p and d is not None:
    expect(p, d, "PayloadType", "Configuration", str)
    expect(p, d, "PayloadScope", "System", str)
    uuids = []
    payloads = expect(p, d, "PayloadContent", kind=list)
    for i, pl in enumerate([d] + (payloads if isinstance(payloads, list) else [])):
        where = "the profile" if i == 0 else f"payload {i}"
        if not isinstance(pl, dict):
            fail(p, f"{where} is not a dictionary")
            continue
        for key, kind in (("PayloadIdentifier", str), ("PayloadType", str), ("PayloadUUID", str),
                          ("PayloadVersion", int)):
            if not isinstance(pl.get(key), kind):
                fail(p, f"{where} has no {key}")
        try:
            uuids.append(str(uuid.UUID(pl.get("PayloadUUID", ""))))
        except ValueError:
            fail(p, f"{where}: PayloadUUID {pl.get('PayloadUUID')!r} is not a UUID")
    if len(set(uuids)) != len(uuids):
        fail(p, "two payloads share a PayloadUUID")
    by_type = {pl.get("PayloadType"): pl for pl in payloads if isinstance(pl, dict)} if isinstance(payloads, list) else {}
    airlock = by_type.get("com.airlock.airlockd")
    if airlock is None:
        fail(p, "no com.airlock.airlockd payload (the enrollment)")
    elif not isinstance(airlock.get("EnrollmentTOML"), str):
        fail(p, "the com.airlock.airlockd payload has no EnrollmentTOML string")
    elif example_text is not None and airlock["EnrollmentTOML"] != example_text:
        fail(p, "EnrollmentTOML differs from mdm/enrollment.example.toml: keep the example and the profile the same")
    firefox = by_type.get("org.mozilla.firefox")
    if firefox is None:
        fail(p, "no org.mozilla.firefox payload")
    else:
        if firefox.get("EnterprisePoliciesEnabled") is not True:
            fail(p, "the Firefox payload must set EnterprisePoliciesEnabled")
        if not isinstance(firefox.get("Certificates"), dict) or firefox["Certificates"].get("ImportEnterpriseRoots") is not True:
            fail(p, "the Firefox payload must set Certificates.ImportEnterpriseRoots")
    if "com.apple.security.root" in by_type:
        fail(p, "a certificate payload cannot carry the device CA (it is made on each device)")

listen = rust_const("agent/src/paths/mod.rs", "DEFAULT_LISTEN") or "127.0.0.1:8479"
p = need("mdm/intune/custom-oma-uri.json")
if p is not None:
    try:
        doc = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        fail(p, f"not JSON: {e}")
        doc = None
    if doc is not None:
        settings = doc.get("omaSettings")
        if not isinstance(settings, list) or not settings:
            fail(p, "no omaSettings")
            settings = []
        for s in settings:
            if not str(s.get("omaUri", "")).startswith("./") or "@odata.type" not in s:
                fail(p, f"OMA setting {s.get('displayName')!r} needs an omaUri starting ./ and an @odata.type")
        pac = [s.get("value") for s in settings if str(s.get("omaUri", "")).endswith("/NetworkProxy/SetupScriptUrl")]
        if pac != [f"http://{listen}/proxy.pac"]:
            fail(p, f"the NetworkProxy SetupScriptUrl must be http://{listen}/proxy.pac (the agent's DEFAULT_LISTEN)")
need("mdm/README.md")

# --- every file under the directories this script owns is one it knows ------------------------
for sub in ("launchd", "windows", "wix", "macos", "homebrew", "mdm"):
    for f in sorted((PKG / sub).rglob("*")):
        if f.is_file() and f not in checked and f.suffix != ".md":
            fail(f, "not checked by scripts/lint-packaging.sh: teach it this file")

for n in notes:
    print(f"lint-packaging: note: {n}")
if errors:
    for e in errors:
        print(f"lint-packaging: FAIL {e}", file=sys.stderr)
    print(f"lint-packaging: {len(errors)} problem(s)", file=sys.stderr)
    sys.exit(1)
print(f"lint-packaging: ok ({len(checked)} files)")
PY
