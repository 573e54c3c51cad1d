"""The coverage matrix's rows, as the tests measure them.

A test that drove a real tool or client through the agent calls `report(tool, version, route, metered)`
once its assertions passed; the row is appended to `$AIRLOCK_COVERAGE_FILE` (JSON lines; default
`~/.cache/airlock-test/coverage.jsonl`). `scripts/coverage-matrix.py` renders the README's matrix from
that file and, with `--check`, fails when the README says something else. `metered(record)` reads the
metering column off the agent's record, so the matrix says what the agent measured, not what a test
hoped for.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
from importlib.metadata import version as dist_version
from pathlib import Path

# How the tool reaches the agent: an explicit proxy (HTTPS_PROXY + CA, as `airlock env` sets them),
# the plain-HTTP base URL, or wrapped by `airlock run` (which sets the proxy variables itself).
ROUTES = ("proxy", "base-URL", "run")
# What the record holds: the provider's own usage, usage estimated from the text, or a record without
# usage (seen, not metered).
METERED = ("exact", "estimated", "seen only")


def path() -> Path:
    default = Path(os.environ.get("AIRLOCK_TEST_CACHE", Path.home() / ".cache" / "airlock-test")) / "coverage.jsonl"
    return Path(os.environ.get("AIRLOCK_COVERAGE_FILE", default))


def report(tool: str, version: str, route: str, metered: str) -> None:
    """Adds one measured row: `tool` at `version` reached the agent by `route` and was `metered`."""
    if route not in ROUTES:
        raise ValueError(f"route {route!r} is not one of {ROUTES}")
    if metered not in METERED:
        raise ValueError(f"metered {metered!r} is not one of {METERED}")
    if not tool or not version or "|" in tool + version:
        raise ValueError(f"tool {tool!r} and version {version!r} must be non-empty table cells")
    p = path()
    p.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"tool": tool, "version": version, "route": route, "metered": metered}) + "\n"
    with open(p, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(line)


def metered(*records: dict) -> str:
    """The metering of a tool's records: exact only if every one has the provider's usage."""
    if not records:
        raise ValueError("a tool that reached the agent left at least one record")
    if any(r.get("usage") is None for r in records):
        return "seen only"
    if any(r.get("usage_estimated") for r in records):
        return "estimated"
    return "exact"


def python_package(name: str) -> str:
    """The installed version of a Python distribution."""
    return dist_version(name)


def node_package(node_modules: Path | str, name: str) -> str:
    """The version in an installed npm package's package.json."""
    return json.loads((Path(node_modules) / name / "package.json").read_text())["version"]


def command_version(argv: list[str], pattern: str = r"(\d+\.\d+\.\d+)") -> str:
    """The first `x.y.z` a command prints for its version (e.g. `curl --version`)."""
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    m = re.search(pattern, out.stdout + out.stderr)
    if not m:
        raise AssertionError(f"{argv} printed no version: {out.stdout!r} {out.stderr!r}")
    return m.group(1)
