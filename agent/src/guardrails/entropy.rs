//! Shannon entropy of a candidate secret, in bits per byte: random tokens score high (a 40-char
//! base64 key ≈ 5), words and repeated characters low. It must not decide thresholds (rules do).

/// Bits per byte of `s` (0 for an empty string).
pub(crate) fn shannon(s: &str) -> f64 {
    let b = s.as_bytes();
    if b.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &c in b {
        counts[usize::from(c)] += 1;
    }
    let n = b.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::shannon;

    #[test]
    fn random_tokens_score_high_and_words_low() {
        assert_eq!(shannon(""), 0.0);
        assert_eq!(shannon("aaaaaaaa"), 0.0);
        assert!((shannon("abababab") - 1.0).abs() < 1e-9);
        assert!(shannon("wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq8d3Lk1Qe") > 4.5);
        assert!(shannon("password") < 3.0);
    }
}
