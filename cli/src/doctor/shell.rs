//! The `shell` check: do this shell's proxy variables point at the agent, does `NO_PROXY` leave the
//! AI hosts to it, and do the CA variables name files that hold the device CA (compared by
//! certificate, not by path). Reads only the environment and those files; it must not change them.

use std::path::Path;

use serde_json::{json, Value};

use super::trust::file_holds;
use super::{Check, Status};
use crate::trust::Verified;

/// The CA variables the check requires (a subset of what `airlock env` sets).
pub const CA_VARS: [&str; 4] = [
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "CURL_CA_BUNDLE",
];

const FIX: &str = "eval \"$(airlock env)\" (this shell), or `airlock setup` (new shells)";

/// What the check decides from.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The agent's proxy URL.
    pub proxy_url: String,
    /// Proxy variables as set: (name, value).
    pub proxies: Vec<(String, Option<String>)>,
    /// `NO_PROXY` and `no_proxy` joined.
    pub no_proxy: String,
    /// The AI hosts the agent intercepts.
    pub ai_hosts: Vec<String>,
    /// CA variables: (name, value, whether that file holds the device CA).
    pub ca_vars: Vec<(String, Option<String>, bool)>,
}

/// Reads the facts from this process's environment.
pub fn gather(v: &Verified) -> Facts {
    let var = |n: &str| std::env::var(n).ok().filter(|s| !s.is_empty());
    let der = super::trust::pem_certs(v.ca.info.cert_pem.as_bytes())
        .into_iter()
        .next()
        .unwrap_or_default();
    Facts {
        proxy_url: v.proxy_url(),
        proxies: ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"]
            .iter()
            .map(|n| (n.to_string(), var(n)))
            .collect(),
        no_proxy: [var("NO_PROXY"), var("no_proxy")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(","),
        ai_hosts: ai_hosts(&v.status),
        ca_vars: CA_VARS
            .iter()
            .map(|n| {
                let val = var(n);
                let holds = val
                    .as_deref()
                    .is_some_and(|p| !der.is_empty() && file_holds(Path::new(p), &der));
                (n.to_string(), val, holds)
            })
            .collect(),
    }
}

/// The intercepted hosts in a status JSON.
pub fn ai_hosts(status: &Value) -> Vec<String> {
    status["interception_hosts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|h| h["intercepted"] != false)
                .filter_map(|h| h["host"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn normal(url: &str) -> String {
    let u = url.trim().trim_end_matches('/').to_ascii_lowercase();
    u.strip_prefix("http://").map_or(u.clone(), str::to_string)
}

/// The `NO_PROXY` entries that send one of `hosts` around the agent.
pub fn swallowed(no_proxy: &str, hosts: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for e in no_proxy
        .split([',', ' '])
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let e = e.to_ascii_lowercase();
        let bare = e.trim_start_matches("*.").trim_start_matches('.');
        let hit = e == "*"
            || hosts
                .iter()
                .any(|h| h == bare || h.ends_with(&format!(".{bare}")));
        if hit && !out.contains(&e) {
            out.push(e);
        }
    }
    out
}

/// The check.
pub fn check(f: &Facts) -> Check {
    let want = normal(&f.proxy_url);
    let mut problems = Vec::new();
    let https: Vec<&(String, Option<String>)> = f
        .proxies
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("https_proxy"))
        .collect();
    if https.iter().all(|(_, v)| v.is_none()) {
        problems.push("HTTPS_PROXY is not set".to_string());
    }
    for (name, val) in &f.proxies {
        if let Some(v) = val {
            if normal(v) != want {
                problems.push(format!("{name}={v} is not the agent ({})", f.proxy_url));
            }
        }
    }
    let eaten = swallowed(&f.no_proxy, &f.ai_hosts);
    if !eaten.is_empty() {
        problems.push(format!(
            "NO_PROXY sends AI hosts around the agent: {}",
            eaten.join(", ")
        ));
    }
    for (name, val, holds) in &f.ca_vars {
        match val {
            None => problems.push(format!("{name} is not set")),
            Some(p) if !holds => problems.push(format!("{name}={p} does not hold the device CA")),
            Some(_) => {}
        }
    }
    let details = json!({
        "proxy_url": f.proxy_url,
        "proxies": f.proxies.iter().map(|(n, v)| (n.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "no_proxy_swallows": eaten,
        "ca_vars": f.ca_vars.iter().map(|(n, v, h)| (n.clone(), json!({"value": v, "holds_device_ca": h}))).collect::<serde_json::Map<_, _>>(),
    });
    if problems.is_empty() {
        return Check::new(
            "shell",
            Status::Pass,
            format!(
                "proxy variables point at {} and CA variables hold the device CA",
                f.proxy_url
            ),
        )
        .details(details);
    }
    Check::new("shell", Status::Fail, problems.join("; "))
        .fix(FIX)
        .details(details)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Facts {
        Facts {
            proxy_url: "http://127.0.0.1:8479".into(),
            proxies: vec![
                ("HTTPS_PROXY".into(), Some("http://127.0.0.1:8479".into())),
                ("https_proxy".into(), Some("http://127.0.0.1:8479/".into())),
                ("HTTP_PROXY".into(), None),
                ("http_proxy".into(), None),
            ],
            no_proxy: "localhost,127.0.0.1,.internal".into(),
            ai_hosts: vec!["api.openai.com".into(), "api.anthropic.com".into()],
            ca_vars: CA_VARS
                .iter()
                .map(|n| (n.to_string(), Some("/b.pem".into()), true))
                .collect(),
        }
    }

    #[test]
    fn a_shell_set_up_by_airlock_env_passes() {
        assert_eq!(check(&good()).status, Status::Pass);
    }

    #[test]
    fn no_proxy_variable_fails_with_the_eval_fix() {
        let mut f = good();
        for p in &mut f.proxies {
            p.1 = None;
        }
        let c = check(&f);
        assert_eq!(c.status, Status::Fail);
        assert!(c.summary.contains("HTTPS_PROXY is not set"));
        assert!(c.fix.unwrap().starts_with("eval \"$(airlock env)\""));
    }

    #[test]
    fn a_proxy_elsewhere_fails() {
        let mut f = good();
        f.proxies[2].1 = Some("http://proxy.corp:3128".into());
        assert!(check(&f)
            .summary
            .contains("HTTP_PROXY=http://proxy.corp:3128"));
    }

    #[test]
    fn no_proxy_swallowing_an_ai_host_fails() {
        assert_eq!(
            swallowed("localhost,.openai.com, *", &good().ai_hosts),
            vec![".openai.com", "*"]
        );
        assert!(swallowed("localhost,openai.com.evil", &good().ai_hosts).is_empty());
        let mut f = good();
        f.no_proxy = "anthropic.com".into();
        assert_eq!(check(&f).status, Status::Fail);
    }

    #[test]
    fn a_bundle_without_the_ca_fails() {
        let mut f = good();
        f.ca_vars[0].2 = false;
        f.ca_vars[2].1 = None;
        let c = check(&f);
        assert!(c
            .summary
            .contains("SSL_CERT_FILE=/b.pem does not hold the device CA"));
        assert!(c.summary.contains("NODE_EXTRA_CA_CERTS is not set"));
    }

    #[test]
    fn hosts_come_from_the_status() {
        let s = json!({"interception_hosts": [{"host": "api.openai.com", "intercepted": true},
                                              {"host": "x.ai", "intercepted": false}]});
        assert_eq!(ai_hosts(&s), vec!["api.openai.com"]);
    }
}
