#!/usr/bin/env python3
"""Converts the vendored upstream corpora (all but gitleaks, see import_gitleaks.py) into the JSONL
files under tests/guardrails/corpora/, with their SOURCE.md and LICENSE.

It reads pinned commits of local git clones (bare or not) and fetches nothing itself:

    python3 tests/guardrails/gen/import_upstream.py --mirror-root DIR

where DIR holds e.g. `microsoft+presidio/repo`, `presidio/` or `presidio.git` (see _common.find_repo).
The eval never runs this; its output is committed.
"""

from __future__ import annotations

import argparse
import ast
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CORPORA, char_to_byte, find_repo, git_blob_id, git_show, write_jsonl, write_text  # noqa: E402

PRESIDIO_RESEARCH = ("microsoft/presidio-research", "7622dec1e5f7d25dc60b57c28c39f4c4af197018")
PRESIDIO = ("microsoft/presidio", "0aa9f8e44275cb52c00fbbebe19168e934e1f076")
PURPLELLAMA = ("meta-llama/PurpleLlama", "4be64c3a24442b51c76175e6ec67722cc3f5fe38")
GARAK = ("NVIDIA/garak", "cafbe992780df70015de7295ca026b70c4629ada")
GISKARD = ("Giskard-AI/prompt-injections", "ce50a549dadc46b48c931250d2dd71d5f003c0c2")
# prompts.csv at the upstream HEAD is >4 MB (thousands of community prompts); this is the last commit
# where it is under 300 kB (363 prompts, the classic "act as" role-play set).
AWESOME = ("f/awesome-chatgpt-prompts", "f0a1c08e39721bfe08e1255b5a82f06b55b6c680")

PRESIDIO_TESTS = ["credit_card", "crypto", "email", "iban", "ip", "phone", "us_ssn"]


def commit_date(repo_dir: str, commit: str) -> str:
    return subprocess.run(
        ["git", "-C", repo_dir, "show", "-s", "--format=%cI", commit],
        check=True, capture_output=True, text=True,
    ).stdout.strip()


def source_md(title: str, repo: tuple[str, str], repo_dir: str, files: list[str], licence: str,
              licence_file: str, notes: str, outputs: list[tuple[str, int]]) -> str:
    name, commit = repo
    lines = [
        f"# {title}", "",
        f"- Source repository: https://github.com/{name}",
        f"- Commit: `{commit}` ({commit_date(repo_dir, commit)})",
        "- Upstream file(s):",
    ]
    for f in files:
        lines.append(f"  - `{f}` (git blob `{git_blob_id(repo_dir, commit, f)}`)")
    lines += [
        f"- Licence: {licence} (upstream `{licence_file}`, copied verbatim to `LICENSE`)",
        "- Converted by: `tests/guardrails/gen/" + Path(__file__).name + "`",
        "- Output:",
    ]
    for out, n in outputs:
        lines.append(f"  - `{out}`: {n} samples")
    lines += ["", "## Conversion", "", notes.strip(), ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- PII

def import_presidio_research(root: str) -> None:
    repo_dir = find_repo(root, PRESIDIO_RESEARCH[0])
    commit = PRESIDIO_RESEARCH[1]
    path = "tests/data/generated_large.json"
    data = json.loads(git_show(repo_dir, commit, path))
    rows = []
    for i, rec in enumerate(data):
        text = rec["full_text"]
        spans = []
        for s in sorted(rec["spans"], key=lambda s: (s["start_position"], s["end_position"])):
            a, b = s["start_position"], s["end_position"]
            if text[a:b] != s["entity_value"]:
                raise SystemExit(f"presidio-research sample {i}: span text mismatch {s}")
            ba, bb = char_to_byte(text, a, b)
            spans.append({"type": s["entity_type"], "start": ba, "end": bb})
        rows.append({
            "id": f"presidio-research-{i:04d}", "text": text, "label": "labelled", "spans": spans,
            "meta": {"template_id": rec.get("template_id")},
        })
    out = CORPORA / "pii/presidio-research"
    write_jsonl(out / "generated_large.jsonl", rows)
    write_text(out / "LICENSE", git_show(repo_dir, commit, "LICENSE"))
    write_text(out / "SOURCE.md", source_md(
        "Presidio-research synthetic PII sentences (generated_large)", PRESIDIO_RESEARCH, repo_dir,
        [path], "MIT", "LICENSE",
        """
Each record's `full_text` becomes `text`; each span's `entity_type` is kept as `type` and its
`start_position`/`end_position` (Python character offsets, checked against `entity_value`) are
converted to UTF-8 byte offsets. `masked` and `metadata` are dropped, `template_id` is kept in `meta`.
Every entity type is kept; the eval scores the ones Airlock detects with patterns (CREDIT_CARD,
IBAN_CODE, US_SSN, EMAIL_ADDRESS, PHONE_NUMBER, IP_ADDRESS) and lists the rest as needing NER.
All spans of every type count: a prediction that overlaps no gold span of its type is a false positive.
""", [("generated_large.jsonl", len(rows))]))


class _NotLiteral(Exception):
    pass


def _literal(node: ast.AST):
    """ast.literal_eval plus f-strings without placeholders."""
    if isinstance(node, ast.JoinedStr):
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant) and isinstance(v.value, str):
                parts.append(v.value)
            else:
                raise _NotLiteral()
        return "".join(parts)
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_literal(e) for e in node.elts)
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise _NotLiteral()


def _fixture_entities(tree: ast.Module):
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "entities":
            for st in node.body:
                if isinstance(st, ast.Return):
                    return list(_literal(st.value))
    return None


def import_presidio_tests(root: str) -> None:
    repo_dir = find_repo(root, PRESIDIO[0])
    commit = PRESIDIO[1]
    rows: list[dict] = []
    seen: dict[tuple[str, str], list] = {}
    files = []
    stats = {"cases": 0, "skipped_non_literal": 0, "dropped_duplicates": 0, "whole_text_spans": 0,
             "optional_spans": 0, "skipped_leniency": 0}
    for name in PRESIDIO_TESTS:
        path = f"presidio-analyzer/tests/test_{name}_recognizer.py"
        files.append(path)
        src = git_show(repo_dir, commit, path).decode("utf-8")
        tree = ast.parse(src)
        default_entities = _fixture_entities(tree)
        for fn in tree.body:
            if not isinstance(fn, ast.FunctionDef):
                continue
            for dec in fn.decorator_list:
                if not (isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute)
                        and dec.func.attr == "parametrize"):
                    continue
                argnames = [a.strip() for a in _literal(dec.args[0]).split(",")]
                if not isinstance(dec.args[1], (ast.List, ast.Tuple)):
                    continue
                for case_i, case in enumerate(dec.args[1].elts):
                    stats["cases"] += 1
                    try:
                        values = dict(zip(argnames, _literal(case)))
                    except _NotLiteral:
                        stats["skipped_non_literal"] += 1
                        continue
                    text = values.get("text", values.get("iban"))
                    if not isinstance(text, str):
                        stats["skipped_non_literal"] += 1
                        continue
                    # PhoneRecognizer's default leniency is 1; rows for other leniencies expect other counts.
                    if "leniency" in values and values["leniency"] != 1:
                        stats["skipped_leniency"] += 1
                        continue
                    n = values["expected_len"]
                    positions = list(values.get("expected_positions", values.get("expected_res", ())))
                    ents = values.get("entities") or default_entities
                    scores = list(values.get("expected_score_ranges", ()))
                    if n != len(positions):
                        if n == 1 and not positions:
                            # The test asserts only the count: the whole (single-token) text is the match.
                            positions = [(0, len(text))]
                            stats["whole_text_spans"] += 1
                        else:
                            raise SystemExit(f"{path}:{fn.name} case {case_i}: {n} expected, positions {positions}")
                    spans = []
                    for k, (a, b) in enumerate(positions):
                        et = ents[k] if len(ents) > k else ents[0]
                        ba, bb = char_to_byte(text, a, b)
                        span = {"type": et, "start": ba, "end": bb}
                        # Matches Presidio itself scores at <= 0.4 (bare "::", undelimited SSN digits)
                        # are "optional": finding them is neither a hit nor a false positive.
                        if k < len(scores) and isinstance(scores[k][1], (int, float)) and scores[k][1] <= 0.4:
                            span["optional"] = True
                            stats["optional_spans"] += 1
                        spans.append(span)
                    scored = sorted(set(ents[:1] if not values.get("entities") else ents))
                    key = (text, ",".join(scored))
                    if key in seen:
                        stats["dropped_duplicates"] += 1
                        if seen[key] != spans:
                            raise SystemExit(f"conflicting duplicate case {key}: {seen[key]} vs {spans}")
                        continue
                    seen[key] = spans
                    rows.append({
                        "id": f"presidio-test-{name}-{len([r for r in rows if r['meta']['file'] == name]):03d}",
                        "text": text, "label": "labelled", "spans": spans,
                        "meta": {"file": name, "test": fn.name, "types_scored": scored},
                    })
    out = CORPORA / "pii/presidio-unit-tests"
    write_jsonl(out / "recognizer_tests.jsonl", rows)
    write_text(out / "LICENSE", git_show(repo_dir, commit, "LICENSE"))
    write_text(out / "SOURCE.md", source_md(
        "Presidio recognizer unit-test cases", PRESIDIO, repo_dir, files, "MIT", "LICENSE",
        f"""
Each file's `@pytest.mark.parametrize` cases are read with Python's `ast` (nothing is executed). The
text argument (`text`, or `iban` in the IBAN test) becomes `text`; `expected_positions` /
`expected_res` (Python character offsets) become byte-offset spans typed with the test's entity
(`CREDIT_CARD`, `CRYPTO`, `EMAIL_ADDRESS`, `IBAN_CODE`, `IP_ADDRESS`, `PHONE_NUMBER`, `US_SSN`).
Cases expecting 0 results are kept as negatives (no spans).

- `meta.types_scored` lists the entity type(s) the case tests; the eval scores only those types on
  these samples (e.g. the IBAN test's "Dalla's Pizza ... 440-600-5124" contains a phone number
  that is not labelled, so a phone finding there is not counted).
- Spans whose expected Presidio score range ends at or below 0.4 (a bare `::`, undelimited SSN digit
  runs) are marked `"optional": true`: detecting them is neither rewarded nor penalised.
- Cases that assert a count of 1 without a position (three IPv6 cases) get the whole text as span.
- Phone leniency cases are kept only for leniency 1 (PhoneRecognizer's default).
- Duplicate (text, type) cases are dropped; non-literal cases are skipped.

Counts: {json.dumps(stats)}
""", [("recognizer_tests.jsonl", len(rows))]))


# --------------------------------------------------------------------------------------- injection

def import_cyberseceval(root: str) -> None:
    repo_dir = find_repo(root, PURPLELLAMA[0])
    commit = PURPLELLAMA[1]
    path = "CybersecurityBenchmarks/datasets/prompt_injection/prompt_injection.json"
    data = json.loads(git_show(repo_dir, commit, path))
    rows = []
    for rec in data:
        rows.append({
            "id": f"cyberseceval-{rec['prompt_id']:03d}", "text": rec["user_input"], "label": "positive",
            "spans": [],
            "meta": {k: rec.get(k) for k in ("injection_variant", "injection_type", "risk_category",
                                              "speaking_language")},
        })
    out = CORPORA / "injection/cyberseceval"
    write_jsonl(out / "prompt_injection.jsonl", rows)
    write_text(out / "LICENSE", git_show(repo_dir, commit, "CybersecurityBenchmarks/LICENSE"))
    write_text(out / "SOURCE.md", source_md(
        "CyberSecEval prompt-injection tests (PurpleLlama CybersecurityBenchmarks)", PURPLELLAMA,
        repo_dir, [path], "MIT", "CybersecurityBenchmarks/LICENSE",
        """
Every test case's `user_input` (the attacker-controlled text: a direct injection, or for
`injection_type: indirect` the untrusted document carrying it) becomes `text`, labelled positive.
`injection_variant`, `injection_type`, `risk_category` and `speaking_language` are kept in `meta`;
`test_case_prompt` (the system prompt being attacked) and `judge_question` are dropped.
Note: the repository's top-level LICENSE is the Llama community licence; CybersecurityBenchmarks/
(this dataset's directory) carries its own MIT LICENSE, which is the one copied here.
""", [("prompt_injection.jsonl", len(rows))]))


def import_garak(root: str) -> None:
    repo_dir = find_repo(root, GARAK[0])
    commit = GARAK[1]
    path = "garak/data/inthewild_jailbreak_llms.json"
    data = json.loads(git_show(repo_dir, commit, path))
    rows = [{"id": f"garak-itw-{i:03d}", "text": t, "label": "positive", "spans": [], "meta": {}}
            for i, t in enumerate(data)]
    out = CORPORA / "injection/garak-inthewild"
    write_jsonl(out / "inthewild_jailbreak_llms.jsonl", rows)
    write_text(out / "LICENSE", git_show(repo_dir, commit, "LICENSE"))
    write_text(out / "SOURCE.md", source_md(
        "garak in-the-wild jailbreak prompts", GARAK, repo_dir, [path], "Apache-2.0", "LICENSE",
        """
The file is a JSON list of prompt strings (garak's `dan.DanInTheWild` probe); each becomes one
positive sample, all of them. garak's docs cite the prompts' origin as "Do Anything Now":
Characterizing and Evaluating In-The-Wild Jailbreak Prompts on LLMs (Shen et al., 2023,
https://arxiv.org/abs/2308.03825), whose dataset (github.com/verazuo/jailbreak_llms) is MIT-licensed.
Caveat: these were collected from jailbreak-sharing communities; a few are mild role-play set-ups
rather than explicit instruction overrides, so 100 % recall is not expected of any detector.
""", [("inthewild_jailbreak_llms.jsonl", len(rows))]))


def import_giskard(root: str) -> None:
    repo_dir = find_repo(root, GISKARD[0])
    commit = GISKARD[1]
    path = "prompt_injections.csv"
    text = git_show(repo_dir, commit, path).decode("utf-8")
    rows = []
    for rec in csv.DictReader(io.StringIO(text)):
        rows.append({
            "id": f"giskard-{int(rec['index']):03d}", "text": rec["prompt"], "label": "positive", "spans": [],
            "meta": {"name": rec["name"], "group": rec["group"], "source": rec["source"],
                     "language": rec["language"]},
        })
    out = CORPORA / "injection/giskard"
    write_jsonl(out / "prompt_injections.jsonl", rows)
    write_text(out / "LICENSE", git_show(repo_dir, commit, "LICENSE"))
    for lic in ("licenses/PromptInject_LICENSE", "licenses/garak_LICENSE"):
        write_text(out / lic, git_show(repo_dir, commit, lic))
    write_text(out / "SOURCE.md", source_md(
        "Giskard prompt injections", GISKARD, repo_dir, [path], "MIT (repository); the prompts come from "
        "garak (Apache-2.0) and PromptInject (MIT), whose licences are in `licenses/`", "LICENSE",
        """
Each CSV row's `prompt` becomes a positive sample; `name`, `group`, `source` and `language` are kept
in `meta`.
""", [("prompt_injections.jsonl", len(rows))]))


# Prompts in awesome-chatgpt-prompts that are themselves jailbreaks, so not benign.
AWESOME_EXCLUDE = {"Unconstrained AI model DAN"}


def import_awesome(root: str) -> None:
    repo_dir = find_repo(root, AWESOME[0])
    commit = AWESOME[1]
    path = "prompts.csv"
    text = git_show(repo_dir, commit, path).decode("utf-8")
    rows = []
    excluded = []
    for i, rec in enumerate(csv.DictReader(io.StringIO(text))):
        if rec["act"] in AWESOME_EXCLUDE:
            excluded.append(rec["act"])
            continue
        rows.append({
            "id": f"awesome-{i:03d}", "text": rec["prompt"], "label": "negative", "spans": [],
            "meta": {"act": rec["act"], "type": rec.get("type"), "for_devs": rec.get("for_devs")},
        })
    out = CORPORA / "injection/awesome-chatgpt-prompts"
    write_jsonl(out / "prompts.jsonl", rows)
    write_text(out / "LICENSE", git_show(repo_dir, commit, "LICENSE"))
    write_text(out / "SOURCE.md", source_md(
        "awesome-chatgpt-prompts (benign role-play prompts)", AWESOME, repo_dir, [path], "CC0-1.0",
        "LICENSE",
        f"""
Each CSV row's `prompt` becomes a negative (benign) sample; `act`, `type` and `for_devs` are kept in
`meta`. These are ordinary "I want you to act as ..." role-play prompts: benign, but phrased much like
injections, so they measure false positives on hard negatives.
Excluded as not benign (a jailbreak): {', '.join(sorted(excluded))}.
The upstream HEAD's prompts.csv has grown past 4 MB; this commit is the last one under 300 kB.
""", [("prompts.jsonl", len(rows))]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mirror-root", default="/work/.mirror", help="directory holding the local clones")
    ap.add_argument("--only", default="", help="comma-separated subset of: "
                    "presidio-research,presidio-tests,cyberseceval,garak,giskard,awesome")
    args = ap.parse_args()
    steps = {
        "presidio-research": import_presidio_research, "presidio-tests": import_presidio_tests,
        "cyberseceval": import_cyberseceval, "garak": import_garak, "giskard": import_giskard,
        "awesome": import_awesome,
    }
    only = [s for s in args.only.split(",") if s] or list(steps)
    for s in only:
        steps[s](args.mirror_root)


if __name__ == "__main__":
    main()
