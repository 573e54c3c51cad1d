#!/usr/bin/env python3
"""Accuracy evaluation of Airlock's guardrail scanner against vendored, labelled corpora.

Runs `airlock guard scan --jsonl` once per corpus (every sample streamed through one process), then
scores three suites and prints markdown tables:

  secrets    per sample: a positive is found when a `secret` finding overlaps its labelled secret
             span (any `secret` finding, for positives without spans); a negative is a false positive
             when it gets any `secret` finding. Precision, recall, F1; recall per family; misses.
  pii        per span and entity type: a predicted span is a true positive when it overlaps a gold
             span of its type; a gold span is found when a prediction of its type overlaps it.
             Precision, recall, F1 per type; false-positive rate on benign prose.
  injection  per sample: flagged when it gets any `injection` finding. Recall per corpus and per
             CyberSecEval variant; false-positive rate per benign set.

Plus, for every negative corpus, the share of samples with any finding of each category (so PII or
injection findings on ordinary code show up too).

    python3 tests/guardrails/eval.py                       # scanner from AIRLOCK_BIN / AIRLOCK_BIN_DIR / target/
    python3 tests/guardrails/eval.py --bin path/to/airlock --json out.json --check
    python3 tests/guardrails/eval.py --suite secrets --examples 40

--check exits 1 when a target (TARGETS below) is missed, 2 on a scanner or protocol error.
Python 3.11 standard library only; reads nothing but the corpora under tests/guardrails/corpora.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CORPORA = HERE / "corpora"

TARGETS = {
    "secrets_recall_min": 0.95,
    "secrets_precision_min": 0.90,
    "pii_f1_min": 0.90,
    "pii_f1_types": ["credit_card", "iban", "us_ssn", "email", "phone", "ip"],
    "injection_recall_min": 0.70,          # over all positive injection corpora together
    "injection_fp_rate_max": 0.02,         # on each benign prompt corpus
    "injection_fp_corpora": ["benign-prompts", "awesome-chatgpt-prompts"],
}

# Gold entity type (Presidio's names) -> scored type; scanner rule id -> scored type.
PII_GOLD = {
    "CREDIT_CARD": "credit_card", "IBAN_CODE": "iban", "US_SSN": "us_ssn", "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone", "IP_ADDRESS": "ip", "CRYPTO": "crypto",
}
PII_RULES = {
    "credit_card": "credit_card", "iban": "iban", "us_ssn": "us_ssn", "email": "email", "phone": "phone",
    "ipv4": "ip", "ipv6": "ip", "crypto_wallet": "crypto",
}
PII_TYPES = ["credit_card", "iban", "us_ssn", "email", "phone", "ip", "crypto"]
CATEGORIES = ["secret", "pii", "injection", "custom"]


class ScanError(Exception):
    pass


# ------------------------------------------------------------------------------------------ input

def load_manifest() -> list[dict]:
    with open(CORPORA / "manifest.json", encoding="utf-8") as f:
        return json.load(f)["corpora"]


def load_corpus(entry: dict, limit: int | None) -> list[dict]:
    rows = []
    with open(CORPORA / entry["path"], encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                # Real-format secrets are stored base64-encoded so the repository does not trip scanners.
                if "text_b64" in row:
                    row["text"] = base64.b64decode(row.pop("text_b64")).decode("utf-8")
                rows.append(row)
            if limit and len(rows) >= limit:
                break
    return rows


def default_binary() -> str:
    if os.environ.get("AIRLOCK_BIN"):
        return os.environ["AIRLOCK_BIN"]
    if os.environ.get("AIRLOCK_BIN_DIR"):
        return os.path.join(os.environ["AIRLOCK_BIN_DIR"], "airlock")
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    release = target / "release" / "airlock"
    return str(release if release.exists() else target / "debug" / "airlock")


def run_scanner(args, name: str, samples: list[dict]) -> tuple[dict[str, list[dict]], dict]:
    """Stream every sample through one `airlock guard scan --jsonl`; return findings by id and stats."""
    if args.load_findings:
        path = Path(args.load_findings) / f"{name}.jsonl"
        out = path.read_bytes()
        elapsed = 0.0
    else:
        cmd = [args.bin, "guard", "scan"]
        if args.policy:
            cmd += ["--policy", args.policy]
        if args.direction != "omit":
            cmd += ["--direction", args.direction]
        cmd.append("--jsonl")
        payload = "".join(json.dumps({"id": s["id"], "text": s["text"]}, ensure_ascii=False) + "\n"
                          for s in samples).encode("utf-8")
        t0 = time.monotonic()
        try:
            proc = subprocess.run(cmd, input=payload, capture_output=True, timeout=args.timeout)
        except FileNotFoundError:
            raise ScanError(f"scanner not found: {args.bin} (build it, or set AIRLOCK_BIN / --bin)")
        except subprocess.TimeoutExpired:
            raise ScanError(f"{name}: scanner did not finish within {args.timeout}s")
        elapsed = time.monotonic() - t0
        if proc.returncode != 0:
            tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-15:]
            raise ScanError(f"{name}: `{' '.join(cmd)}` exited {proc.returncode}:\n  " + "\n  ".join(tail))
        out = proc.stdout
        if args.save_findings:
            d = Path(args.save_findings)
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{name}.jsonl").write_bytes(out)
    by_id: dict[str, list[dict]] = {}
    texts = {s["id"]: s["text"].encode("utf-8") for s in samples}
    bad = Counter()
    for n, line in enumerate(out.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise ScanError(f"{name}: output line {n} is not JSON: {line[:200]!r}")
        sid = rec.get("id")
        if rec.get("error"):
            raise ScanError(f"{name}: the scanner rejected input {sid!r}: {rec['error']}")
        if sid not in texts:
            raise ScanError(f"{name}: output line {n} has an unknown id {sid!r}")
        if sid in by_id:
            raise ScanError(f"{name}: id {sid!r} answered twice")
        findings = []
        blen = len(texts[sid])
        for f in rec.get("findings") or []:
            ok = (isinstance(f, dict) and isinstance(f.get("rule"), str) and isinstance(f.get("category"), str)
                  and isinstance(f.get("start"), int) and isinstance(f.get("end"), int)
                  and 0 <= f["start"] <= f["end"] <= blen)
            if not ok:
                bad["malformed or out-of-range finding"] += 1
                continue
            try:
                texts[sid][f["start"]:f["end"]].decode("utf-8")
            except UnicodeDecodeError:
                bad["span splits a UTF-8 character"] += 1
            findings.append(f)
        by_id[sid] = findings
    missing = [s["id"] for s in samples if s["id"] not in by_id]
    if missing:
        raise ScanError(f"{name}: {len(missing)} of {len(samples)} inputs got no output line (first: {missing[:3]})")
    size = sum(len(t) for t in texts.values())
    stats = {"samples": len(samples), "bytes": size, "seconds": round(elapsed, 3),
             "findings": sum(len(v) for v in by_id.values()), "protocol_warnings": dict(bad)}
    return by_id, stats


# ---------------------------------------------------------------------------------------- scoring

def overlaps(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def prf(tp: int, fp: int, fn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else None
    r = tp / (tp + fn) if tp + fn else None
    f1 = None if p is None or r is None else (2 * p * r / (p + r) if p + r else 0.0)
    return {"tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r, "f1": f1}


def snippet(sample: dict, start: int | None = None, end: int | None = None, width: int = 90) -> str:
    b = sample["text"].encode("utf-8")
    if start is None:
        s = b[: width * 2].decode("utf-8", "ignore")
    else:
        lo = max(0, start - 25)
        hi = min(len(b), max(end, start + 1) + 25, lo + width * 2)
        s = ("…" if lo else "") + b[lo:hi].decode("utf-8", "ignore") + ("…" if hi < len(b) else "")
    return s.replace("\n", "⏎").replace("|", "\\|")


def score_secrets(data: dict, examples: int) -> dict:
    tp = fn = fp = tn = 0
    per_corpus = {}
    fam = defaultdict(lambda: [0, 0])  # family -> [found, total]
    missed, false_pos = [], []
    stray = 0
    neg_kind = defaultdict(lambda: [0, 0])
    fp_rules = Counter()
    for name, (entry, samples, findings) in data.items():
        found = total = 0
        for s in samples:
            sec = [f for f in findings[s["id"]] if f["category"] == "secret"]
            if entry["role"] == "positive":
                spans = s.get("spans") or []
                if spans:
                    hit = any(overlaps(f, g) for f in sec for g in spans)
                    stray += sum(1 for f in sec if not any(overlaps(f, g) for g in spans))
                else:
                    hit = bool(sec)
                family = f"{name}:{s.get('meta', {}).get('family', '?')}"
                fam[family][1] += 1
                total += 1
                if hit:
                    tp += 1
                    fam[family][0] += 1
                    found += 1
                else:
                    fn += 1
                    g = spans[0] if spans else None
                    missed.append({"id": s["id"], "family": family,
                                   "rule": s.get("meta", {}).get("gitleaks_rule"),
                                   "got": sorted({f["rule"] for f in sec}),
                                   "text": snippet(s, g["start"], g["end"]) if g else snippet(s)})
            else:
                total += 1
                kind = s.get("meta", {}).get("kind") or s.get("meta", {}).get("family") or "-"
                neg_kind[f"{name}:{kind}"][1] += 1
                if sec:
                    fp += 1
                    found += 1
                    neg_kind[f"{name}:{kind}"][0] += 1
                    fp_rules.update(f["rule"] for f in sec)
                    f0 = sec[0]
                    false_pos.append({"id": s["id"], "rules": sorted({f["rule"] for f in sec}),
                                      "text": snippet(s, f0["start"], f0["end"])})
                else:
                    tn += 1
        per_corpus[name] = {"role": entry["role"], "samples": total,
                            ("recall" if entry["role"] == "positive" else "fp_rate"): found / total if total else None,
                            ("found" if entry["role"] == "positive" else "flagged"): found}
    overall = prf(tp, fp, fn)
    overall["tn"] = tn
    overall["findings_outside_labelled_span_on_positives"] = stray
    families = sorted(({"family": k, "found": v[0], "total": v[1], "recall": v[0] / v[1]} for k, v in fam.items()),
                      key=lambda x: (x["recall"], -x["total"], x["family"]))
    frecall = {f["family"]: f["recall"] for f in families}
    missed.sort(key=lambda m: (frecall[m["family"]], m["family"], m["id"]))
    return {
        "overall": overall, "per_corpus": per_corpus, "families": families,
        "negatives_by_kind": {k: {"flagged": v[0], "total": v[1], "fp_rate": v[0] / v[1]} for k, v in sorted(neg_kind.items())},
        "rules_firing_on_negatives": dict(fp_rules.most_common()),
        "missed": missed[:examples], "missed_total": len(missed),
        "false_positives": false_pos[:examples], "false_positives_total": len(false_pos),
    }


def score_pii(data: dict, examples: int) -> dict:
    pooled = {t: [0, 0, 0, 0] for t in PII_TYPES}  # tp_pred, fp_pred, tp_gold, fn_gold
    per_corpus: dict[str, dict] = {}
    unscored = Counter()
    other_rules = Counter()
    confusion = Counter()
    fps, fns = [], []
    benign = {}
    for name, (entry, samples, findings) in data.items():
        if entry["role"] == "negative":
            flagged = 0
            rules = Counter()
            kinds = defaultdict(lambda: [0, 0])
            ex = []
            for s in samples:
                pii = [f for f in findings[s["id"]] if f["category"] == "pii"]
                kind = s.get("meta", {}).get("kind", "-")
                kinds[kind][1] += 1
                if pii:
                    flagged += 1
                    kinds[kind][0] += 1
                    rules.update(f["rule"] for f in pii)
                    ex.append({"id": s["id"], "rules": sorted({f["rule"] for f in pii}),
                               "text": snippet(s, pii[0]["start"], pii[0]["end"])})
            benign[name] = {"samples": len(samples), "flagged": flagged,
                            "fp_rate": flagged / len(samples) if samples else None, "rules": dict(rules.most_common()),
                            "by_kind": {k: {"flagged": v[0], "total": v[1], "fp_rate": v[0] / v[1]} for k, v in sorted(kinds.items())},
                            "examples": ex[:examples]}
            continue
        counts = {t: [0, 0, 0, 0] for t in PII_TYPES}
        for s in samples:
            meta = s.get("meta", {})
            scored = {PII_GOLD[t] for t in meta["types_scored"] if t in PII_GOLD} if "types_scored" in meta else set(PII_TYPES)
            gold = defaultdict(list)
            optional = defaultdict(list)
            for g in s.get("spans", []):
                key = PII_GOLD.get(g["type"])
                if key is None:
                    unscored[g["type"]] += 1
                    continue
                (optional if g.get("optional") else gold)[key].append(g)
            preds = defaultdict(list)
            for f in findings[s["id"]]:
                if f["category"] != "pii":
                    continue
                key = PII_RULES.get(f["rule"])
                if key is None:
                    other_rules[f["rule"]] += 1
                    continue
                if key in scored:
                    preds[key].append(f)
            for key in scored:
                for p in preds[key]:
                    if any(overlaps(p, g) for g in gold[key]):
                        counts[key][0] += 1
                    elif any(overlaps(p, g) for g in optional[key]):
                        continue
                    else:
                        counts[key][1] += 1
                        hit_other = sorted({g["type"] for g in s.get("spans", []) if overlaps(p, g)})
                        for o in hit_other:
                            confusion[f"{p['rule']} on gold {o}"] += 1
                        fps.append({"id": s["id"], "rule": p["rule"], "overlaps_gold": hit_other,
                                    "text": snippet(s, p["start"], p["end"])})
                for g in gold[key]:
                    if any(overlaps(p, g) for p in preds[key]):
                        counts[key][2] += 1
                    else:
                        counts[key][3] += 1
                        fns.append({"id": s["id"], "type": key,
                                    "value": s["text"].encode("utf-8")[g["start"]:g["end"]].decode("utf-8", "replace"),
                                    "text": snippet(s, g["start"], g["end"])})
        per_corpus[name] = {}
        for t in PII_TYPES:
            tpp, fpp, tpg, fng = counts[t]
            pooled[t] = [a + b for a, b in zip(pooled[t], counts[t])]
            per_corpus[name][t] = _pii_prf(tpp, fpp, tpg, fng)
    types = {t: _pii_prf(*pooled[t]) for t in PII_TYPES}
    return {"types": types, "per_corpus": per_corpus, "benign": benign,
            "not_scored_needs_ner": dict(unscored.most_common()),
            "other_pii_rules_on_labelled": dict(other_rules.most_common()),
            "type_confusion": dict(confusion.most_common()),
            "false_positives": fps[:examples], "false_positives_total": len(fps),
            "missed": fns[:examples], "missed_total": len(fns)}


def _pii_prf(tp_pred: int, fp_pred: int, tp_gold: int, fn_gold: int) -> dict:
    p = tp_pred / (tp_pred + fp_pred) if tp_pred + fp_pred else None
    r = tp_gold / (tp_gold + fn_gold) if tp_gold + fn_gold else None
    if p is None and r is None:
        f1 = None
    elif p is None:  # nothing predicted
        f1 = 0.0 if r is not None and tp_gold + fn_gold else None
    elif r is None:  # nothing to find
        f1 = None
    else:
        f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"gold": tp_gold + fn_gold, "predicted": tp_pred + fp_pred, "tp_pred": tp_pred, "fp": fp_pred,
            "tp_gold": tp_gold, "fn": fn_gold, "precision": p, "recall": r, "f1": f1}


def score_injection(data: dict, examples: int) -> dict:
    per_corpus = {}
    variants = defaultdict(lambda: [0, 0])
    pos_found = pos_total = 0
    missed, fps = [], []
    for name, (entry, samples, findings) in data.items():
        hit = 0
        kinds = defaultdict(lambda: [0, 0])
        rules = Counter()
        for s in samples:
            inj = [f for f in findings[s["id"]] if f["category"] == "injection"]
            meta = s.get("meta", {})
            flagged = bool(inj)
            hit += flagged
            if entry["role"] == "positive":
                if name == "cyberseceval":
                    for key in ("injection_variant", "injection_type", "risk_category"):
                        v = variants[f"{key}={meta.get(key)}"]
                        v[1] += 1
                        v[0] += flagged
                if not flagged:
                    missed.append({"id": s["id"], "corpus": name, "variant": meta.get("injection_variant"),
                                   "text": snippet(s)})
            else:
                kind = meta.get("kind", "-")
                kinds[kind][1] += 1
                kinds[kind][0] += flagged
                if flagged:
                    rules.update(f["rule"] for f in inj)
                    fps.append({"id": s["id"], "corpus": name, "rules": sorted({f["rule"] for f in inj}),
                                "text": snippet(s, inj[0]["start"], inj[0]["end"])})
        n = len(samples)
        if entry["role"] == "positive":
            pos_found += hit
            pos_total += n
            per_corpus[name] = {"role": "positive", "samples": n, "found": hit, "recall": hit / n if n else None}
        else:
            per_corpus[name] = {"role": "negative", "samples": n, "flagged": hit, "fp_rate": hit / n if n else None,
                                "rules": dict(rules.most_common()),
                                "by_kind": {k: {"flagged": v[0], "total": v[1], "fp_rate": v[0] / v[1]} for k, v in sorted(kinds.items())}}
    # Show misses spread over corpora rather than all from the largest one.
    by_corpus = defaultdict(list)
    for m in missed:
        by_corpus[m["corpus"]].append(m)
    spread = []
    while len(spread) < examples and any(by_corpus.values()):
        for c in list(by_corpus):
            if by_corpus[c] and len(spread) < examples:
                spread.append(by_corpus[c].pop(0))
    return {"recall": pos_found / pos_total if pos_total else None, "positives": pos_total, "found": pos_found,
            "per_corpus": per_corpus,
            "cyberseceval": {k: {"found": v[0], "total": v[1], "recall": v[0] / v[1]} for k, v in sorted(variants.items())},
            "missed": spread, "missed_total": len(missed), "false_positives": fps[:examples], "false_positives_total": len(fps)}


def cross_category(data: dict) -> dict:
    out = {}
    for name, (entry, samples, findings) in data.items():
        if entry["role"] != "negative":
            continue
        row = {"suite": entry["suite"], "samples": len(samples)}
        for c in CATEGORIES:
            k = sum(1 for s in samples if any(f["category"] == c for f in findings[s["id"]]))
            row[c] = k / len(samples) if samples else None
        out[name] = row
    return out


def checks(results: dict) -> list[dict]:
    return [{"target": t, "met": ok, "value": v} for t, ok, v in _checks(results)]


def _checks(results: dict) -> list[tuple[str, bool, str]]:
    out = []
    if "secrets" in results:
        o = results["secrets"]["overall"]
        r, p = o["recall"] or 0.0, o["precision"] or 0.0
        out.append(("secrets recall >= %.2f" % TARGETS["secrets_recall_min"], r >= TARGETS["secrets_recall_min"], f"{r:.3f}"))
        out.append(("secrets precision >= %.2f" % TARGETS["secrets_precision_min"], p >= TARGETS["secrets_precision_min"], f"{p:.3f}"))
    if "pii" in results:
        for t in TARGETS["pii_f1_types"]:
            f1 = results["pii"]["types"][t]["f1"]
            out.append((f"pii {t} F1 >= {TARGETS['pii_f1_min']:.2f}", f1 is not None and f1 >= TARGETS["pii_f1_min"],
                        "n/a" if f1 is None else f"{f1:.3f}"))
    if "injection" in results:
        r = results["injection"]["recall"] or 0.0
        out.append((f"injection recall >= {TARGETS['injection_recall_min']:.2f}", r >= TARGETS["injection_recall_min"], f"{r:.3f}"))
        for c in TARGETS["injection_fp_corpora"]:
            pc = results["injection"]["per_corpus"].get(c)
            if pc is None:
                continue
            fr = pc["fp_rate"] or 0.0
            out.append((f"injection FP rate on {c} <= {TARGETS['injection_fp_rate_max']:.0%}",
                        fr <= TARGETS["injection_fp_rate_max"], f"{fr:.1%}"))
    return out


# ---------------------------------------------------------------------------------------- output

def pct(x) -> str:
    return "n/a" if x is None else f"{x * 100:.1f}%"


def num(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def table(head: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def report(results: dict, runs: dict, examples: int, max_families: int) -> str:
    out = ["# Airlock guardrail accuracy", ""]
    out += ["## Scanner runs", "", table(["corpus", "suite", "role", "samples", "KiB", "findings", "seconds", "warnings"],
            [[n, r["suite"], r["role"], r["samples"], f"{r['bytes'] / 1024:.0f}", r["findings"], r["seconds"],
              ", ".join(f"{k}: {v}" for k, v in r["protocol_warnings"].items()) or "-"] for n, r in runs.items()]), ""]
    if "secrets" in results:
        s = results["secrets"]
        o = s["overall"]
        out += ["## Secrets", "",
                table(["precision", "recall", "F1", "TP", "FP", "FN", "TN", "findings off-span on positives"],
                      [[num(o["precision"]), num(o["recall"]), num(o["f1"]), o["tp"], o["fp"], o["fn"], o["tn"],
                        o["findings_outside_labelled_span_on_positives"]]]), "",
                table(["corpus", "role", "samples", "recall / FP rate"],
                      [[n, c["role"], c["samples"], pct(c.get("recall", c.get("fp_rate")))] for n, c in s["per_corpus"].items()]), "",
                "### Recall per family (corpus:family, lowest first)", ""]
        fams = [f for f in s["families"] if f["recall"] < 1.0]
        full = len(s["families"]) - len(fams)
        out += [table(["family", "found", "total", "recall"],
                      [[f["family"], f["found"], f["total"], pct(f["recall"])] for f in fams[:max_families]])
                if fams else "_every family fully found_", ""]
        out += [f"{len(fams)} of {len(s['families'])} families below 100 %"
                + (f" ({len(fams) - max_families} more in --json)" if len(fams) > max_families else "")
                + f"; {full} fully found.", ""]
        out += [f"### Missed positives ({s['missed_total']} in all; up to {examples} shown)", ""]
        out += [table(["id", "gitleaks rule", "other secret rules fired", "text"],
                      [[m["id"], m["rule"] or "-", ", ".join(m["got"]) or "-", m["text"]] for m in s["missed"]])
                if s["missed"] else "_none_", ""]
        out += ["### False positives by negative kind", "",
                table(["corpus:kind", "flagged", "total", "FP rate"],
                      [[k, v["flagged"], v["total"], pct(v["fp_rate"])] for k, v in s["negatives_by_kind"].items() if v["flagged"]])
                if any(v["flagged"] for v in s["negatives_by_kind"].values()) else "_no secret finding on any negative_", ""]
        if s["false_positives"]:
            out += [f"### False-positive samples ({s['false_positives_total']} in all)", "",
                    table(["id", "rules", "text"], [[f["id"], ", ".join(f["rules"]), f["text"]] for f in s["false_positives"]]), ""]
    if "pii" in results:
        p = results["pii"]
        out += ["## PII", "", "Span level; all labelled PII corpora together.", "",
                table(["type", "gold", "predicted", "precision", "recall", "F1", "FP", "FN"],
                      [[t, v["gold"], v["predicted"], num(v["precision"]), num(v["recall"]), num(v["f1"]), v["fp"], v["fn"]]
                       for t, v in p["types"].items()]), ""]
        for c, types in p["per_corpus"].items():
            out += [f"### {c}", "", table(["type", "gold", "predicted", "precision", "recall", "F1"],
                    [[t, v["gold"], v["predicted"], num(v["precision"]), num(v["recall"]), num(v["f1"])]
                     for t, v in types.items() if v["gold"] or v["predicted"]]), ""]
        out += ["### Benign text (any PII finding)", "",
                table(["corpus", "samples", "flagged", "FP rate", "by kind", "rules"],
                      [[n, b["samples"], b["flagged"], pct(b["fp_rate"]),
                        ", ".join(f"{k} {pct(v['fp_rate'])}" for k, v in b["by_kind"].items()),
                        ", ".join(f"{k} {v}" for k, v in b["rules"].items()) or "-"] for n, b in p["benign"].items()]), ""]
        out += ["Not scored (needs NER): " + (", ".join(f"{k} ({v})" for k, v in p["not_scored_needs_ner"].items()) or "-"), ""]
        if p["other_pii_rules_on_labelled"]:
            out += ["Other PII rules firing on labelled corpora (not scored): " +
                    ", ".join(f"{k} {v}" for k, v in p["other_pii_rules_on_labelled"].items()), ""]
        if p["type_confusion"]:
            out += ["False positives overlapping gold spans of another type: " +
                    ", ".join(f"{k} ({v})" for k, v in p["type_confusion"].items()), ""]
        if p["missed"]:
            out += [f"### Missed PII spans ({p['missed_total']} in all)", "",
                    table(["id", "type", "value", "text"], [[m["id"], m["type"], m["value"].replace("|", "\\|"), m["text"]] for m in p["missed"]]), ""]
        if p["false_positives"]:
            out += [f"### PII false positives on labelled corpora ({p['false_positives_total']} in all)", "",
                    table(["id", "rule", "overlaps gold", "text"],
                          [[f["id"], f["rule"], ", ".join(f["overlaps_gold"]) or "-", f["text"]] for f in p["false_positives"]]), ""]
    if "injection" in results:
        i = results["injection"]
        out += ["## Prompt injection", "", f"Recall over all positives: **{pct(i['recall'])}** ({i['found']}/{i['positives']})", "",
                table(["corpus", "role", "samples", "recall / FP rate", "by kind"],
                      [[n, c["role"], c["samples"], pct(c.get("recall", c.get("fp_rate"))),
                        ", ".join(f"{k} {pct(v['fp_rate'])}" for k, v in c.get("by_kind", {}).items()) or "-"]
                       for n, c in i["per_corpus"].items()]), ""]
        if i["cyberseceval"]:
            out += ["### CyberSecEval recall by variant / type / risk", "",
                    table(["slice", "found", "total", "recall"],
                          [[k, v["found"], v["total"], pct(v["recall"])] for k, v in i["cyberseceval"].items()]), ""]
        if i["missed"]:
            out += [f"### Missed injections ({i['missed_total']} in all)", "",
                    table(["id", "variant", "text"], [[m["id"], m["variant"] or "-", m["text"]] for m in i["missed"]]), ""]
        if i["false_positives"]:
            out += [f"### Injection false positives ({i['false_positives_total']} in all)", "",
                    table(["id", "rules", "text"], [[f["id"], ", ".join(f["rules"]), f["text"]] for f in i["false_positives"]]), ""]
    if results.get("cross_category"):
        out += ["## Any finding on negative corpora, by category", "",
                table(["corpus", "suite", "samples"] + CATEGORIES,
                      [[n, r["suite"], r["samples"]] + [pct(r[c]) for c in CATEGORIES] for n, r in results["cross_category"].items()]), ""]
    if results.get("checks"):
        out += ["## Targets", "", table(["target", "value", "met"],
                [[c["target"], c["value"], "yes" if c["met"] else "**NO**"] for c in results["checks"]]), ""]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=None, help="the airlock binary (default: $AIRLOCK_BIN, $AIRLOCK_BIN_DIR/airlock, "
                    "target/release/airlock if present, else target/debug/airlock)")
    ap.add_argument("--policy", help="policy file passed to the scanner")
    ap.add_argument("--direction", default="request", choices=["request", "response", "omit"],
                    help="--direction passed to the scanner (omit: pass none)")
    ap.add_argument("--suite", default="secrets,pii,injection", help="comma-separated suites to run")
    ap.add_argument("--corpus", action="append", default=[], help="only these corpora (by manifest name; repeatable)")
    ap.add_argument("--limit", type=int, help="at most N samples per corpus (smoke runs)")
    ap.add_argument("--json", metavar="FILE", help="write every number (and the examples) as JSON")
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    ap.add_argument("--examples", type=int, default=20, help="missed / false-positive samples listed per suite")
    ap.add_argument("--families", type=int, default=30, help="secret families listed in the recall table")
    ap.add_argument("--timeout", type=float, default=900, help="seconds allowed per scanner run")
    ap.add_argument("--save-findings", metavar="DIR", help="keep the scanner's raw output per corpus in DIR")
    ap.add_argument("--load-findings", metavar="DIR", help="score saved output from DIR instead of running the scanner")
    args = ap.parse_args()
    args.bin = args.bin or default_binary()
    suites = [s for s in args.suite.split(",") if s]
    for s in suites:
        if s not in ("secrets", "pii", "injection"):
            ap.error(f"unknown suite {s}")
    if not args.load_findings and not os.path.exists(args.bin):
        print(f"error: scanner not found at {args.bin}; build it (cargo build --release -p airlock-cli) "
              "or pass --bin / AIRLOCK_BIN", file=sys.stderr)
        return 2

    entries = [e for e in load_manifest() if e["suite"] in suites and (not args.corpus or e["name"] in args.corpus)]
    by_suite: dict[str, dict] = defaultdict(dict)
    runs = {}
    all_data = {}
    try:
        for e in entries:
            samples = load_corpus(e, args.limit)
            findings, stats = run_scanner(args, e["name"], samples)
            stats.update({"suite": e["suite"], "role": e["role"]})
            runs[e["name"]] = stats
            by_suite[e["suite"]][e["name"]] = (e, samples, findings)
            all_data[e["name"]] = (e, samples, findings)
            print(f"scanned {e['name']}: {stats['samples']} samples, {stats['findings']} findings, "
                  f"{stats['seconds']}s", file=sys.stderr)
    except ScanError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    results: dict = {"scanner": args.bin, "policy": args.policy, "direction": args.direction, "targets": TARGETS,
                     "runs": runs}
    if "secrets" in by_suite:
        results["secrets"] = score_secrets(by_suite["secrets"], args.examples)
    if "pii" in by_suite:
        results["pii"] = score_pii(by_suite["pii"], args.examples)
    if "injection" in by_suite:
        results["injection"] = score_injection(by_suite["injection"], args.examples)
    results["cross_category"] = cross_category(all_data)
    # Targets are only judged on full runs of a suite's corpora.
    results["checks"] = checks(results) if not args.limit and not args.corpus else []
    print(report(results, runs, args.examples, args.families))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1, ensure_ascii=False, default=list)
    if args.check:
        if args.limit or args.corpus:
            print("note: --check ignores partial runs (--limit / --corpus)", file=sys.stderr)
            return 0
        failed = [c for c in results["checks"] if not c["met"]]
        for c in failed:
            print(f"target missed: {c['target']} (got {c['value']})", file=sys.stderr)
        return 1 if failed else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
