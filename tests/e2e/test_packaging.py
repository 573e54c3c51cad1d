"""The packages as an admin installs them: scripts/package.sh builds the .deb and .rpm from the
debug build; the .deb is installed with dpkg on this machine (user, files, units that
`systemd-analyze verify` accepts, completions, man page), its airlockd is run by hand as the
`airlock` user, and real clients reach the mock provider through it trusting the device CA only
through the stores `airlock setup --system` filled (no SSL_CERT_FILE): curl, Python `ssl`, a Java
HttpClient with the default truststore, the Node openai SDK with the system CA, and headless Chromium
through NSS. `dpkg -r` then leaves no trace in any store. An upgrade keeps the state directory; the
.rpm is inspected and installed into a scratch root; `airlock setup --user` leaves a home as it was.
These tests change the machine (dpkg, trust stores), so they run as root and clean up after."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import MOCK_HOSTS, ROOT, DEFAULT_POLICY, free_port, stop

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="installs packages: needs root")

BIN = Path(os.environ.get("AIRLOCK_BIN_DIR", ROOT / "target" / "debug"))

# The package tests (dpkg and trust stores on this machine, about two minutes) run when
# AIRLOCK_TEST_PACKAGES=1, which scripts/test.sh sets; a bare pytest run leaves the machine alone.
packages_enabled = pytest.mark.skipif(os.environ.get("AIRLOCK_TEST_PACKAGES") != "1",
                                      reason="set AIRLOCK_TEST_PACKAGES=1 to build and install the packages")


def run(*args, check=True, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{args} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("packages")
    env = {**os.environ, "CARGO_TARGET_DIR": str(BIN.parent)}
    r = run(ROOT / "scripts" / "package.sh", "--profile", "dev", "--no-build", "--out", out, env=env)
    paths = [Path(p) for p in r.stdout.split()]
    old = run(ROOT / "scripts" / "package.sh", "--profile", "dev", "--no-build", "--out", out / "old",
              "--version", "0.0.1~prev", "--only", "deb", env=env)
    return {"deb": next(p for p in paths if p.suffix == ".deb"),
            "rpm": next(p for p in paths if p.suffix == ".rpm"),
            "old_deb": Path(old.stdout.split()[0])}


def store_listing() -> dict:
    """Every place the CA can be, as text: compared before install and after removal."""
    nss = subprocess.run(["certutil", "-L", "-d", "sql:/root/.pki/nssdb"], capture_output=True, text=True).stdout
    java = subprocess.run(["keytool", "-list", "-cacerts", "-storepass", "changeit"],
                          capture_output=True, text=True).stdout
    return {
        "anchors": sorted(os.listdir("/usr/local/share/ca-certificates")),
        "bundle_airlock": "Airlock" in run("openssl", "crl2pkcs7", "-nocrl", "-certfile",
                                           "/etc/ssl/certs/ca-certificates.crt").stdout + "",
        "system_bundle_size": len(Path("/etc/ssl/certs/ca-certificates.crt").read_text().split("BEGIN")),
        "nss": sorted(l.rsplit(None, 1)[0] for l in nss.splitlines()[4:] if l.strip()),
        "java_airlock": [l for l in java.splitlines() if "airlock" in l.lower()],
        "profile_d": sorted(os.listdir("/etc/profile.d")),
        "units": sorted(p.name for p in Path("/usr/lib/systemd/system").glob("airlock*")),
        "enabled": sorted(str(p) for p in Path("/etc/systemd/system").rglob("airlock*")),
    }


@pytest.fixture(scope="module")
def clean_machine():
    """No earlier Airlock install, and a root NSS database (as one exists once Chromium has run)."""
    if run("dpkg-query", "-W", "airlock", check=False).returncode == 0:
        run("dpkg", "-P", "airlock", check=False)
    shutil.rmtree("/var/lib/airlock", ignore_errors=True)
    made_nssdb = not Path("/root/.pki/nssdb/cert9.db").exists()
    if made_nssdb:
        Path("/root/.pki/nssdb").mkdir(parents=True, exist_ok=True)
        run("certutil", "-N", "-d", "sql:/root/.pki/nssdb", "--empty-password")
    yield store_listing()
    run("dpkg", "-P", "airlock", check=False)
    shutil.rmtree("/var/lib/airlock", ignore_errors=True)
    if made_nssdb:
        shutil.rmtree("/root/.pki/nssdb", ignore_errors=True)


def shared_copy(src: Path, dst_dir: Path) -> Path:
    dst_dir.mkdir(parents=True, exist_ok=True)
    dst_dir.chmod(0o755)
    dst = dst_dir / src.name
    shutil.copy(src, dst)
    dst.chmod(0o644)
    return dst


def start_packaged_agent(mock, workdir: Path) -> tuple[subprocess.Popen, int]:
    """The packaged airlockd, run by hand as the `airlock` user (no systemd PID 1 here)."""
    shared = Path(f"/tmp/airlock-pkg-{os.getpid()}")
    ca = shared_copy(mock.ca_file, shared)
    text = DEFAULT_POLICY + "\n" + "".join(
        f'\n[upstream.overrides."{h}"]\naddress = "127.0.0.1:{mock.port}"\nca_file = "{ca}"\n' for h in MOCK_HOSTS)
    policy = shared / "policy.toml"
    policy.write_text(text)
    policy.chmod(0o644)
    port = free_port()
    log = open(workdir / "airlockd.log", "w")
    proc = subprocess.Popen(
        [shutil.which("runuser") or "/usr/sbin/runuser", "-u", "airlock", "--", "/usr/bin/airlockd", "--state-dir", "/var/lib/airlock",
         "--config-dir", "/etc/airlock", "--listen", f"127.0.0.1:{port}", "--policy", str(policy)],
        stdout=log, stderr=subprocess.STDOUT, env={"PATH": "/usr/bin:/bin", "AIRLOCK_LOG": "info"})
    deadline = time.time() + 20
    while time.time() < deadline:
        if Path("/var/lib/airlock/airlockd.json").exists():
            break
        assert proc.poll() is None, (workdir / "airlockd.log").read_text()
        time.sleep(0.1)
    else:
        raise AssertionError((workdir / "airlockd.log").read_text())
    return proc, port


def client_env(port: int) -> dict:
    """A shell with the proxy and nothing that names a CA file: trust comes from the stores."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
                        "NODE_EXTRA_CA_CERTS", "JAVA_TOOL_OPTIONS")}
    proxy = f"http://127.0.0.1:{port}"
    env.update({"HTTPS_PROXY": proxy, "https_proxy": proxy, "NO_PROXY": "", "no_proxy": ""})
    return env


JAVA = """
import java.net.*; import java.net.http.*;
public class Probe { public static void main(String[] a) throws Exception {
  var c = HttpClient.newBuilder().proxy(ProxySelector.of(new InetSocketAddress("127.0.0.1", Integer.parseInt(a[0])))).build();
  var r = c.send(HttpRequest.newBuilder(URI.create("https://api.openai.com/v1/models")).header("authorization", "Bearer sk-java").build(),
                 HttpResponse.BodyHandlers.ofString());
  System.out.println(r.statusCode() + " " + r.body()); } }
"""

NODE = """
const OpenAI = require('openai');
const client = new OpenAI({apiKey: 'sk-node-pkg'});
client.models.list().then(p => { console.log('models', p.data.length); }).catch(e => { console.error(e); process.exit(1); });
"""


@packages_enabled
def test_the_deb_installs_serves_real_clients_through_the_system_stores_and_leaves_no_trace(
        packages, clean_machine, mock, tmp_path):
    before = clean_machine
    deb = packages["deb"]
    lint = run("lintian", "--tag-display-limit", "0", deb, check=False)
    assert not [l for l in lint.stdout.splitlines() if l.startswith("E:")], lint.stdout

    run("dpkg", "-i", deb)
    assert run("getent", "passwd", "airlock").stdout.split(":")[6].strip() in ("/usr/sbin/nologin", "/sbin/nologin")
    for f in ["/usr/bin/airlock", "/usr/bin/airlockd", "/usr/lib/systemd/system/airlockd.service",
              "/usr/lib/systemd/system/airlockd.socket", "/usr/lib/systemd/system/airlockd-control.socket",
              "/usr/share/bash-completion/completions/airlock", "/usr/share/man/man1/airlock.1.gz",
              "/usr/share/man/man1/airlock-setup.1.gz", "/usr/lib/sysusers.d/airlock.conf"]:
        assert Path(f).exists(), f
    verify = run("systemd-analyze", "verify", "/usr/lib/systemd/system/airlockd.service",
                 "/usr/lib/systemd/system/airlockd.socket", "/usr/lib/systemd/system/airlockd-control.socket",
                 check=False)
    assert verify.returncode == 0, verify.stderr
    assert "airlock setup" in run("man", "-P", "cat", "/usr/share/man/man1/airlock.1.gz", check=False).stdout \
        or Path("/usr/share/man/man1/airlock.1.gz").stat().st_size > 500
    # postinst made the CA as the service user and trusted it system-wide.
    ca = Path("/var/lib/airlock/ca/airlock-ca.pem")
    assert ca.stat().st_uid == int(run("id", "-u", "airlock").stdout)
    assert oct(Path("/var/lib/airlock/ca/private/airlock-ca.key").stat().st_mode & 0o777) == "0o600"
    anchors = [a for a in os.listdir("/usr/local/share/ca-certificates") if a.startswith("airlock-")]
    assert len(anchors) == 1, anchors
    assert Path("/etc/profile.d/airlock.sh").read_text().count("HTTPS_PROXY") == 1
    status = json.loads(run("/usr/bin/airlock", "ca", "trust-status", "--json", "--state-dir", "/var/lib/airlock").stdout)
    held = {s["kind"]: s["current"] for s in status["stores"]}
    assert held["system"] and held["java"] and held["nss"], status

    proc, port = start_packaged_agent(mock, tmp_path)
    try:
        env = client_env(port)
        curl = run("curl", "-sS", "-H", "authorization: Bearer sk-curl", "https://api.openai.com/v1/models", env=env)
        assert '"object"' in curl.stdout, curl.stdout
        py = run("/usr/bin/python3", "-c",
                 "import urllib.request,ssl;print(urllib.request.urlopen(urllib.request.Request("
                 "'https://api.openai.com/v1/models',headers={'authorization':'Bearer sk-py'}),"
                 "context=ssl.create_default_context()).status)", env=env)
        assert py.stdout.strip() == "200"
        (tmp_path / "Probe.java").write_text(JAVA)
        java = run("java", tmp_path / "Probe.java", port, env=env)
        assert java.stdout.startswith("200 "), java.stdout
        node = os.environ.get("AIRLOCK_TEST_NODE")
        if node:
            (tmp_path / "sdk.js").write_text(NODE)
            r = run(node, "--use-system-ca", tmp_path / "sdk.js",
                    env={**env, "NODE_USE_ENV_PROXY": "1", "NODE_PATH": os.environ.get("NODE_PATH", "")})
            assert r.stdout.startswith("models"), r.stdout + r.stderr
        chromium = shutil.which("chromium")
        assert chromium, "chromium is installed by scripts/test.sh"
        page = run(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   f"--user-data-dir={tmp_path / 'chromium'}", f"--proxy-server=http://127.0.0.1:{port}",
                   "--dump-dom", "https://api.openai.com/v1/models", timeout=60)
        # Without a key the (mock) provider answers 401 with its JSON error: the page shows that body,
        # so Chromium completed TLS to the device CA's leaf (an untrusted one shows an interstitial).
        assert "invalid_request_error" in page.stdout and "ERR_CERT" not in page.stdout, page.stdout[:2000]
    finally:
        stop(proc)

    run("dpkg", "-r", "airlock")
    after = store_listing()
    assert after == before
    assert not Path("/usr/bin/airlockd").exists()
    assert run("dpkg-query", "-W", "airlock", check=False).returncode != 0 or \
        "deinstall" in run("dpkg-query", "-W", "-f=${Status}", "airlock", check=False).stdout


@packages_enabled
def test_an_upgrade_keeps_the_device_ca_journal_and_credentials(packages, clean_machine):
    run("dpkg", "-i", packages["old_deb"])
    state = Path("/var/lib/airlock")
    fingerprint = run("openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", state / "ca/airlock-ca.pem").stdout
    device = (state / "device_id").read_text()
    # What a running agent would have left: a journal, a ratchet, a credential file.
    keep = {"journal.db": b"journal rows", "policy/ratchet.json": b'{"version": 7}', "credentials.json": b"{}"}
    for name, data in keep.items():
        (state / name).parent.mkdir(parents=True, exist_ok=True)
        (state / name).write_bytes(data)
    run("dpkg", "-i", packages["deb"])
    assert run("dpkg-query", "-W", "-f=${Version}", "airlock").stdout.startswith("0.1.0")
    assert run("openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", state / "ca/airlock-ca.pem").stdout == fingerprint
    assert (state / "device_id").read_text() == device
    for name, data in keep.items():
        assert (state / name).read_bytes() == data, name
    anchors = [a for a in os.listdir("/usr/local/share/ca-certificates") if a.startswith("airlock-")]
    assert len(anchors) == 1, anchors
    run("dpkg", "-P", "airlock")
    assert not state.exists()
    assert run("getent", "passwd", "airlock", check=False).returncode != 0


@packages_enabled
def test_the_rpm_carries_the_same_files_and_scripts_and_installs_into_a_scratch_root(packages, tmp_path):
    rpm = packages["rpm"]
    info = run("rpm", "-qip", rpm).stdout
    assert "Name        : airlock" in info and "Apache-2.0" in info
    files = run("rpm", "-qlp", rpm).stdout.split()
    for f in ["/usr/bin/airlock", "/usr/bin/airlockd", "/usr/lib/systemd/system/airlockd.service",
              "/usr/lib/systemd/system/airlockd-control.socket", "/usr/share/man/man1/airlock.1.gz"]:
        assert f in files, files
    scripts = run("rpm", "-qp", "--scripts", rpm).stdout
    assert "airlock setup --system --yes" in scripts and "airlock uninstall --system --yes" in scripts
    root = tmp_path / "root"
    run("rpm", "--root", root, "--initdb")
    run("rpm", "--root", root, "-i", "--nodeps", "--noscripts", rpm)
    assert (root / "usr/bin/airlockd").exists()
    assert "airlock" in run("rpm", "--root", root, "-qa").stdout


def listing(home: Path) -> list[str]:
    return sorted(f"{p.relative_to(home)} {oct(p.lstat().st_mode)} {p.stat().st_size if p.is_file() else ''}"
                  for p in home.rglob("*"))


def test_setup_user_needs_no_root_and_its_uninstall_leaves_the_home_as_it_was(tmp_path):
    user = "airlock-e2e"
    # A fresh account each run: the listing compared is of a home nothing else has touched.
    if run("id", user, check=False).returncode == 0:
        run("userdel", "-r", user, check=False)
    run("useradd", "-m", "-d", f"/home/{user}", "-s", "/bin/bash", user)
    try:
        check_user_setup(user, Path(f"/home/{user}"))
    finally:
        run("userdel", "-r", user, check=False)


def check_user_setup(user: str, home: Path) -> None:
    (home / ".mozilla/firefox/p1.default").mkdir(parents=True, exist_ok=True)
    shutil.chown(home / ".mozilla", user, user)
    shutil.chown(home / ".mozilla/firefox", user, user)
    shutil.chown(home / ".mozilla/firefox/p1.default", user, user)
    run("runuser", "-u", user, "--", "certutil", "-N", "-d", f"sql:{home}/.mozilla/firefox/p1.default",
        "--empty-password")
    bins = user_bins()
    bashrc_before = (home / ".bashrc").read_bytes()
    before = listing(home)
    env = ["env", f"HOME={home}", "SHELL=/bin/bash", f"PATH=/usr/bin:/bin"]
    setup = run("runuser", "-u", user, "--", *env, bins / "airlock", "setup", "--user", "--yes")
    assert "FAILED" not in setup.stdout, setup.stdout
    assert "airlock" in (home / ".bashrc").read_text()
    assert (home / ".config/environment.d/90-airlock.conf").exists()
    status = json.loads(run("runuser", "-u", user, "--", *env, bins / "airlock", "ca", "trust-status", "--json",
                            "--state-dir", home / ".local/state/airlock").stdout)
    nss = [s for s in status["stores"] if s["kind"] == "nss"]
    assert len(nss) == 2 and all(s["current"] for s in nss), nss
    # A second setup changes nothing more.
    run("runuser", "-u", user, "--", *env, bins / "airlock", "setup", "--user", "--yes")
    assert (home / ".bashrc").read_text().count(">>> airlock >>>") == 1
    run("runuser", "-u", user, "--", *env, bins / "airlock", "uninstall", "--user", "--yes", "--purge")
    assert (home / ".bashrc").read_bytes() == bashrc_before
    after = listing(home)
    # The Firefox database was the user's: it stays, without the CA (its size may change).
    strip = lambda rows: [r.rsplit(" ", 1)[0] if "firefox" in r else r for r in rows]
    assert strip(after) == strip(before)
    left = run("runuser", "-u", user, "--", "certutil", "-L", "-d", f"sql:{home}/.mozilla/firefox/p1.default").stdout
    assert "Airlock" not in left
    shutil.rmtree(bins)


def user_bins() -> Path:
    """The binaries where another account can run them (the build dir is under root's home)."""
    bins = Path(f"/tmp/airlock-bins-{os.getpid()}")
    bins.mkdir(exist_ok=True)
    bins.chmod(0o755)
    for b in ("airlock", "airlockd"):
        shutil.copy(BIN / b, bins / b)
    return bins


def test_setup_asks_before_changing_anything_and_without_a_terminal_wants_yes(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    r = run(BIN / "airlock", "setup", "--user", check=False,
            env={"HOME": str(home), "PATH": "/usr/bin:/bin", "SHELL": "/bin/bash"})
    assert r.returncode == 1
    assert "run it again with --yes" in r.stderr, r.stderr
    assert "- add an Airlock block to" in r.stdout, r.stdout
    assert not (home / ".bashrc").exists() and not (home / ".pki").exists()


def test_the_desktop_proxy_points_at_the_pac_file_and_uninstall_puts_the_users_setting_back():
    """GNOME's setting, through gsettings and a real dconf in the user's own D-Bus session."""
    user = "airlock-e2e-desk"
    if run("id", user, check=False).returncode == 0:
        run("userdel", "-r", user, check=False)
    run("useradd", "-m", "-s", "/bin/bash", user)
    bins = user_bins()
    script = f"""
set -e
gsettings set org.gnome.system.proxy mode manual
A="{bins}/airlock"
"$A" setup --user --yes --desktop-proxy --no-env --only nss >/dev/null
echo "set: $(gsettings get org.gnome.system.proxy mode) $(gsettings get org.gnome.system.proxy autoconfig-url)"
"$A" uninstall --user --yes --purge >/dev/null
echo "back: $(gsettings get org.gnome.system.proxy mode) $(gsettings get org.gnome.system.proxy autoconfig-url)"
"""
    try:
        r = run("runuser", "-u", user, "--", "env", f"HOME=/home/{user}", "PATH=/usr/bin:/bin",
                "dbus-run-session", "--", "sh", "-c", script, timeout=120)
        assert "set: 'auto' 'http://127.0.0.1:8479/proxy.pac'" in r.stdout, r.stdout + r.stderr
        assert "back: 'manual' ''" in r.stdout, r.stdout + r.stderr
    finally:
        run("userdel", "-r", user, check=False)
        shutil.rmtree(bins, ignore_errors=True)
