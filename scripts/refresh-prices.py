#!/usr/bin/env python3
"""Regenerate policies/prices.json from LiteLLM's public price map (MIT).

Owns: turning LiteLLM's ``model_prices_and_context_window`` JSON into Airlock's own, smaller price format
(``airlock-prices/1``, USD per 1M tokens, keys ``<airlock provider>/<model>``). It must not invent prices:
a model without a per-token price in the source is left out, so the agent reports it as unpriced.

Usage:
    scripts/refresh-prices.py                      # latest litellm from PyPI (pip download --no-deps)
    scripts/refresh-prices.py --version 1.109.1    # a given release
    scripts/refresh-prices.py --from prices.json   # an already-downloaded JSON (or a litellm .whl/.tar.gz)
    scripts/refresh-prices.py --check              # exit 1 if policies/prices.json is out of date

Stdlib only (Python 3.11+). Output is deterministic: sorted keys, one model per line, floats rounded to 12
significant digits. ``generated`` keeps its old date when neither the package nor the models changed, so a
refresh with unchanged data gives a zero diff.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from decimal import Decimal
from pathlib import Path

FORMAT = "airlock-prices/1"
UNIT = "USD per 1M tokens"
SOURCE_NAME = "LiteLLM model_prices_and_context_window.json"
MEMBER = "model_prices_and_context_window_backup.json"

# LiteLLM `litellm_provider` -> Airlock provider name.
PROVIDERS = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "azure": "azure",
    "azure_text": "azure",
    "mistral": "mistral",
    "groq": "groq",
    "openrouter": "openrouter",
    "deepseek": "deepseek",
    "xai": "xai",
    "together_ai": "together",
}
# Key prefixes LiteLLM uses for those providers (stripped before adding ours).
KEY_PREFIXES = {
    "openai": ["openai/"],
    "anthropic": ["anthropic/"],
    "gemini": ["gemini/"],
    "azure": ["azure/"],
    "mistral": ["mistral/"],
    "groq": ["groq/"],
    "openrouter": ["openrouter/"],
    "deepseek": ["deepseek/"],
    "xai": ["xai/"],
    "together": ["together_ai/"],
}
MODES = {"chat", "completion", "embedding", "responses"}

# LiteLLM field -> our field (base rates).
BASE_FIELDS = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cache_read",
    "cache_creation_input_token_cost": "cache_write",
    "cache_creation_input_token_cost_above_1hr": "cache_write_1h",
    "output_cost_per_reasoning_token": "reasoning",
}
# Context-length tiers: `<field>_above_<N>k_tokens` (service-tier variants such as `_priority` don't match).
TIER_RE = re.compile(
    r"^(input_cost_per_token|output_cost_per_token|cache_read_input_token_cost"
    r"|cache_creation_input_token_cost|cache_creation_input_token_cost_above_1hr)_above_(\d+)k_tokens$"
)


def warn(msg: str) -> None:
    print(f"refresh-prices: {msg}", file=sys.stderr)


def per_million(value: object, where: str) -> float | None:
    """LiteLLM USD/token -> USD/1M tokens, without float noise; None (with a warning) if not a price."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        warn(f"{where}: not a number ({value!r}), ignored")
        return None
    if not math.isfinite(value) or value < 0:
        warn(f"{where}: not a finite non-negative price ({value!r}), ignored")
        return None
    scaled = Decimal(repr(float(value))).scaleb(6)
    out = float(f"{float(scaled):.12g}")
    return out + 0.0  # normalise -0.0


def convert_entry(key: str, entry: dict, provider: str) -> dict | None:
    mode = entry.get("mode")
    if mode is not None and mode not in MODES:
        return None
    out: dict = {}
    for src, dst in BASE_FIELDS.items():
        if src in entry and entry[src] is not None:
            v = per_million(entry[src], f"{key}.{src}")
            if v is not None:
                out[dst] = v
    # DeepSeek also spells the cache-read rate `input_cost_per_token_cache_hit`.
    if "cache_read" not in out and entry.get("input_cost_per_token_cache_hit") is not None:
        v = per_million(entry["input_cost_per_token_cache_hit"], f"{key}.input_cost_per_token_cache_hit")
        if v is not None:
            out["cache_read"] = v
    if "input" not in out:
        return None  # no per-token price: leave it out, the agent reports it as unpriced
    if "output" not in out:
        if mode == "embedding":
            out["output"] = 0.0  # embeddings have no output tokens
        else:
            warn(f"{key}: input price but no output price, left out")
            return None
    tiers: dict[int, dict] = {}
    for field, value in entry.items():
        m = TIER_RE.match(field)
        if not m or value is None:
            continue
        v = per_million(value, f"{key}.{field}")
        if v is None:
            continue
        threshold = int(m.group(2)) * 1000  # LiteLLM: "k" = 1000, compared with prompt tokens (>)
        dst = BASE_FIELDS[m.group(1)]
        tiers.setdefault(threshold, {"above_input_tokens": threshold})[dst] = v
    if tiers:
        out["tiers"] = [tiers[t] for t in sorted(tiers)]
    if mode is not None:
        out["mode"] = mode
    return out


def airlock_key(key: str, provider: str) -> str:
    model = key
    for prefix in KEY_PREFIXES[provider]:
        if model.lower().startswith(prefix):
            model = model[len(prefix):]
            break
    return f"{provider}/{model}".lower()


def convert(data: dict) -> dict:
    models: dict[str, tuple[bool, str, dict]] = {}
    for key in sorted(data):
        entry = data[key]
        if key == "sample_spec" or not isinstance(entry, dict):
            continue
        provider = PROVIDERS.get(entry.get("litellm_provider"))
        if provider is None:
            continue
        price = convert_entry(key, entry, provider)
        if price is None:
            continue
        ours = airlock_key(key, provider)
        prefixed = any(key.lower().startswith(p) for p in KEY_PREFIXES[provider])
        if ours in models:
            old_prefixed, old_key, old_price = models[ours]
            if old_price != price:
                keep = key if prefixed and not old_prefixed else old_key
                warn(f"{ours}: {old_key!r} and {key!r} differ; keeping {keep!r}")
            if old_prefixed or not prefixed:
                continue
        models[ours] = (prefixed, key, price)
    return {k: v[2] for k, v in models.items()}


def render(package: str, generated: str, models: dict) -> str:
    head = {
        "format": FORMAT,
        "unit": UNIT,
        "source": {"name": SOURCE_NAME, "license": "MIT", "package": package, "generated": generated},
    }
    lines = ["{"]
    for k in ("format", "unit", "source"):
        lines.append(f" {json.dumps(k)}: {json.dumps(head[k], sort_keys=True)},")
    lines.append(' "models": {')
    items = sorted(models.items())
    for i, (k, v) in enumerate(items):
        comma = "," if i + 1 < len(items) else ""
        lines.append(f"  {json.dumps(k)}: {json.dumps(v, sort_keys=True, allow_nan=False)}{comma}")
    lines.append(" }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def read_archive(path: Path) -> bytes:
    if path.name.endswith(".whl") or path.suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith("litellm/" + MEMBER)]
            if not names:
                sys.exit(f"refresh-prices: {path} has no litellm/{MEMBER}")
            return z.read(names[0])
    if path.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(path) as t:
            members = [m for m in t.getmembers() if m.name.endswith("litellm/" + MEMBER)]
            f = t.extractfile(members[0]) if members else None
            if f is None:
                sys.exit(f"refresh-prices: {path} has no litellm/{MEMBER}")
            return f.read()
    return path.read_bytes()


def version_from_filename(name: str) -> str | None:
    m = re.match(r"^litellm-([0-9][^-]*?)(?:-|\.tar\.gz$)", name)
    return m.group(1) if m else None


def download(version: str | None) -> tuple[bytes, str]:
    spec = f"litellm=={version}" if version else "litellm"
    with tempfile.TemporaryDirectory(prefix="airlock-prices-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--quiet", spec, "-d", tmp]
        warn("running: " + " ".join(cmd))
        if subprocess.run(cmd).returncode != 0:
            sys.exit(f"refresh-prices: pip download {spec} failed; check network access to PyPI, "
                     "or download the JSON yourself and pass --from FILE")
        files = sorted(Path(tmp).iterdir())
        if len(files) != 1:
            sys.exit(f"refresh-prices: expected one downloaded file, got {[f.name for f in files]}")
        got = version_from_filename(files[0].name) or version or "unknown"
        return read_archive(files[0]), f"litellm=={got}"


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--version", help="litellm release to download (default: latest on PyPI)")
    ap.add_argument("--from", dest="src", type=Path,
                    help="use this price-map JSON (or litellm wheel/sdist) instead of downloading")
    ap.add_argument("--package", help="package label recorded in source.package (default: from the download)")
    ap.add_argument("--output", type=Path, default=root / "policies" / "prices.json")
    ap.add_argument("--date", help="generated date YYYY-MM-DD (default: today, or unchanged if data is)")
    ap.add_argument("--check", action="store_true", help="don't write; exit 1 if the output would change")
    args = ap.parse_args()

    if args.src is not None:
        raw = read_archive(args.src)
        v = version_from_filename(args.src.name)
        package = f"litellm=={v}" if v else (f"litellm=={args.version}" if args.version else
                                               f"litellm (file {args.src.name})")
    else:
        raw, package = download(args.version)
    if args.package:
        package = args.package
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        sys.exit(f"refresh-prices: source is not JSON: {e}")
    if not isinstance(data, dict):
        sys.exit("refresh-prices: source is not a JSON object keyed by model")
    models = convert(data)

    generated = args.date or datetime.date.today().isoformat()
    old_text = args.output.read_text() if args.output.exists() else None
    if old_text and not args.date:
        try:
            old = json.loads(old_text)
            if old.get("models") == models and old.get("source", {}).get("package") == package:
                generated = old["source"].get("generated", generated)
        except (json.JSONDecodeError, AttributeError):
            pass
    text = render(package, generated, models)
    json.loads(text)  # sanity: our own output parses

    if args.check:
        if text != old_text:
            warn(f"{args.output} is out of date ({package}); run scripts/refresh-prices.py")
            return 1
        warn(f"{args.output} is up to date ({package}, {len(models)} models)")
        return 0
    if text == old_text:
        warn(f"{args.output} unchanged ({package}, {len(models)} models)")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    by_provider: dict[str, int] = {}
    for k in models:
        p = k.split("/", 1)[0]
        by_provider[p] = by_provider.get(p, 0) + 1
    warn(f"wrote {args.output}: {len(models)} models from {package}, {len(text)} bytes; "
         + ", ".join(f"{p} {n}" for p, n in sorted(by_provider.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
