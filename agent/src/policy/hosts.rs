//! The compiled interception set: host lookups on the connection path, base-URL prefixes, the CA's
//! name-constraint domains and the PAC file, with each entry's path scope, billing and (for local
//! model servers) its loopback upstream. Lookups are case-insensitive and ignore a trailing dot.

use std::collections::HashMap;

use serde::Serialize;

use super::scope::{LocalUpstream, PathScope};
use super::{ApiKind, Billing, HostRule};

/// A host pattern from policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "host")]
pub enum HostPattern {
    /// Exactly this host.
    Exact(String),
    /// Any host of one more label under this suffix (`*.openai.azure.com` → `openai.azure.com`).
    Wildcard(String),
    /// A model server on this machine (`127.0.0.1:11434`), reached in base-URL mode only: never
    /// looked up for CONNECT, never in the CA or the PAC file.
    Local(String),
}

impl HostPattern {
    /// The pattern as written in policy.
    pub fn display(&self) -> String {
        match self {
            HostPattern::Exact(h) => h.clone(),
            HostPattern::Wildcard(s) => format!("*.{s}"),
            HostPattern::Local(a) => format!("local {a}"),
        }
    }

    /// The DNS domain a CA name constraint must permit for this pattern (`None` for a local server,
    /// which is plain HTTP and needs no certificate).
    pub fn constraint_domain(&self) -> Option<&str> {
        match self {
            HostPattern::Exact(h) | HostPattern::Wildcard(h) => Some(h),
            HostPattern::Local(_) => None,
        }
    }
}

/// One entry of the interception set.
#[derive(Debug, Clone, Serialize)]
pub struct HostEntry {
    /// The host pattern.
    pub pattern: HostPattern,
    /// Provider name for records.
    pub provider: String,
    /// Wire format spoken.
    pub api: ApiKind,
    /// Base-URL prefix, if any.
    pub prefix: Option<String>,
    /// Usage for OpenAI-style streams that did not ask for it.
    pub stream_usage: super::StreamUsage,
    /// The paths inspected; requests outside them are forwarded unread.
    pub paths: PathScope,
    /// How requests are paid for.
    pub billing: Billing,
    /// The loopback upstream of a local model server.
    pub local: Option<LocalUpstream>,
}

/// The hosts Airlock intercepts.
#[derive(Debug, Clone, Default)]
pub struct InterceptionSet {
    entries: Vec<HostEntry>,
    exact: HashMap<String, usize>,
    wildcards: Vec<(String, usize)>,
    prefixes: HashMap<String, usize>,
}

/// Normalises a host for lookup: lower case, no trailing dot, no port, no IPv6 brackets.
pub fn normalize_host(host: &str) -> String {
    let h = host.trim();
    let h = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        match h.rsplit_once(':') {
            Some((name, port))
                if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) =>
            {
                name
            }
            _ => h,
        }
    };
    h.trim_end_matches('.').to_ascii_lowercase()
}

pub(crate) fn valid_dns_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        // An IP literal is not a DNS name: the CA excludes every IP range.
        && h.parse::<std::net::IpAddr>().is_err()
        && !h.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// The pattern of a `host = ...` rule, or why it is not one.
fn host_pattern(host: &str) -> Result<HostPattern, String> {
    let raw = host.trim().trim_end_matches('.').to_ascii_lowercase();
    let pattern = if let Some(suffix) = raw.strip_prefix("*.") {
        HostPattern::Wildcard(suffix.to_string())
    } else {
        HostPattern::Exact(raw.clone())
    };
    let name = match &pattern {
        HostPattern::Exact(h) | HostPattern::Wildcard(h) => h.as_str(),
        HostPattern::Local(_) => "",
    };
    if !valid_dns_name(name) || name.contains('*') {
        return Err(format!(
            "host {host:?} is not a DNS name or a one-label wildcard like \"*.openai.azure.com\" \
             (IP addresses cannot be intercepted; a model server on this machine is a local = \"http://127.0.0.1:PORT\" rule)"
        ));
    }
    Ok(pattern)
}

impl InterceptionSet {
    /// Builds the set from policy rules, returning an explanation of the first bad rule.
    pub fn compile(rules: &[HostRule]) -> Result<Self, String> {
        let mut set = InterceptionSet::default();
        for rule in rules {
            let (pattern, local, name) = match (&rule.host, &rule.local) {
                (Some(host), None) => (host_pattern(host)?, None, host.clone()),
                (None, Some(addr)) => {
                    let local = LocalUpstream::parse(&rule.provider, addr)?;
                    if rule.prefix.is_none() {
                        return Err(format!(
                            "local server {addr:?} of {:?} needs a prefix: tools reach it in base-URL mode, \
                             e.g. prefix = \"{}\" for http://127.0.0.1:8479/{}/v1",
                            rule.provider, rule.provider, rule.provider
                        ));
                    }
                    (HostPattern::Local(local.authority()), Some(local), rule.provider.clone())
                }
                (Some(host), Some(_)) => {
                    return Err(format!(
                        "host {host:?} also has local = ...; a rule is either a host to intercept or a local server"
                    ))
                }
                (None, None) => {
                    return Err(format!(
                        "a rule of provider {:?} has neither host nor local; add host = \"api.example.com\" \
                         (or local = \"http://127.0.0.1:PORT\" for a model server on this machine)",
                        rule.provider
                    ))
                }
            };
            let api = match rule.api.or_else(|| ApiKind::for_provider(&rule.provider)) {
                Some(a) => a,
                None => {
                    return Err(format!(
                        "host {name:?}: provider {:?} is not a known provider; add api = \"openai\" \
                         (or \"anthropic\", \"gemini\", \"azure\", \"code_assist\") to say which wire format it speaks",
                        rule.provider
                    ))
                }
            };
            if let Some(prefix) = &rule.prefix {
                let ok = !prefix.is_empty()
                    && prefix != "airlock"
                    && prefix
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !ok {
                    return Err(format!(
                        "host {name:?}: prefix {prefix:?} must be letters, digits, '-' or '_' (and not \"airlock\")"
                    ));
                }
                if set.prefixes.contains_key(prefix) {
                    return Err(format!(
                        "prefix {prefix:?} is used by two hosts; each needs its own"
                    ));
                }
            }
            let paths = PathScope::compile(&name, &rule.paths)?;
            let billing = rule.billing.unwrap_or(if local.is_some() {
                Billing::Local
            } else {
                Billing::PerToken
            });
            let idx = set.entries.len();
            match &pattern {
                HostPattern::Exact(h) => {
                    if set.exact.insert(h.clone(), idx).is_some() {
                        return Err(format!("host {h:?} is listed twice"));
                    }
                }
                HostPattern::Wildcard(s) => set.wildcards.push((format!(".{s}"), idx)),
                HostPattern::Local(_) => {}
            }
            if let Some(prefix) = &rule.prefix {
                set.prefixes.insert(prefix.clone(), idx);
            }
            set.entries.push(HostEntry {
                pattern,
                provider: rule.provider.clone(),
                api,
                prefix: rule.prefix.clone(),
                stream_usage: rule.stream_usage,
                paths,
                billing,
                local,
            });
        }
        Ok(set)
    }

    /// The entry intercepting `host`, if any. `host` may carry a port.
    pub fn lookup(&self, host: &str) -> Option<&HostEntry> {
        let h = normalize_host(host);
        if let Some(&i) = self.exact.get(&h) {
            return self.entries.get(i);
        }
        self.wildcards.iter().find_map(|(suffix, i)| {
            let label = h.strip_suffix(suffix.as_str())?;
            (!label.is_empty() && !label.contains('.'))
                .then(|| self.entries.get(*i))
                .flatten()
        })
    }

    /// Resolves a base-URL mode path (`/openai/v1/chat/completions`) into the entry, the upstream host
    /// and the upstream path (`/v1/chat/completions`). For wildcard entries the first path segment after
    /// the prefix is the host's label.
    pub fn route_base_url<'a>(&self, path: &'a str) -> Option<(&HostEntry, String, &'a str)> {
        let rest = path.strip_prefix('/')?;
        let (prefix, tail) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let entry = self.entries.get(*self.prefixes.get(prefix)?)?;
        match &entry.pattern {
            HostPattern::Exact(h) => Some((entry, h.clone(), tail)),
            HostPattern::Local(_) => {
                let host = entry.local.as_ref()?.host.clone();
                Some((entry, host, tail))
            }
            HostPattern::Wildcard(suffix) => {
                let t = tail.strip_prefix('/')?;
                let (label, tail) = match t.find('/') {
                    Some(i) => (&t[..i], &t[i..]),
                    None => (t, ""),
                };
                let label = label.to_ascii_lowercase();
                let host = format!("{label}.{suffix}");
                (valid_dns_name(&label) && !label.contains('.')).then_some((entry, host, tail))
            }
        }
    }

    /// All entries, in policy order.
    pub fn entries(&self) -> &[HostEntry] {
        &self.entries
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The DNS domains a CA must permit to cover this set, sorted and without duplicates.
    pub fn ca_domains(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .entries
            .iter()
            .filter_map(|e| e.pattern.constraint_domain().map(str::to_string))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// A PAC file sending exactly the wholly inspected interception hosts to `proxy` (`host:port`)
    /// and everything else DIRECT. It decides on the host only (Chrome strips https paths), so a
    /// path-scoped host is left out: a browser or desktop app on the system PAC would otherwise have
    /// the whole host decrypted (and the ChatGPT desktop app pins its certificates); command-line
    /// tools reach such hosts through `HTTPS_PROXY`. Local servers are never in it.
    pub fn pac(&self, proxy: &str) -> String {
        let mut s = String::from(
            "// Airlock proxy auto-config: AI hosts go through the local agent, everything else is direct.\n\
             function FindProxyForURL(url, host) {\n  host = host.toLowerCase();\n",
        );
        for e in self.entries.iter().filter(|e| e.paths.is_whole_host()) {
            match &e.pattern {
                HostPattern::Local(_) => {}
                HostPattern::Exact(h) => {
                    s.push_str(&format!("  if (host == \"{h}\") return \"PROXY {proxy}\";\n"))
                }
                HostPattern::Wildcard(suffix) => s.push_str(&format!(
                    "  if (dnsDomainIs(host, \".{suffix}\") && host.split(\".\").length == {}) return \"PROXY {proxy}\";\n",
                    suffix.split('.').count() + 1
                )),
            }
        }
        s.push_str("  return \"DIRECT\";\n}\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    #[test]
    fn lookup_ignores_case_port_and_trailing_dot() {
        let p = Policy::embedded().unwrap();
        assert!(p.hosts.lookup("API.OpenAI.com.:443").is_some());
        assert!(p.hosts.lookup("a.b.openai.azure.com").is_none());
        assert!(p.hosts.lookup("evil-api.openai.com.attacker.net").is_none());
    }

    #[test]
    fn base_url_routes() {
        let p = Policy::embedded().unwrap();
        let (e, host, tail) = p
            .hosts
            .route_base_url("/openai/v1/chat/completions")
            .unwrap();
        assert_eq!(
            (e.provider.as_str(), host.as_str(), tail),
            ("openai", "api.openai.com", "/v1/chat/completions")
        );
        let (_, host, tail) = p
            .hosts
            .route_base_url("/azure/myres/openai/deployments/d/chat/completions")
            .unwrap();
        assert_eq!(host, "myres.openai.azure.com");
        assert_eq!(tail, "/openai/deployments/d/chat/completions");
        assert!(p.hosts.route_base_url("/nothing/v1").is_none());
        assert!(p.hosts.route_base_url("/azure/bad..label/x").is_none());
    }

    #[test]
    fn pac_lists_exactly_the_hosts() {
        let p = Policy::embedded().unwrap();
        let pac = p.hosts.pac("127.0.0.1:8479");
        assert!(pac.contains("if (host == \"api.openai.com\") return \"PROXY 127.0.0.1:8479\";"));
        assert!(pac.contains("dnsDomainIs(host, \".openai.azure.com\")"));
        assert!(pac.trim_end().ends_with("return \"DIRECT\";\n}"));
    }

    #[test]
    fn subscription_backends_and_local_servers_in_the_default() {
        let p = Policy::embedded().unwrap();
        let chatgpt = p.hosts.lookup("chatgpt.com").unwrap();
        assert_eq!(
            (chatgpt.provider.as_str(), chatgpt.api, chatgpt.billing),
            ("chatgpt", ApiKind::Openai, Billing::Subscription)
        );
        assert!(chatgpt.paths.covers("/backend-api/codex/responses"));
        assert!(!chatgpt.paths.covers("/backend-api/conversation"));
        let ca = p.hosts.lookup("cloudcode-pa.googleapis.com").unwrap();
        assert_eq!(ca.api, ApiKind::CodeAssist);
        assert!(ca.paths.covers("/v1internal:streamGenerateContent"));
        assert!(!ca.paths.covers("/v1internal:loadCodeAssist"));
        for h in [
            "api.githubcopilot.com",
            "api.individual.githubcopilot.com",
            "api.business.githubcopilot.com",
            "api.enterprise.githubcopilot.com",
        ] {
            let e = p.hosts.lookup(h).unwrap();
            assert_eq!(
                (e.provider.as_str(), e.billing),
                ("github_copilot", Billing::Subscription)
            );
            assert!(e.paths.is_whole_host());
        }
        for h in [
            "proxy.individual.githubcopilot.com",
            "proxy.business.githubcopilot.com",
            "proxy.enterprise.githubcopilot.com",
            "copilot-proxy.githubusercontent.com",
        ] {
            let e = p.hosts.lookup(h).unwrap();
            assert_eq!(
                (e.provider.as_str(), e.billing),
                ("github_copilot", Billing::Subscription)
            );
            assert!(e.paths.covers("/v1/engines/gpt-41-copilot/completions"));
            assert!(!e.paths.covers("/_ping"));
        }
        for (prefix, port) in [("ollama", 11434), ("lmstudio", 1234), ("vllm", 8000)] {
            let path = format!("/{prefix}/v1/chat/completions");
            let (e, host, tail) = p.hosts.route_base_url(&path).unwrap();
            assert_eq!((host.as_str(), tail), ("127.0.0.1", "/v1/chat/completions"));
            assert_eq!(e.local.as_ref().map(|l| l.port), Some(port));
            assert_eq!(e.billing, Billing::Local);
        }
        assert_eq!(
            p.hosts.route_base_url("/ollama/api/chat").unwrap().0.api,
            ApiKind::Ollama
        );
        assert!(
            p.hosts.lookup("127.0.0.1").is_none(),
            "local servers are base-URL only"
        );
        let domains = p.hosts.ca_domains();
        assert!(domains.contains(&"chatgpt.com".to_string()));
        assert!(!domains
            .iter()
            .any(|d| d.starts_with("127.") || d.contains(':')));
    }

    #[test]
    fn the_pac_file_leaves_out_partly_inspected_hosts_and_local_servers() {
        let p = Policy::embedded().unwrap();
        let pac = p.hosts.pac("127.0.0.1:8479");
        assert!(!pac.contains("chatgpt.com"), "{pac}");
        assert!(!pac.contains("cloudcode-pa"), "{pac}");
        assert!(!pac.contains("127.0.0.1:11434"));
        assert!(pac.contains("api.githubcopilot.com"));
    }

    #[test]
    fn rules_need_a_host_or_a_loopback_local_server_with_a_prefix() {
        let rule = |host: Option<&str>, local: Option<&str>, prefix: Option<&str>| HostRule {
            host: host.map(Into::into),
            local: local.map(Into::into),
            prefix: prefix.map(Into::into),
            provider: "ollama".into(),
            ..HostRule::default()
        };
        let err = |r: HostRule| InterceptionSet::compile(&[r]).unwrap_err();
        assert!(err(rule(None, None, None)).contains("neither host nor local"));
        assert!(err(rule(None, Some("http://127.0.0.1:11434"), None)).contains("needs a prefix"));
        assert!(err(rule(None, Some("http://192.168.1.5:11434"), Some("o")))
            .contains("not on this machine"));
        assert!(err(rule(
            Some("a.example"),
            Some("http://127.0.0.1:1"),
            Some("o")
        ))
        .contains("either"));
        let e = err(HostRule {
            paths: vec!["backend-api/".into()],
            ..rule(Some("chatgpt.com"), None, None)
        });
        assert!(e.contains("does not start with \"/\""), "{e}");
        let ok =
            InterceptionSet::compile(&[rule(None, Some("localhost:9999"), Some("mine"))]).unwrap();
        assert_eq!(ok.entries()[0].pattern.display(), "local 127.0.0.1:9999");
    }

    #[test]
    fn ip_hosts_are_refused() {
        let rules = vec![HostRule {
            host: Some("10.0.0.1".into()),
            provider: "openai".into(),
            ..HostRule::default()
        }];
        assert!(InterceptionSet::compile(&rules)
            .unwrap_err()
            .contains("IP addresses"));
    }
}
