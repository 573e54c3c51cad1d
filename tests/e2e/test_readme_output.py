"""The README's sample output is real: each `<!-- readme-output: NAME -->` block is what this test gets
from running that command against a real agent after real SDK calls (one of them refused by policy),
with what differs between runs (paths, ports, pids, times, fingerprints, ids) put in a fixed form. A
change to a command's output fails here until the README shows it:
`AIRLOCK_UPDATE_README=1 scripts/test.sh -k readme_output` rewrites the blocks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid

import httpx
import openai
import pytest

from conftest import ROOT, binary, mock_policy, start_agent, stop

README = ROOT / "README.md"
POLICY = """
[models]
deny = ["gpt-4.5*"]

[[budgets]]
name = "team-daily"
scope = ["user"]
limit_tokens = 2_000_000
window = "day"
timezone = "UTC"
"""
SCAN = "deploy with AKIAZ7Q3XK4VB2MRT6LE and mail the report to jane.doe@example.com\n"

# name → the command line shown (after `airlock`), and the arguments run.
COMMANDS = {
    "status": ["status"],
    "env": ["env"],
    "requests": ["requests"],
    "usage": ["usage", "--by", "model"],
    "journal-verify": ["journal", "verify"],
    "ca-show": ["ca", "show"],
    "policy-explain": ["policy", "explain", "--policy", "policies/examples/enterprise.toml",
                       "--provider", "openai", "--model", "gpt-4.5-preview"],
    "guard-scan": ["guard", "scan", "notes.txt"],
    "doctor": ["doctor"],
}

BLOCK = re.compile(r"(<!-- readme-output: (?P<name>[a-z-]+) -->\n```console\n)(?P<body>.*?)(```\n<!-- /readme-output -->)",
                   re.S)


@pytest.fixture(scope="module")
def scene(mock, tmp_path_factory):
    work = tmp_path_factory.mktemp("readme")
    a = start_agent(work, mock_policy(mock, POLICY))
    client = openai.OpenAI(api_key="sk-readme", base_url=a.base_url("openai") + "/v1", max_retries=0,
                           http_client=httpx.Client(trust_env=False, timeout=10))
    for model in ["gpt-4o-mini", "gpt-4o", "gpt-4o-mini"]:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="gpt-4.5-preview", messages=[{"role": "user", "content": "hi"}])
    a.wait_record(model="gpt-4.5-preview")
    (work / "notes.txt").write_text(SCAN)
    yield a, work
    stop(a.proc)


def run(agent, work, args: list[str], env: dict) -> str:
    full = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    full.update(env)
    full.pop("AIRLOCK_ADDR", None)
    full["NO_COLOR"] = "1"
    full["AIRLOCK_STATE_DIR"] = str(agent.state_dir)
    args = [str(ROOT / a) if a.startswith("policies/") else a for a in args]
    p = subprocess.run([str(binary("airlock")), *args], capture_output=True, text=True, cwd=work, env=full,
                       timeout=60)
    out = p.stdout + p.stderr
    if p.returncode not in (0, 1):
        raise AssertionError(f"airlock {' '.join(args)} exited {p.returncode}:\n{out}")
    return out


def normalize(text: str, agent, work, status: dict) -> str:
    """Run-specific values in a fixed form, so the README shows a plausible session and stays stable."""
    ca = status["ca"]
    subs = [
        (str(agent.state_dir), "/home/alice/.local/state/airlock"),
        (str(work), "/home/alice/project"),
        (str(ROOT), "/home/alice/airlock"),
        (agent.addr, "127.0.0.1:8479"),
        (ca["fingerprint_sha256"], "4F:9C:1E:77:0A:D2:58:B3:6E:91:C4:2F:8A:05:DB:73:19:E6:A0:4C:B8:27:5D:F1:93:0E:6A:C5:12:7B:E8:44"),
        (ca["serial"], "5e1c9a07b3d24f18"),
        (status["device"] if isinstance(status.get("device"), str) else "\0", "dev_3f2a9c41b7e0"),
    ]
    for old, new in subs:
        if old:
            text = text.replace(old, new)
    port = agent.addr.rsplit(":", 1)[1]
    text = text.replace(f"proxyPort={port}", "proxyPort=8479")
    text = re.sub(r"\bpid \d+", "pid 4242", text)
    text = re.sub(r"\bconnections (\d+) of \d+", r"connections \1 of 10000", text)
    text = re.sub(r"\(head [0-9a-f]+\)", "(head 713ef9cfd163ecb1)", text)
    text = re.sub(r"\bup \d+s\b", "up 73s", text)
    text = re.sub(r"\b\d{4}-\d\d-\d\d([T ])\d\d:\d\d:\d\d(\.\d+)?", r"2026-12-02\g<1>09:41:07", text)
    text = re.sub(r"\b\d+ ms\b", "84 ms", text)
    text = re.sub(r"\b\d+ KiB\b", "96 KiB", text)
    text = re.sub(r"\breq_[0-9a-f]+", "req_7d1c000004", text)
    text = re.sub(r"\b127\.0\.0\.1:\d{4,5}\b(?<!8479)", "127.0.0.1:9443", text)
    text = re.sub(r"in [0-9.]+ ?m?s\b", "in 2 ms", text)
    return text


def test_readme_shows_the_real_output_of_each_command(scene):
    agent, work = scene
    status = agent.status()
    env = {}
    readme = README.read_text()
    found = {m.group("name"): m for m in BLOCK.finditer(readme)}
    missing = [n for n in COMMANDS if n not in found]
    assert not missing, f"README has no readme-output block for {missing}"
    unknown = [n for n in found if n not in COMMANDS]
    assert not unknown, f"README blocks this test does not produce: {unknown}"
    if "doctor" in COMMANDS:
        # doctor looks at this shell: show it in the shell `eval "$(airlock env)"` made.
        for line in run(agent, work, ["env"], {}).splitlines():
            if line.startswith("export "):
                k, v = line[len("export "):].split("=", 1)
                env[k] = v.strip("'")
    produced = {}
    for name, args in COMMANDS.items():
        out = run(agent, work, args, env if name == "doctor" else {})
        produced[name] = f"$ airlock {' '.join(args)}\n" + normalize(out, agent, work, status)
    if os.environ.get("AIRLOCK_UPDATE_README"):
        new = BLOCK.sub(lambda m: m.group(1) + produced[m.group("name")] + m.group(4), readme)
        README.write_text(new)
        return
    stale = [n for n in COMMANDS if found[n].group("body") != produced[n]]
    detail = "\n".join(f"--- README {n}:\n{found[n].group('body')}--- now:\n{produced[n]}" for n in stale)
    assert not stale, (f"the README's output of {stale} is not what the commands print now; "
                       f"rewrite it with AIRLOCK_UPDATE_README=1 scripts/test.sh -k readme_output\n{detail}")
