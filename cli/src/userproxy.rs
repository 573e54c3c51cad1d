//! The proxy the user had before `airlock env` / `airlock run` pointed `HTTPS_PROXY` at the agent:
//! finding it (including after an earlier `eval "$(airlock env)"`, through `AIRLOCK_UPSTREAM_PROXY`),
//! comparing it with the agent's own upstream proxy, and the sentence telling the user what happens
//! to it. Pure functions: no I/O, and no text here ever carries a proxy's credentials.

use std::net::SocketAddr;

/// Where the CLI keeps the proxy it replaced, so a second `eval "$(airlock env)"` still knows it.
pub const REPLACED_VAR: &str = "AIRLOCK_UPSTREAM_PROXY";

/// The variables a user's proxy may be in, in the order tools read them.
pub const PROXY_VARS: [&str; 4] = ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"];

/// The user's own proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserProxy {
    /// The variable it was found in.
    pub var: &'static str,
    /// Its value as the user set it (it may carry credentials: never print it).
    pub value: String,
}

/// The user's proxy, if any: the first proxy variable that is set and does not point at the agent,
/// else what an earlier `airlock env` saved in `AIRLOCK_UPSTREAM_PROXY`.
pub fn detect(get: impl Fn(&str) -> Option<String>, agent: SocketAddr) -> Option<UserProxy> {
    let set = |name: &str| get(name).filter(|v| !v.trim().is_empty());
    PROXY_VARS
        .iter()
        .find_map(|&var| {
            set(var)
                .filter(|v| !points_at(v, agent))
                .map(|value| UserProxy { var, value })
        })
        .or_else(|| {
            set(REPLACED_VAR)
                .filter(|v| !points_at(v, agent))
                .map(|value| UserProxy {
                    var: REPLACED_VAR,
                    value,
                })
        })
}

/// A proxy URL's host and port, without scheme, credentials or path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Lower-case host, IPv6 without brackets, no trailing dot.
    pub host: String,
    /// The port, explicit or the scheme's default.
    pub port: u16,
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parses `[scheme://][user[:pass]@]host[:port][/…]`; a missing port is the scheme's default (80
/// for http or none, 443 for https, 1080 for socks). `None` if there is no host or the port is bad.
pub fn host_port(url: &str) -> Option<HostPort> {
    let url = url.trim();
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => (String::from("http"), url),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => match scheme.as_str() {
            "https" => 443,
            s if s.starts_with("socks") => 1080,
            _ => 80,
        },
    };
    Some(HostPort { host, port })
}

/// Whether two proxy URLs name the same proxy: same host and port, whatever the scheme spelling or
/// credentials.
pub fn same_proxy(a: &str, b: &str) -> bool {
    matches!((host_port(a), host_port(b)), (Some(a), Some(b)) if a == b)
}

/// Whether `url` is the agent itself (a loopback name or address on the agent's port).
pub fn points_at(url: &str, agent: SocketAddr) -> bool {
    let Some(hp) = host_port(url) else {
        return false;
    };
    if hp.port != agent.port() {
        return false;
    }
    hp.host == "localhost"
        || hp
            .host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip == agent.ip() || ip.is_loopback())
}

/// What the agent reported about its own upstream proxy.
#[derive(Debug, Clone, Default)]
pub struct AgentUpstream<'a> {
    /// `upstream.proxy` of the status (no credentials), if any.
    pub proxy: Option<&'a str>,
    /// `upstream.proxy_source`: "policy" or "environment".
    pub source: Option<&'a str>,
}

/// The sentence for stderr about the user's proxy, which `airlock env`/`run` replaces with the agent.
pub fn advice(user: &UserProxy, agent: &AgentUpstream<'_>) -> String {
    let shown = host_port(&user.value)
        .map(|hp| hp.to_string())
        .unwrap_or_else(|| "a value that is not a proxy URL".into());
    let from = match user.var {
        REPLACED_VAR => format!("your earlier proxy ({REPLACED_VAR}={shown})"),
        var => format!("your {var} ({shown})"),
    };
    let source = match agent.source {
        Some("policy") => " (upstream.proxy in its policy)",
        Some("environment") => " (HTTPS_PROXY in its environment)",
        _ => "",
    };
    match agent.proxy {
        Some(p) if same_proxy(p, &user.value) => format!(
            "airlock: {from} is replaced by the agent's address; the agent keeps sending its traffic \
             through {shown}{source}."
        ),
        other => {
            let now = match other.and_then(host_port) {
                Some(theirs) => format!("it sends its traffic through {theirs}{source} instead"),
                None => "it connects to providers and tunnels other traffic directly".into(),
            };
            let creds = if has_credentials(&user.value) {
                " (add the credentials, which are not shown here)"
            } else {
                ""
            };
            format!(
                "airlock: warning: {from} is replaced by the agent's address, and the agent does not \
                 use that proxy: {now}. If this network needs it, set upstream.proxy = \
                 \"http://{shown}\"{creds} in the agent's policy, or start airlockd with \
                 HTTPS_PROXY=http://{shown} in its environment."
            )
        }
    }
}

fn has_credentials(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#'])
        .next()
        .is_some_and(|authority| authority.contains('@'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const AGENT: &str = "127.0.0.1:8479";

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn proxies_compare_by_host_and_port_only() {
        let corp = "http://proxy.corp.example:3128";
        assert!(same_proxy(corp, "proxy.corp.example:3128"));
        assert!(same_proxy(
            corp,
            "http://alice:s3cret@PROXY.corp.example.:3128/"
        ));
        assert!(same_proxy(corp, "https://proxy.corp.example:3128"));
        assert!(!same_proxy(corp, "http://proxy.corp.example:8080"));
        assert!(!same_proxy(corp, "http://other.corp.example:3128"));
        assert!(same_proxy(
            "http://proxy.corp.example",
            "proxy.corp.example:80"
        ));
        assert!(!same_proxy(
            "https://proxy.corp.example",
            "http://proxy.corp.example"
        ));
        assert!(same_proxy("http://[fd00::1]:3128", "[FD00::1]:3128"));
        assert!(
            !same_proxy("http://:3128", "http://:3128"),
            "no host is no proxy"
        );
        assert!(!same_proxy(
            "http://proxy:notaport",
            "http://proxy:notaport"
        ));
    }

    #[test]
    fn the_agent_itself_is_not_the_users_proxy() {
        let agent: SocketAddr = AGENT.parse().unwrap();
        assert!(points_at("http://127.0.0.1:8479", agent));
        assert!(points_at("localhost:8479", agent));
        assert!(points_at("http://[::1]:8479/", agent));
        assert!(!points_at("http://127.0.0.1:3128", agent));
        assert!(!points_at("http://proxy.corp.example:8479", agent));
    }

    #[test]
    fn detection_prefers_a_live_variable_then_the_saved_one() {
        let agent: SocketAddr = AGENT.parse().unwrap();
        let corp = "http://proxy.corp.example:3128";
        // First run: HTTPS_PROXY is the user's proxy.
        let found = detect(env(&[("HTTPS_PROXY", corp)]), agent).unwrap();
        assert_eq!((found.var, found.value.as_str()), ("HTTPS_PROXY", corp));
        // Lower-case and HTTP_PROXY count too.
        assert_eq!(
            detect(env(&[("http_proxy", corp)]), agent).unwrap().var,
            "http_proxy"
        );
        // Second eval in the same shell: HTTPS_PROXY is the agent now, the saved value remains.
        let again = env(&[
            ("HTTPS_PROXY", "http://127.0.0.1:8479"),
            ("https_proxy", "http://127.0.0.1:8479"),
            (REPLACED_VAR, corp),
        ]);
        let found = detect(again, agent).unwrap();
        assert_eq!((found.var, found.value.as_str()), (REPLACED_VAR, corp));
        // A proxy set after the first eval wins over the saved one.
        let newer = env(&[
            ("HTTPS_PROXY", "http://new.corp:8080"),
            (REPLACED_VAR, corp),
        ]);
        assert_eq!(detect(newer, agent).unwrap().value, "http://new.corp:8080");
        assert_eq!(detect(env(&[("HTTPS_PROXY", "  ")]), agent), None);
        assert_eq!(detect(env(&[]), agent), None);
    }

    #[test]
    fn advice_says_whether_the_agent_keeps_the_proxy_and_never_shows_credentials() {
        let user = UserProxy {
            var: "HTTPS_PROXY",
            value: "http://alice:s3cret@proxy.corp.example:3128".into(),
        };
        let kept = advice(
            &user,
            &AgentUpstream {
                proxy: Some("http://proxy.corp.example:3128"),
                source: Some("policy"),
            },
        );
        assert!(kept.contains("keeps sending its traffic through proxy.corp.example:3128"));
        assert!(kept.contains("upstream.proxy in its policy"));
        let direct = advice(&user, &AgentUpstream::default());
        assert!(direct.contains("warning") && direct.contains("does not use that proxy"));
        assert!(direct.contains("directly"));
        assert!(direct.contains("upstream.proxy = \"http://proxy.corp.example:3128\""));
        assert!(direct.contains("HTTPS_PROXY=http://proxy.corp.example:3128"));
        assert!(direct.contains("credentials"));
        let elsewhere = advice(
            &user,
            &AgentUpstream {
                proxy: Some("http://other.corp:8080"),
                source: Some("environment"),
            },
        );
        assert!(
            elsewhere.contains("through other.corp:8080 (HTTPS_PROXY in its environment) instead")
        );
        for text in [kept, direct, elsewhere] {
            assert!(
                !text.contains("s3cret") && !text.contains("alice"),
                "{text}"
            );
        }
    }
}
