//! The policy: which hosts Airlock intercepts, which provider each speaks, and how to reach upstream.
//! It owns parsing (TOML, unknown fields refused), validation and compilation into the lookup structures
//! the proxy uses on every connection. It must not do I/O beyond reading the policy file itself; signed
//! bundles and fleet distribution extend [`PolicySource`] in a later issue.

pub mod ai_domains;
pub mod blocked;
pub mod budgets;
pub mod credentials;
pub mod diagnostic;
pub mod guardrails;
pub mod hosts;
pub mod journal;
pub mod limits;
pub mod models;
pub mod pause;
pub mod scope;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use ai_domains::{AiDomains, InventoryPolicy};
pub use blocked::{BlockedHosts, BlockedPolicy};
use diagnostic::{Diagnostic, KeyPath};
pub use hosts::{HostEntry, HostPattern, InterceptionSet};
pub use journal::JournalPolicy;
pub use limits::Limits;
pub use models::{ModelDecision, ModelRules, ModelsPolicy};
pub use scope::{LocalUpstream, PathScope};

use crate::{AgentError, Result};

/// The embedded default policy (also at `policies/default.toml`).
pub const DEFAULT_POLICY_TOML: &str = include_str!("../../../policies/default.toml");

/// The wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApiKind {
    /// OpenAI's API and the many OpenAI-compatible hosts.
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
    /// Google's Gemini API (generativelanguage).
    Gemini,
    /// Azure OpenAI: OpenAI bodies behind deployment URLs.
    Azure,
    /// Google's Code Assist backend (`cloudcode-pa.googleapis.com`, Gemini CLI signed in with Google):
    /// Gemini bodies wrapped in `{"model", "project", "request": {…}}`, answers in `{"response": {…}}`.
    CodeAssist,
    /// Ollama: OpenAI-compatible under `/v1`, its native NDJSON API under `/api` (`/api/chat`,
    /// `/api/generate`, `/api/embed`).
    Ollama,
}

impl ApiKind {
    /// The API a well-known provider name speaks, if it is well known.
    pub fn for_provider(provider: &str) -> Option<ApiKind> {
        Some(match provider {
            "openai" | "mistral" | "groq" | "openrouter" | "deepseek" | "xai" | "together"
            | "fireworks" | "perplexity" | "cerebras" => ApiKind::Openai,
            "anthropic" => ApiKind::Anthropic,
            "gemini" | "google" => ApiKind::Gemini,
            "azure" | "azure_openai" => ApiKind::Azure,
            "gemini_code_assist" | "code_assist" => ApiKind::CodeAssist,
            "github_copilot" | "chatgpt" | "lmstudio" | "vllm" => ApiKind::Openai,
            "ollama" => ApiKind::Ollama,
            _ => return None,
        })
    }

    /// Name used in records and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiKind::Openai => "openai",
            ApiKind::Anthropic => "anthropic",
            ApiKind::Gemini => "gemini",
            ApiKind::Azure => "azure",
            ApiKind::CodeAssist => "code_assist",
            ApiKind::Ollama => "ollama",
        }
    }

    /// Whether this API speaks Gemini bodies (plain, or wrapped by Code Assist).
    pub fn is_gemini(self) -> bool {
        matches!(self, ApiKind::Gemini | ApiKind::CodeAssist)
    }
}

/// How a host's requests are paid for, which decides what a record's cost means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Billing {
    /// Per token at the provider's prices (API keys): priced from the price table.
    #[default]
    PerToken,
    /// A subscription or a seat (ChatGPT plan, Copilot seat, Code Assist, a Claude login): usage is
    /// metered but not billed per token, so no per-token cost is made up.
    Subscription,
    /// A model server on this machine (Ollama, LM Studio, vLLM): metered, never billed.
    Local,
}

/// The policy file as written by an admin.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// Policy schema version; this agent understands 1.
    pub schema: u32,
    /// A human name for the policy, shown in `airlock status`.
    #[serde(default)]
    pub name: Option<String>,
    /// What the agent does when this policy has expired and no newer one has arrived: `open`
    /// keeps forwarding and recording under it, `closed` refuses AI hosts (airlock type
    /// `policy_unavailable`) until a valid policy arrives. Default: open.
    #[serde(default)]
    pub fail_mode: FailMode,
    /// The interception set: AI hosts whose TLS is terminated and inspected.
    #[serde(default)]
    pub hosts: Vec<HostRule>,
    /// Hosts no tool may reach through the agent (unsanctioned AI apps and sites): exact names or
    /// `*.example.ai`. The same list as `[blocked] hosts`.
    #[serde(default)]
    pub blocked_hosts: Vec<String>,
    /// The message told to whoever is refused a blocked host, and more blocked hosts.
    #[serde(default)]
    pub blocked: BlockedPolicy,
    /// Which models may be asked for, globally and per provider.
    #[serde(default)]
    pub models: ModelsPolicy,
    /// What happens to the key an app presents, per provider (`[credentials.openai]`).
    #[serde(default)]
    pub credentials: BTreeMap<String, credentials::CredentialRule>,
    /// Spend limits in tokens and USD per window, scoped by device, user, app, provider, model.
    #[serde(default)]
    pub budgets: Vec<budgets::BudgetPolicy>,
    /// Requests and tokens per minute, hour and day, and concurrency caps, scoped the same way.
    #[serde(default)]
    pub rate_limits: Vec<budgets::RateLimitPolicy>,
    /// Guardrails: detectors, the admin's own rules, and what findings lead to.
    #[serde(default)]
    pub guardrails: guardrails::GuardrailsPolicy,
    /// How the agent reaches upstream.
    #[serde(default)]
    pub upstream: UpstreamPolicy,
    /// Price overrides and additions, keyed `provider/model`, USD per million tokens.
    #[serde(default)]
    pub prices: BTreeMap<String, crate::pricing::ModelPrice>,
    /// Azure OpenAI settings.
    #[serde(default)]
    pub azure: AzurePolicy,
    /// Resource bounds: body sizes, memory, connections, timeouts.
    #[serde(default)]
    pub limits: Limits,
    /// The journal: commit durability and retention.
    #[serde(default)]
    pub journal: JournalPolicy,
    /// The shadow-AI inventory: which tunnelled hosts count as AI apps (the shipped list, trimmed
    /// and extended here).
    #[serde(default)]
    pub inventory: InventoryPolicy,
    /// Whether people at the machine may pause interception for a while, and how long at most.
    #[serde(default)]
    pub pause: pause::PausePolicy,
}

/// What the agent does without a policy it may govern by (none at all, or the one in force expired).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Forward and record: AI keeps working, ungoverned by new rules.
    #[default]
    Open,
    /// Refuse AI hosts with `policy_unavailable` in the caller's dialect.
    Closed,
}

impl FailMode {
    /// The name used in policies, flags and status.
    pub fn as_str(self) -> &'static str {
        match self {
            FailMode::Open => "open",
            FailMode::Closed => "closed",
        }
    }
}

/// Azure OpenAI: URLs name deployments, prices name models.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AzurePolicy {
    /// Deployment name → the model it serves (`"gpt4o-prod" = "gpt-4o"`), for pricing.
    #[serde(default)]
    pub deployments: BTreeMap<String, String>,
}

/// Whether the agent asks OpenAI-style streams for usage the client did not ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StreamUsage {
    /// Add `stream_options.include_usage` upstream and remove the extra chunk before the client sees it.
    #[default]
    Inject,
    /// Leave the request alone; usage of such streams is estimated.
    Off,
}

/// One intercepted host, or one local model server.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostRule {
    /// Exact host (`api.openai.com`) or one-label wildcard (`*.openai.azure.com`); absent for a
    /// `local` rule.
    #[serde(default)]
    pub host: Option<String>,
    /// Only requests whose path starts with one of these prefixes (`/backend-api/codex/`) are
    /// inspected and recorded; the rest of the host is forwarded unread. Empty: the whole host.
    #[serde(default)]
    pub paths: Vec<String>,
    /// A model server on this machine reached over plain HTTP (`http://127.0.0.1:11434`), in
    /// base-URL mode only (needs `prefix`).
    #[serde(default)]
    pub local: Option<String>,
    /// How the host's requests are paid for (default: per token; `local` for local rules).
    #[serde(default)]
    pub billing: Option<Billing>,
    /// Provider name used in records (`openai`, `anthropic`, `mistral` …).
    pub provider: String,
    /// Wire format; defaults from the provider name for well-known providers.
    #[serde(default)]
    pub api: Option<ApiKind>,
    /// Base-URL mode prefix: `http://127.0.0.1:PORT/<prefix>/...`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Usage for OpenAI-style streams that did not ask for it (default: inject).
    #[serde(default)]
    pub stream_usage: StreamUsage,
}

/// How to reach upstream.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamPolicy {
    /// An HTTP proxy for the agent's own upstream calls and its blind tunnels (`http://host:port`,
    /// optionally `http://user:pass@host:port`). Without it the agent uses `AIRLOCK_UPSTREAM_PROXY` or
    /// `HTTPS_PROXY` from its own environment, unless that points at the agent itself.
    #[serde(default)]
    pub proxy: Option<String>,
    /// Hosts reached directly, not through `proxy` (`corp.internal`, `.corp.internal` for subdomains,
    /// `10.0.0.5`). Loopback is always direct.
    #[serde(default)]
    pub no_proxy: Vec<String>,
    /// Extra root CA (PEM) trusted for every upstream, besides the platform's roots.
    #[serde(default)]
    pub extra_ca_file: Option<PathBuf>,
    /// Negotiate HTTP/2 with upstreams that offer it (one multiplexed connection per host; a provider
    /// refusing a request early, like a 413 before the body is sent, is answered cleanly). `false`
    /// keeps to pooled HTTP/1.1 keep-alive connections, which cost the agent about a fifth less CPU
    /// per request (BENCHMARKS.md) at the price of a connection per concurrent request.
    #[serde(default = "default_true")]
    pub http2: bool,
    /// Pooled connections idle this long are closed.
    #[serde(default = "default_idle")]
    pub pool_idle_timeout_secs: u64,
    /// TCP connect timeout.
    #[serde(default = "default_connect")]
    pub connect_timeout_secs: u64,
    /// Per-host overrides: send traffic for a host to another address (an on-prem gateway, a mock).
    #[serde(default)]
    pub overrides: BTreeMap<String, UpstreamOverride>,
}

fn default_true() -> bool {
    true
}
fn default_idle() -> u64 {
    30
}
fn default_connect() -> u64 {
    10
}

impl Default for UpstreamPolicy {
    fn default() -> Self {
        UpstreamPolicy {
            proxy: None,
            no_proxy: Vec::new(),
            extra_ca_file: None,
            http2: true,
            pool_idle_timeout_secs: default_idle(),
            connect_timeout_secs: default_connect(),
            overrides: BTreeMap::new(),
        }
    }
}

/// Where to send a host's traffic instead of its DNS address.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamOverride {
    /// `ip:port` or `host:port` to connect to. TLS still verifies the original host name.
    pub address: String,
    /// A root CA (PEM) trusted only for this host, in addition to the platform's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// Where the policy in force came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "path")]
pub enum PolicySource {
    /// Compiled into the binary.
    Embedded,
    /// A TOML file given with `--policy`.
    File(PathBuf),
    /// A signed bundle, from where it was read (`https://…`, `policy.d/NAME`, `airlock policy apply`,
    /// the last good bundle kept in the state directory).
    Bundle(String),
}

impl std::fmt::Display for PolicySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicySource::Embedded => f.write_str("embedded default"),
            PolicySource::File(p) => write!(f, "{}", p.display()),
            PolicySource::Bundle(from) => write!(f, "bundle from {from}"),
        }
    }
}

/// A validated, compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Where it came from.
    pub source: PolicySource,
    /// Its name.
    pub name: String,
    /// The version of the signed bundle it came in (`None` for a file or the embedded default).
    pub version: Option<u64>,
    /// The interception set.
    pub hosts: InterceptionSet,
    /// Hosts refused outright.
    pub blocked: BlockedHosts,
    /// Which models may be asked for.
    pub models: ModelRules,
    /// Budgets and rate limits.
    pub governance: std::sync::Arc<crate::governance::Rules>,
    /// Guardrails, compiled.
    pub guard: std::sync::Arc<crate::guardrails::actions::Guard>,
    /// Credential rules by provider (lower case).
    pub credentials: BTreeMap<String, credentials::CredentialRule>,
    /// What to do once this policy expires.
    pub fail_mode: FailMode,
    /// Upstream settings, with override keys lower-cased.
    pub upstream: UpstreamPolicy,
    /// The price table: the shipped one with the policy's overrides applied.
    pub prices: crate::pricing::PriceTable,
    /// Azure deployment → model.
    pub azure: AzurePolicy,
    /// Resource bounds.
    pub limits: Limits,
    /// The journal's settings.
    pub journal: JournalPolicy,
    /// The AI app list tunnelled connections are matched against.
    pub ai_domains: AiDomains,
    /// Whether interception may be paused.
    pub pause: pause::PausePolicy,
}

impl Policy {
    /// The embedded default policy.
    pub fn embedded() -> Result<Policy> {
        Self::from_toml(DEFAULT_POLICY_TOML, PolicySource::Embedded)
    }

    /// Reads and compiles a policy file.
    pub fn from_file(path: &Path) -> Result<Policy> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AgentError::io("cannot read policy file", path, e))?;
        Self::from_toml(&text, PolicySource::File(path.to_path_buf()))
    }

    /// Parses and compiles policy text. Errors name the file, line, column and key, and suggest the
    /// nearest valid key or value for a misspelt one.
    pub fn from_toml(text: &str, source: PolicySource) -> Result<Policy> {
        let origin = source.to_string();
        let doc: PolicyDocument = toml::from_str(text).map_err(|e| {
            AgentError::PolicyAt(Box::new(Diagnostic::from_toml(&origin, text, &e)))
        })?;
        Self::compile_located(doc, source, Some(text))
    }

    /// Compiles the policy a signed bundle carries: the [`PolicyDocument`] as JSON.
    pub fn from_json(value: serde_json::Value, source: PolicySource) -> Result<Policy> {
        let origin = source.to_string();
        let doc: PolicyDocument = serde_json::from_value(value)
            .map_err(|e| AgentError::PolicyAt(Box::new(Diagnostic::from_json(&origin, &e))))?;
        Self::compile_located(doc, source, None)
    }

    /// Validates and compiles a parsed document.
    pub fn compile(doc: PolicyDocument, source: PolicySource) -> Result<Policy> {
        Self::compile_located(doc, source, None)
    }

    /// Validates and compiles a parsed document; `text`, when it came as TOML, locates errors.
    fn compile_located(
        doc: PolicyDocument,
        source: PolicySource,
        text: Option<&str>,
    ) -> Result<Policy> {
        let origin = source.to_string();
        let err = |key: KeyPath, message: String| {
            AgentError::PolicyAt(Box::new(Diagnostic::at(&origin, text, key, message)))
        };
        if doc.schema != 1 {
            return Err(err(
                KeyPath::parse("schema"),
                format!(
                    "schema {} is not supported by this agent (it understands schema 1); upgrade airlockd",
                    doc.schema
                ),
            ));
        }
        let hosts = InterceptionSet::compile(&doc.hosts)
            .map_err(|m| err(KeyPath::parse("hosts").index(first_bad_rule(&doc.hosts)), m))?;
        let top = doc.blocked_hosts.len();
        let mut blocked_policy = doc.blocked.clone();
        blocked_policy.hosts = doc
            .blocked_hosts
            .iter()
            .chain(&doc.blocked.hosts)
            .cloned()
            .collect();
        let blocked = BlockedHosts::compile(&blocked_policy).map_err(|(i, m)| {
            let key = if i < top {
                KeyPath::parse("blocked_hosts").index(i)
            } else {
                KeyPath::parse("blocked.hosts").index(i - top)
            };
            err(key, m)
        })?;
        let models = ModelRules::compile(&doc.models)
            .map_err(|(k, i, m)| err(KeyPath::parse(&k).index(i), m))?;
        let mut names = std::collections::HashSet::new();
        for (i, b) in doc.budgets.iter().enumerate() {
            budgets::check_budget(b)
                .map_err(|(k, m)| err(KeyPath::parse("budgets").index(i).key(k), m))?;
            if !names.insert(b.name.clone()) {
                return Err(err(
                    KeyPath::parse("budgets").index(i).key("name"),
                    format!("two budgets are named {:?}; give each its own name", b.name),
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, r) in doc.rate_limits.iter().enumerate() {
            budgets::check_rate_limit(r)
                .map_err(|(k, m)| err(KeyPath::parse("rate_limits").index(i).key(k), m))?;
            if !names.insert(r.name.clone()) {
                return Err(err(
                    KeyPath::parse("rate_limits").index(i).key("name"),
                    format!(
                        "two rate limits are named {:?}; give each its own name",
                        r.name
                    ),
                ));
            }
        }
        for (provider, rule) in &doc.credentials {
            credentials::check(rule)
                .map_err(|(k, m)| err(KeyPath::parse("credentials").key(provider).key(k), m))?;
        }
        let credential_rules = doc
            .credentials
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        let governance = std::sync::Arc::new(crate::governance::Rules::compile(
            &doc.budgets,
            &doc.rate_limits,
        ));
        guardrails::check(&doc.guardrails)
            .map_err(|(k, m)| err(KeyPath::parse("guardrails").key(&k), m))?;
        let guard = crate::guardrails::actions::Guard::compile(&doc.guardrails).map_err(|e| {
            let key = match &e {
                crate::guardrails::GuardError::Custom { .. } => KeyPath::parse("guardrails.custom"),
                crate::guardrails::GuardError::BuiltinRules(_) => KeyPath::parse("guardrails"),
            };
            err(key, e.to_string())
        })?;
        let guard = std::sync::Arc::new(guard);
        let mut upstream = doc.upstream;
        upstream.overrides = std::mem::take(&mut upstream.overrides)
            .into_iter()
            .map(|(k, v)| (k.trim_end_matches('.').to_ascii_lowercase(), v))
            .collect();
        for (host, o) in &upstream.overrides {
            if o.address
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                return Err(err(
                    KeyPath::parse("upstream.overrides")
                        .key(host)
                        .key("address"),
                    format!(
                        "address {:?} must be host:port, e.g. \"127.0.0.1:8443\"",
                        o.address
                    ),
                ));
            }
        }
        if let Some(proxy) = &upstream.proxy {
            if !proxy.starts_with("http://") {
                return Err(err(
                    KeyPath::parse("upstream.proxy"),
                    format!("{proxy:?} must be an http:// URL such as \"http://proxy.corp:3128\""),
                ));
            }
        }
        for (key, price) in &doc.prices {
            let at = || KeyPath::parse("prices").key(key);
            if !key.contains('/') {
                return Err(err(
                    at(),
                    "price keys are \"provider/model\", e.g. [prices.\"openai/gpt-4o\"]".into(),
                ));
            }
            if let Err(e) = price.check() {
                return Err(err(
                    at(),
                    format!("{e} (prices are non-negative USD per million tokens)"),
                ));
            }
        }
        doc.limits.check().map_err(|m| {
            // Limits name their key first: "limits.max_request_body_mib must be …".
            let key = m
                .split_whitespace()
                .next()
                .filter(|k| k.starts_with("limits."))
                .map(KeyPath::parse)
                .unwrap_or_else(|| KeyPath::parse("limits"));
            err(key, m)
        })?;
        doc.journal.check().map_err(|m| {
            let key = m
                .split_whitespace()
                .next()
                .map(KeyPath::parse)
                .unwrap_or_else(|| KeyPath::parse("journal"));
            err(key, m)
        })?;
        doc.pause
            .check()
            .map_err(|m| err(KeyPath::parse("pause.max_minutes"), m))?;
        let ai_domains =
            AiDomains::compile(&doc.inventory).map_err(|m| err(KeyPath::parse("inventory"), m))?;
        let prices = crate::pricing::PriceTable::embedded()?.with_overrides(doc.prices);
        Ok(Policy {
            source,
            name: doc.name.unwrap_or_else(|| "unnamed".into()),
            version: None,
            hosts,
            blocked,
            models,
            governance,
            guard,
            credentials: credential_rules,
            fail_mode: doc.fail_mode,
            upstream,
            prices,
            azure: doc.azure,
            limits: doc.limits,
            journal: doc.journal,
            ai_domains,
            pause: doc.pause,
        })
    }
}

/// The JSON Schema of [`PolicyDocument`] (committed as `policies/policy.schema.json`), for editors
/// and admins' own checks.
pub fn json_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(PolicyDocument);
    schema.insert(
        "$id".into(),
        "https://github.com/airlock-ai/airlock/policies/policy.schema.json".into(),
    );
    schema.to_value()
}

/// The index of the first host rule that makes the interception set fail to compile (on its own,
/// or with the rules before it: a duplicate host or prefix). Only called on the error path.
fn first_bad_rule(rules: &[HostRule]) -> usize {
    (0..rules.len())
        .find(|&i| InterceptionSet::compile(&rules[..=i]).is_err())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed schema is what the types generate. After changing a policy type, regenerate it
    /// with `AIRLOCK_WRITE_SCHEMA=1 cargo test -p airlock-agent --lib policy_schema`.
    #[test]
    fn policy_schema_matches_the_committed_file() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../policies/policy.schema.json"
        );
        let generated = serde_json::to_string_pretty(&json_schema()).unwrap() + "\n";
        if std::env::var_os("AIRLOCK_WRITE_SCHEMA").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "policies/policy.schema.json is out of date with the policy types; regenerate it with \
             AIRLOCK_WRITE_SCHEMA=1 cargo test -p airlock-agent --lib policy_schema"
        );
    }

    #[test]
    fn the_schema_describes_every_section_and_refuses_unknown_keys() {
        let s = json_schema();
        let props = s["properties"].as_object().unwrap();
        for key in [
            "schema",
            "name",
            "fail_mode",
            "hosts",
            "blocked",
            "upstream",
            "prices",
            "azure",
            "limits",
            "inventory",
            "pause",
        ] {
            assert!(props.contains_key(key), "{key} missing from the schema");
        }
        assert_eq!(s["additionalProperties"], serde_json::json!(false));
        assert!(
            props["fail_mode"].to_string().contains("open")
                || s["$defs"]["FailMode"].to_string().contains("closed")
        );
    }

    #[test]
    fn the_example_policies_compile_and_say_what_they_promise() {
        let load = |name: &str, text: &str| {
            Policy::from_toml(text, PolicySource::File(name.into()))
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let open = load(
            "permissive.toml",
            include_str!("../../../policies/examples/permissive.toml"),
        );
        assert_eq!(open.fail_mode, FailMode::Open);
        assert!(open.blocked.is_empty());
        assert!(open.hosts.lookup("api.openai.com").is_some());
        let closed = load(
            "locked-down.toml",
            include_str!("../../../policies/examples/locked-down.toml"),
        );
        assert_eq!(closed.fail_mode, FailMode::Closed);
        assert!(closed.blocked.is_blocked("chat.deepseek.com"));
        assert!(closed.blocked.is_blocked("beta.character.ai"));
        // Gateway only: every intercepted host is sent to the gateway.
        for e in closed.hosts.entries() {
            let host = e.pattern.display();
            assert_eq!(
                closed.upstream.overrides[&host].address, "llm-gateway.acme.example:443",
                "{host} must go to the gateway"
            );
        }
    }

    #[test]
    fn a_bad_blocked_entry_is_located() {
        let e = error_of("schema = 1\n[blocked]\nhosts = [\"ok.example\", \"*.*.bad\"]\n");
        assert!(e.contains("p.toml:3:24: blocked.hosts[1]:"), "{e}");
    }

    fn error_of(text: &str) -> String {
        Policy::from_toml(text, PolicySource::File("p.toml".into()))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_misspelt_key_is_named_with_its_place_and_the_nearest_valid_key() {
        let e = error_of("schema = 1\nhots = []\n");
        assert!(
            e.starts_with("invalid policy p.toml:2:1: hots: unknown field `hots`"),
            "{e}"
        );
        assert!(e.contains("help: did you mean `hosts`?"), "{e}");
        let e = error_of(
            "schema = 1\n[[hosts]]\nhost = \"a.example\"\nprovider = \"openai\"\n\n[[hosts]]\nhost = \"b.example\"\nprovder = \"openai\"\n",
        );
        assert!(
            e.starts_with("invalid policy p.toml:8:1: hosts[1].provder:"),
            "{e}"
        );
        assert!(e.contains("did you mean `provider`?"), "{e}");
        let e = error_of("schema = 1\n[upstream]\nhttp2 = true\npool_idle_timeout = 3\n");
        assert!(e.contains("p.toml:4:1: upstream.pool_idle_timeout:"), "{e}");
        assert!(e.contains("did you mean `pool_idle_timeout_secs`?"), "{e}");
    }

    #[test]
    fn a_misspelt_value_suggests_the_valid_ones() {
        let e = error_of(
            "schema = 1\n[[hosts]]\nhost = \"a.example\"\nprovider = \"openai\"\nbilling = \"subscripton\"\n",
        );
        assert!(e.contains("p.toml:5:11: hosts[0].billing:"), "{e}");
        assert!(e.contains("did you mean `subscription`?"), "{e}");
    }

    #[test]
    fn compile_errors_name_the_key_and_its_line() {
        let e = error_of(
            "schema = 1\n[[hosts]]\nhost = \"a.example\"\nprovider = \"openai\"\n\n[[hosts]]\nhost = \"a.example\"\nprovider = \"openai\"\n",
        );
        assert!(
            e.starts_with(
                "invalid policy p.toml:6:1: hosts[1]: host \"a.example\" is listed twice"
            ),
            "{e}"
        );
        let e = error_of(
            "schema = 1\n\n[upstream.overrides.\"api.openai.com\"]\naddress = \"nowhere\"\n",
        );
        assert!(e.contains("p.toml:4:1: upstream.overrides.\"api.openai.com\".address: address \"nowhere\" must be host:port"), "{e}");
        let e = error_of("schema = 2\n");
        assert!(
            e.starts_with("invalid policy p.toml:1:1: schema: schema 2 is not supported"),
            "{e}"
        );
        let e = error_of("schema = 1\n[limits]\nmax_request_body_mib = 0\n");
        assert!(
            e.contains("p.toml:3:1: limits.max_request_body_mib:"),
            "{e}"
        );
        // A bundle's policy comes as JSON: no positions, the same key paths.
        let e = Policy::from_json(
            serde_json::json!({"schema": 1, "upstream": {"proxy": "socks5://x:1"}}),
            PolicySource::Bundle("test".into()),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "invalid policy bundle from test: upstream.proxy: \"socks5://x:1\" must be an http:// URL such as \"http://proxy.corp:3128\""
        );
    }

    #[test]
    fn embedded_default_covers_the_major_providers() {
        let p = Policy::embedded().unwrap();
        for (host, provider) in [
            ("api.openai.com", "openai"),
            ("api.anthropic.com", "anthropic"),
            ("generativelanguage.googleapis.com", "gemini"),
            ("myres.openai.azure.com", "azure"),
            ("api.mistral.ai", "mistral"),
            ("api.groq.com", "groq"),
            ("openrouter.ai", "openrouter"),
            ("api.deepseek.com", "deepseek"),
            ("api.x.ai", "xai"),
            ("api.together.xyz", "together"),
            ("chatgpt.com", "chatgpt"),
            ("cloudcode-pa.googleapis.com", "gemini_code_assist"),
            ("api.githubcopilot.com", "github_copilot"),
            ("api.enterprise.githubcopilot.com", "github_copilot"),
        ] {
            let e = p
                .hosts
                .lookup(host)
                .unwrap_or_else(|| panic!("{host} not intercepted"));
            assert_eq!(e.provider, provider);
        }
        assert!(p.hosts.lookup("example.com").is_none());
        assert!(
            p.hosts.lookup("openai.azure.com").is_none(),
            "wildcard needs a label"
        );
    }

    #[test]
    fn unknown_fields_are_refused_with_the_field_name() {
        let e = Policy::from_toml("schema = 1\nbudget = 5\n", PolicySource::Embedded).unwrap_err();
        assert!(e.to_string().contains("budget"), "{e}");
    }

    #[test]
    fn unknown_provider_needs_an_api() {
        let e = Policy::from_toml(
            "schema = 1\n[[hosts]]\nhost = \"llm.corp\"\nprovider = \"corp\"\n",
            PolicySource::Embedded,
        )
        .unwrap_err();
        assert!(e.to_string().contains("api = "), "{e}");
        Policy::from_toml(
            "schema = 1\n[[hosts]]\nhost = \"llm.corp\"\nprovider = \"corp\"\napi = \"openai\"\n",
            PolicySource::Embedded,
        )
        .unwrap();
    }

    #[test]
    fn bad_override_address_is_explained() {
        let e = Policy::from_toml(
            "schema = 1\n[upstream.overrides.\"api.openai.com\"]\naddress = \"127.0.0.1\"\n",
            PolicySource::Embedded,
        )
        .unwrap_err();
        assert!(e.to_string().contains("host:port"), "{e}");
    }

    #[test]
    fn prices_azure_and_stream_usage_parse() {
        let p = Policy::from_toml(
            "schema = 1\n[[hosts]]\nhost = \"api.openai.com\"\nprovider = \"openai\"\nstream_usage = \"off\"\n\
             [prices.\"openai/my-model\"]\ninput = 1.0\noutput = 2.0\n[azure.deployments]\nprod = \"gpt-4o\"\n",
            PolicySource::Embedded,
        )
        .unwrap();
        assert_eq!(
            p.hosts.lookup("api.openai.com").unwrap().stream_usage,
            StreamUsage::Off
        );
        assert_eq!(p.azure.deployments["prod"], "gpt-4o");
        let e = Policy::from_toml(
            "schema = 1\n[prices.gpt]\ninput = 1.0\noutput = 1.0\n",
            PolicySource::Embedded,
        )
        .unwrap_err();
        assert!(e.to_string().contains("provider/model"), "{e}");
        let e = Policy::from_toml(
            "schema = 1\n[prices.\"a/b\"]\ninput = -1.0\noutput = 1.0\n",
            PolicySource::Embedded,
        )
        .unwrap_err();
        assert!(e.to_string().contains("non-negative"), "{e}");
        let e = Policy::from_toml(
            "schema = 1\n[prices.\"a/b\"]\ninput = 1.0\noutput = 1.0\ncache_read = -2.0\n",
            PolicySource::Embedded,
        )
        .unwrap_err();
        assert!(e.to_string().contains("cache_read"), "{e}");
    }

    #[test]
    fn path_scopes_and_billing_parse_and_bad_prefixes_are_explained() {
        let p = Policy::from_toml(
            "schema = 1\n[[hosts]]\nhost = \"chatgpt.com\"\nprovider = \"chatgpt\"\n\
             paths = [\"/backend-api/codex/\"]\nbilling = \"subscription\"\n",
            PolicySource::Embedded,
        )
        .unwrap();
        let e = p.hosts.lookup("chatgpt.com").unwrap();
        assert_eq!(e.billing, Billing::Subscription);
        assert_eq!(e.paths.prefixes(), ["/backend-api/codex/"]);
        let e = Policy::from_toml(
            "schema = 1\n[[hosts]]\nhost = \"chatgpt.com\"\nprovider = \"chatgpt\"\npaths = [\"codex\"]\n",
            PolicySource::Embedded,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("path prefix \"codex\" does not start with \"/\""),
            "{e}"
        );
        let e = Policy::from_toml(
            "schema = 1\n[[hosts]]\nhost = \"x.example\"\nprovider = \"openai\"\nbilling = \"free\"\n",
            PolicySource::Embedded,
        )
        .unwrap_err();
        assert!(e.to_string().contains("free"), "{e}");
    }

    #[test]
    fn future_schema_is_refused() {
        let e = Policy::from_toml("schema = 2\n", PolicySource::Embedded).unwrap_err();
        assert!(e.to_string().contains("upgrade airlockd"), "{e}");
    }
}
