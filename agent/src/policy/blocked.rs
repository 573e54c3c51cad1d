//! `[blocked]`: hosts no tool on this machine may reach through the agent — AI services the
//! organisation does not allow. A blocked host is refused at CONNECT, in absolute-form and in
//! base-URL mode, with the policy's message; blocking wins over interception. This module owns the
//! section and its matching; the proxy decides how a refusal looks.

use std::collections::HashSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::hosts::{normalize_host, valid_dns_name};

/// The policy's `[blocked]` section.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BlockedPolicy {
    /// Hosts refused outright: exact names (`chat.deepseek.com`) or `*.example.ai` for every host
    /// under `example.ai` at any depth (not `example.ai` itself; list it too to block it).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Told to whoever is refused, e.g. where to go instead ("use https://ai.corp.example").
    #[serde(default)]
    pub message: Option<String>,
}

/// The compiled block list.
#[derive(Debug, Clone, Default)]
pub struct BlockedHosts {
    exact: HashSet<String>,
    /// `.example.ai` for `*.example.ai`.
    suffixes: Vec<String>,
    message: Option<String>,
}

impl BlockedHosts {
    /// Compiles the section; an error names the index of the bad entry.
    pub fn compile(p: &BlockedPolicy) -> Result<BlockedHosts, (usize, String)> {
        let mut b = BlockedHosts {
            message: p.message.clone().filter(|m| !m.trim().is_empty()),
            ..BlockedHosts::default()
        };
        for (i, raw) in p.hosts.iter().enumerate() {
            let host = normalize_host(raw);
            let (name, wildcard) = match host.strip_prefix("*.") {
                Some(rest) => (rest.to_string(), true),
                None => (host.clone(), false),
            };
            if !valid_dns_name(&name) || name.contains('*') {
                return Err((
                    i,
                    format!(
                        "{raw:?} is not a host name or a wildcard like \"*.example.ai\" (IP addresses cannot be blocked by name)"
                    ),
                ));
            }
            if wildcard {
                b.suffixes.push(format!(".{name}"));
            } else {
                b.exact.insert(name);
            }
        }
        Ok(b)
    }

    /// Whether `host` (lower-case, no trailing dot) is blocked.
    pub fn is_blocked(&self, host: &str) -> bool {
        self.exact.contains(host) || self.suffixes.iter().any(|s| host.ends_with(s.as_str()))
    }

    /// How many entries the list has.
    pub fn len(&self) -> usize {
        self.exact.len() + self.suffixes.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What a refused caller is told.
    pub fn refusal(&self, host: &str) -> String {
        let base = format!("the organisation's Airlock policy blocks {host}");
        match &self.message {
            Some(m) => format!("{base}: {m}"),
            None => format!("{base}; ask your administrator which AI services are allowed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(hosts: &[&str]) -> BlockedHosts {
        BlockedHosts::compile(&BlockedPolicy {
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            message: Some("use https://ai.corp.example".into()),
        })
        .unwrap()
    }

    #[test]
    fn exact_names_and_wildcards_at_any_depth_are_blocked() {
        let b = list(&["Chat.DeepSeek.com.", "*.character.ai"]);
        assert!(b.is_blocked("chat.deepseek.com"));
        assert!(!b.is_blocked("api.deepseek.com"));
        assert!(b.is_blocked("beta.character.ai"));
        assert!(b.is_blocked("a.b.character.ai"));
        assert!(!b.is_blocked("character.ai"));
        assert!(!b.is_blocked("notcharacter.ai"));
        assert_eq!(b.len(), 2);
        assert_eq!(
            b.refusal("beta.character.ai"),
            "the organisation's Airlock policy blocks beta.character.ai: use https://ai.corp.example"
        );
    }

    #[test]
    fn a_bad_entry_is_named_by_its_index() {
        let e = BlockedHosts::compile(&BlockedPolicy {
            hosts: vec!["ok.example".into(), "10.0.0.1:80".into()],
            message: None,
        })
        .unwrap_err();
        assert_eq!(e.0, 1);
        assert!(
            e.1.contains("\"10.0.0.1:80\" is not a host name"),
            "{}",
            e.1
        );
    }
}
