//! The personal-data detector: email addresses, phone numbers (libphonenumber's metadata through the
//! `phonenumber` crate, per configured region or international with `+`), payment cards (issuer
//! ranges and Luhn), IBANs (per-country length and mod-97), US SSNs and ITINs (the SSA's validity
//! rules), IPv4 and IPv6 addresses (public ones only by default), crypto wallet addresses (Base58Check,
//! Bech32/Bech32m, EIP-55 checksums) and a few national identifiers (UK NINO, India's Aadhaar with
//! its Verhoeff digit). Candidates come from a handful of regexes (one pass each, most anchored on a
//! required literal); numbers are split into digit groups and every grouping is judged by the
//! validators in [`validate`], so "4012 8888 8888 1881 4012-8888-8888-1881" is two cards and
//! "call 555-0100 ext 12" is not one. It must not know about policy.

mod numbers;
mod validate;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use regex::Regex;

use super::{bounded, windows, Category, Finding, GuardError, Options};

/// The longest value this detector reports (an IBAN with spaces, a phone number with an
/// extension, a bech32 address), for stream holdback.
pub(crate) const LONGEST: usize = 96;

/// The rules, with their titles.
pub(crate) const RULES: &[(&str, &str)] = &[
    ("email", "email address"),
    ("phone", "phone number (libphonenumber-valid)"),
    ("credit_card", "payment card number (issuer range and Luhn)"),
    ("iban", "IBAN (country length and mod-97)"),
    ("us_ssn", "US Social Security number (SSA validity rules)"),
    ("us_itin", "US Individual Taxpayer Identification Number"),
    (
        "ipv4",
        "IPv4 address (public only unless public_ips_only = false)",
    ),
    (
        "ipv6",
        "IPv6 address (global unicast only unless public_ips_only = false)",
    ),
    ("crypto_wallet", "Bitcoin or Ethereum address (checksummed)"),
    ("uk_nino", "UK National Insurance number"),
    ("in_aadhaar", "India Aadhaar number (Verhoeff)"),
];

/// The candidate patterns. Each runs only in the windows of its own finder in
/// [`super::windows`], which hold every match it has in the whole text: numbers in runs of digits
/// and separators, IBANs and NINOs after two capitals and a digit, wallets in long alphanumeric
/// runs, emails around an `@`.
pub(crate) const EMAIL: &str = r"[A-Za-z0-9](?:[A-Za-z0-9._%+\-']{0,63})@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}";
pub(crate) const NUMBER: &str = r"\+?\(?[0-9][0-9().\- /]{4,240}[0-9]|[0-9]{7,}";
pub(crate) const IBAN: &str = r"[A-Z]{2}[0-9]{2}(?:[ \-]?[A-Z0-9]){11,32}";
pub(crate) const WALLET: &str = r"bc1[02-9ac-hj-np-z]{8,87}|BC1[02-9AC-HJ-NP-Z]{8,87}|[13][1-9A-HJ-NP-Za-km-z]{25,34}|0x[0-9a-fA-F]{40}";
pub(crate) const NINO: &str =
    r"[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]";
/// The fewest bytes from the first digit of a [`NUMBER`] match to its last.
pub(crate) const NUMBER_SPAN: usize = 6;
/// The longest [`IBAN`] or [`NINO`] match.
pub(crate) const CAPITAL_LED: usize = 4 + 2 * 32;
/// The shortest [`WALLET`] match (`bc1` and eight characters).
pub(crate) const WALLET_MIN: usize = 11;
/// The longest local part [`EMAIL`] takes.
pub(crate) const EMAIL_LOCAL: usize = 64;

/// Rank of a validated finding (beats a generic secret on overlap).
const RANK: u8 = 2;

/// Rule ids.
struct Ids {
    email: Arc<str>,
    phone: Arc<str>,
    card: Arc<str>,
    iban: Arc<str>,
    ssn: Arc<str>,
    itin: Arc<str>,
    ipv4: Arc<str>,
    ipv6: Arc<str>,
    wallet: Arc<str>,
    nino: Arc<str>,
    aadhaar: Arc<str>,
}

pub(crate) struct Pii {
    ids: Ids,
    email: Regex,
    number: Regex,
    iban: Regex,
    wallet: Regex,
    nino: Regex,
}

/// A policy's settings for this detector.
#[derive(Debug, Clone)]
pub(crate) struct PiiOptions {
    public_ips_only: bool,
    regions: Vec<phonenumber::country::Id>,
}

impl PiiOptions {
    pub(crate) fn new(o: &Options) -> PiiOptions {
        PiiOptions {
            public_ips_only: o.public_ips_only,
            regions: o
                .phone_regions
                .iter()
                .filter_map(|r| r.to_ascii_uppercase().parse().ok())
                .collect(),
        }
    }
}

fn re(p: &str) -> Result<Regex, GuardError> {
    Regex::new(p).map_err(|e| GuardError::BuiltinRules(format!("pii pattern: {e}")))
}

impl Pii {
    pub(crate) fn new() -> Result<Pii, GuardError> {
        // libphonenumber's metadata is loaded on first use: ~100 ms that the first request with a
        // phone-like number would otherwise wait for. Load it with the other rules instead.
        let _ = phonenumber::parse(None, "+14155552671").map(|n| phonenumber::is_valid(&n));
        Ok(Pii {
            ids: Ids {
                email: "email".into(),
                phone: "phone".into(),
                card: "credit_card".into(),
                iban: "iban".into(),
                ssn: "us_ssn".into(),
                itin: "us_itin".into(),
                ipv4: "ipv4".into(),
                ipv6: "ipv6".into(),
                wallet: "crypto_wallet".into(),
                nino: "uk_nino".into(),
                aadhaar: "in_aadhaar".into(),
            },
            email: re(EMAIL)?,
            number: re(NUMBER)?,
            iban: re(IBAN)?,
            wallet: re(WALLET)?,
            nino: re(NINO)?,
        })
    }

    pub(crate) fn scan(&self, text: &str, o: &PiiOptions, out: &mut Vec<Finding>) {
        let b = text.as_bytes();
        if b.contains(&b'@') {
            let around = windows::emails(text, EMAIL_LOCAL);
            for (s, e) in windows::find_in(&self.email, text, &around) {
                if bounded_email(text, s, e) {
                    out.push(Finding::new(&self.ids.email, Category::Pii, s, e, RANK));
                }
            }
        }
        for (s, e) in windows::find_in(&self.number, text, &windows::numbers(text, NUMBER_SPAN)) {
            numbers::judge(self, o, text, s, e, out);
        }
        // IPv6 candidates grow out of each colon (a regex led by a hex class would run everywhere
        // in prose): the run of hex digits, colons and dots around it, with a zone and a prefix.
        let addr = |c: u8| c.is_ascii_hexdigit() || c == b':' || c == b'.';
        let mut next = 0;
        for at in memchr::memchr_iter(b':', b) {
            if at < next {
                continue;
            }
            let mut s = at;
            while s > 0 && addr(b[s - 1]) {
                s -= 1;
            }
            let mut e = at;
            while e < b.len() && addr(b[e]) {
                e += 1;
            }
            if e < b.len() && b[e] == b'%' {
                e += 1;
                while e < b.len() && b[e].is_ascii_alphanumeric() {
                    e += 1;
                }
            }
            if e + 1 < b.len() && b[e] == b'/' && b[e + 1].is_ascii_digit() {
                e += 1;
                while e < b.len() && b[e].is_ascii_digit() && e < at + 64 {
                    e += 1;
                }
            }
            next = e;
            if b[s..e].iter().filter(|&&c| c == b':').count() >= 2 {
                self.judge_ipv6(o, text, s, e, out);
            }
        }
        let capital_led = windows::capitals_then_digits(text, CAPITAL_LED);
        for (s, e) in windows::find_in(&self.iban, text, &capital_led) {
            if let Some(end) = validate::iban(text, s, e) {
                if bounded(text, s, end) {
                    out.push(Finding::new(&self.ids.iban, Category::Pii, s, end, RANK));
                }
            }
        }
        let long_runs = windows::wallet_runs(text, WALLET_MIN);
        for (s, e) in windows::find_in(&self.wallet, text, &long_runs) {
            if bounded(text, s, e) && validate::wallet(&text[s..e]) {
                out.push(Finding::new(&self.ids.wallet, Category::Pii, s, e, RANK));
            }
        }
        for (s, e) in windows::find_in(&self.nino, text, &capital_led) {
            if bounded(text, s, e) && validate::nino(&text[s..e]) {
                out.push(Finding::new(&self.ids.nino, Category::Pii, s, e, RANK));
            }
        }
    }

    fn judge_ipv6(
        &self,
        o: &PiiOptions,
        text: &str,
        start: usize,
        end: usize,
        out: &mut Vec<Finding>,
    ) {
        let b = text.as_bytes();
        // A sentence's full stop or a trailing colon is not part of the address.
        let mut end = end;
        while end > start && matches!(b[end - 1], b'.' | b':') && !text[start..end].ends_with("::")
        {
            end -= 1;
        }
        let s = &text[start..end];
        let no_prefix = s.split('/').next().unwrap_or(s);
        let bare = no_prefix.split('%').next().unwrap_or(no_prefix);
        let Ok(ip) = bare.parse::<Ipv6Addr>() else {
            return;
        };
        // `12:30:45` and `a:b` do not parse; `std::` is glued to a letter.
        let glued = |i: usize| {
            b.get(i)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b':' || *c == b'_')
        };
        if (start > 0 && glued(start - 1)) || glued(end) {
            return;
        }
        if o.public_ips_only && !public_v6(&ip) {
            return;
        }
        out.push(Finding::new(
            &self.ids.ipv6,
            Category::Pii,
            start,
            end,
            RANK,
        ));
    }
}

impl PiiOptions {
    fn ipv4_ok(&self, ip: Ipv4Addr) -> bool {
        !self.public_ips_only || public_v4(&ip)
    }
}

/// An email must not be glued to more address characters (the regex stops at its own limits).
fn bounded_email(text: &str, start: usize, end: usize) -> bool {
    let b = text.as_bytes();
    let before =
        start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b"._%+-".contains(&b[start - 1]));
    let after =
        end >= b.len() || !(b[end].is_ascii_alphanumeric() || b[end] == b'-' || b[end] == b'@');
    before && after
}

/// Whether an IPv4 address is reachable on the internet (not private, shared, loopback,
/// link-local, documentation, benchmarking, multicast or reserved).
pub(crate) fn public_v4(ip: &Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_unspecified()
        || ip.is_multicast()
        || o[0] == 0
        || o[0] >= 240
        || (o[0] == 100 && (64..128).contains(&o[1]))
        || (o[0] == 198 && (o[1] == 18 || o[1] == 19))
        || (o[0] == 192 && o[1] == 0 && o[2] == 0))
}

/// Whether an IPv6 address is global unicast (2000::/3, minus documentation 2001:db8::/32).
pub(crate) fn public_v6(ip: &Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return public_v4(&v4);
    }
    (s[0] & 0xe000) == 0x2000 && !(s[0] == 0x2001 && s[1] == 0x0db8)
}

#[cfg(test)]
mod tests;
