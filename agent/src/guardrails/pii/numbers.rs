//! Numbers in text, judged: a run of digit groups and separators (`+44 20 7946 0958`,
//! `4012-8888-8888-1881 4012 8888 8888 1881`, `10.0.0.1`) is split into its groups, and from each
//! group the longest grouping that a validator accepts — card, SSN/ITIN, Aadhaar, IPv4, phone — is
//! taken; the rest of the run is judged again after it. Separators must be consistent within a
//! value and the value must stand alone (no letter or digit glued to it). It must not scan the text
//! itself (the detector hands it each run).

use std::net::Ipv4Addr;

use super::validate;
use super::{Category, Finding, Pii, PiiOptions, RANK};

/// The most groups one value may have (a phone number with a country code and an extension).
const MAX_GROUPS: usize = 7;

/// Words that make a bare digit string a phone number, an SSN or an Aadhaar.
const PHONE_CONTEXT: [&str; 10] = [
    "phone", "tel", "call", "mobile", "cell", "fax", "whatsapp", "contact", "dial", "sms",
];
/// Words that make a bare digit string some other number.
const NOT_PHONE: [&str; 8] = [
    "license", "licence", "passport", "account", "invoice", "order", "serial", "id ",
];
const SSN_CONTEXT: [&str; 4] = ["ssn", "social security", "social-security", "ss#"];
const AADHAAR_CONTEXT: [&str; 2] = ["aadhaar", "aadhar"];

struct Run<'a> {
    text: &'a str,
    /// (start, end) of each digit group.
    groups: Vec<(usize, usize)>,
}

impl Run<'_> {
    /// The separator between group `k` and `k + 1`.
    fn sep(&self, k: usize) -> &str {
        &self.text[self.groups[k].1..self.groups[k + 1].0]
    }

    fn digits(&self, i: usize, j: usize) -> String {
        (i..=j)
            .map(|k| &self.text[self.groups[k].0..self.groups[k].1])
            .collect()
    }

    fn lens(&self, i: usize, j: usize) -> Vec<usize> {
        (i..=j)
            .map(|k| self.groups[k].1 - self.groups[k].0)
            .collect()
    }

    /// The one separator used between groups `i..=j`, if they all use the same.
    fn same_sep(&self, i: usize, j: usize) -> Option<&str> {
        let first = if i < j { self.sep(i) } else { "" };
        (i..j).all(|k| self.sep(k) == first).then_some(first)
    }
}

fn context(text: &str, at: usize, words: &[&str]) -> bool {
    let from = super::super::floor_char(text, at.saturating_sub(48));
    let before = text[from..at].to_ascii_lowercase();
    words.iter().any(|w| before.contains(w))
}

/// Judges the number-like run `text[start..end]`.
pub(super) fn judge(
    pii: &Pii,
    o: &PiiOptions,
    text: &str,
    start: usize,
    end: usize,
    out: &mut Vec<Finding>,
) {
    let b = text.as_bytes();
    let mut groups = Vec::new();
    let mut i = start;
    while i < end {
        if b[i].is_ascii_digit() {
            let s = i;
            while i < end && b[i].is_ascii_digit() {
                i += 1;
            }
            groups.push((s, i));
        } else {
            i += 1;
        }
    }
    let run = Run { text, groups };
    let n = run.groups.len();
    let mut i = 0;
    while i < n {
        let mut taken = None;
        for j in (i..n.min(i + MAX_GROUPS)).rev() {
            if let Some(f) = classify(pii, o, &run, i, j) {
                taken = Some((j, f));
                break;
            }
        }
        match taken {
            Some((j, f)) => {
                out.push(f);
                i = j + 1;
            }
            None => i += 1,
        }
    }
}

fn classify(pii: &Pii, o: &PiiOptions, run: &Run<'_>, i: usize, j: usize) -> Option<Finding> {
    let text = run.text;
    let b = text.as_bytes();
    let (start, end) = (run.groups[i].0, run.groups[j].1);
    // Separators between groups are at most three characters (` - `, `) `, `. `).
    if (i..j).any(|k| run.sep(k).len() > 3 || run.sep(k).is_empty()) {
        return None;
    }
    let glued_before = start > 0 && (b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
    // A phone extension (`x818`, `ext. 12`) is part of the number, not glue.
    let ext = extension(b, end);
    let glued_after =
        ext.is_none() && end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_');
    // `1.2.3.4.5`, `12.5` or `14:56` continuing: a dot, comma or colon followed by a digit.
    let continues_after =
        end + 1 < b.len() && matches!(b[end], b'.' | b',' | b':') && b[end + 1].is_ascii_digit();
    let continues_before =
        start >= 2 && matches!(b[start - 1], b'.' | b',') && b[start - 2].is_ascii_digit();
    if glued_before || glued_after || continues_after || continues_before {
        // A phone number may start with `+` or `(`, which are not glue; anything else is.
        return None;
    }
    let digits = run.digits(i, j);
    let lens = run.lens(i, j);
    let sep = run.same_sep(i, j);
    let nd = digits.len();
    let ids = &pii.ids;
    if ext.is_some() {
        // Only a phone number has an extension.
        return phone(o, run, i, j, &digits, &lens, ext)
            .map(|(s, e)| Finding::new(&ids.phone, Category::Pii, s, e, RANK));
    }

    // IPv4: four dotted groups.
    if j - i == 3 && sep == Some(".") && lens.iter().all(|&l| l <= 3) {
        let ip: Option<Ipv4Addr> = text[start..end].parse().ok();
        return match ip {
            Some(ip) if o.ipv4_ok(ip) => {
                Some(Finding::new(&ids.ipv4, Category::Pii, start, end, RANK))
            }
            _ => None,
        };
    }
    let plain_sep = matches!(sep, Some(" " | "-"));
    // Payment card: 12–19 digits, one group or groups with one separator.
    if (12..=19).contains(&nd)
        && (i == j || (plain_sep && lens.iter().all(|&l| (3..=6).contains(&l))))
        && validate::card(&digits)
    {
        return Some(Finding::new(&ids.card, Category::Pii, start, end, RANK));
    }
    // SSN / ITIN: 3-2-4 with one separator, or nine digits after the word.
    if nd == 9
        && ((lens == [3, 2, 4] && matches!(sep, Some("-" | " " | ".")))
            || (i == j && context(text, start, &SSN_CONTEXT)))
    {
        if let Some(itin) = validate::ssn(&digits) {
            let id = if itin { &ids.itin } else { &ids.ssn };
            return Some(Finding::new(id, Category::Pii, start, end, RANK));
        }
    }
    // Aadhaar: 4-4-4, or twelve digits after the word; Verhoeff check digit.
    if nd == 12
        && ((lens == [4, 4, 4] && plain_sep) || (i == j && context(text, start, &AADHAAR_CONTEXT)))
        && validate::aadhaar(&digits)
    {
        return Some(Finding::new(&ids.aadhaar, Category::Pii, start, end, RANK));
    }
    phone(o, run, i, j, &digits, &lens, None)
        .map(|(s, e)| Finding::new(&ids.phone, Category::Pii, s, e, RANK))
}

/// The end of an extension (`x818`, `ext. 12`, `ext 12`) right after `at`, if there is one.
fn extension(b: &[u8], at: usize) -> Option<usize> {
    let mut rest = b.get(at..)?;
    let mut at = at;
    // `555-0100 ext. 12`: one space before `ext` is allowed (not before `x`).
    if rest.len() > 4 && rest[0] == b' ' && rest[1..4].eq_ignore_ascii_case(b"ext") {
        rest = &rest[1..];
        at += 1;
    }
    let skip = if rest.first() == Some(&b'x') || rest.first() == Some(&b'X') {
        1
    } else if rest.len() > 3 && rest[..3].eq_ignore_ascii_case(b"ext") {
        let mut k = 3;
        while k < rest.len() && matches!(rest[k], b'.' | b' ') && k < 5 {
            k += 1;
        }
        k
    } else {
        return None;
    };
    let digits = rest[skip..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    let after = at + skip + digits;
    ((1..=6).contains(&digits) && b.get(after).is_none_or(|c| !c.is_ascii_alphanumeric()))
        .then_some(after)
}

/// A phone number over groups `i..=j` (and the extension ending at `ext`): its span, with a
/// leading `+` or `(`, if libphonenumber calls it valid for a configured region or internationally.
fn phone(
    o: &PiiOptions,
    run: &Run<'_>,
    i: usize,
    j: usize,
    digits: &str,
    lens: &[usize],
    ext: Option<usize>,
) -> Option<(usize, usize)> {
    let text = run.text;
    let b = text.as_bytes();
    let nd = digits.len();
    if !(7..=15).contains(&nd) {
        return None;
    }
    let (mut start, end) = (run.groups[i].0, run.groups[j].1);
    let plus = start > 0 && b[start - 1] == b'+';
    let paren = start > 0 && b[start - 1] == b'(';
    if plus || paren {
        start -= 1;
        if start > 0 && (b[start - 1].is_ascii_alphanumeric()) {
            return None;
        }
    }
    let seps: Vec<&str> = (i..j).map(|k| run.sep(k)).collect();
    if seps
        .iter()
        .any(|s| !s.bytes().all(|c| b" -.()/".contains(&c)))
    {
        return None;
    }
    // Dates and times are not phone numbers: 2024-01-15, 15.01.2024, 01/15/2024, 12:30.
    let datey = matches!(
        lens,
        [4, 2, 2] | [2, 2, 4] | [1, 2, 4] | [2, 1, 4] | [1, 1, 4]
    ) && seps.iter().all(|s| matches!(*s, "-" | "/" | "."));
    if datey {
        return None;
    }
    // Two groups joined by a dot is a decimal; a dotted run of small groups is a version.
    if !seps.is_empty()
        && seps.iter().all(|s| *s == ".")
        && (j - i < 2 || lens.iter().all(|&l| l <= 2))
    {
        return None;
    }
    // Part of a longer hyphenated or dotted number (a card that failed Luhn, a serial).
    let joined = |k: usize| matches!(run.sep(k), "-" | ".");
    if (i > 0 && joined(i - 1)) || (j + 1 < run.groups.len() && joined(j)) {
        return None;
    }
    // The SSN's shape is never a phone number's.
    if lens == [3, 2, 4] {
        return None;
    }
    // A bare digit string needs a `+` or the word "phone" (or kin) before it, and not the
    // name of another number.
    if i == j
        && !plus
        && (!context(text, start, &PHONE_CONTEXT) || context(text, start, &NOT_PHONE))
    {
        return None;
    }
    // A short national number in groups is as likely an address or a code; a number named as
    // something else (an invoice, an order) is that; `2.7.1153.49` is a version.
    let after_to = super::super::floor_char(text, (end + 24).min(text.len()));
    let after = text[end..after_to].to_ascii_lowercase();
    let named = context(text, start, &PHONE_CONTEXT)
        || [
            "office", "fax", "mobile", "cell", "home", "work", "phone", "tel",
        ]
        .iter()
        .any(|w| after.contains(w));
    let year_first = lens.first() == Some(&4) && matches!(&digits[..2], "19" | "20");
    if !plus
        && ((nd < 8 || (j - i == 1 && year_first)) && !named
            || context(text, start, &NOT_PHONE)
            || (seps.iter().all(|s| *s == ".") && lens.first() == Some(&1)))
    {
        return None;
    }
    let shown_end = ext.unwrap_or(end);
    let candidate = &text[start..end];
    if plus {
        let n = phonenumber::parse(None, candidate).ok()?;
        return phonenumber::is_valid(&n).then_some((start, shown_end));
    }
    // `00` or `011` then a country code is the international form dialled from a handset.
    for prefix in ["011", "00"] {
        if let Some(rest) = digits.strip_prefix(prefix) {
            if let Ok(n) = phonenumber::parse(None, format!("+{rest}")) {
                if phonenumber::is_valid(&n) {
                    return Some((start, shown_end));
                }
            }
        }
    }
    // Without a country code, the first digit of a national number is never 0 once the trunk
    // prefix is written, so libphonenumber's national parse is the right test per region.
    for region in &o.regions {
        if let Ok(n) = phonenumber::parse(Some(*region), candidate) {
            if phonenumber::is_valid(&n) {
                return Some((start, shown_end));
            }
        }
    }
    None
}
