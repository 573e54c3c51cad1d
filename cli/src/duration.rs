//! Durations on the command line (`--expires-in`, `--since`): a whole number and one unit, `30d`,
//! `12h`, `90m` or `3600s`. A tiny parser
//! rather than `humantime`, whose wider grammar (`1month 2weeks`, `1y`) would let a typo mean a
//! different lifetime than intended. It must not accept anything it cannot say exactly.

use std::time::Duration;

/// Parses `N` + one of `d`, `h`, `m`, `s` (N ≥ 1).
pub fn parse(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!("{text:?} is not a duration: write a whole number and a unit, like 30d, 12h, 90m or 3600s")
    };
    let unit = text.chars().last().ok_or_else(bad)?;
    let number = text.get(..text.len() - unit.len_utf8()).ok_or_else(bad)?;
    let per = match unit {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        's' => 1,
        _ => return Err(bad()),
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = number.parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(format!(
            "{text:?} is no time at all: give a positive duration"
        ));
    }
    n.checked_mul(per)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long a duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_units_parse_and_anything_else_is_refused() {
        assert_eq!(parse("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse("12h"), Ok(Duration::from_secs(12 * 3_600)));
        assert_eq!(parse("90m"), Ok(Duration::from_secs(90 * 60)));
        assert_eq!(parse("3600s"), Ok(Duration::from_secs(3_600)));
        for bad in [
            "", "d", "30", "30 d", "1.5h", "-1d", "+1d", "1w", "1month", "1dé", "é",
        ] {
            assert!(parse(bad).unwrap_err().contains("not a duration"), "{bad}");
        }
        assert!(parse("0s").unwrap_err().contains("positive"));
        assert!(parse("99999999999999999999d").is_err());
    }
}
