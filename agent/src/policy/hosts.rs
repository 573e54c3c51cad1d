//! The compiled interception set: host lookups on the connection path, base-URL prefixes, the CA's
//! name-constraint domains and the PAC file. Lookups are case-insensitive and ignore a trailing dot.

use std::collections::HashMap;

use serde::Serialize;

use super::{ApiKind, HostRule};

/// A host pattern from policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "host")]
pub enum HostPattern {
    /// Exactly this host.
    Exact(String),
    /// Any host of one more label under this suffix (`*.openai.azure.com` → `openai.azure.com`).
    Wildcard(String),
}

impl HostPattern {
    /// The pattern as written in policy.
    pub fn display(&self) -> String {
        match self {
            HostPattern::Exact(h) => h.clone(),
            HostPattern::Wildcard(s) => format!("*.{s}"),
        }
    }

    /// The DNS domain a CA name constraint must permit for this pattern.
    pub fn constraint_domain(&self) -> &str {
        match self {
            HostPattern::Exact(h) | HostPattern::Wildcard(h) => h,
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

fn valid_dns_name(h: &str) -> bool {
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

impl InterceptionSet {
    /// Builds the set from policy rules, returning an explanation of the first bad rule.
    pub fn compile(rules: &[HostRule]) -> Result<Self, String> {
        let mut set = InterceptionSet::default();
        for rule in rules {
            let raw = rule.host.trim().trim_end_matches('.').to_ascii_lowercase();
            let pattern = if let Some(suffix) = raw.strip_prefix("*.") {
                HostPattern::Wildcard(suffix.to_string())
            } else {
                HostPattern::Exact(raw.clone())
            };
            let name = pattern.constraint_domain();
            if !valid_dns_name(name) || name.contains('*') {
                return Err(format!(
                    "host {:?} is not a DNS name or a one-label wildcard like \"*.openai.azure.com\" \
                     (IP addresses cannot be intercepted)",
                    rule.host
                ));
            }
            let api = match rule.api.or_else(|| ApiKind::for_provider(&rule.provider)) {
                Some(a) => a,
                None => {
                    return Err(format!(
                        "host {:?}: provider {:?} is not a known provider; add api = \"openai\" \
                         (or \"anthropic\", \"gemini\", \"azure\") to say which wire format it speaks",
                        rule.host, rule.provider
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
                        "host {:?}: prefix {prefix:?} must be letters, digits, '-' or '_' (and not \"airlock\")",
                        rule.host
                    ));
                }
                if set.prefixes.contains_key(prefix) {
                    return Err(format!(
                        "prefix {prefix:?} is used by two hosts; each needs its own"
                    ));
                }
            }
            let idx = set.entries.len();
            match &pattern {
                HostPattern::Exact(h) => {
                    if set.exact.insert(h.clone(), idx).is_some() {
                        return Err(format!("host {h:?} is listed twice"));
                    }
                }
                HostPattern::Wildcard(s) => set.wildcards.push((format!(".{s}"), idx)),
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
            .map(|e| e.pattern.constraint_domain().to_string())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// A PAC file sending exactly the interception hosts to `proxy` (`host:port`) and everything
    /// else DIRECT. It decides on the host only (Chrome strips https paths).
    pub fn pac(&self, proxy: &str) -> String {
        let mut s = String::from(
            "// Airlock proxy auto-config: AI hosts go through the local agent, everything else is direct.\n\
             function FindProxyForURL(url, host) {\n  host = host.toLowerCase();\n",
        );
        for e in &self.entries {
            match &e.pattern {
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
    fn ip_hosts_are_refused() {
        let rules = vec![HostRule {
            host: "10.0.0.1".into(),
            provider: "openai".into(),
            api: None,
            prefix: None,
            stream_usage: Default::default(),
        }];
        assert!(InterceptionSet::compile(&rules)
            .unwrap_err()
            .contains("IP addresses"));
    }
}
