#!/usr/bin/env python3
"""Instructions per request of one or more airlockd binaries, counted by callgrind: repeatable to a
fraction of a percent on a machine whose wall-clock numbers move by a third between runs, so it is how a
change's CPU cost is compared (BENCHMARKS.md, "Instructions per request").

For each binary and mode it starts the agent under `valgrind --tool=callgrind` against the mock, sends N
sequential chat requests on one keep-alive connection, stops it, and does it again with M requests; the
difference divided by M - N is the cost of one request, with start-up and shutdown cancelled out.

    bench/instructions.py --mock target/release/airlock-mock old=/tmp/old/airlockd new=target/release/airlockd

Modes: `base` (plain HTTP to /openai/v1), `mitm` (CONNECT + TLS with the agent's CA); encodings: the
response as `identity` or `gzip` (what SDK clients ask for). `--nginx PATH` adds the floor: Debian's nginx
as a TLS-terminating reverse proxy (one process, `master_process off`, the same config as the benchmark's:
`proxy_pass https://` to the mock with `proxy_ssl_verify on` and a keep-alive pool), counted the same way.
Needs valgrind, the openssl CLI and httpx (the e2e venv has it). Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def wait_json(path: Path, key: str, proc: subprocess.Popen, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            v = json.loads(path.read_text())
            if key in v:
                return v
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{path} did not appear")


def count(airlockd: str, policy: Path, work: Path, n: int, mode: str, encoding: str) -> int:
    state = work / f"state-{n}"
    out = work / f"callgrind-{n}.out"
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", airlockd,
                             "--listen", "127.0.0.1:0", "--policy", str(policy), "--state-dir", str(state),
                             "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        addr = wait_json(state / "airlockd.json", "listen", proc)["listen"]
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        headers = {"authorization": "Bearer sk-bench", "accept-encoding": encoding}
        if mode == "mitm":
            ctx = ssl.create_default_context(cafile=str(state / "ca" / "airlock-ca.pem"))
            client = httpx.Client(proxy=f"http://{addr}", verify=ctx, trust_env=False, timeout=120)
            url = "https://api.openai.com/v1/chat/completions"
        else:
            client = httpx.Client(trust_env=False, timeout=120)
            url = f"http://{addr}/openai/v1/chat/completions"
        with client:
            for _ in range(n):
                r = client.post(url, json=body, headers=headers)
                if r.status_code != 200:
                    raise RuntimeError(f"request failed: {r.status_code} {r.text[:200]}")
        time.sleep(1)  # let the records writer drain
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    for line in out.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out}")


def nginx_pki(work: Path) -> tuple[Path, Path, Path]:
    """A CA and a leaf for api.openai.com and 127.0.0.1, made with the openssl CLI."""
    d = work / "nginx-pki"
    d.mkdir()
    run = lambda *args: subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
        "-subj", "/CN=bench nginx CA", "-keyout", "ca.key", "-out", "ca.pem")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=api.openai.com",
        "-keyout", "leaf.key", "-out", "leaf.csr")
    (d / "ext.cnf").write_text("subjectAltName=DNS:api.openai.com,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n")
    run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "ext.cnf", "-out", "leaf.pem")
    return d / "ca.pem", d / "leaf.pem", d / "leaf.key"


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def count_nginx(nginx: str, mock: dict, work: Path, n: int, encoding: str) -> int:
    """Instructions of nginx (one process) serving n chat requests on one keep-alive TLS connection."""
    prefix = work / f"nginx-{n}-{encoding}"
    prefix.mkdir()
    if not (work / "nginx-pki").exists():
        nginx_pki(work)
    ca, cert, key = (work / "nginx-pki" / f for f in ("ca.pem", "leaf.pem", "leaf.key"))
    port = free_port()
    user = "user root;\n" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(f"""{user}worker_processes 1;
daemon off;
master_process off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/cb; proxy_temp_path {prefix}/px; fastcgi_temp_path {prefix}/fc;
    uwsgi_temp_path {prefix}/uw; scgi_temp_path {prefix}/sc;
    keepalive_requests 10000000;
    upstream mock {{ server 127.0.0.1:{mock["port"]}; keepalive 64; keepalive_requests 10000000; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert}; ssl_certificate_key {key}; ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            proxy_pass https://mock; proxy_http_version 1.1; proxy_set_header Connection "";
            proxy_set_header Host api.openai.com; proxy_ssl_server_name on; proxy_ssl_name api.openai.com;
            proxy_ssl_verify on; proxy_ssl_verify_depth 2; proxy_ssl_trusted_certificate {mock["ca_file"]};
            proxy_ssl_session_reuse on; proxy_buffering off;
        }}
    }}
}}
""")
    out = work / f"callgrind-nginx-{n}.out"
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", nginx,
                             "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ctx = ssl.create_default_context(cafile=str(ca))
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        headers = {"authorization": "Bearer sk-bench", "accept-encoding": encoding}
        deadline = time.monotonic() + 120
        with httpx.Client(verify=ctx, trust_env=False, timeout=120) as client:
            url = f"https://127.0.0.1:{port}/v1/chat/completions"
            while True:
                try:
                    client.post(url, json=body, headers=headers)
                    break
                except httpx.TransportError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"nginx did not start; see {prefix}/error.log")
                    time.sleep(0.2)
            for _ in range(n):
                r = client.post(url, json=body, headers=headers)
                if r.status_code != 200:
                    raise RuntimeError(f"request failed: {r.status_code} {r.text[:200]}")
    finally:
        proc.send_signal(signal.SIGQUIT)
        proc.wait(timeout=120)
    for line in out.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binaries", nargs="+", help="LABEL=PATH of an airlockd binary")
    ap.add_argument("--mock", default=str(ROOT / "target/release/airlock-mock"))
    ap.add_argument("--modes", default="base,mitm")
    ap.add_argument("--encodings", default="identity,gzip")
    ap.add_argument("--small", type=int, default=100)
    ap.add_argument("--big", type=int, default=400)
    ap.add_argument("--nginx", help="path of nginx: count the floor too")
    a = ap.parse_args()
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is needed (apt-get install valgrind)")
    work = Path(tempfile.mkdtemp(prefix="airlock-instructions-"))
    mock = subprocess.Popen([a.mock, "--listen", "127.0.0.1:0", "--cert-dir", str(work / "mock"),
                             "--ready-file", str(work / "mock.json"), "--record-limit", "0"],
                            stdout=subprocess.DEVNULL)
    try:
        m = wait_json(work / "mock.json", "port", mock)
        policy = work / "policy.toml"
        policy.write_text((ROOT / "policies/default.toml").read_text() +
                          f'\n[upstream.overrides."api.openai.com"]\naddress = "127.0.0.1:{m["port"]}"\n'
                          f'ca_file = "{m["ca_file"]}"\n')
        print("| binary | mode | response | instructions per request |")
        print("|---|---|---|---:|")
        for spec in a.binaries:
            label, _, path = spec.partition("=")
            for mode in a.modes.split(","):
                for enc in a.encodings.split(","):
                    small = count(path, policy, work, a.small, mode, enc)
                    big = count(path, policy, work, a.big, mode, enc)
                    per = (big - small) / (a.big - a.small)
                    print(f"| {label} | {mode} | {enc} | {per:,.0f} |", flush=True)
        if a.nginx:
            for enc in a.encodings.split(","):
                small = count_nginx(a.nginx, m, work, a.small, enc)
                big = count_nginx(a.nginx, m, work, a.big, enc)
                per = (big - small) / (a.big - a.small)
                print(f"| nginx | tls | {enc} | {per:,.0f} |", flush=True)
    finally:
        mock.terminate()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
