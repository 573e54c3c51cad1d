//! JSON with comments, as VS Code writes its `settings.json` and `mcp.json`, turned into plain JSON
//! for serde_json (whose nesting limit keeps a hostile file from exhausting the stack, which is why
//! this is not a recursive JSONC parser): `//` and `/* */` comments and trailing commas go, strings stay
//! exactly as they are. It must not interpret the document.

/// JSON with comments (VS Code's settings and mcp.json) as plain JSON: `//` and `/* */` comments and
/// trailing commas removed, strings left exactly as they are. Byte positions shift; nothing else.
pub fn strip(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    // A comma waiting to see whether a closing bracket follows (then it is dropped).
    let mut pending_comma = false;
    let mut pending_space = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                flush(&mut out, &mut pending_comma, &mut pending_space);
                out.push(c);
                let mut escaped = false;
                for s in chars.by_ref() {
                    out.push(s);
                    match (escaped, s) {
                        (true, _) => escaped = false,
                        (false, '\\') => escaped = true,
                        (false, '"') => break,
                        _ => {}
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for s in chars.by_ref() {
                    if s == '\n' {
                        pending_space.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut star = false;
                for s in chars.by_ref() {
                    if star && s == '/' {
                        break;
                    }
                    star = s == '*';
                }
                pending_space.push(' ');
            }
            ',' => {
                flush(&mut out, &mut pending_comma, &mut pending_space);
                pending_comma = true;
            }
            c if c.is_whitespace() => pending_space.push(c),
            '}' | ']' => {
                pending_comma = false;
                out.push_str(&pending_space);
                pending_space.clear();
                out.push(c);
            }
            _ => {
                flush(&mut out, &mut pending_comma, &mut pending_space);
                out.push(c);
            }
        }
    }
    flush(&mut out, &mut pending_comma, &mut pending_space);
    out
}

fn flush(out: &mut String, comma: &mut bool, space: &mut String) {
    if *comma {
        out.push(',');
        *comma = false;
    }
    out.push_str(space);
    space.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn jsonc_comments_and_trailing_commas_go_strings_stay() {
        let text = "{\n // a \"comment\"\n \"a\": \"http://x/*y*/\", /* b */ \"b\": [1, 2,],\n \"c\": \"q\\\"//\",\n}";
        let v: Value = serde_json::from_str(&strip(text)).unwrap();
        assert_eq!(v["a"], "http://x/*y*/");
        assert_eq!(v["b"], serde_json::json!([1, 2]));
        assert_eq!(v["c"], "q\"//");
    }
}
