//! DNS names as the device CA sees them: normalising the interception domains that become name
//! constraints, and deciding whether a host falls inside a permitted subtree with RFC 5280 dNSName
//! semantics (the domain itself or any name made by adding labels on the left). It is pure string logic
//! and must not touch files, keys or certificates.

use std::net::IpAddr;

use rustls_pki_types::DnsName;

use crate::{AgentError, Result};

/// Normalises one host or domain: trimmed, lower case, without a trailing dot, without a leading
/// `*.` or `.`. Returns `None` for an empty name, an IP literal or a syntactically invalid DNS name.
pub(crate) fn normalize(name: &str) -> Option<String> {
    let mut n = name.trim().to_ascii_lowercase();
    if n.ends_with('.') {
        n.pop();
    }
    let n = n
        .strip_prefix("*.")
        .or_else(|| n.strip_prefix('.'))
        .unwrap_or(&n)
        .to_string();
    if n.is_empty() || is_ip_literal(&n) {
        return None;
    }
    DnsName::try_from(n.as_str()).ok()?;
    Some(n)
}

/// Normalises a host a leaf is asked for (an SNI name): trimmed, lower case, without a trailing dot.
/// Unlike [`normalize`] it refuses wildcards and leading dots rather than stripping them.
pub(crate) fn normalize_host(host: &str) -> Option<String> {
    let h = host.trim();
    if h.starts_with('.') || h.contains('*') {
        return None;
    }
    normalize(h)
}

/// Whether `host` is an IPv4 or IPv6 literal (with or without brackets).
pub(crate) fn is_ip_literal(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.parse::<IpAddr>().is_ok()
}

/// Normalises the domains a new CA must permit: each one valid, sorted, without duplicates, and at
/// least one (a CA with no permitted DNS subtree would constrain nothing).
pub(crate) fn normalize_domains(domains: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(domains.len());
    for d in domains {
        match normalize(d) {
            Some(n) => out.push(n),
            None => {
                return Err(AgentError::Ca(format!(
                    "cannot put {d:?} in the CA's name constraints: it is not a DNS domain (IP addresses \
                     and empty names cannot be intercepted); fix the interception hosts in the policy"
                )))
            }
        }
    }
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err(AgentError::Ca(
            "refusing to create a device CA with no permitted domains: it would be able to sign for any \
             site. Add at least one interception host to the policy"
                .into(),
        ));
    }
    Ok(out)
}

/// Whether the permitted subtree `domain` (as read from a certificate) includes `host` (normalised).
/// A constraint with a leading dot (a non-standard but common form) permits subdomains only.
fn subtree_includes(domain: &str, host: &str) -> bool {
    let domain = domain.to_ascii_lowercase();
    let domain = domain.strip_suffix('.').unwrap_or(&domain);
    if let Some(suffix) = domain.strip_prefix('.') {
        return host.len() > suffix.len() + 1 && host.ends_with(domain);
    }
    if domain.is_empty() {
        // An empty dNSName constraint permits every name (RFC 5280 §4.2.1.10).
        return true;
    }
    host == domain
        || (host.len() > domain.len()
            && host.ends_with(domain)
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.')
}

/// Whether any of the `permitted` subtrees includes `host` (a name a client connects to). IP literals,
/// wildcards and invalid names are never covered (the CA excludes all IP ranges).
pub(crate) fn host_covered(permitted: &[String], host: &str) -> bool {
    normalize_host(host).is_some_and(|h| permitted.iter().any(|d| subtree_includes(d, &h)))
}

/// Whether any of the `permitted` subtrees includes the interception `domain` (policy form: a wildcard
/// `*.example.com` needs `example.com` or a parent of it).
pub(crate) fn domain_covered(permitted: &[String], domain: &str) -> bool {
    normalize(domain).is_some_and(|d| permitted.iter().any(|p| subtree_includes(p, &d)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn subdomains_are_covered_but_lookalikes_are_not() {
        let p = v(&["api.openai.com", "anthropic.com"]);
        assert!(host_covered(&p, "api.openai.com"));
        assert!(host_covered(&p, "API.OpenAI.com."));
        assert!(host_covered(&p, "eu.api.openai.com"));
        assert!(host_covered(&p, "api.anthropic.com"));
        assert!(!host_covered(&p, "openai.com"));
        assert!(!host_covered(&p, "evilapi.openai.com"));
        assert!(!host_covered(&p, "notanthropic.com"));
        assert!(!host_covered(&p, "api.openai.com.evil.net"));
        assert!(!host_covered(&p, "1.2.3.4"));
        assert!(!host_covered(&p, "[::1]"));
        assert!(!host_covered(&p, ""));
        assert!(!host_covered(&p, "*.anthropic.com"));
        assert!(domain_covered(&p, "*.anthropic.com"));
        assert!(!domain_covered(&p, "*.openai.com"));
    }

    #[test]
    fn leaf_hosts_must_be_plain_dns_names() {
        assert_eq!(
            normalize_host("API.openai.com."),
            Some("api.openai.com".into())
        );
        assert_eq!(normalize_host("*.openai.com"), None);
        assert_eq!(normalize_host(".openai.com"), None);
        assert_eq!(normalize_host("127.0.0.1"), None);
    }

    #[test]
    fn leading_dot_constraint_means_subdomains_only() {
        let p = v(&[".example.com"]);
        assert!(host_covered(&p, "a.example.com"));
        assert!(!host_covered(&p, "example.com"));
    }

    #[test]
    fn domains_are_normalised_sorted_and_deduplicated() {
        let d = normalize_domains(&v(&[
            "API.openai.com.",
            "*.openai.azure.com",
            "api.openai.com",
        ]))
        .unwrap_or_default();
        assert_eq!(d, v(&["api.openai.com", "openai.azure.com"]));
    }

    #[test]
    fn ip_literal_or_empty_domain_set_is_refused() {
        assert!(normalize_domains(&v(&["10.0.0.1"])).is_err());
        let err = normalize_domains(&[])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("no permitted domains"), "{err}");
    }
}
