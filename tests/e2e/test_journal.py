"""The journal is the store of record: a request's row is committed before it is forwarded, so an
agent killed with SIGKILL under load has a row for every request the provider received; the hash
chain verifies after the crash, the restarted agent shows the old records and goes on with the
same chain, and an edited or deleted row makes `airlock journal verify` fail naming the row."""

from __future__ import annotations

import csv
import io
import json
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import openai
import pytest

from conftest import Mock, binary, mock_policy, start_agent, stop, wait_for_file


@pytest.fixture
def big_mock(tmp_path):
    """A mock of the test's own that remembers every request it receives."""
    d = tmp_path / "mock"
    d.mkdir()
    proc = subprocess.Popen(
        [binary("airlock-mock"), "--listen", "127.0.0.1:0", "--cert-dir", str(d),
         "--ready-file", str(d / "ready.json"), "--record-limit", "100000"],
        stdout=open(d / "mock.log", "w"), stderr=subprocess.STDOUT)
    info = wait_for_file(d / "ready.json", proc, "airlock-mock")
    yield Mock(proc, info["port"], None, Path(info["ca_file"]))
    stop(proc)


def airlock(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary("airlock")), *map(str, args)], capture_output=True, text=True, timeout=60)


def load(agent, tag: str, stop_at: threading.Event, sent: list):
    """Chat completions through the agent, every third one streamed, until `stop_at` is set."""
    client = openai.OpenAI(api_key="sk-journal", base_url=agent.base_url("openai") + "/v1", max_retries=0,
                           http_client=httpx.Client(trust_env=False, timeout=10))
    n = 0
    while not stop_at.is_set():
        marker = f"{tag}-{threading.get_ident() % 10000}-{n}"
        n += 1
        sent.append(marker)
        try:
            if n % 3 == 0:
                for _ in client.chat.completions.create(model="gpt-4o-mini", stream=True, extra_query={"m": marker},
                                                        messages=[{"role": "user", "content": "count"}]):
                    pass
            else:
                client.chat.completions.create(model="gpt-4o-mini", extra_query={"m": marker},
                                               messages=[{"role": "user", "content": "hi"}])
        except Exception:
            # The agent was killed under us: expected.
            if stop_at.is_set():
                return
            time.sleep(0.01)


def markers_in(rows: list[dict]) -> set[str]:
    out = set()
    for r in rows:
        path = r.get("path") or ""
        if "?m=" in path:
            out.add(path.split("?m=", 1)[1].split("&", 1)[0])
    return out


def test_a_killed_agent_has_a_row_for_everything_the_provider_received(big_mock, tmp_path):
    tag = uuid.uuid4().hex[:8]
    agent = start_agent(tmp_path / "agent", mock_policy(big_mock))
    stop_at = threading.Event()
    sent: list = []
    threads = [threading.Thread(target=load, args=(agent, tag, stop_at, sent)) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(3)
    agent.proc.send_signal(signal.SIGKILL)
    agent.proc.wait(10)
    stop_at.set()
    for t in threads:
        t.join(20)
    received = {q.split("m=", 1)[1] for q in (r.get("query") or "" for r in big_mock.requests()) if f"m={tag}" in q}
    assert len(received) > 20, f"the load barely ran: {len(received)} requests"

    db = agent.state_dir / "journal.db"
    p = airlock("journal", "verify", "--file", db)
    assert p.returncode == 0 and "chain intact" in p.stdout, (p.stdout, p.stderr)
    p = airlock("journal", "export", "--file", db)
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    journaled = markers_in(rows)
    missing = received - journaled
    assert not missing, f"{len(missing)} requests reached the provider with no journal row: {sorted(missing)[:5]}"
    # Those cut off by the kill are there as begun and unfinished, not lost.
    unfinished = [r for r in rows if r["journal"]["kind"] == "begin"]
    assert all(r["outcome"] == "unfinished" for r in unfinished)

    # The restarted agent shows the old records, and the chain goes on from where it was.
    again = start_agent(tmp_path / "agent", mock_policy(big_mock), state=agent.state_dir)
    try:
        shown = markers_in(again.records(limit=100000))
        assert shown and shown <= journaled
        client = openai.OpenAI(api_key="sk-journal", base_url=again.base_url("openai") + "/v1", max_retries=0,
                               http_client=httpx.Client(trust_env=False, timeout=10))
        client.chat.completions.create(model="gpt-4o-mini", extra_query={"m": f"{tag}-after"},
                                       messages=[{"role": "user", "content": "hi"}])
        again.wait_record(path=f"/v1/chat/completions?m={tag}-after")
        v = json.loads(again.cli("journal", "verify", "--json").stdout)["verification"]
        assert v["problem"] is None and v["rows"] > len(rows), v
        status = again.status()["journal"]
        assert status["failed_commits"] == 0 and status["lost"] == 0, status
    finally:
        stop(again.proc)

    # Tampering: an edited row and a deleted one are each found and named.
    edited = tmp_path / "edited.db"
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{db}{suffix}").exists():
            shutil.copyfile(f"{db}{suffix}", f"{edited}{suffix}")
    conn = sqlite3.connect(edited)
    seq, rid = conn.execute("SELECT seq, id FROM journal WHERE kind = 'end' ORDER BY seq LIMIT 1 OFFSET 3").fetchone()
    conn.execute("UPDATE journal SET cost_usd = 0, body = replace(body, 'gpt-4o-mini', 'gpt-3.5') WHERE seq = ?", (seq,))
    conn.commit()
    conn.close()
    p = airlock("journal", "verify", "--file", edited)
    assert p.returncode == 1 and f"BROKEN at row {seq} ({rid})" in p.stdout and "edited" in p.stdout, p.stdout

    deleted = tmp_path / "deleted.db"
    shutil.copyfile(db, deleted)
    conn = sqlite3.connect(deleted)
    conn.execute("DELETE FROM journal WHERE seq = 5")
    conn.commit()
    conn.close()
    p = airlock("journal", "verify", "--file", deleted, "--json")
    problem = json.loads(p.stdout)["verification"]["problem"]
    assert p.returncode == 1 and problem["seq"] == 6 and "missing" in problem["message"], problem


def test_export_prints_jsonl_and_csv_since_a_time(agent):
    tag = uuid.uuid4().hex[:8]
    client = openai.OpenAI(api_key="sk-journal", base_url=agent.base_url("openai") + "/v1", max_retries=0,
                           http_client=httpx.Client(trust_env=False, timeout=10))
    client.chat.completions.create(model="gpt-4o-mini", extra_query={"m": tag},
                                   messages=[{"role": "user", "content": "hi"}])
    rec = agent.wait_record(path=f"/v1/chat/completions?m={tag}")
    lines = agent.cli("journal", "export", "--since", "10m").stdout.splitlines()
    mine = [json.loads(l) for l in lines if tag in l]
    assert len(mine) == 1 and mine[0]["id"] == rec["id"] and mine[0]["journal"]["kind"] == "end"
    assert mine[0]["usage"] == rec["usage"] and mine[0]["outcome"] == "completed"
    table = list(csv.DictReader(io.StringIO(agent.cli("journal", "export", "--since", "10m", "--format", "csv").stdout)))
    row = next(r for r in table if r["id"] == rec["id"])
    assert (row["kind"], row["provider"], row["model"], row["outcome"], row["status"]) == \
        ("end", "openai", "gpt-4o-mini", "completed", "200")
    assert int(row["input_tokens"]) == rec["usage"]["input_tokens"]
    p = agent.cli("journal", "export", "--since", "yesterday", check=False)
    assert p.returncode != 0 and "not a duration" in p.stderr
    # airlock usage sums the same rows.
    groups = json.loads(agent.cli("usage", "--by", "model", "--since", "10m", "--json").stdout)["groups"]
    mini = next(g for g in groups if g["key"] == "gpt-4o-mini")
    assert mini["requests"] >= 1 and mini["input_tokens"] >= rec["usage"]["input_tokens"]
    table = agent.cli("usage", "--by", "provider", "--since", "1h").stdout
    assert table.splitlines()[0].split()[:2] == ["PROVIDER", "REQUESTS"] and "openai" in table and "TOTAL" in table, table


def test_a_record_names_the_device_the_user_and_the_python_that_sent_it(agent):
    import os
    import pwd
    import sys
    tag = uuid.uuid4().hex[:8]
    client = openai.OpenAI(api_key="sk-journal", base_url=agent.base_url("openai") + "/v1", max_retries=0,
                           http_client=httpx.Client(trust_env=False, timeout=10))
    client.chat.completions.create(model="gpt-4o-mini", extra_query={"m": tag},
                                   messages=[{"role": "user", "content": "who am I"}])
    rec = agent.wait_record(path=f"/v1/chat/completions?m={tag}")
    assert rec["user"] == pwd.getpwuid(os.getuid()).pw_name and rec["uid"] == os.getuid(), rec
    assert rec["pid"] == os.getpid(), rec
    assert rec["app"].startswith("python"), rec
    assert Path(rec["app_path"]).resolve() == Path(sys.executable).resolve(), rec
    device = agent.status()["device"]
    assert device.startswith("dev_") and rec["device"] == device
    # The journal row says the same.
    rows = [json.loads(l) for l in agent.cli("journal", "export", "--since", "10m").stdout.splitlines() if tag in l]
    assert [(r["user"], r["app"], r["device"]) for r in rows] == [(rec["user"], rec["app"], device)]
