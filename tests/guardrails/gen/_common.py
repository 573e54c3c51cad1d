"""Helpers shared by the corpus generators and importers (Python 3.11 standard library only).

Every corpus file is JSON Lines, one sample a line:

    {"id": "...", "text": "...", "label": "positive"|"negative"|"labelled",
     "spans": [{"type": "...", "start": N, "end": N}], "meta": {...}}

`start`/`end` are UTF-8 *byte* offsets into `text` (the scanner reports byte offsets too).

Corpora of real-format secrets store `text_b64` (the UTF-8 text, base64-encoded) instead of `text`, so
the repository does not itself look like a credential leak to secret scanners and push protection;
the eval (and `read_jsonl` here) decode it.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

GUARDRAILS = Path(__file__).resolve().parent.parent
CORPORA = GUARDRAILS / "corpora"


def char_to_byte(text: str, start: int, end: int) -> tuple[int, int]:
    """Character offsets -> UTF-8 byte offsets."""
    return len(text[:start].encode("utf-8")), len(text[:end].encode("utf-8"))


def byte_span_of(text: str, needle: str, after: int = 0) -> tuple[int, int]:
    """Byte span of the first occurrence of `needle` at or after character `after`."""
    i = text.index(needle, after)
    return char_to_byte(text, i, i + len(needle))


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                if "text_b64" in row:
                    row["text"] = base64.b64decode(row.pop("text_b64")).decode("utf-8")
                rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict], encode_text: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = set()
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            if row["id"] in ids:
                raise SystemExit(f"{path}: duplicate id {row['id']}")
            ids.add(row["id"])
            b = row["text"].encode("utf-8")
            for s in row.get("spans", []):
                if not (0 <= s["start"] <= s["end"] <= len(b)):
                    raise SystemExit(f"{path}: {row['id']}: span {s} out of range")
                try:
                    b[s["start"]:s["end"]].decode("utf-8")
                except UnicodeDecodeError:
                    raise SystemExit(f"{path}: {row['id']}: span {s} splits a character")
            if encode_text:
                row = {("text_b64" if k == "text" else k): (base64.b64encode(v.encode("utf-8")).decode("ascii")
                                                            if k == "text" else v) for k, v in row.items()}
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=False) + "\n")
    print(f"wrote {path.relative_to(GUARDRAILS)}: {len(rows)} samples, {path.stat().st_size} bytes"
          + (" (text base64-encoded)" if encode_text else ""))


def find_repo(root: str, owner_name: str) -> str:
    """A local git directory (bare or not) holding `owner/name`: `ROOT/owner+name/repo`,
    `ROOT/owner+name`, `ROOT/name` or `ROOT/name.git`."""
    owner, name = owner_name.split("/")
    for cand in (f"{owner}+{name}/repo", f"{owner}+{name}", name, f"{name}.git"):
        p = os.path.join(root, cand)
        if os.path.isdir(p):
            return p
    raise SystemExit(
        f"no local clone of {owner_name} under {root}; clone it there "
        f"(git clone --bare https://github.com/{owner_name} {root}/{name}.git)"
    )


def git_show(repo_dir: str, commit: str, path: str) -> bytes:
    return subprocess.run(
        ["git", "-C", repo_dir, "show", f"{commit}:{path}"], check=True, capture_output=True
    ).stdout


def git_blob_id(repo_dir: str, commit: str, path: str) -> str:
    return subprocess.run(
        ["git", "-C", repo_dir, "rev-parse", f"{commit}:{path}"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()


def write_text(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
