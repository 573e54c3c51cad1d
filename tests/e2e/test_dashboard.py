"""`airlock dashboard` end to end in headless Chromium, driven over the DevTools protocol on a pipe:
the live view lists the calls the Python openai SDK made through the agent, the one refused by policy
shows its rule, a call made after the page opened arrives over server-sent events without a reload,
a model name that looks like HTML is shown as text; the usage charts have a bar per model; budgets
show the headroom computed from the known limit and the tokens used; guardrail hits, the policy and
the CA with its trust stores are shown. Requests without the token, with another Host or from another
origin are refused. Each view is saved as a screenshot (and, with AIRLOCK_UPDATE_DOCS=1, the live one
as docs/dashboard.png)."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import openai
import pytest

from conftest import ROOT, binary, mock_policy, start_agent, stop

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
ARTEFACTS = Path(os.environ.get("AIRLOCK_TEST_ARTEFACTS", ROOT / "target" / "test-artefacts")) / "test_dashboard"
LIMIT = 50_000
HTML_MODEL = '<img src=x onerror="document.title=1">'
RULES = f"""
[models]
deny = ["gpt-4.5*"]

[[budgets]]
name = "dash-daily"
limit_tokens = {LIMIT}
window = "day"

[[rate_limits]]
name = "dash-rpm"
requests_per_minute = 60

[[guardrails.rules]]
categories = ["pii"]
direction = "request"
action = "redact"
"""


class Cdp:
    """A minimal Chrome DevTools Protocol client over --remote-debugging-pipe (NUL-framed JSON on
    the browser's fds 3 and 4)."""

    def __init__(self, user_data: Path):
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()
        # Above 4, so that putting one on 3 cannot overwrite the other.
        for fd in (to_chrome_r, from_chrome_w):
            high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
            os.close(fd)
            if fd == to_chrome_r:
                to_chrome_r = high
            else:
                from_chrome_w = high
        args = [CHROMIUM, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
                f"--user-data-dir={user_data}", "--disable-background-networking", "--no-first-run",
                "--no-default-browser-check", "--disable-component-update", "--disable-sync",
                "--disable-extensions", "--window-size=1280,800", "about:blank"]
        # The browser wants its pipe on fds 3 and 4: bash puts them there and execs it (dash cannot
        # redirect fds above 9).
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{to_chrome_r} 4>&{from_chrome_w}', "bash", *args],
            pass_fds=(to_chrome_r, from_chrome_w), stdout=subprocess.DEVNULL, stderr=open(user_data.parent / "chromium.log", "w"))
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        self.session: str | None = None

    def _read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed its DevTools pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, params: dict | None = None, session: bool = True, timeout: float = 15) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        while True:
            m = self._read(timeout)
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})
        self.call("Page.enable")
        self.call("Page.navigate", {"url": url})

    def js(self, expr: str, awaited: bool = False):
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": awaited})
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expr: str, timeout: float = 15, what: str = ""):
        deadline = time.monotonic() + timeout
        while True:
            try:
                v = self.js(expr)
            except RuntimeError:
                v = None
            if v:
                return v
            if time.monotonic() > deadline:
                raise AssertionError(f"page never showed {what or expr}; it shows:\n{self.js('document.body.innerText')}")
            time.sleep(0.1)

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"]))

    def close(self) -> None:
        try:
            self.call("Browser.close", session=False, timeout=5)
        except (OSError, TimeoutError, EOFError, RuntimeError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._r)
        os.close(self._w)


def client(agent):
    return openai.OpenAI(api_key="sk-dash", base_url=agent.base_url("openai") + "/v1", max_retries=0,
                         http_client=httpx.Client(trust_env=False, timeout=15))


def chat(agent, model: str, marker: str, content: str = "hello dashboard"):
    return client(agent).chat.completions.create(model=model, extra_query={"m": marker},
                                                 messages=[{"role": "user", "content": content}])


@pytest.fixture
def dashboard_agent(mock, tmp_path):
    a = start_agent(tmp_path / "agent", mock_policy(mock, RULES))
    yield a
    stop(a.proc)


def start_dashboard(agent) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("https_proxy", "http_proxy", "airlock_addr")}
    p = subprocess.Popen([str(binary("airlock")), "--state-dir", str(agent.state_dir), "dashboard", "--print-url"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    ready = select.select([p.stdout], [], [], 15)[0]
    assert ready, "airlock dashboard --print-url printed no URL"
    url = p.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:") and "/?token=" in url, url
    return p, url


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install -y chromium)")
def test_the_dashboard_shows_live_requests_usage_budgets_and_refuses_strangers(dashboard_agent, mock, tmp_path):
    a = dashboard_agent
    tag = uuid.uuid4().hex[:8]
    chat(a, "gpt-4o-mini", f"{tag}-ok", "write to alice.example@example.com please")
    chat(a, "gpt-4o", f"{tag}-ok2")
    with pytest.raises(openai.PermissionDeniedError):
        chat(a, "gpt-4.5-preview", f"{tag}-refused")
    try:
        chat(a, HTML_MODEL, f"{tag}-html")
    except openai.APIError:
        pass  # whatever the provider says about the model, the record is what the page shows
    a.wait_record(path=f"/v1/chat/completions?m={tag}-html")

    dash, url = start_dashboard(a)
    restarted = None
    port = int(url.split(":")[2].split("/")[0])
    token = url.split("token=")[1]
    cdp = Cdp(Path(tempfile.mkdtemp(dir=tmp_path, prefix="chromium-")))
    try:
        # Strangers first: no token, another Host (DNS rebinding), another origin.
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(trust_env=False, timeout=10) as h:
            r = h.get(f"{base}/api/overview")
            assert r.status_code == 403 and "token" in r.text, r.text
            r = h.get(f"{base}/?token={token}", headers={"host": f"attacker.example:{port}"})
            assert r.status_code == 421, r.text
            r = h.get(f"{base}/api/overview?token={token}", headers={"origin": "http://attacker.example"})
            assert r.status_code == 403 and "cross-site" in r.text, r.text
            r = h.get(f"{base}/?token={token}")
            assert r.status_code == 200
            assert r.headers["content-security-policy"].startswith("default-src 'self'")
            assert r.headers["x-frame-options"] == "DENY" and r.headers["referrer-policy"] == "no-referrer"
            assert r.headers["cache-control"] == "no-store"
            assert "HttpOnly" in r.headers["set-cookie"] and "SameSite=Strict" in r.headers["set-cookie"]

        cdp.open(url)
        # The live view lists the calls.
        cdp.wait("document.body.dataset.live === '1'", what="the event stream open")
        cdp.wait("document.querySelectorAll('#requests tbody tr').length >= 4", what="four requests")
        models = cdp.js("[...document.querySelectorAll('#requests td.model')].map(td => td.textContent)")
        for m in ["gpt-4o-mini", "gpt-4o", "gpt-4.5-preview", HTML_MODEL]:
            assert m in models, models
        # The HTML-ish model is text: no element was made from it and its handler never ran.
        assert cdp.js("document.querySelectorAll('#requests img, #charts img').length") == 0
        assert cdp.js("document.title") == "Airlock dashboard"
        # The refused one shows its reason in its row, and its decision trail when clicked.
        reason = cdp.js("document.querySelector('#requests tr[data-outcome=rejected] td.reason').textContent")
        assert 'models.deny[0] = "gpt-4.5*"' in reason and "gpt-4.5-preview" in reason, reason
        cdp.js("document.querySelector('#requests tr[data-outcome=rejected]').click()")
        trail = cdp.wait("!document.getElementById('detail').classList.contains('hidden') && document.getElementById('d-trail').innerText")
        assert "authorize:models" in trail and "rejected" in trail and "airlock-default" in trail, trail
        # The guardrail hit of the first call is in its trail and in the guardrail view.
        ok_id = a.wait_record(path=f"/v1/chat/completions?m={tag}-ok")["id"]
        cdp.js(f"document.querySelector('#requests tr[data-id=\"{ok_id}\"]').click()")
        hits = cdp.wait("document.getElementById('d-guardrails').innerText")
        assert "redact" in hits and "pii" in hits, hits
        # The picture shows the refusal's trail.
        cdp.js("document.querySelector('#requests tr[data-outcome=rejected]').click()")
        cdp.screenshot(ARTEFACTS / "live.png")

        # A call made now appears without a reload.
        cdp.js("window.__same_page = true")
        chat(a, "gpt-4o-mini", f"{tag}-live")
        live_id = a.wait_record(path=f"/v1/chat/completions?m={tag}-live")["id"]
        cdp.wait(f"document.querySelector('#requests tr[data-id=\"{live_id}\"]') !== null", what="the new call")
        assert cdp.js("window.__same_page") is True, "the page reloaded"

        # Usage: a bar per model in the tokens-by-model chart.
        cdp.js("document.querySelector('nav button[data-view=usage]').click()")
        cdp.wait("document.body.dataset.usageLoaded === '1'", what="the usage charts")
        bars = cdp.js("[...document.querySelectorAll('#chart-tokens-by-model svg g.bar')].map(g => g.getAttribute('data-key'))")
        for m in ["gpt-4o-mini", "gpt-4o", "gpt-4.5-preview"]:
            assert m in bars, bars
        assert cdp.js("document.querySelectorAll('#chart-tokens-over-time svg polyline').length") >= 2
        cdp.screenshot(ARTEFACTS / "usage.png")

        # Budgets: headroom = limit - tokens used by the completed calls.
        used = sum((r["usage"] or {}).get("input_tokens", 0) + (r["usage"] or {}).get("output_tokens", 0)
                   for r in a.records())
        assert used > 0
        cdp.js("loadOverview()", awaited=True)
        cdp.js("document.querySelector('nav button[data-view=budgets]').click()")
        headroom = cdp.wait("document.querySelector('tr[data-budget=dash-daily] td.headroom')?.textContent")
        assert headroom == f"{LIMIT - used} tokens", (headroom, LIMIT, used)
        rpm = next(r for r in a.status()["governance"]["rate_limits"] if r["name"] == "dash-rpm")["requests_per_minute"]
        rate = cdp.js("[...document.querySelectorAll('tr[data-rate=dash-rpm] td')].map(td => td.textContent)")
        assert rate[2:5] == [str(rpm["used"]), "60", str(60 - rpm["used"])], (rate, rpm)
        cdp.screenshot(ARTEFACTS / "budgets.png")

        cdp.js("document.querySelector('nav button[data-view=guardrails]').click()")
        g = cdp.wait("document.querySelector('#guard-events tbody').innerText")
        assert ok_id in g and "redact" in g, g
        cdp.screenshot(ARTEFACTS / "guardrails.png")

        status = a.status()
        cdp.js("document.querySelector('nav button[data-view=policy]').click()")
        pol = cdp.wait("document.getElementById('policy').innerText")
        assert status["policy"]["name"] in pol and status["policy"]["source"] in pol, pol
        assert 'gpt-4.5-preview (authorize:models)' in pol and 'models.deny[0]' in pol, pol
        cdp.screenshot(ARTEFACTS / "policy.png")

        cdp.js("document.querySelector('nav button[data-view=ca]').click()")
        stores = cdp.wait("document.querySelectorAll('#stores tbody tr').length > 0 && document.getElementById('stores').innerText",
                          what="the trust stores")
        # The same stores and verdicts as `airlock ca trust-status`.
        cli = json.loads(a.cli("ca", "trust-status", "--json").stdout)["stores"]
        assert cli, "trust-status lists no store"
        for s in cli:
            line = next((l for l in stores.splitlines() if s["store"] in l), None)
            assert line is not None, (s, stores)
            assert ("NOT trusted" not in line) == bool(s.get("current")), (s, line)
        assert status["ca"]["fingerprint_sha256"] in cdp.js("document.getElementById('ca').innerText")
        cdp.screenshot(ARTEFACTS / "ca.png")

        # The agent goes away: the page says so.
        stop(a.proc)
        cdp.wait("!document.getElementById('banner').classList.contains('hidden')", what="the agent-down banner")
        assert "not running" in cdp.js("document.getElementById('banner').textContent")
        # ... and recovers when it is back, with the records of the new run.
        a = start_agent(tmp_path / "agent", mock_policy(mock, RULES), state=a.state_dir)
        restarted = a
        cdp.wait("document.getElementById('banner').classList.contains('hidden')", what="the banner gone")
        chat(a, "gpt-4o-mini", f"{tag}-after")
        after_id = a.wait_record(path=f"/v1/chat/completions?m={tag}-after")["id"]
        cdp.wait(f"document.querySelector('#requests tr[data-id=\"{after_id}\"]') !== null", what="a call after the restart")

        cdp.js("document.querySelector('nav button[data-view=live]').click()")
        if os.environ.get("AIRLOCK_UPDATE_DOCS") == "1":
            shutil.copy(ARTEFACTS / "live.png", ROOT / "docs" / "dashboard.png")
    finally:
        cdp.close()
        dash.terminate()
        dash.wait(10)
        if restarted is not None:
            stop(restarted.proc)
