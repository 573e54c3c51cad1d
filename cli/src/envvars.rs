//! The environment that points a process at the agent: proxy variables in both cases, a bypass list for
//! loopback, and CA variables for every common runtime. Variables that *replace* a runtime's roots point at
//! the merged bundle (system roots + Airlock CA) so non-AI TLS keeps working; `NODE_EXTRA_CA_CERTS`
//! appends, so it points at the Airlock CA alone. JVMs, which read none of these, get
//! `JAVA_TOOL_OPTIONS` (`javaopts`); with `--base-url`, each SDK's base-URL variable (`baseurl`) too.
//! The proxy the user had before is kept in `AIRLOCK_UPSTREAM_PROXY`, so a second
//! `eval "$(airlock env)"` still knows it. Pure functions: no I/O here.

use std::net::SocketAddr;
use std::path::Path;

use crate::javaopts;

/// Hosts that never go through the proxy.
pub const BYPASS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Variables replacing a runtime's CA roots; they get the merged bundle.
pub const BUNDLE_VARS: [&str; 9] = [
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "AWS_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "CARGO_HTTP_CAINFO",
    "PIP_CERT",
    "DENO_CERT",
    "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
];

/// What the environment is built from.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The agent's proxy URL (`http://127.0.0.1:8479`).
    pub proxy_url: &'a str,
    /// The agent's address (the same as `proxy_url`), for Java's host and port properties.
    pub proxy_addr: SocketAddr,
    /// The merged trust bundle (system roots + Airlock CA).
    pub bundle: &'a Path,
    /// The Airlock CA certificate.
    pub ca_cert: &'a Path,
    /// `NO_PROXY` as the user had it.
    pub existing_no_proxy: Option<&'a str>,
    /// The user's own proxy that `HTTPS_PROXY` replaces, kept as `AIRLOCK_UPSTREAM_PROXY`.
    pub replaced_proxy: Option<&'a str>,
    /// The agent's Java trust store, when it holds the current CA.
    pub java_trust_store: Option<javaopts::TrustStore<'a>>,
    /// `JAVA_TOOL_OPTIONS` as the user had it.
    pub existing_java_tool_options: Option<&'a str>,
    /// The SDK base-URL variables (`--base-url`), empty otherwise.
    pub base_urls: &'a [(String, String)],
}

/// The variables, in a stable order.
pub fn build(inputs: Inputs<'_>) -> Vec<(String, String)> {
    let Inputs {
        proxy_url,
        proxy_addr,
        bundle,
        ca_cert,
        existing_no_proxy,
        replaced_proxy,
        java_trust_store,
        existing_java_tool_options,
        base_urls,
    } = inputs;
    let mut no_proxy: Vec<String> = existing_no_proxy
        .unwrap_or_default()
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    for b in BYPASS {
        if !no_proxy.iter().any(|x| x == b) {
            no_proxy.push(b.to_string());
        }
    }
    let java = javaopts::build(
        existing_java_tool_options,
        proxy_addr,
        &no_proxy,
        java_trust_store,
    );
    let no_proxy = no_proxy.join(",");
    let mut v = Vec::new();
    for name in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
        v.push((name.to_string(), proxy_url.to_string()));
    }
    v.push(("NO_PROXY".into(), no_proxy.clone()));
    v.push(("no_proxy".into(), no_proxy));
    let bundle = bundle.display().to_string();
    for name in BUNDLE_VARS {
        v.push((name.to_string(), bundle.clone()));
    }
    v.push(("NODE_EXTRA_CA_CERTS".into(), ca_cert.display().to_string()));
    v.push(("NODE_USE_ENV_PROXY".into(), "1".into()));
    v.push((javaopts::VAR.into(), java));
    v.extend(base_urls.iter().cloned());
    v.push(("AIRLOCK_PROXY".into(), proxy_url.to_string()));
    if let Some(p) = replaced_proxy {
        v.push((crate::userproxy::REPLACED_VAR.into(), p.to_string()));
    }
    v
}

/// Quotes a value for POSIX shells.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Renders the variables for a shell: `posix` (sh, bash, zsh), `fish` or `powershell`.
pub fn render(vars: &[(String, String)], shell: &str) -> String {
    let mut out = String::new();
    for (k, v) in vars {
        let line = match shell {
            "fish" => format!("set -gx {k} {}\n", sh_quote(v)),
            "powershell" => format!("$env:{k} = '{}'\n", v.replace('\'', "''")),
            _ => format!("export {k}={}\n", sh_quote(v)),
        };
        out.push_str(&line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs<'static> {
        Inputs {
            proxy_url: "http://127.0.0.1:8479",
            proxy_addr: "127.0.0.1:8479".parse().unwrap(),
            bundle: Path::new("/s/bundle.pem"),
            ca_cert: Path::new("/s/ca.pem"),
            existing_no_proxy: None,
            replaced_proxy: None,
            java_trust_store: None,
            existing_java_tool_options: None,
            base_urls: &[],
        }
    }

    #[test]
    fn proxy_in_both_cases_and_bundle_for_replacing_vars() {
        let v = build(Inputs {
            existing_no_proxy: Some("corp.local, 10.0.0.1"),
            ..inputs()
        });
        let get = |k: &str| v.iter().find(|(n, _)| n == k).map(|(_, x)| x.as_str());
        for k in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
            assert_eq!(get(k), Some("http://127.0.0.1:8479"));
        }
        assert_eq!(
            get("NO_PROXY"),
            Some("corp.local,10.0.0.1,localhost,127.0.0.1,::1")
        );
        assert_eq!(get("no_proxy"), get("NO_PROXY"));
        for k in ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"] {
            assert_eq!(get(k), Some("/s/bundle.pem"));
        }
        assert_eq!(get("NODE_EXTRA_CA_CERTS"), Some("/s/ca.pem"));
        assert_eq!(get("NODE_USE_ENV_PROXY"), Some("1"));
        assert_eq!(get("AIRLOCK_UPSTREAM_PROXY"), None);
    }

    #[test]
    fn the_replaced_proxy_is_kept() {
        let v = build(Inputs {
            replaced_proxy: Some("http://proxy.corp.example:3128"),
            ..inputs()
        });
        let get = |k: &str| v.iter().find(|(n, _)| n == k).map(|(_, x)| x.as_str());
        assert_eq!(get("HTTPS_PROXY"), Some("http://127.0.0.1:8479"));
        assert_eq!(
            get("AIRLOCK_UPSTREAM_PROXY"),
            Some("http://proxy.corp.example:3128")
        );
    }

    #[test]
    fn java_gets_the_proxy_the_bypass_list_and_the_trust_store_after_the_users_options() {
        let v = build(Inputs {
            existing_no_proxy: Some(".corp.local"),
            existing_java_tool_options: Some("-Xmx1g"),
            java_trust_store: Some(javaopts::TrustStore {
                path: Path::new("/s/ca/truststore.p12"),
                kind: "PKCS12",
                password: "changeit",
            }),
            ..inputs()
        });
        let get = |k: &str| v.iter().find(|(n, _)| n == k).map(|(_, x)| x.as_str());
        let java = get("JAVA_TOOL_OPTIONS").unwrap();
        assert!(
            java.starts_with("-Xmx1g -Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort=8479 "),
            "{java}"
        );
        assert!(
            java.contains(" -Dhttp.nonProxyHosts=*.corp.local|localhost|127.0.0.1|[::1] "),
            "{java}"
        );
        assert!(
            java.ends_with(
                "-Djavax.net.ssl.trustStore=/s/ca/truststore.p12 -Djavax.net.ssl.trustStoreType=PKCS12 \
                 -Djavax.net.ssl.trustStorePassword=changeit"
            ),
            "{java}"
        );
        // No base-URL variables unless asked for.
        assert_eq!(get("OPENAI_BASE_URL"), None);
        assert_eq!(get("ANTHROPIC_BASE_URL"), None);
    }

    #[test]
    fn base_url_variables_come_after_the_proxy_ones() {
        let urls = vec![
            (
                "OPENAI_BASE_URL".to_string(),
                "http://127.0.0.1:8479/openai/v1".to_string(),
            ),
            (
                "ANTHROPIC_BASE_URL".to_string(),
                "http://127.0.0.1:8479/anthropic".to_string(),
            ),
        ];
        let v = build(Inputs {
            base_urls: &urls,
            ..inputs()
        });
        let get = |k: &str| v.iter().find(|(n, _)| n == k).map(|(_, x)| x.as_str());
        assert_eq!(
            get("OPENAI_BASE_URL"),
            Some("http://127.0.0.1:8479/openai/v1")
        );
        assert_eq!(
            get("ANTHROPIC_BASE_URL"),
            Some("http://127.0.0.1:8479/anthropic")
        );
        // The proxy stays: tools without a base-URL variable still go through it.
        assert_eq!(get("HTTPS_PROXY"), Some("http://127.0.0.1:8479"));
    }

    #[test]
    fn rendering_quotes_values() {
        let v = vec![("A".to_string(), "it's".to_string())];
        assert_eq!(render(&v, "posix"), "export A='it'\\''s'\n");
        assert_eq!(render(&v, "fish"), "set -gx A 'it'\\''s'\n");
        assert_eq!(render(&v, "powershell"), "$env:A = 'it''s'\n");
    }
}
