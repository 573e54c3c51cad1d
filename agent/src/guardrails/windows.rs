//! Where a class-led regex can match, found with a byte loop, so the regex runs only there: most
//! prose has no run of 24 base64 characters and few digits, and a lazy DFA over every byte of a
//! 100 KB prompt costs more than the loop that proves most of it cannot match. Each finder returns
//! windows (sorted, disjoint byte ranges on UTF-8 boundaries) that hold every match the regex
//! would find in the whole text; [`find_in`] then gives exactly the matches of a whole-text
//! search (the property tests check both against the regex on the whole text). It must not know
//! what the matches mean.

use regex::Regex;

/// A byte of the base64, base64url and hex alphabets (a blob's body).
const BLOB_BYTE: u8 = 1;
/// `0` or `1` (binary octets).
const BIT: u8 = 2;
/// An ASCII letter or digit.
const ALNUM: u8 = 4;
/// A digit or a number separator: `().- /` and a leading `+`.
const NUM: u8 = 8;

/// What each byte is to the finders: a bit per class.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'_' | b'-') {
            t[c] = BLOB_BYTE;
        }
        if matches!(b, b'0' | b'1') {
            t[c] |= BIT;
        }
        if b.is_ascii_alphanumeric() {
            t[c] |= ALNUM;
        }
        if b.is_ascii_digit() || matches!(b, b'(' | b')' | b'.' | b'-' | b' ' | b'/' | b'+') {
            t[c] |= NUM;
        }
        c += 1;
    }
    t
};

/// Windows for the encoded-blob regex: every run of at least `min_run` alphabet bytes (with up to
/// two `=` after it), and, for binary octets, every run of eight or more `0`/`1` with the digits,
/// spaces and commas that follow it.
pub(crate) fn blobs(text: &str, min_run: usize) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut windows: Vec<(usize, usize)> = runs(b, min_run.max(1), BLOB_BYTE)
        .into_iter()
        .map(|(s, e)| {
            let mut end = e;
            while end < b.len() && end < e + 2 && b[end] == b'=' {
                end += 1;
            }
            (s, end)
        })
        .collect();
    for (s, _) in runs(b, 8, BIT) {
        let mut e = s;
        while e < b.len() && (CLASS[b[e] as usize] & BIT != 0 || matches!(b[e], b' ' | b',')) {
            e += 1;
        }
        windows.push((s, e));
    }
    windows.sort_unstable();
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(windows.len());
    for (s, e) in windows {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The maximal runs of at least `min` bytes of `class`. It looks at the last byte a run starting
/// here would need first, so text without such runs is read about one byte in `min`.
fn runs(b: &[u8], min: usize, class: u8) -> Vec<(usize, usize)> {
    let member = |c: u8| CLASS[c as usize] & class != 0;
    let mut out = Vec::new();
    // Invariant: `i` is 0 or follows a byte that is not a member, so a run found at `i` starts there.
    let mut i = 0;
    while i + min <= b.len() {
        let probe = i + min - 1;
        if !member(b[probe]) {
            i = probe + 1;
            continue;
        }
        match (i..probe).rev().find(|&j| !member(b[j])) {
            Some(j) => i = j + 1,
            None => {
                let mut e = probe + 1;
                while e < b.len() && member(b[e]) {
                    e += 1;
                }
                out.push((i, e));
                i = e + 1;
            }
        }
    }
    out
}

/// Windows for the number regex: a match is made of digits and the separators `().- /` (with a
/// `+` or `(` first), starts at most two bytes before its first digit, ends with a digit and spans
/// at least `min_span` bytes from its first digit to its last. So it lies in a maximal run of
/// those bytes, between two bytes before the run's first digit and the run's last digit. Code and
/// prose are full of short numbers (`2024`, `3.2.1`, `timeout=30`) that hold no match.
pub(crate) fn numbers(text: &str, min_span: usize) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let num = |c: u8| CLASS[c as usize] & NUM != 0;
    let mut out = Vec::new();
    // Invariant: `i` is 0 or follows the end of a run (a byte that is not `num`).
    let mut i = 0;
    while let Some(k) = b[i..].iter().position(u8::is_ascii_digit) {
        let first = i + k;
        let mut start = first;
        while start > i && start + 2 > first && num(b[start - 1]) {
            start -= 1;
        }
        let (mut e, mut last) = (first, first);
        while e < b.len() && num(b[e]) {
            if b[e].is_ascii_digit() {
                last = e;
            }
            e += 1;
        }
        if last + 1 - first >= min_span {
            out.push((start, last + 1));
        }
        if e >= b.len() {
            break;
        }
        i = e + 1;
    }
    out
}

/// Windows for the capital-led regexes (IBAN, UK NINO): a match starts with two capital letters
/// followed, after at most one space, by the first digit of a run of digits, and is at most
/// `longest` bytes long.
pub(crate) fn capitals_then_digits(text: &str, longest: usize) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let caps = |s: usize| b[s].is_ascii_uppercase() && b[s + 1].is_ascii_uppercase();
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while let Some(k) = b[i..].iter().position(u8::is_ascii_digit) {
        let d = i + k;
        let start = if d >= 2 && caps(d - 2) {
            Some(d - 2)
        } else if d >= 3 && b[d - 1] == b' ' && caps(d - 3) {
            Some(d - 3)
        } else {
            None
        };
        if let Some(s) = start {
            let e = (s + longest).min(b.len());
            match out.last_mut() {
                Some(w) if s <= w.1 => w.1 = w.1.max(e),
                _ => out.push((s, e)),
            }
        }
        // The next candidate is the first digit of the next run.
        i = d + 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    snap(text, out)
}

/// Windows for the wallet regex, whose matches are runs of ASCII letters and digits at least
/// `min` long that hold a `1` or `3` (Bitcoin's version digit, bech32's separator) or a `0x`
/// (Ethereum): the maximal such runs. Identifiers in code are long runs with none of them.
pub(crate) fn wallet_runs(text: &str, min: usize) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut out = runs(b, min.max(1), ALNUM);
    out.retain(|&(s, e)| {
        let run = &b[s..e];
        memchr::memchr2(b'1', b'3', run).is_some() || memchr::memmem::find(run, b"0x").is_some()
    });
    out
}

/// Windows for the email regex: around each `@`, the `local` bytes before it (the longest local
/// part the regex takes) and the run of domain bytes (letters, digits, `.`, `-`) after it.
pub(crate) fn emails(text: &str, local: usize) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut out: Vec<(usize, usize)> = Vec::new();
    for at in memchr::memchr_iter(b'@', b) {
        let mut e = at + 1;
        while e < b.len() && (b[e].is_ascii_alphanumeric() || matches!(b[e], b'.' | b'-')) {
            e += 1;
        }
        let s = at.saturating_sub(local);
        match out.last_mut() {
            Some(w) if s <= w.1 => w.1 = w.1.max(e),
            _ => out.push((s, e)),
        }
    }
    snap(text, out)
}

/// Widens each window to UTF-8 boundaries (the regexes match ASCII only, so a match never starts
/// or ends inside a character) and merges those that then touch.
fn snap(text: &str, windows: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(windows.len());
    for (mut s, mut e) in windows {
        while s > 0 && !text.is_char_boundary(s) {
            s -= 1;
        }
        while e < text.len() && !text.is_char_boundary(e) {
            e += 1;
        }
        match out.last_mut() {
            Some(w) if s <= w.1 => w.1 = w.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The matches of `re` in `text` inside `windows`, as `(start, end)` in `text`.
pub(crate) fn find_in<'a>(
    re: &'a Regex,
    text: &'a str,
    windows: &'a [(usize, usize)],
) -> impl Iterator<Item = (usize, usize)> + 'a {
    windows.iter().flat_map(move |&(s, e)| {
        re.find_iter(&text[s..e])
            .map(move |m| (s + m.start(), s + m.end()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::guardrails::injection::{BLOB, BLOB_RUN};
    use crate::guardrails::pii::{
        CAPITAL_LED, EMAIL, EMAIL_LOCAL, IBAN, NINO, NUMBER, NUMBER_SPAN, WALLET, WALLET_MIN,
    };

    fn whole(re: &Regex, text: &str) -> Vec<(usize, usize)> {
        re.find_iter(text).map(|m| (m.start(), m.end())).collect()
    }

    /// Texts made of the pieces these regexes care about, in any order.
    fn texts() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("hello world, ".to_string()),
            Just(" ".to_string()),
            Just("==".to_string()),
            Just("é ".to_string()),
            Just("01000001 01000010,".to_string()),
            Just("0100000101000010".to_string()),
            Just("10101010a01000001 01000010 01000011 01000100 01000101 01000110".to_string()),
            Just("+49 (30) 1234-5678".to_string()),
            Just("4012 8888 8888 1881".to_string()),
            Just("GB82 WEST 1234 5698 7654 32".to_string()),
            Just("AB 12 34 56 C".to_string()),
            Just("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq".to_string()),
            Just("0x52908400098527886E0F7030069857D2E4169EE7".to_string()),
            Just("jane.doe@example.org".to_string()),
            Just("DE89370400440532013000".to_string()),
            Just("AB123456C".to_string()),
            Just("1BoatSLRHtKNngkdXEeobR76b53LETtpyT".to_string()),
            Just("+(".to_string()),
            Just("0xABCDEF0246802468ABCDEF0246802468ABCDEF02".to_string()),
            "(0x|3|bc1)[0-9A-Za-z]{20,45}",
            Just("Ü".to_string()),
            "[A-Z]{1,3}[0-9 ]{1,5}",
            "[0-9]{1,3}[A-Z +(]{1,3}",
            Just("@".to_string()),
            Just("- - - / ( ) . ".to_string()),
            "[A-Za-z0-9+/_=-]{1,60}",
            "[0-9 ().-]{1,40}",
            "[01 ,]{1,40}",
            "[a-z .@]{1,30}",
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn windows_give_exactly_the_whole_texts_matches(text in texts()) {
            let blob = Regex::new(BLOB).unwrap();
            let w = blobs(&text, BLOB_RUN);
            prop_assert_eq!(find_in(&blob, &text, &w).collect::<Vec<_>>(), whole(&blob, &text));
            let capital_led = capitals_then_digits(&text, CAPITAL_LED);
            for (p, w) in [
                (NUMBER, numbers(&text, NUMBER_SPAN)),
                (IBAN, capital_led.clone()),
                (NINO, capital_led),
                (WALLET, wallet_runs(&text, WALLET_MIN)),
            ] {
                let re = Regex::new(p).unwrap();
                prop_assert_eq!(find_in(&re, &text, &w).collect::<Vec<_>>(), whole(&re, &text), "{}", p);
            }
            let email = Regex::new(EMAIL).unwrap();
            let w = emails(&text, EMAIL_LOCAL);
            prop_assert_eq!(find_in(&email, &text, &w).collect::<Vec<_>>(), whole(&email, &text));
        }
    }

    #[test]
    fn prose_and_short_numbers_have_no_windows() {
        let prose = "Please summarise the attached notes and keep the tone friendly. ".repeat(50);
        assert!(blobs(&prose, 24).is_empty());
        assert!(numbers(&prose, NUMBER_SPAN).is_empty());
        assert!(capitals_then_digits(&prose, CAPITAL_LED).is_empty());
        assert!(wallet_runs(&prose, WALLET_MIN).is_empty());
        assert!(wallet_runs("fn handle_unauthorized_request_quickly()", WALLET_MIN).is_empty());
        assert_eq!(
            wallet_runs(
                "send to 0x52908400098527886E0F7030069857D2E4169EE7 now",
                WALLET_MIN
            )
            .len(),
            1
        );
        let w = numbers("call me at 555 0100 today", NUMBER_SPAN);
        assert_eq!(w, vec![(10, 19)]);
        // Short numbers, versions and dates hold no phone or card: no window at all.
        let code = "retry(3); timeout = 30; version 3.2.1; port: 5432; 2 ** i";
        assert!(numbers(code, NUMBER_SPAN).is_empty());
        assert_eq!(numbers("tel: +(49) 30 1234", NUMBER_SPAN), vec![(5, 18)]);
    }
}
