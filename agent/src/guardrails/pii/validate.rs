//! The validators that turn a candidate into a finding: Luhn and issuer ranges for cards, the SSA's
//! rules for SSNs and ITINs, Verhoeff for Aadhaar, ISO 13616 lengths and ISO 7064 mod-97 for IBANs,
//! Base58Check, Bech32/Bech32m and EIP-55 for wallet addresses, the HMRC prefix rules for NINOs.
//! Pure functions over strings; they must not scan text.

use sha2::{Digest, Sha256};
use sha3::Keccak256;

/// Luhn mod-10 over ASCII digits.
pub(crate) fn luhn(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, c) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(c - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

/// A card number: a known issuer's prefix and length, and Luhn.
pub(crate) fn card(d: &str) -> bool {
    let n = d.len();
    let p = |k: usize| d.get(..k).and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
    let issuer = match d.as_bytes()[0] {
        b'4' => matches!(n, 13 | 16 | 19), // Visa
        b'5' => {
            (51..=55).contains(&p(2)) && n == 16
                || matches!(p(2), 50 | 56..=59) && (12..=19).contains(&n)
        } // Mastercard, Maestro
        b'2' => (2221..=2720).contains(&p(4)) && n == 16, // Mastercard 2-series
        b'3' => {
            (matches!(p(2), 34 | 37) && n == 15)                                                  // Amex
                || ((3528..=3589).contains(&p(4)) && (16..=19).contains(&n))                      // JCB
                || (((300..=305).contains(&p(3)) || matches!(p(2), 36 | 38 | 39)) && (14..=19).contains(&n))
            // Diners
        }
        b'6' => (16..=19).contains(&n) || (12..=19).contains(&n) && matches!(p(2), 60..=69), // Discover, UnionPay, Maestro
        b'1' => n == 15,                                                                     // UATP
        _ => false,
    };
    issuer && luhn(d) && !d.bytes().all(|c| c == d.as_bytes()[0])
}

/// An SSN (`Some(false)`) or an ITIN (`Some(true)`), nine digits; `None` if the SSA never issues it.
pub(crate) fn ssn(d: &str) -> Option<bool> {
    let area: u32 = d.get(..3)?.parse().ok()?;
    let group: u32 = d.get(3..5)?.parse().ok()?;
    let serial: u32 = d.get(5..9)?.parse().ok()?;
    if group == 0 || serial == 0 || d.bytes().all(|c| c == d.as_bytes()[0]) {
        return None;
    }
    if matches!(d, "123456789" | "078051120" | "219099999" | "457555462") {
        return None;
    }
    if area >= 900 {
        // ITIN: 9XX-[50-65 | 70-88 | 90-92 | 94-99]-XXXX.
        let itin = matches!(group, 50..=65 | 70..=88 | 90..=92 | 94..=99);
        return itin.then_some(true);
    }
    (area != 0 && area != 666).then_some(false)
}

const VERHOEFF_D: [[u8; 10]; 10] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
];
const VERHOEFF_P: [[u8; 10]; 8] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
];

/// An Aadhaar number: twelve digits, not starting 0 or 1, Verhoeff check digit.
pub(crate) fn aadhaar(d: &str) -> bool {
    if d.len() != 12 || matches!(d.as_bytes()[0], b'0' | b'1') {
        return false;
    }
    let mut c = 0u8;
    for (i, ch) in d.bytes().rev().enumerate() {
        c = VERHOEFF_D[usize::from(c)][usize::from(VERHOEFF_P[i % 8][usize::from(ch - b'0')])];
    }
    c == 0
}

/// IBAN length per country (ISO 13616 registry).
fn iban_length(cc: &str) -> Option<usize> {
    Some(match cc {
        "NO" => 15,
        "BE" => 16,
        "DK" | "FI" | "FO" | "GL" | "NL" => 18,
        "MK" | "SI" => 19,
        "AT" | "BA" | "EE" | "KZ" | "LT" | "LU" | "XK" => 20,
        "CH" | "CR" | "HR" | "LI" | "LV" => 21,
        "BG" | "BH" | "DE" | "GB" | "GE" | "IE" | "ME" | "RS" | "VA" => 22,
        "AE" | "GI" | "IL" | "IQ" | "TL" => 23,
        "AD" | "CZ" | "ES" | "MD" | "PK" | "RO" | "SA" | "SE" | "SK" | "TN" | "VG" => 24,
        "LY" | "PT" | "ST" => 25,
        "IS" | "TR" => 26,
        "FR" | "GR" | "IT" | "MC" | "MR" | "SM" => 27,
        "AL" | "AZ" | "BY" | "CY" | "DO" | "GT" | "HU" | "LB" | "PL" | "SV" => 28,
        "BR" | "EG" | "PS" | "QA" | "UA" => 29,
        "JO" | "KW" | "MU" => 30,
        "MT" | "SC" => 31,
        "LC" => 32,
        "RU" => 33,
        _ => return None,
    })
}

/// The end of a valid IBAN starting at `start` (the candidate runs to `end`, separators allowed
/// between characters), or `None`.
pub(crate) fn iban(text: &str, start: usize, end: usize) -> Option<usize> {
    let s = &text[start..end];
    let want = iban_length(s.get(..2)?)?;
    let mut chars = String::with_capacity(want);
    let mut stop = start;
    for (i, c) in s.char_indices() {
        if c.is_ascii_alphanumeric() {
            chars.push(c);
            if chars.len() == want {
                stop = start + i + 1;
                break;
            }
        } else if !matches!(c, ' ' | '-') {
            return None;
        }
    }
    if chars.len() != want {
        return None;
    }
    // Separators, if any, come between groups of four.
    let body = &text[start..stop];
    if body.contains([' ', '-']) && body.split([' ', '-']).rev().skip(1).any(|g| g.len() != 4) {
        return None;
    }
    let rearranged = format!("{}{}", &chars[4..], &chars[..4]);
    let mut rem: u32 = 0;
    for c in rearranged.bytes() {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return None,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    (rem == 1).then_some(stop)
}

const BASE58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
const BECH32: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";

fn base58check(s: &str) -> bool {
    // Decode into a big-endian byte vector.
    let mut bytes: Vec<u8> = Vec::with_capacity(32);
    for c in s.bytes() {
        let Some(mut carry) = BASE58.iter().position(|&b| b == c).map(|v| v as u32) else {
            return false;
        };
        for b in bytes.iter_mut().rev() {
            carry += u32::from(*b) * 58;
            *b = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let zeros = s.bytes().take_while(|&c| c == b'1').count();
    let mut full = vec![0u8; zeros];
    full.extend_from_slice(&bytes);
    if full.len() != 25 {
        return false;
    }
    let (payload, check) = full.split_at(21);
    let hash = Sha256::digest(Sha256::digest(payload));
    hash[..4] == *check
}

fn bech32_polymod(values: &[u8]) -> u32 {
    const GEN: [u32; 5] = [
        0x3b6a_57b2,
        0x2650_8e6d,
        0x1ea1_19fa,
        0x3d42_33dd,
        0x2a14_62b3,
    ];
    let mut chk: u32 = 1;
    for &v in values {
        let top = chk >> 25;
        chk = ((chk & 0x01ff_ffff) << 5) ^ u32::from(v);
        for (i, g) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    chk
}

fn bech32(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let Some((hrp, data)) = lower.rsplit_once('1') else {
        return false;
    };
    if data.len() < 6 {
        return false;
    }
    let mut values: Vec<u8> = hrp.bytes().map(|c| c >> 5).collect();
    values.push(0);
    values.extend(hrp.bytes().map(|c| c & 31));
    for c in data.bytes() {
        match BECH32.iter().position(|&b| b == c) {
            Some(v) => values.push(v as u8),
            None => return false,
        }
    }
    matches!(bech32_polymod(&values), 1 | 0x2bc8_30a3)
}

fn eip55(s: &str) -> bool {
    let hex = &s[2..];
    let lower = hex.to_ascii_lowercase();
    if hex == lower || hex == hex.to_ascii_uppercase() {
        // No checksum written: an address all the same (0x + 40 hex is hardly anything else),
        // unless it is one digit repeated.
        return !hex.bytes().all(|c| c == hex.as_bytes()[0]);
    }
    let hash = Keccak256::digest(lower.as_bytes());
    hex.bytes().enumerate().all(|(i, c)| {
        let nibble = (hash[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0xf;
        if c.is_ascii_alphabetic() {
            c.is_ascii_uppercase() == (nibble >= 8)
        } else {
            true
        }
    })
}

/// A Bitcoin (Base58Check P2PKH/P2SH, Bech32 SegWit) or Ethereum (EIP-55) address.
pub(crate) fn wallet(s: &str) -> bool {
    if s.starts_with("0x") {
        eip55(s)
    } else if s.starts_with("bc1") || s.starts_with("BC1") {
        (s == s.to_ascii_lowercase() || s == s.to_ascii_uppercase()) && bech32(s)
    } else {
        base58check(s)
    }
}

/// A UK National Insurance number: the prefixes HMRC never issues are refused.
pub(crate) fn nino(s: &str) -> bool {
    let c: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let prefix = &c[..2];
    !matches!(prefix, "BG" | "GB" | "NK" | "KN" | "TN" | "NT" | "ZZ") && c.as_bytes()[1] != b'O'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_need_an_issuer_and_luhn() {
        assert!(card("4012888888881881"));
        assert!(card("378282246310005"));
        assert!(card("5555555555554444"));
        assert!(card("2223003122003222"));
        assert!(card("6011111111111117"));
        assert!(card("3530111333300000"));
        assert!(!card("4012888888881882"));
        assert!(!card("9012888888881881"));
        assert!(!card("4444444444444448") || luhn("4444444444444448"));
    }

    #[test]
    fn ssns_follow_the_ssa_rules() {
        assert_eq!(ssn("536901234"), Some(false));
        assert_eq!(ssn("000121234"), None);
        assert_eq!(ssn("666121234"), None);
        assert_eq!(ssn("536001234"), None);
        assert_eq!(ssn("536900000"), None);
        assert_eq!(ssn("123456789"), None);
        assert_eq!(ssn("912701234"), Some(true));
        assert_eq!(ssn("912401234"), None);
    }

    #[test]
    fn ibans_check_length_and_mod_97() {
        let t = "GB82 WEST 1234 5698 7654 32";
        assert_eq!(iban(t, 0, t.len()), Some(t.len()));
        let t = "DE89370400440532013000";
        assert_eq!(iban(t, 0, t.len()), Some(t.len()));
        let t = "DE89370400440532013001";
        assert_eq!(iban(t, 0, t.len()), None);
        let t = "XX89370400440532013000";
        assert_eq!(iban(t, 0, t.len()), None);
    }

    #[test]
    fn wallets_and_aadhaar_checksums() {
        assert!(wallet("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"));
        assert!(wallet("3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"));
        assert!(!wallet("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3"));
        assert!(wallet("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"));
        assert!(!wallet("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdx"));
        assert!(wallet("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"));
        assert!(!wallet("0x5aAeb6053f3E94C9b9A09f33669435E7Ef1BeAed"));
        assert!(aadhaar("234123412346"));
        assert!(!aadhaar("234123412347"));
        assert!(nino("AB123456C"));
        assert!(!nino("GB123456C"));
    }
}
