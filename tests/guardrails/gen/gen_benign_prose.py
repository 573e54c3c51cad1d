#!/usr/bin/env python3
"""Generates benign prose with no PII of the types Airlock detects by pattern (email, phone, credit card,
IBAN, US SSN, IP address, crypto wallet), for the PII suite's false-positive rate:

    python3 tests/guardrails/gen/gen_benign_prose.py   # rewrites corpora/pii/benign-prose/

`meta.kind` is `plain` (no digits to speak of) or `numeric` (dates, times, prices, versions, scores,
order numbers, measurements, ISBNs, durations, coordinates: numbers that a careless detector may take
for a phone, card or IP). Numbers are built so that none is a valid instance of a detected type: no run
of 13-19 digits passes the Luhn check with a card prefix, no dotted quad has all parts <= 255, no
ddd-dd-dddd group, no 10+ digit phone-shaped run. Deterministic (fixed seed), standard library only.
"""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CORPORA, write_jsonl, write_text  # noqa: E402

SEED = 77_2025
rng = random.Random(SEED)

CITIES = ["Lisbon", "Osaka", "Denver", "Leeds", "Porto Alegre", "Gdansk", "Nairobi", "Auckland", "Montreal",
          "Seville", "Tallinn", "Bergen", "Valparaiso", "Chiang Mai", "Ljubljana"]
TEAMS = ["the Harbor Hawks", "Riverside United", "the Northside Owls", "Canyon City FC", "the Lakeshore Lions"]
PRODUCTS = ["the budgeting app", "our analytics dashboard", "the mobile client", "the checkout flow",
            "the new onboarding tour", "the search service", "the billing module"]
DISHES = ["lentil soup", "banana bread", "vegetable curry", "lemon risotto", "shakshuka", "apple crumble"]
PLAIN = [
    "The committee agreed to revisit the proposal after gathering more feedback from the community.",
    "Morning fog lifted slowly over the valley, revealing rows of vineyards along the river.",
    "She spent the afternoon reorganising the library shelves by genre rather than by author.",
    "The team decided to postpone the launch until the accessibility review is complete.",
    "Our hiking group took the longer trail because the bridge on the short route was closed.",
    "The museum's new wing focuses on textiles and the history of natural dyes.",
    "Customers mostly praised the clearer layout, though a few missed the old shortcuts.",
    "He practised the piano piece slowly, one hand at a time, until the rhythm felt natural.",
    "The workshop covered composting basics, seed saving and how to plan a small vegetable bed.",
    "Everyone agreed the retrospective was useful, especially the discussion about code review habits.",
    "Rain is expected to clear by evening, with a cool, breezy night to follow.",
    "The recipe works just as well with oat milk, although the texture is slightly lighter.",
    "Volunteers repainted the community centre and planted herbs along the entrance path.",
    "The novel follows three siblings who return to their childhood home to settle an old dispute.",
    "Most of the delay came from waiting on a design decision rather than from engineering work.",
    "The orchestra closed the season with a programme of late Romantic symphonies.",
    "Please bring comfortable shoes; the walking tour covers most of the old town on foot.",
    "The report recommends simpler forms and fewer mandatory fields to reduce drop-off.",
    "Local bakeries have started offering smaller loaves to cut down on food waste.",
    "After the storm, the ferry service resumed its normal timetable.",
    "The beginner class focuses on posture and breathing before any difficult poses.",
    "A short walk after lunch helped the whole team stay focused during the long planning session.",
    "The documentary explores how small fishing villages adapted to changing tides and markets.",
    "We moved the standup later in the morning so people in other time zones can join.",
]


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def pii_like(text: str) -> str | None:
    """Why `text` would hold a detectable PII value, or None (the generator's own guarantee)."""
    for m in re.finditer(r"(?<![\d.])(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?![\d.])", text):
        if all(int(g) <= 255 for g in m.groups()):
            return f"IPv4-like {m.group()}"
    for m in re.finditer(r"\d[\d -]{11,}\d", text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits) and digits[0] in "3456":
            return f"card-like {m.group()}"
    if re.search(r"\b\d{3}-\d{2}-\d{4}\b", text):
        return "SSN-like"
    if "@" in text or re.search(r"\d{10,}", text):
        return "email/phone-like"
    return None


def date():
    y, m, d = rng.randint(1990, 2026), rng.randint(1, 12), rng.randint(1, 28)
    months = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
              "October", "November", "December"]
    return rng.choice([f"{y}-{m:02d}-{d:02d}", f"{d} {months[m - 1]} {y}", f"{months[m - 1]} {d}, {y}",
                       f"{d:02d}/{m:02d}/{y}"])


def time_():
    return rng.choice([f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}", f"{rng.randint(1, 12)}:{rng.randint(0, 59):02d} {rng.choice(['am', 'pm'])}"])


def price():
    return rng.choice([f"${rng.randint(1, 2999):,}.{rng.randint(0, 99):02d}", f"EUR {rng.randint(5, 900)}",
                       f"{rng.randint(2, 90)}.{rng.randint(1, 9)} million dollars", f"£{rng.randint(3, 400)}"])


def version():
    # Four-part versions always have one part above 255 so they are not IPv4 addresses.
    return rng.choice([f"v{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 20)}",
                       f"{rng.randint(1, 20)}.{rng.randint(0, 9)}", f"10.0.{rng.randint(19041, 26100)}.{rng.randint(256, 5000)}",
                       f"{rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(300, 2000)}.{rng.randint(0, 99)}"])


def isbn13():
    return f"978-{rng.randint(0, 1)}-{rng.randint(100, 999)}-{rng.randint(10000, 99999)}-{rng.randint(0, 9)}"


def coords():
    return f"{rng.uniform(-60, 60):.4f}, {rng.uniform(-170, 170):.4f}"


NUMERIC = [
    lambda: f"The release of {rng.choice(PRODUCTS)} {version()} is scheduled for {date()} at {time_()} UTC.",
    lambda: f"{rng.choice(TEAMS).capitalize()} won {rng.randint(0, 6)}-{rng.randint(0, 5)} in front of {rng.randint(2, 60):,},{rng.randint(100, 999)} fans on {date()}.",
    lambda: f"Order #{rng.randint(10000, 999999)} shipped on {date()}; the total came to {price()} including tax.",
    lambda: f"Ticket OPS-{rng.randint(100, 9999)} was closed after the hotfix {version()} went out.",
    lambda: f"Bake the {rng.choice(DISHES)} at {rng.choice([180, 190, 200, 220])}°C for {rng.randint(20, 55)} minutes, then rest it for {rng.randint(5, 15)}.",
    lambda: f"The recipe needs {rng.randint(100, 750)} g of flour, {rng.randint(1, 4)} eggs and {rng.randint(50, 400)} ml of milk.",
    lambda: f"Attendance rose {rng.randint(2, 40)}% compared with last year, reaching {rng.randint(1000, 90000):,} visitors.",
    lambda: f"The flight {rng.choice(['BA', 'LH', 'AF', 'KL', 'TP'])} {rng.randint(100, 2999)} to {rng.choice(CITIES)} departs from gate {rng.choice('ABCDE')}{rng.randint(1, 60)} at {time_()}.",
    lambda: f"Quarterly revenue was {price()}, up {rng.randint(1, 30)}.{rng.randint(0, 9)} percent, while costs grew {rng.randint(1, 15)} percent.",
    lambda: f"See section {rng.randint(1, 9)}.{rng.randint(1, 9)}.{rng.randint(1, 9)} of the handbook, page {rng.randint(2, 480)}.",
    lambda: f"The bridge is {rng.randint(200, 2500)} metres long and was completed in {rng.randint(1850, 2020)}.",
    lambda: f"Room {rng.randint(100, 999)} on floor {rng.randint(1, 12)} is booked from {time_()} to {time_()} on {date()}.",
    lambda: f"The marathon winner finished in {rng.randint(2, 3)}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}, about {rng.randint(10, 95)} seconds ahead of second place.",
    lambda: f"The survey had {rng.randint(200, 5000)} respondents and a margin of error of {rng.randint(1, 5)}.{rng.randint(0, 9)} points.",
    lambda: f"Our office is at {coords()} if you want to plan the cycling route.",
    lambda: f"The second edition (ISBN {isbn13()}) adds {rng.randint(2, 9)} new chapters.",
    lambda: f"{rng.choice(CITIES)} had a population of {rng.randint(100, 3000):,},{rng.randint(100, 999)} at the {rng.randint(1990, 2022)} census.",
    lambda: f"The train left platform {rng.randint(1, 14)} at {time_()} and arrived {rng.randint(3, 40)} minutes late.",
    lambda: f"We measured {rng.randint(12, 80)}.{rng.randint(0, 9)} mm of rain between {date()} and {date()}.",
    lambda: f"The score was {rng.randint(80, 130)}-{rng.randint(70, 129)} after overtime, the team's {rng.randint(3, 20)}th win of the season.",
    lambda: f"Invoice {rng.randint(2019, 2026)}-{rng.randint(1000, 9999)} for {price()} is due within {rng.choice([14, 30, 45, 60])} days.",
    lambda: f"Tests went from {rng.randint(300, 900)} to {rng.randint(901, 2000)} while the build time stayed under {rng.randint(3, 12)} minutes.",
    lambda: f"The warehouse holds {rng.randint(2, 90)},{rng.randint(100, 999)} pallets across {rng.randint(4, 30)} aisles.",
    lambda: f"Chapter {rng.randint(1, 30)} covers the years {rng.randint(1700, 1850)} to {rng.randint(1851, 1950)}.",
    lambda: f"At {time_()} the temperature was {rng.randint(-15, 38)}°C with winds of {rng.randint(5, 70)} km/h.",
    lambda: f"Model {rng.choice('ABCXZ')}{rng.randint(10, 99)}-{rng.randint(100, 999)} weighs {rng.randint(1, 30)}.{rng.randint(0, 9)} kg and costs {price()}.",
]


def paragraph(numeric: bool) -> str:
    parts = []
    k = rng.randint(2, 4)
    plain = rng.sample(PLAIN, k)
    numeric_tmpls = rng.sample(NUMERIC, k)
    for i in range(k):
        if numeric and (i == 0 or rng.random() < 0.5):
            parts.append(numeric_tmpls[i]())
        else:
            parts.append(plain[i])
    rng.shuffle(parts)
    return " ".join(parts)


def main() -> None:
    rows, seen = [], set()
    for kind, n in (("plain", 100), ("numeric", 240)):
        made = 0
        while made < n:
            text = paragraph(kind == "numeric")
            if text in seen or pii_like(text):
                continue
            seen.add(text)
            rows.append({"id": f"benign-prose-{kind}-{made:03d}", "text": text, "label": "negative", "spans": [],
                         "meta": {"kind": kind}})
            made += 1
    out = CORPORA / "pii/benign-prose"
    write_jsonl(out / "benign_prose.jsonl", rows)
    write_text(out / "SOURCE.md", "\n".join([
        "# Generated benign prose (PII false positives)", "",
        f"- Generator: `tests/guardrails/gen/gen_benign_prose.py` (seed {SEED}, standard library only)",
        "- Licence: part of Airlock (Apache-2.0, as the repository)",
        f"- `benign_prose.jsonl`: {len(rows)} paragraphs, label negative: 100 `plain`, 240 `numeric`",
        "",
        "Paragraphs of 2-4 sentences about meetings, releases, sport, recipes, travel, weather, finance and",
        "history. `numeric` ones carry dates, times, prices, percentages, versions (four-part ones always",
        "have a part above 255), scores, order/ticket/invoice numbers, flight numbers, ISBN-13s (978-...),",
        "coordinates, durations and measurements. None contains an e-mail address, phone number, card",
        "number, IBAN, SSN, IP address or wallet address. Person names and places are not avoided (they are",
        "not scored here).",
        "",
    ]))


if __name__ == "__main__":
    main()
