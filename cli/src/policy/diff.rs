//! `airlock policy diff A B`: each side a TOML source or a bundle (a JSON object with `payloadType`),
//! compared as the compiled policy document JSON a bundle carries, one line per changed setting:
//! `+ path = value` (only in B), `- path = value` (only in A), `~ path: old → new`. When both are
//! bundles their metadata (fleet, version, expiry, minimum agent version, next keys) is compared too,
//! under `bundle.`. It reads what bundles claim and must not be taken for verification: signatures
//! are not checked.

use std::path::Path;
use std::process::ExitCode;

use airlock_agent::bundle::{self, PublicKey};
use airlock_agent::policy::{Policy, PolicyDocument, PolicySource};
use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};

/// Exit 0 identical, 1 different, 2 when a side cannot be read.
pub fn run(a: &Path, b: &Path, json: bool) -> ExitCode {
    match load(a).and_then(|a_side| Ok((a_side, load(b)?))) {
        Ok((a, b)) => {
            let mut lines = Vec::new();
            if let (Some(ma), Some(mb)) = (&a.meta, &b.meta) {
                diff("bundle", ma, mb, &mut lines);
            }
            diff("", &a.policy, &b.policy, &mut lines);
            if json {
                let out = serde_json::json!({"differences": lines});
                outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
                return ExitCode::from(if lines.is_empty() { 0 } else { 1 });
            }
            if lines.is_empty() {
                outln!("no differences");
                return ExitCode::SUCCESS;
            }
            for l in lines {
                outln!("{l}");
            }
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("airlock: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// One side: the policy document as JSON, and a bundle's metadata.
struct Side {
    policy: Value,
    meta: Option<Value>,
}

fn load(path: &Path) -> Result<Side> {
    let bytes = super::read(path, "policy")?;
    if bundle::looks_like_bundle(&bytes) {
        let p = bundle::inspect(&bytes).map_err(|r| anyhow!("{}: {r}", path.display()))?;
        let doc: PolicyDocument = serde_json::from_value(p.policy).with_context(|| {
            format!(
                "{}: the bundle's policy is not a policy document",
                path.display()
            )
        })?;
        let next: Vec<String> = p
            .next_keys
            .iter()
            .map(|k| {
                PublicKey::from_text(k)
                    .map_or_else(|_| "(unreadable key)".into(), |k| k.id().to_string())
            })
            .collect();
        let meta = json!({"fleet": p.fleet, "version": p.version, "expires_at": p.expires_at,
            "min_agent_version": p.min_agent_version, "next_keys": next});
        return Ok(Side {
            policy: serde_json::to_value(&doc)?,
            meta: Some(meta),
        });
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow!("{} is neither a bundle nor UTF-8 TOML text", path.display()))?;
    // The same compile-and-validate as `build`, so the JSON compared is the JSON a bundle would carry.
    Policy::from_toml(&text, PolicySource::File(path.to_path_buf()))?;
    let doc: PolicyDocument =
        toml::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))?;
    Ok(Side {
        policy: serde_json::to_value(&doc)?,
        meta: None,
    })
}

/// `parent.key`, with keys that are not bare words quoted as in TOML (`prices."openai/gpt-4o"`).
fn child(parent: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare {
        key.to_string()
    } else {
        Value::String(key.to_string()).to_string()
    };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

/// One line per leaf of an added or removed `v`, all marked `sign`. Unset settings inside it (null,
/// `[]`, `{}`: the defaults a compiled document spells out) are left out; `v` itself always shows.
fn leaves(sign: char, path: &str, v: &Value, out: &mut Vec<String>) {
    let before = out.len();
    match v {
        Value::Object(m) => {
            for (k, v) in m.iter().filter(|(_, v)| !unset(v)) {
                leaves(sign, &child(path, k), v, out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                leaves(sign, &format!("{path}[{i}]"), v, out);
            }
        }
        _ => {}
    }
    if out.len() == before {
        out.push(format!("{sign} {path} = {v}"));
    }
}

fn unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// The differences between `a` and `b` at `path`, as lines.
fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                match y.get(k) {
                    Some(vb) => diff(&child(path, k), va, vb, out),
                    // Absent and unset are the same setting.
                    None if unset(va) => {}
                    None => leaves('-', &child(path, k), va, out),
                }
            }
            for (k, vb) in y.iter().filter(|(k, v)| !x.contains_key(*k) && !unset(v)) {
                leaves('+', &child(path, k), vb, out);
            }
        }
        (Value::Array(x), Value::Array(y)) => diff_arrays(path, x, y, out),
        _ if a == b => {}
        _ => out.push(format!("~ {path}: {a} → {b}")),
    }
}

/// Arrays of equal length are compared element by element. Otherwise the elements both keep are
/// matched (longest common subsequence), and in each stretch between matches removed and added
/// elements are paired up (a changed element) before the rest are shown as removed or added, so
/// inserting one host does not show every later host as changed.
fn diff_arrays(path: &str, x: &[Value], y: &[Value], out: &mut Vec<String>) {
    let at = |i: usize| format!("{path}[{i}]");
    if x.len() == y.len() || x.len().saturating_mul(y.len()) > 4_000_000 {
        for i in 0..x.len().max(y.len()) {
            match (x.get(i), y.get(i)) {
                (Some(a), Some(b)) => diff(&at(i), a, b, out),
                (Some(a), None) => leaves('-', &at(i), a, out),
                (None, Some(b)) => leaves('+', &at(i), b, out),
                (None, None) => {}
            }
        }
        return;
    }
    // lcs[i][j]: length of the longest common subsequence of x[i..] and y[j..].
    let (n, m) = (x.len(), y.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if x[i] == y[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let (mut removed, mut added) = (Vec::new(), Vec::new());
    let flush = |removed: &mut Vec<usize>, added: &mut Vec<usize>, out: &mut Vec<String>| {
        for k in 0..removed.len().max(added.len()) {
            match (removed.get(k), added.get(k)) {
                (Some(&r), Some(&a)) => diff(&at(a), &x[r], &y[a], out),
                (Some(&r), None) => leaves('-', &at(r), &x[r], out),
                (None, Some(&a)) => leaves('+', &at(a), &y[a], out),
                (None, None) => {}
            }
        }
        removed.clear();
        added.clear();
    };
    while i < n || j < m {
        if i < n && j < m && x[i] == y[j] {
            flush(&mut removed, &mut added, out);
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            added.push(j);
            j += 1;
        } else {
            removed.push(i);
            i += 1;
        }
    }
    flush(&mut removed, &mut added, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(a: Value, b: Value) -> Vec<String> {
        let mut out = Vec::new();
        diff("", &a, &b, &mut out);
        out
    }

    #[test]
    fn changes_additions_and_removals_are_one_line_each() {
        let a = json!({"name": "a", "upstream": {"http2": true}, "prices": {"openai/gpt-4o": {"input": 1.0}}});
        let b = json!({"name": "a", "upstream": {"http2": false, "proxy": "http://p:3128"}, "prices": {}});
        assert_eq!(
            lines(a, b),
            [
                "~ upstream.http2: true → false",
                "+ upstream.proxy = \"http://p:3128\"",
                "- prices.\"openai/gpt-4o\".input = 1.0",
            ]
        );
        assert!(lines(json!({"x": [1, 2]}), json!({"x": [1, 2]})).is_empty());
    }

    #[test]
    fn an_inserted_array_element_shows_alone() {
        let host = |h: &str| json!({"host": h, "provider": "p", "api": null, "paths": []});
        let a = json!({"hosts": [host("a"), host("b"), host("c")]});
        let b = json!({"hosts": [host("a"), host("b"), host("c"), host("api.x.ai")]});
        assert_eq!(
            lines(a.clone(), b),
            [
                "+ hosts[3].host = \"api.x.ai\"",
                "+ hosts[3].provider = \"p\""
            ]
        );
        // Removing one and changing another: the change is a ~ line, the removal - lines.
        let b = json!({"hosts": [host("a"), {"host": "c", "provider": "q"}]});
        assert_eq!(
            lines(a, b),
            [
                "~ hosts[1].host: \"b\" → \"c\"",
                "~ hosts[1].provider: \"p\" → \"q\"",
                "- hosts[2].host = \"c\"",
                "- hosts[2].provider = \"p\""
            ]
        );
        assert_eq!(
            lines(json!({"x": null}), json!({"x": "y"})),
            ["~ x: null → \"y\""]
        );
    }
}
