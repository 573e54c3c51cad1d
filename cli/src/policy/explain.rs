//! `airlock policy explain` and `airlock policy test`: what a policy decides for a described
//! request, and every rule that led there — so admins can check a policy, and test it in CI,
//! before they sign it. A decision here is what the agent's static gates decide (blocked hosts,
//! model rules); budgets and rate limits depend on spend, so they are listed as what would count
//! the request. It must not talk to an agent.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use airlock_agent::governance::Ask;
use airlock_agent::policy::{ModelDecision, Policy};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// A request, described.
#[derive(Debug, Clone, Default, Deserialize, Serialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The provider (`openai`, `anthropic`, `gemini` …).
    #[arg(long)]
    pub provider: String,
    /// The model asked for.
    #[arg(long)]
    #[serde(default)]
    pub model: Option<String>,
    /// The host the request goes to (checked against `blocked_hosts`).
    #[arg(long)]
    #[serde(default)]
    pub host: Option<String>,
    /// The OS user sending it.
    #[arg(long)]
    #[serde(default)]
    pub user: Option<String>,
    /// The app (executable name) sending it.
    #[arg(long)]
    #[serde(default)]
    pub app: Option<String>,
}

/// What the policy decides, and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Explanation {
    /// `allow` or `deny`.
    pub decision: String,
    /// The airlock type of the refusal (`model_blocked`, `host_blocked`), when denied.
    pub refusal: Option<String>,
    /// Each rule that spoke, in the order the agent checks them.
    pub trail: Vec<String>,
    /// The key of the rule that decided (`models.deny[0]`, `blocked_hosts`, `models`).
    pub rule: String,
}

/// Decides `r` under `policy`.
pub fn explain(policy: &Policy, r: &Request) -> Explanation {
    let mut trail = Vec::new();
    if let Some(host) = &r.host {
        if policy.blocked.is_blocked(host) {
            trail.push(format!("blocked_hosts: {host} is blocked"));
            return Explanation {
                decision: "deny".into(),
                refusal: Some("host_blocked".into()),
                trail,
                rule: "blocked_hosts".into(),
            };
        }
        trail.push(format!("blocked_hosts: {host} is not blocked"));
    }
    let mut decision = "allow".to_string();
    let mut refusal = None;
    let mut rule = "models".to_string();
    match &r.model {
        Some(m) => match policy.models.decide(&r.provider, m) {
            ModelDecision::Allow(b) => {
                trail.push(format!("models: {m:?} allowed by {} = {:?}", b.key, b.rule));
                rule = b.key;
            }
            ModelDecision::Deny(b) => {
                trail.push(format!("models: {m:?} refused by {} = {:?}", b.key, b.rule));
                decision = "deny".into();
                refusal = Some("model_blocked".into());
                rule = b.key;
            }
        },
        None => trail.push("models: the request names no model; model rules do not apply".into()),
    }
    if decision == "allow" {
        let ask = Ask {
            user: r.user.clone(),
            app: r.app.clone(),
            provider: r.provider.clone(),
            model: r.model.clone(),
            ..Ask::default()
        };
        let applying = policy.governance.applying(&ask);
        if applying.is_empty() {
            trail.push("budgets and rate limits: none applies".into());
        }
        for (kind, name, scope, limits) in applying {
            let scope = if scope.is_empty() {
                "one count for the machine".to_string()
            } else {
                scope
            };
            trail.push(format!(
                "{kind} {name:?} counts it ({scope}): {limits}; refused once used up"
            ));
        }
    }
    Explanation {
        decision,
        refusal,
        trail,
        rule,
    }
}

/// `airlock policy explain`.
pub fn run_explain(policy_file: &Path, r: &Request, json: bool) -> Result<ExitCode> {
    let policy = Policy::from_file(policy_file)?;
    let e = explain(&policy, r);
    if json {
        println!("{}", serde_json::to_string_pretty(&e)?);
    } else {
        println!(
            "decision: {}{}",
            e.decision,
            e.refusal
                .as_deref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default()
        );
        for line in &e.trail {
            println!("  {line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A file of cases for `airlock policy test`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cases {
    /// The policy the cases are for, relative to the case file (`--policy` overrides it).
    #[serde(default)]
    policy: Option<PathBuf>,
    /// The cases.
    #[serde(rename = "case", default)]
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// A name for the report.
    #[serde(default)]
    name: Option<String>,
    #[serde(flatten)]
    request: Request,
    /// `allow` or `deny`.
    expect: String,
    /// The rule that must decide (`models.deny[0]`), if the case cares.
    #[serde(default)]
    rule: Option<String>,
}

/// `airlock policy test`: exit 0 when every case decides as expected, 1 naming each that does not.
pub fn run_test(cases_file: &Path, policy_file: Option<&Path>) -> Result<ExitCode> {
    let text = std::fs::read_to_string(cases_file)
        .with_context(|| format!("cannot read the case file {}", cases_file.display()))?;
    let cases: Cases =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", cases_file.display()))?;
    let policy_path = match (policy_file, &cases.policy) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(p)) => cases_file.parent().unwrap_or(Path::new(".")).join(p),
        (None, None) => bail!(
            "{} names no policy: add `policy = \"FILE.toml\"` to it or pass --policy FILE",
            cases_file.display()
        ),
    };
    let policy = Policy::from_file(&policy_path)?;
    if cases.cases.is_empty() {
        bail!("{} has no [[case]] entries", cases_file.display());
    }
    let mut failed = 0;
    for (i, c) in cases.cases.iter().enumerate() {
        if c.expect != "allow" && c.expect != "deny" {
            bail!(
                "case {} expects {:?}: write expect = \"allow\" or \"deny\"",
                i + 1,
                c.expect
            );
        }
        let e = explain(&policy, &c.request);
        let name = c.name.clone().unwrap_or_else(|| format!("case {}", i + 1));
        let rule_ok = c.rule.as_ref().is_none_or(|r| *r == e.rule);
        if e.decision == c.expect && rule_ok {
            println!("ok    {name}: {} ({})", e.decision, e.rule);
        } else {
            failed += 1;
            println!(
                "FAIL  {name}: expected {}{}, got {} by {}",
                c.expect,
                c.rule
                    .as_deref()
                    .map(|r| format!(" by {r}"))
                    .unwrap_or_default(),
                e.decision,
                e.rule
            );
            for line in &e.trail {
                println!("        {line}");
            }
        }
    }
    println!(
        "{} of {} cases passed against {}",
        cases.cases.len() - failed,
        cases.cases.len(),
        policy_path.display()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
