#!/usr/bin/env python3
"""Extracts gitleaks' own rule test cases (the true- and false-positive strings each rule in
cmd/generate/config/rules/*.go validates against) into
tests/guardrails/corpora/secrets/gitleaks/{true_positives,false_positives}.jsonl.

    python3 tests/guardrails/gen/import_gitleaks.py --mirror-root DIR

It reads a pinned commit of a local clone (bare or not) of gitleaks/gitleaks and fetches nothing. The
Go source is tokenised, not executed. What it understands of each rule function:

  tps := utils.GenerateSampleSecrets("id", SECRET)       -> 3 of gitleaks' ~25 contexts (seeded pick),
                                                           with the span of SECRET known exactly
  utils.GenerateSampleSecret("id", SECRET)               -> `id_api_token = "SECRET"`, span known
  tps := []string{ EXPR, ... } / append(tps, EXPR, ...)  -> the string; span from the rule's regex in
                                                           config/gitleaks.toml (Python re), else none
  fps := []string{ EXPR, ... }                           -> a negative sample

where SECRET/EXPR are string literals, `+` concatenations, local string variables, and
`secrets.NewSecret(PATTERN)` / `newPlausibleSecret(PATTERN)`, which are re-implemented by sampling
PATTERN (a regex, possibly built with utils.Hex/AlphaNumeric/...) with Python's own regex parser and
a seeded RNG. Anything else (fmt.Sprintf, loops, path-dependent map[string]string cases) is skipped
and counted. The eval never runs this; its output is committed.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import tomllib
from collections import Counter
from pathlib import Path

try:
    import re._parser as sre_parse  # Python 3.11+
    import re._constants as sre_c
except ImportError:  # pragma: no cover
    import sre_parse  # type: ignore
    import sre_constants as sre_c  # type: ignore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CORPORA, char_to_byte, find_repo, git_blob_id, git_show, write_jsonl, write_text  # noqa: E402
from import_upstream import commit_date  # noqa: E402

GITLEAKS = ("gitleaks/gitleaks", "b58d3f102cf3a2c84cb7f923d05c25c9b1aed84b")
RULES_DIR = "cmd/generate/config/rules"
SEED = 20240917
CONTEXTS_PER_SECRET = 3

# utils.GenerateSampleSecrets' contexts (cmd/generate/config/utils/generate.go at the pinned commit).
SAMPLE_CONTEXTS = [
    "{i}Token=\"{s}\"", "{i}Token = \"{s}\"", "{i}Token={s}", "{i}Token = {s}",
    "{\n    \"{i}_token\": \"{s}\"\n}", "{\"config.ini\": \"{I}_TOKEN={s}\\nBACKUP_ENABLED=true\"}",
    "<{i}Token>\n    {s}\n</{i}Token>", "{i}_token: {s}", "{i}_token: '{s}'", "{i}_token: \"{s}\"",
    "string {i}Token = \"{s}\";", "var {i}Token string = \"{s}\"", "{i}Token := \"{s}\"",
    "{i}Token := `{s}`", "String {i}Token = \"{s}\";", "var {i}Token = \"{s}\"", "${i}Token .= \"{s}\"",
    "{i}Token = '{s}'", "{i}Token = \"{s}\"", "System.setProperty(\"{I}_TOKEN\", \"{s}\")",
    "  \"{i}Token\" => \"{s}\"", "{i}_TOKEN = \"{s}\"", "{i}_TOKEN := \"{s}\"", "{i}_TOKEN ::= \"{s}\"",
    "{i}_TOKEN :::= \"{s}\"", "{i}_TOKEN ?= \"{s}\"",
]

# True positives that hold no secret material of their own (gitleaks flags them as a marker of a
# secret-bearing file): a scanner of text cannot be expected to flag them.
EXCLUDE_TPS = {
    '"type": "service_account"': "GCP service-account file marker, no key material",
}

UTIL_PATTERNS = {
    "Numeric": "[0-9]{%s}", "Hex": "[a-f0-9]{%s}", "AlphaNumeric": "[a-z0-9]{%s}",
    "AlphaNumericExtendedShort": "[a-z0-9_-]{%s}", "AlphaNumericExtended": "[a-z0-9=_\\-]{%s}",
    "AlphaNumericExtendedLong": "[a-z0-9\\/=_\\+\\-]{%s}",
}


# ------------------------------------------------------------------------------------ Go tokenizer

TOKEN_RE = re.compile(r"""
    (?P<ws>[ \t\r]+)
  | (?P<nl>\n)
  | (?P<lcomment>//[^\n]*)
  | (?P<bcomment>/\*.*?\*/)
  | (?P<raw>`[^`]*`)
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<rune>'(?:[^'\\\n]|\\.)+')
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<num>[0-9][0-9a-fA-FxX_.]*)
  | (?P<op>:=|\.\.\.|&&|\|\||==|!=|<=|>=|[-+*/%&|^<>=!:;,.(){}\[\]])
""", re.S | re.X)


def go_unquote(tok: str) -> str:
    if tok[0] == "`":
        return tok[1:-1].replace("\r", "")
    # Go's interpreted string escapes are a subset of Python's, except \u/\U which match too.
    body = tok[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out += c.encode("utf-8")
            i += 1
            continue
        n = body[i + 1]
        simple = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, "'": 39, '"': 34}
        if n in simple:
            out.append(simple[n])
            i += 2
        elif n == "x":
            out.append(int(body[i + 2:i + 4], 16))
            i += 4
        elif n in "uU":
            w = 4 if n == "u" else 8
            out += chr(int(body[i + 2:i + 2 + w], 16)).encode("utf-8")
            i += 2 + w
        elif n in "01234567":
            out.append(int(body[i + 1:i + 4], 8))
            i += 4
        else:
            raise ValueError(f"bad escape in {tok!r}")
    return out.decode("utf-8")


class Tok:
    __slots__ = ("kind", "val")

    def __init__(self, kind: str, val: str):
        self.kind, self.val = kind, val

    def __repr__(self) -> str:
        return f"{self.kind}:{self.val!r}"


def tokenize(src: str) -> list[Tok]:
    toks: list[Tok] = []
    pos = 0
    while pos < len(src):
        m = TOKEN_RE.match(src, pos)
        if not m:
            raise ValueError(f"cannot tokenise at {src[pos:pos + 40]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind in ("ws", "lcomment"):
            continue
        if kind == "bcomment":
            if "\n" in m.group():
                toks.append(Tok("nl", "\n"))
            continue
        if kind in ("raw", "str"):
            toks.append(Tok("str", go_unquote(m.group())))
        else:
            toks.append(Tok(kind, m.group()))
    return toks


# --------------------------------------------------------------------------------- regex sampling

PRINTABLE = [chr(c) for c in range(33, 127)]


def _charset(items) -> list[str]:
    chars: set[str] = set()
    negate = False
    for op, av in items:
        if op == sre_c.NEGATE:
            negate = True
        elif op == sre_c.LITERAL:
            chars.add(chr(av))
        elif op == sre_c.RANGE:
            chars.update(chr(c) for c in range(av[0], av[1] + 1))
        elif op == sre_c.CATEGORY:
            chars.update(_category(av))
        else:
            raise ValueError(f"unsupported class item {op}")
    if negate:
        chars = set(PRINTABLE) - chars
    return sorted(chars)


def _category(cat) -> list[str]:
    if cat == sre_c.CATEGORY_DIGIT:
        return list("0123456789")
    if cat == sre_c.CATEGORY_WORD:
        return list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
    if cat == sre_c.CATEGORY_SPACE:
        return [" "]
    if cat == sre_c.CATEGORY_NOT_DIGIT:
        return list("abcdefghijklmnopqrstuvwxyz")
    raise ValueError(f"unsupported category {cat}")


def _sample(parsed, rng: random.Random) -> str:
    out = []
    for op, av in parsed:
        if op == sre_c.LITERAL:
            out.append(chr(av))
        elif op == sre_c.IN:
            out.append(rng.choice(_charset(av)))
        elif op == sre_c.CATEGORY:
            out.append(rng.choice(_category(av)))
        elif op == sre_c.ANY:
            out.append(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789"))
        elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, getattr(sre_c, "POSSESSIVE_REPEAT", None)):
            lo, hi, sub = av
            if hi == sre_c.MAXREPEAT:
                hi = lo + 16
            for _ in range(rng.randint(lo, hi)):
                out.append(_sample(sub, rng))
        elif op == sre_c.SUBPATTERN:
            out.append(_sample(av[-1], rng))
        elif op == sre_c.BRANCH:
            out.append(_sample(rng.choice(av[1]), rng))
        elif op == sre_c.AT:
            pass
        else:
            raise ValueError(f"unsupported regex op {op}")
    return "".join(out)


def sample_regex(pattern: str, rng: random.Random, plausible: bool = False) -> str:
    parsed = sre_parse.parse(pattern.replace("\\z", ""))
    for _ in range(100):
        s = _sample(parsed, rng)
        if not plausible or re.search(r"[1-9]", s):
            return s
    return s


# ------------------------------------------------------------------------------ expression values

class Str:
    """A string value and the character ranges of it that are a generated or declared secret."""

    def __init__(self, text: str, secret: list[tuple[int, int]] | None = None, generated: bool = False):
        self.text = text
        self.secret = secret or []
        self.generated = generated

    def __add__(self, other: "Str") -> "Str":
        n = len(self.text)
        return Str(self.text + other.text, self.secret + [(a + n, b + n) for a, b in other.secret],
                   self.generated or other.generated)


class Sample:
    def __init__(self, text: str, spans: list[tuple[int, int]] | None, how: str):
        self.text, self.spans, self.how = text, spans, how


class Unsupported(Exception):
    pass


SELF = object()  # `tps`/`fps` themselves, as append's first argument


class Parser:
    def __init__(self, toks: list[Tok], rng: random.Random, env: dict[str, Str]):
        self.t, self.i, self.rng, self.env = toks, 0, rng, env

    def peek(self, k: int = 0) -> Tok | None:
        j = self.i + k
        return self.t[j] if j < len(self.t) else None

    def eat(self, val: str | None = None, kind: str | None = None) -> Tok:
        tok = self.peek()
        if tok is None or (val is not None and tok.val != val) or (kind is not None and tok.kind != kind):
            raise Unsupported(f"expected {val or kind}, got {tok}")
        self.i += 1
        return tok

    def skip_nl(self) -> None:
        while self.peek() is not None and self.peek().kind == "nl":
            self.i += 1

    def qualified(self) -> str:
        name = self.eat(kind="ident").val
        while self.peek() is not None and self.peek().val == "." and self.peek(1) is not None \
                and self.peek(1).kind == "ident":
            self.i += 1
            name += "." + self.eat(kind="ident").val
        return name

    def args(self) -> list:
        self.eat("(")
        out = []
        self.skip_nl()
        while self.peek().val != ")":
            out.append(self.expr())
            self.skip_nl()
            if self.peek().val == ",":
                self.i += 1
                self.skip_nl()
            elif self.peek().val == "...":
                self.i += 1
                out[-1] = ("spread", out[-1])
                self.skip_nl()
                if self.peek().val == ",":
                    self.i += 1
                    self.skip_nl()
        self.eat(")")
        return out

    def expr(self):
        """A string (Str), a list of samples, or a pattern string."""
        left = self.term()
        while self.peek() is not None and self.peek().val == "+":
            self.i += 1
            self.skip_nl()
            right = self.term()
            if not (isinstance(left, Str) and isinstance(right, Str)):
                raise Unsupported("+ on non-strings")
            left = left + right
        return left

    def term(self):
        tok = self.peek()
        if tok.kind == "str":
            self.i += 1
            return Str(tok.val)
        if tok.val == "[" and self.peek(1).val == "]":
            self.i += 2
            typ = self.qualified()
            if typ != "string":
                raise Unsupported(f"[]{typ}")
            return self.string_list()
        if tok.kind == "ident":
            name = self.qualified()
            if self.peek() is not None and self.peek().val == "(":
                return self.call(name, self.args())
            if name in ("tps", "fps"):
                return SELF
            if name in self.env:
                return self.env[name]
            raise Unsupported(f"identifier {name}")
        raise Unsupported(f"token {tok}")

    def string_list(self) -> list[Sample]:
        self.eat("{")
        out: list[Sample] = []
        self.skip_nl()
        while self.peek().val != "}":
            v = self.expr()
            out.extend(as_samples(v))
            self.skip_nl()
            if self.peek().val == ",":
                self.i += 1
            self.skip_nl()
        self.eat("}")
        return out

    def call(self, name: str, args: list):
        short = name.split(".")[-1]
        if short in UTIL_PATTERNS and len(args) == 1 and isinstance(args[0], Str):
            return Str(UTIL_PATTERNS[short] % args[0].text)
        if short == "Hex8_4_4_4_12":
            return Str(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
        if name in ("secrets.NewSecret", "newPlausibleSecret") and len(args) == 1 and isinstance(args[0], Str):
            s = sample_regex(args[0].text, self.rng, plausible=(name == "newPlausibleSecret"))
            return Str(s, [(0, len(s))], generated=True)
        if short == "GenerateSampleSecret" and len(args) == 2 and all(isinstance(a, Str) for a in args):
            ident, secret = args[0].text, args[1].text
            text = f'{ident}_api_token = "{secret}"'
            a = text.index('"') + 1
            return [Sample(text, [(a, a + len(secret))], "GenerateSampleSecret")]
        if short == "GenerateSampleSecrets" and len(args) == 2 and all(isinstance(a, Str) for a in args):
            ident, secret = args[0].text, args[1].text
            out = []
            for tmpl in self.rng.sample(SAMPLE_CONTEXTS, CONTEXTS_PER_SECRET):
                pre = tmpl.split("{s}")[0].replace("{i}", ident).replace("{I}", ident.upper())
                text = tmpl.replace("{i}", ident).replace("{I}", ident.upper()).replace("{s}", secret)
                out.append(Sample(text, [(len(pre), len(pre) + len(secret))], "GenerateSampleSecrets"))
            return out
        if name == "append" and args:
            out = []
            for a in args if args[0] is not SELF else args[1:]:
                if isinstance(a, tuple) and a[0] == "spread":
                    a = a[1]
                out.extend(as_samples(a))
            return ("append", out)
        raise Unsupported(f"call {name}")


def as_samples(v) -> list[Sample]:
    if isinstance(v, list):
        return v
    if isinstance(v, Str):
        # A bare string: its span is found with the rule's regex later (None = unknown yet).
        return [Sample(v.text, None, "literal" if not v.generated else "literal+generated")]
    raise Unsupported(f"not a sample: {type(v)}")


def top_level_vars(toks: list[Tok], rng: random.Random) -> dict:
    """Package-level `var name = EXPR` values (string lists shared by several rules)."""
    env: dict = {}
    for st in statements(toks):
        if len(st) > 3 and st[0].val == "var" and st[1].kind == "ident" and st[2].val == "=":
            try:
                env[st[1].val] = Parser(st[3:], rng, env).expr()
            except (Unsupported, ValueError, IndexError, AttributeError):
                pass
    return env


def split_functions(toks: list[Tok]):
    """(function name, body tokens) for each top-level func."""
    i = 0
    while i < len(toks):
        if toks[i].val == "func" and i + 1 < len(toks) and toks[i + 1].kind == "ident":
            name = toks[i + 1].val
            j = i
            while toks[j].val != "{":
                j += 1
            depth, k = 0, j
            while True:
                if toks[k].val == "{":
                    depth += 1
                elif toks[k].val == "}":
                    depth -= 1
                    if depth == 0:
                        break
                k += 1
            yield name, toks[j + 1:k]
            i = k + 1
        else:
            i += 1


def statements(body: list[Tok]):
    """Top-level statements of a function body, split on newlines/semicolons at depth 0."""
    cur: list[Tok] = []
    depth = 0
    for tok in body:
        if tok.val in "({[" and tok.kind == "op":
            depth += 1
        elif tok.val in ")}]" and tok.kind == "op":
            depth -= 1
        if depth == 0 and (tok.kind == "nl" or tok.val == ";"):
            if cur and cur[-1].val not in ("+", ",", "=", ":=", "("):
                yield cur
                cur = []
            continue
        cur.append(tok)
    if cur:
        yield cur


def rule_id_of(body: list[Tok]) -> str | None:
    for k in range(len(body) - 2):
        if body[k].val == "RuleID" and body[k + 1].val == ":" and body[k + 2].kind == "str":
            return body[k + 2].val
    return None


def scope_inline_flags(p: str) -> str:
    """Go applies a flag group such as `(?i)` from where it stands to the end of the enclosing group
    (across `|`); Python accepts one only at the very start. Rewrite each later one as a scoped
    `(?i:...)` closed before every `|` and at the end of its group."""
    out = []
    stack = [[]]  # per open group: flags opened inside it, still to close
    i = 0
    in_class = False
    while i < len(p):
        c = p[i]
        if c == "\\":
            out.append(p[i:i + 2])
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
            out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
            out.append(c)
            i += 1
            if i < len(p) and p[i] == "^":
                out.append("^")
                i += 1
            if i < len(p) and p[i] == "]":
                out.append("]")
                i += 1
            continue
        m = re.match(r"\(\?([imsU-]+)\)", p[i:])
        if m and i > 0:
            flags = m.group(1).replace("U", "")
            out.append(f"(?{flags}:")
            stack[-1].append(flags)
            i += m.end()
            continue
        if c == "(":
            stack.append([])
            out.append(c)
        elif c == ")":
            out.append(")" * len(stack.pop()) + ")")
        elif c == "|":
            opened = stack[-1]
            out.append(")" * len(opened) + "|" + "".join(f"(?{f}:" for f in opened))
        else:
            out.append(c)
        i += 1
    out.append(")" * len(stack.pop()))
    return "".join(out)


def go_regex_to_python(pat: str) -> re.Pattern | None:
    p = pat.replace("\\z", "\\Z")
    p = re.sub(r"\[:(\w+):\]", lambda m: {"alnum": "a-zA-Z0-9", "alpha": "a-zA-Z", "digit": "0-9",
                                          "space": "\\s", "upper": "A-Z", "lower": "a-z",
                                          "xdigit": "0-9a-fA-F", "word": "\\w"}.get(m.group(1), m.group()), p)
    for cand in (p, scope_inline_flags(p)):
        try:
            return re.compile(cand)
        except re.error:
            continue
    return None


def shannon(s: str) -> float:
    n = len(s)
    return -sum(v / n * math.log2(v / n) for v in Counter(s).values()) if n else 0.0


class RuleMatcher:
    """A rough re-implementation of one gitleaks rule (keywords, regex, secretGroup, entropy,
    allowlist regexes and stop words) used to spot false positives that hold another rule's secret."""

    def __init__(self, rule: dict):
        self.id = rule["id"]
        self.rx = go_regex_to_python(rule["regex"]) if "regex" in rule else None
        self.group = rule.get("secretGroup", 0)
        self.entropy = rule.get("entropy", 0)
        self.keywords = [k.lower() for k in rule.get("keywords", [])]
        self.allow = [c for a in rule.get("allowlists", []) for x in a.get("regexes", [])
                      if (c := go_regex_to_python(x)) is not None]
        self.stop = [w.lower() for a in rule.get("allowlists", []) for w in a.get("stopwords", [])]

    def why_not(self, text: str) -> str:
        """Why this rule does not flag `text`: no_match, low_entropy, allowlisted, or other."""
        if self.rx is None or (self.keywords and not any(k in text.lower() for k in self.keywords)):
            return "no_match"
        cands = [text[a:b] for a, b in regex_spans(self.rx, self.group, text)]
        if not cands:
            return "no_match"
        cands = [c for c in cands if not self.entropy or shannon(c) >= self.entropy]
        if not cands:
            return "low_entropy"
        if all(any(x.search(c) for x in self.allow) or any(w in c.lower() for w in self.stop) for c in cands):
            return "allowlisted"
        return "other"

    def finds(self, text: str) -> str | None:
        if self.rx is None or (self.keywords and not any(k in text.lower() for k in self.keywords)):
            return None
        for a, b in regex_spans(self.rx, self.group, text):
            sec = text[a:b]
            if self.entropy and shannon(sec) < self.entropy:
                continue
            if any(x.search(sec) for x in self.allow) or any(w in sec.lower() for w in self.stop):
                continue
            return sec
        return None


def regex_spans(rx: re.Pattern, group: int, text: str) -> list[tuple[int, int]]:
    spans = []
    for m in rx.finditer(text):
        g = group
        if not g:
            g = next((k for k in range(1, (m.lastindex or 0) + 1) if m.group(k)), 0)
        if m.group(g):
            spans.append(m.span(g))
    return spans


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mirror-root", default="/work/.mirror")
    args = ap.parse_args()
    repo_dir = find_repo(args.mirror_root, GITLEAKS[0])
    commit = GITLEAKS[1]
    rng = random.Random(SEED)

    toml = tomllib.loads(git_show(repo_dir, commit, "config/gitleaks.toml").decode("utf-8"))
    rules = {r["id"]: r for r in toml["rules"]}
    import subprocess
    files = sorted(
        f for f in subprocess.run(["git", "-C", repo_dir, "ls-tree", "--name-only", commit, RULES_DIR + "/"],
                                  check=True, capture_output=True, text=True).stdout.split()
        if f.endswith(".go"))

    tps, fps = [], []
    stats = Counter()
    skipped: list[str] = []
    for path in files:
        family = Path(path).stem
        toks = tokenize(git_show(repo_dir, commit, path).decode("utf-8"))
        globals_env = top_level_vars(toks, rng)
        for fname, body in split_functions(toks):
            rid = rule_id_of(body)
            if rid is None:
                continue
            stats["rules"] += 1
            env = dict(globals_env)
            got = {"tps": [], "fps": []}
            for st in statements(body):
                if len(st) < 3 or st[0].kind != "ident" or st[1].val not in (":=", "="):
                    continue
                var = st[0].val
                p = Parser(st[2:], rng, env)
                try:
                    v = p.expr()
                except (Unsupported, ValueError, IndexError, AttributeError) as e:
                    if var in ("tps", "fps"):
                        stats[f"{var}_statements_skipped"] += 1
                        skipped.append(f"{path}:{fname}:{var}: {e}")
                    continue
                if var in ("tps", "fps"):
                    if isinstance(v, tuple) and v[0] == "append":
                        got[var].extend(v[1])
                    else:
                        got[var] = as_samples(v)
                elif isinstance(v, (Str, list)):
                    env[var] = v
            rule = rules.get(rid)
            rx = go_regex_to_python(rule["regex"]) if rule and "regex" in rule else None
            group = rule.get("secretGroup", 0) if rule else 0
            for kind, samples in got.items():
                for k, s in enumerate(samples):
                    row = {
                        "id": f"gitleaks-{rid}-{kind[:2]}-{k:02d}",
                        "text": s.text,
                        "label": "positive" if kind == "tps" else "negative",
                        "spans": [],
                        "meta": {"family": family, "gitleaks_rule": rid, "how": s.how},
                    }
                    if kind == "tps" and s.text in EXCLUDE_TPS:
                        stats["tps_excluded"] += 1
                        continue
                    if kind == "tps":
                        spans = s.spans
                        if spans is None and rx is not None:
                            spans = regex_spans(rx, group, s.text) or None
                            row["meta"]["span_from"] = "gitleaks regex" if spans else "none"
                        elif spans is not None:
                            row["meta"]["span_from"] = "generator"
                        else:
                            row["meta"]["span_from"] = "none"
                        for a, b in spans or []:
                            ba, bb = char_to_byte(s.text, a, b)
                            row["spans"].append({"type": rid, "start": ba, "end": bb})
                        stats["tps_span_" + row["meta"]["span_from"].replace(" ", "_")] += 1
                        tps.append(row)
                    else:
                        fps.append(row)
    # A false positive of one rule can be another rule's true positive (cloudflare's rules use each
    # other's samples as negatives; an anthropic "api" negative is an admin key). Those are not
    # negatives for a whole scanner: drop them.
    tp_texts = {r["text"] for r in tps}
    matchers = [RuleMatcher(r) for r in rules.values() if r["id"] != "generic-api-key"]
    kept = []
    dropped = []
    for r in fps:
        why = "same text is another rule's true positive" if r["text"] in tp_texts else None
        if why is None:
            for m in matchers:
                if m.id != r["meta"]["gitleaks_rule"] and m.finds(r["text"]):
                    why = f"holds a {m.id} secret"
                    break
        if why:
            dropped.append(f"{r['id']}: {why}")
        else:
            own = rules.get(r["meta"]["gitleaks_rule"])
            r["meta"]["kind"] = RuleMatcher(own).why_not(r["text"]) if own and "regex" in own else "other"
            kept.append(r)
    stats["fps_dropped_other_rule_secret"] = len(dropped)
    for r in kept:
        stats["fps_kind_" + r["meta"]["kind"]] += 1
    fps = kept
    skipped += [f"(false positive dropped) {d}" for d in dropped]
    out = CORPORA / "secrets/gitleaks"
    write_jsonl(out / "true_positives.jsonl", tps, encode_text=True)
    write_jsonl(out / "false_positives.jsonl", fps, encode_text=True)
    write_text(out / "LICENSE", git_show(repo_dir, commit, "LICENSE"))
    fam = Counter(r["meta"]["family"] for r in tps)
    md = [
        "# gitleaks rule test cases", "",
        f"- Source repository: https://github.com/{GITLEAKS[0]}",
        f"- Commit: `{commit}` ({commit_date(repo_dir, commit)})",
        f"- Upstream files: `{RULES_DIR}/*.go` ({len(files)} files) for the cases, "
        f"`config/gitleaks.toml` (blob `{git_blob_id(repo_dir, commit, 'config/gitleaks.toml')}`) "
        "for the rule regexes used to locate secrets in literal true positives",
        "- Licence: MIT (upstream `LICENSE`, copied verbatim)",
        "- Extracted by: `tests/guardrails/gen/import_gitleaks.py` (seed "
        f"{SEED}, {CONTEXTS_PER_SECRET} contexts per GenerateSampleSecrets call)",
        f"- Output: `true_positives.jsonl` ({len(tps)} samples, label positive; `text_b64` holds the "
        "base64 of the text so the repository does not trip secret scanners), "
        f"`false_positives.jsonl` ({len(fps)} samples, label negative, also `text_b64`)",
        "", "## What the labels mean", "",
        "Each sample's `meta.gitleaks_rule` is the gitleaks rule id whose validation list it comes from and",
        "`meta.family` the rule file's name (the eval's per-family recall groups on it). True positives",
        "carry the secret's byte span when it is known: from the generator call that embedded it",
        "(`span_from: generator`) or from the rule's regex (`span_from: gitleaks regex`); when neither",
        "works the sample has no spans and any secret finding on it counts. False positives are strings",
        "gitleaks' rule must *not* flag (placeholders, low-entropy or wrong-length look-alikes); they are",
        "negatives for the whole scanner, not just for the same rule, so a few may be arguable for",
        "other detectors. `meta.kind` says why gitleaks' own rule passes over it (as re-computed here):",
        "`no_match` (the regex does not match: wrong prefix, length, case or boundary), `low_entropy`",
        "(placeholders such as `xxxx`), `allowlisted` (the rule's allowlist names the value: documented",
        "example keys such as `AKIAIOSFODNN7EXAMPLE`, Firebase SDK sample keys, stop words) or `other`",
        "(global allowlists, path rules, or our approximation). Random parts (`secrets.NewSecret`) are",
        "re-sampled here with a fixed seed, so they differ from gitleaks' own random draws.",
        "", "Excluded true positives (no secret material in the text): "
        + "; ".join(f"`{k}` ({v})" for k, v in EXCLUDE_TPS.items()) + ".",
        "", "## Counts", "",
        "```", json.dumps(dict(sorted(stats.items())), indent=1), "```", "",
        "True positives per family: " + ", ".join(f"{k} {v}" for k, v in sorted(fam.items())), "",
        "## Skipped statements", "",
    ] + [f"- {s}" for s in skipped] + [""]
    write_text(out / "SOURCE.md", "\n".join(md))
    print(json.dumps(dict(stats)))


if __name__ == "__main__":
    main()
