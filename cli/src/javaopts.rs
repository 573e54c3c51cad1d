//! `JAVA_TOOL_OPTIONS` pointing JVMs at the agent. Java reads none of the proxy or CA variables, but
//! every JVM (java, Gradle, Maven, IDE helpers) reads this one at start: it gets the proxy as system
//! properties, the bypass list as `http.nonProxyHosts` (Java's `|`-separated form, which also governs
//! HTTPS), and the agent's PKCS#12 trust store. A value the user already had is kept, in order, ahead
//! of ours; only the properties we set are taken out of it first, since the JVM would use our later
//! ones anyway and a second `eval "$(airlock env)"` must not pile up copies. Pure functions: no I/O.

use std::net::SocketAddr;
use std::path::Path;

/// The variable every JVM reads.
pub const VAR: &str = "JAVA_TOOL_OPTIONS";

/// The trust store handed to the JVM.
#[derive(Debug, Clone, Copy)]
pub struct TrustStore<'a> {
    /// The PKCS#12 file.
    pub path: &'a Path,
    /// Its `javax.net.ssl.trustStoreType`.
    pub kind: &'a str,
    /// Its password (public: the file holds certificates only).
    pub password: &'a str,
}

/// The value of `JAVA_TOOL_OPTIONS`: `existing` without the properties set here, then the proxy, the
/// bypass list from `no_proxy` and, when there is one, the trust store.
pub fn build(
    existing: Option<&str>,
    proxy: SocketAddr,
    no_proxy: &[String],
    trust: Option<TrustStore<'_>>,
) -> String {
    let host = match proxy.ip() {
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let port = proxy.port().to_string();
    let mut props: Vec<(&str, String)> = vec![
        ("https.proxyHost", host.clone()),
        ("https.proxyPort", port.clone()),
        ("http.proxyHost", host),
        ("http.proxyPort", port),
        ("http.nonProxyHosts", non_proxy_hosts(no_proxy)),
    ];
    if let Some(t) = trust {
        props.push(("javax.net.ssl.trustStore", t.path.display().to_string()));
        props.push(("javax.net.ssl.trustStoreType", t.kind.to_string()));
        props.push(("javax.net.ssl.trustStorePassword", t.password.to_string()));
    }
    let mut out: Vec<String> = split_options(existing.unwrap_or_default())
        .into_iter()
        .filter(|tok| !property_name(tok).is_some_and(|k| props.iter().any(|(p, _)| *p == k)))
        .map(str::to_string)
        .collect();
    out.extend(props.into_iter().map(|(k, v)| quote(format!("-D{k}={v}"))));
    out.join(" ")
}

/// Java's `http.nonProxyHosts` for a `NO_PROXY` list: `.corp.local` becomes `*.corp.local`, an IPv6
/// literal gets the brackets Java compares with, and CIDR ranges (which Java cannot express) are left
/// out.
pub fn non_proxy_hosts(no_proxy: &[String]) -> String {
    let mut out: Vec<String> = Vec::new();
    for entry in no_proxy.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let java = if entry.contains('/') {
            continue;
        } else if let Some(rest) = entry.strip_prefix('.') {
            format!("*.{rest}")
        } else if entry.contains(':') && !entry.starts_with('[') {
            format!("[{entry}]")
        } else {
            entry.to_string()
        };
        if !out.contains(&java) {
            out.push(java);
        }
    }
    out.join("|")
}

/// Splits a `JAVA_TOOL_OPTIONS` value the way the JVM does: on whitespace outside single or double
/// quotes. Tokens are returned as written, quotes included.
fn split_options(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => {
                quote = Some(c);
                start.get_or_insert(i);
            }
            (None, c) if c.is_whitespace() => {
                if let Some(st) = start.take() {
                    out.push(&s[st..i]);
                }
            }
            (None, _) => {
                start.get_or_insert(i);
            }
        }
    }
    if let Some(st) = start {
        out.push(&s[st..]);
    }
    out
}

/// The property a `-Dname=value` token sets (quotes around the token ignored).
fn property_name(token: &str) -> Option<&str> {
    let t = token.trim_matches(|c| c == '"' || c == '\'');
    let rest = t.strip_prefix("-D")?;
    Some(rest.split_once('=').map_or(rest, |(k, _)| k))
}

/// A token with whitespace is quoted, as the JVM's option parser expects.
fn quote(token: String) -> String {
    if token.chars().any(char::is_whitespace) {
        format!("\"{token}\"")
    } else {
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:8479".parse().unwrap()
    }

    fn loopback() -> Vec<String> {
        ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec()
    }

    fn store() -> TrustStore<'static> {
        TrustStore {
            path: Path::new("/s/ca/truststore.p12"),
            kind: "PKCS12",
            password: "changeit",
        }
    }

    #[test]
    fn proxy_bypass_and_trust_store_are_set() {
        let v = build(None, addr(), &loopback(), Some(store()));
        assert_eq!(
            v,
            "-Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort=8479 -Dhttp.proxyHost=127.0.0.1 \
             -Dhttp.proxyPort=8479 -Dhttp.nonProxyHosts=localhost|127.0.0.1|[::1] \
             -Djavax.net.ssl.trustStore=/s/ca/truststore.p12 -Djavax.net.ssl.trustStoreType=PKCS12 \
             -Djavax.net.ssl.trustStorePassword=changeit"
        );
    }

    #[test]
    fn the_users_own_options_are_kept_ahead_of_ours() {
        let v = build(
            Some("-Xmx2g  -Dfile.encoding=UTF-8 \"-Dmy.dir=/a b\""),
            addr(),
            &loopback(),
            Some(store()),
        );
        assert!(
            v.starts_with(
                "-Xmx2g -Dfile.encoding=UTF-8 \"-Dmy.dir=/a b\" -Dhttps.proxyHost=127.0.0.1"
            ),
            "{v}"
        );
    }

    #[test]
    fn running_it_again_replaces_our_properties_instead_of_repeating_them() {
        let first = build(Some("-Xss4m"), addr(), &loopback(), Some(store()));
        let other: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let second = build(Some(&first), other, &loopback(), Some(store()));
        assert_eq!(second.matches("-Dhttps.proxyHost=").count(), 1, "{second}");
        assert!(
            second.contains("-Dhttps.proxyPort=9000") && !second.contains("8479"),
            "{second}"
        );
        assert!(second.starts_with("-Xss4m "), "{second}");
        assert_eq!(second.matches("-Djavax.net.ssl.trustStore=").count(), 1);
    }

    #[test]
    fn without_a_trust_store_the_users_own_is_left_alone() {
        let v = build(
            Some("-Djavax.net.ssl.trustStore=/corp/roots.jks"),
            addr(),
            &loopback(),
            None,
        );
        assert!(
            v.starts_with("-Djavax.net.ssl.trustStore=/corp/roots.jks -Dhttps.proxyHost="),
            "{v}"
        );
        assert!(!v.contains("trustStoreType"), "{v}");
    }

    #[test]
    fn no_proxy_becomes_javas_pattern_list() {
        let entries = [
            ".corp.local",
            "10.0.0.0/8",
            "build.example",
            "*",
            "::1",
            "localhost",
            "build.example",
        ]
        .map(String::from);
        assert_eq!(
            non_proxy_hosts(&entries),
            "*.corp.local|build.example|*|[::1]|localhost"
        );
    }

    #[test]
    fn paths_with_spaces_are_quoted() {
        let store = TrustStore {
            path: Path::new("/Users/a b/state/ca/truststore.p12"),
            ..store()
        };
        let v = build(None, addr(), &loopback(), Some(store));
        assert!(
            v.contains("\"-Djavax.net.ssl.trustStore=/Users/a b/state/ca/truststore.p12\""),
            "{v}"
        );
        assert_eq!(
            split_options(&v).len(),
            8,
            "the quoted path stays one option: {v}"
        );
    }

    #[test]
    fn an_ipv6_agent_address_is_bracketed() {
        let v = build(None, "[::1]:8479".parse().unwrap(), &loopback(), None);
        assert!(
            v.starts_with("-Dhttps.proxyHost=[::1] -Dhttps.proxyPort=8479"),
            "{v}"
        );
    }
}
