//! Two refinements of a host rule: path scopes (`paths = ["/backend-api/codex/"]`), which make a host
//! partly inspected, and local model servers (`local = "http://127.0.0.1:11434"`), the one kind of
//! upstream reached over plain HTTP. It owns their validation and the path match; it must not decide
//! what happens to a request outside a scope (the listener forwards it unread).

use serde::Serialize;

/// Most prefixes one rule may list.
const MAX_PREFIXES: usize = 64;
/// Longest prefix accepted (bytes).
const MAX_PREFIX_LEN: usize = 256;

/// The paths of a host that are inspected. Empty means the whole host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PathScope {
    prefixes: Vec<String>,
}

impl PathScope {
    /// Validates the prefixes of rule `rule` (named in errors).
    pub fn compile(rule: &str, paths: &[String]) -> Result<PathScope, String> {
        if paths.len() > MAX_PREFIXES {
            return Err(format!(
                "host {rule:?}: paths lists {} prefixes; at most {MAX_PREFIXES} are allowed",
                paths.len()
            ));
        }
        let mut prefixes: Vec<String> = Vec::with_capacity(paths.len());
        for p in paths {
            let bad = |why: &str| {
                Err(format!(
                    "host {rule:?}: path prefix {p:?} {why}; write it as the start of a URL path, e.g. \"/backend-api/codex/\""
                ))
            };
            if !p.starts_with('/') {
                return bad("does not start with \"/\"");
            }
            if p.len() > MAX_PREFIX_LEN {
                return bad(&format!("is longer than {MAX_PREFIX_LEN} bytes"));
            }
            if p.contains(['?', '#']) {
                return bad("holds a query or fragment (prefixes match the path only)");
            }
            if p.contains('%') {
                return bad("is percent-encoded (write the decoded path)");
            }
            if p.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return bad("holds whitespace or control characters");
            }
            let normal = normalize_path(p);
            if normal.trim_end_matches('/') != p.to_lowercase().trim_end_matches('/') {
                return bad("has empty, \".\" or \"..\" segments");
            }
            if prefixes.contains(&normal) {
                return bad("is listed twice");
            }
            prefixes.push(normal);
        }
        Ok(PathScope { prefixes })
    }

    /// Whether the whole host is inspected.
    pub fn is_whole_host(&self) -> bool {
        self.prefixes.is_empty()
    }

    /// The prefixes, normalised (lower case).
    pub fn prefixes(&self) -> &[String] {
        &self.prefixes
    }

    /// Whether requests for `path` (without the query) are inspected. The path is compared as an
    /// upstream could read it — percent-decoded, dot segments resolved, repeated slashes merged, case
    /// folded — so no spelling of an inspected path slips through unread; a path that only looks
    /// inspected is merely inspected too.
    pub fn covers(&self, path: &str) -> bool {
        if self.prefixes.is_empty() {
            return true;
        }
        let p = normalize_path(path);
        self.prefixes.iter().any(|prefix| {
            p.starts_with(prefix.as_str())
                || prefix.strip_suffix('/').is_some_and(|without| p == without)
        })
    }
}

/// A path as a server could understand it, for matching: `%XX` decoded, `+` kept, empty and `.`
/// segments dropped, `..` resolved, lower case; a trailing slash is kept.
fn normalize_path(path: &str) -> String {
    let decoded = percent_decode(path);
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split(['/', '\\']) {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len() + 1);
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if decoded.ends_with('/') || out.is_empty() {
        out.push('/');
    }
    out.to_lowercase()
}

/// `%XX` decoded (repeatedly, so `%252F` cannot hide a slash from the match); invalid escapes kept.
fn percent_decode(s: &str) -> String {
    let mut cur = s.to_string();
    for _ in 0..3 {
        let next = percent_encoding::percent_decode_str(&cur)
            .decode_utf8_lossy()
            .into_owned();
        if next == cur {
            break;
        }
        cur = next;
    }
    cur
}

/// A model server on this machine: loopback only, plain HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalUpstream {
    /// The loopback IP (`127.0.0.1`, `::1`); `localhost` is read as `127.0.0.1`.
    pub host: String,
    /// Its port.
    pub port: u16,
}

impl LocalUpstream {
    /// Parses `http://127.0.0.1:11434` (or `127.0.0.1:11434`), refusing anything off this machine.
    pub fn parse(rule: &str, value: &str) -> Result<LocalUpstream, String> {
        let bad = |why: &str| {
            Err(format!(
                "local server {value:?} of {rule:?} {why}; write it as \"http://127.0.0.1:PORT\""
            ))
        };
        let rest = match value.split_once("://") {
            Some(("http", rest)) => rest,
            Some((scheme, _)) => {
                return bad(&format!(
                    "uses {scheme}://, but local servers are reached over plain http:// on loopback"
                ))
            }
            None => value,
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return bad("has a path (the base-URL prefix carries the path)");
        }
        let Some((host, port)) = rest.rsplit_once(':') else {
            return bad("has no port");
        };
        let Ok(port) = port.parse::<u16>() else {
            return bad("has no valid port");
        };
        if port == 0 {
            return bad("has port 0");
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip = if host.eq_ignore_ascii_case("localhost") {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            match host.parse::<std::net::IpAddr>() {
                Ok(ip) => ip,
                Err(_) => return bad("does not name a loopback address"),
            }
        };
        if !ip.is_loopback() {
            return bad(
                "is not on this machine (plain HTTP is allowed only to loopback; a model server elsewhere \
                 needs an ordinary host rule over TLS)",
            );
        }
        Ok(LocalUpstream {
            host: ip.to_string(),
            port,
        })
    }

    /// `host:port` as a URL authority.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(p: &[&str]) -> Result<PathScope, String> {
        PathScope::compile(
            "chatgpt.com",
            &p.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn prefixes_must_be_paths() {
        for bad in [
            "backend-api/codex/",
            "",
            "/a?x=1",
            "/a#f",
            "/a b",
            "/a/../b",
            "//a",
            "/a%2Fb",
        ] {
            let e = scope(&[bad]).unwrap_err();
            assert!(
                e.contains("chatgpt.com") && e.contains("path prefix"),
                "{bad}: {e}"
            );
        }
        assert!(scope(&["backend-api"])
            .unwrap_err()
            .contains("does not start with \"/\""));
        assert!(scope(&["/a/", "/A/"]).unwrap_err().contains("twice"));
        assert!(scope(&["/backend-api/codex/", "/v1internal:generateContent"]).is_ok());
    }

    #[test]
    fn only_paths_under_a_prefix_are_covered_however_spelled() {
        let s = scope(&["/backend-api/codex/"]).unwrap();
        for inside in [
            "/backend-api/codex/responses",
            "/backend-api/codex",
            "//backend-api//codex/responses",
            "/backend-api/%63odex/responses",
            "/Backend-API/Codex/responses",
            "/backend-api/x/../codex/responses",
            "/backend-api/./codex/responses",
            "/backend-api%2Fcodex/responses",
            "/backend-api%252Fcodex/responses",
        ] {
            assert!(s.covers(inside), "{inside}");
        }
        for outside in [
            "/backend-api/conversation",
            "/backend-api/codexy/responses",
            "/",
            "/backend-api/codex/../conversation",
        ] {
            assert!(!s.covers(outside), "{outside}");
        }
        assert!(PathScope::default().covers("/anything"));
        let g = scope(&["/v1internal:generateContent"]).unwrap();
        assert!(g.covers("/v1internal:generateContent"));
        assert!(!g.covers("/v1internal:loadCodeAssist"));
    }

    #[test]
    fn local_servers_are_loopback_over_http() {
        let l = LocalUpstream::parse("ollama", "http://127.0.0.1:11434").unwrap();
        assert_eq!((l.host.as_str(), l.port), ("127.0.0.1", 11434));
        assert_eq!(
            LocalUpstream::parse("x", "localhost:1234")
                .unwrap()
                .authority(),
            "127.0.0.1:1234"
        );
        assert_eq!(
            LocalUpstream::parse("x", "http://[::1]:8000/")
                .unwrap()
                .authority(),
            "[::1]:8000"
        );
        for bad in [
            "http://10.0.0.5:11434",
            "http://gpu.corp:8000",
            "https://127.0.0.1:8000",
            "http://127.0.0.1",
            "http://127.0.0.1:0",
            "http://127.0.0.1:8000/v1",
        ] {
            let e = LocalUpstream::parse("x", bad).unwrap_err();
            assert!(e.contains("http://127.0.0.1:PORT"), "{bad}: {e}");
        }
    }
}
