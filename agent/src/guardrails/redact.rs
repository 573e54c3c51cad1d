//! Replacing matched spans of a string with typed placeholders (`[REDACTED:aws_access_key]`).
//! Overlapping spans are merged (the placeholder of the first wins) so no byte of a match survives;
//! the result is a new string, so a JSON string value stays a valid JSON string. It must not
//! decide what to redact.

/// A span to replace: (start, end, placeholder).
pub type Cut = (usize, usize, String);

/// `text` with each `(start, end, placeholder)` span replaced (byte offsets on char boundaries).
pub fn apply(text: &str, cuts: &mut [Cut]) -> String {
    cuts.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (s, e, placeholder) in cuts.iter() {
        let (s, e) = ((*s).min(text.len()), (*e).min(text.len()));
        if s >= at {
            out.push_str(&text[at..s]);
            out.push_str(placeholder);
            at = e;
        } else if e > at {
            // Overlaps the span just replaced: extend it, with no second placeholder.
            at = e;
        }
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::apply;

    #[test]
    fn spans_become_placeholders_and_overlaps_merge() {
        let t = "key AKIA1234 and mail a@b.co end";
        let mut cuts = vec![
            (22, 28, "[REDACTED:email]".to_string()),
            (4, 12, "[REDACTED:aws_access_key]".to_string()),
        ];
        assert_eq!(
            apply(t, &mut cuts),
            "key [REDACTED:aws_access_key] and mail [REDACTED:email] end"
        );
        let mut overlapping = vec![(0, 6, "[A]".to_string()), (3, 9, "[B]".to_string())];
        assert_eq!(apply("abcdefghij", &mut overlapping), "[A]j");
    }
}
