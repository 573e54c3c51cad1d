//! The AI app list behind the shadow-AI inventory: the shipped `policies/ai-domains.toml` (compiled
//! in), trimmed and extended by the policy's `[inventory]` section, compiled into a suffix matcher
//! that names the app and category of a host. Lookups walk the host's labels from the longest suffix
//! down, so they cost one hash probe per label and the most specific domain wins. It owns the list's
//! format and validation; it must not decide what happens to a matched connection (the proxy and
//! [`crate::inventory`] do).

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The shipped list (also at `policies/ai-domains.toml`).
pub const AI_DOMAINS_TOML: &str = include_str!("../../../policies/ai-domains.toml");

/// What kind of AI app a domain belongs to. A fixed set, so reports can group and filter on it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// General chat assistants.
    Chat,
    /// Coding assistants, AI IDEs and app builders.
    Coding,
    /// Model providers' APIs and inference platforms.
    ModelApi,
    /// Model hubs and registries.
    ModelHub,
    /// Backends of AI browser extensions and AI browsers.
    Extension,
    /// Image generators and editors.
    Image,
    /// Voice, speech and music.
    Audio,
    /// Video and avatar generators.
    Video,
    /// AI search and research assistants.
    Search,
    /// Writing, rewriting and translation.
    Writing,
    /// Agent platforms, builders and automation.
    Agents,
    /// Meeting notes, slides, notes and office assistants.
    Productivity,
}

impl Category {
    /// The name used in the list, reports and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Chat => "chat",
            Category::Coding => "coding",
            Category::ModelApi => "model_api",
            Category::ModelHub => "model_hub",
            Category::Extension => "extension",
            Category::Image => "image",
            Category::Audio => "audio",
            Category::Video => "video",
            Category::Search => "search",
            Category::Writing => "writing",
            Category::Agents => "agents",
            Category::Productivity => "productivity",
        }
    }
}

/// One app and the domains it uses, as written in the list or in a policy.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppRule {
    /// The app's name as people know it ("ChatGPT", "Cursor").
    pub name: String,
    /// Its category.
    pub category: Category,
    /// Domains it uses; each also matches every host under it.
    pub domains: Vec<String>,
}

/// The shipped list's file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListDocument {
    schema: u32,
    #[serde(default)]
    app: Vec<AppRule>,
}

/// The policy's `[inventory]` section.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryPolicy {
    /// Record tunnelled connections to AI apps at all (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Start from the shipped list (default true); `false` uses only this policy's apps.
    #[serde(default = "default_true")]
    pub builtin: bool,
    /// Domains to drop from the shipped list (exactly as listed there), e.g. a sanctioned tool.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Apps to add; a domain the shipped list also has takes this entry's name and category.
    #[serde(default)]
    pub app: Vec<AppRule>,
}

fn default_true() -> bool {
    true
}

impl Default for InventoryPolicy {
    fn default() -> Self {
        InventoryPolicy {
            enabled: true,
            builtin: true,
            ignore: Vec::new(),
            app: Vec::new(),
        }
    }
}

/// An app a host belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AiApp {
    /// Its name.
    pub name: String,
    /// Its category.
    pub category: Category,
}

/// A host's match: the app and the listed domain that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match<'a> {
    /// The app.
    pub app: &'a AiApp,
    /// The listed domain (a suffix of the host, or the host itself).
    pub domain: &'a str,
}

/// The compiled list.
#[derive(Debug, Clone, Default)]
pub struct AiDomains {
    apps: Arc<Vec<AiApp>>,
    by_domain: Arc<HashMap<String, usize>>,
    enabled: bool,
}

/// Whether `d` is a lower-case DNS name without wildcards, ports or paths.
fn valid_domain(d: &str) -> bool {
    d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Adds `rules` to the list, refusing duplicates within them; a domain already present from an
/// earlier source is taken over when `replace`.
fn add(
    apps: &mut Vec<AiApp>,
    by_domain: &mut HashMap<String, usize>,
    rules: &[AppRule],
    origin: &str,
    replace: bool,
) -> Result<(), String> {
    let mut here: HashMap<String, &str> = HashMap::new();
    for rule in rules {
        let name = rule.name.trim();
        if name.is_empty() || name.len() > 80 {
            return Err(format!(
                "{origin}: an app needs a name of 1 to 80 characters (got {:?})",
                rule.name
            ));
        }
        if rule.domains.is_empty() {
            return Err(format!("{origin}: app {name:?} lists no domains"));
        }
        let index = apps.len();
        apps.push(AiApp {
            name: name.to_string(),
            category: rule.category,
        });
        for raw in &rule.domains {
            let d = raw.trim().trim_end_matches('.').to_ascii_lowercase();
            if !valid_domain(&d) {
                return Err(format!(
                    "{origin}: app {name:?}: {raw:?} is not a domain like \"claude.ai\" (no scheme, port, \
                     path or wildcard: every domain already matches the hosts under it)"
                ));
            }
            if let Some(other) = here.insert(d.clone(), name) {
                return Err(format!(
                    "{origin}: domain {d:?} is listed twice (apps {other:?} and {name:?}); keep one"
                ));
            }
            if by_domain.contains_key(&d) && !replace {
                continue;
            }
            by_domain.insert(d, index);
        }
    }
    Ok(())
}

impl AiDomains {
    /// The shipped list with the policy's changes applied.
    pub fn compile(policy: &InventoryPolicy) -> Result<AiDomains, String> {
        let mut apps = Vec::new();
        let mut by_domain = HashMap::new();
        if policy.builtin {
            let shipped = Self::shipped_compiled()?;
            if policy.ignore.is_empty() && policy.app.is_empty() {
                // The common case shares the compiled shipped list (every policy swap compiles one).
                return Ok(AiDomains {
                    enabled: policy.enabled,
                    ..shipped.clone()
                });
            }
            apps = shipped.apps.as_ref().clone();
            by_domain = shipped.by_domain.as_ref().clone();
            for raw in &policy.ignore {
                let d = raw.trim().trim_end_matches('.').to_ascii_lowercase();
                if by_domain.remove(&d).is_none() {
                    return Err(format!(
                        "inventory.ignore: {raw:?} is not in the shipped AI domain list (see policies/ai-domains.toml); \
                         ignore takes domains exactly as listed there"
                    ));
                }
            }
        } else if !policy.ignore.is_empty() {
            return Err(
                "inventory.ignore has nothing to drop when inventory.builtin = false".into(),
            );
        }
        add(
            &mut apps,
            &mut by_domain,
            &policy.app,
            "inventory.app",
            true,
        )?;
        Ok(AiDomains {
            apps: Arc::new(apps),
            by_domain: Arc::new(by_domain),
            enabled: policy.enabled,
        })
    }

    /// The shipped list, parsed and compiled once per process.
    fn shipped_compiled() -> Result<&'static AiDomains, String> {
        static SHIPPED: std::sync::OnceLock<Result<AiDomains, String>> = std::sync::OnceLock::new();
        SHIPPED
            .get_or_init(|| {
                let doc = Self::shipped()?;
                let mut apps = Vec::new();
                let mut by_domain = HashMap::new();
                add(
                    &mut apps,
                    &mut by_domain,
                    &doc.app,
                    "policies/ai-domains.toml",
                    false,
                )?;
                Ok(AiDomains {
                    apps: Arc::new(apps),
                    by_domain: Arc::new(by_domain),
                    enabled: true,
                })
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    fn shipped() -> Result<ListDocument, String> {
        let doc: ListDocument = toml::from_str(AI_DOMAINS_TOML)
            .map_err(|e| format!("policies/ai-domains.toml: {e}"))?;
        if doc.schema != 1 {
            return Err(format!(
                "policies/ai-domains.toml: schema {} is not supported (this agent reads schema 1)",
                doc.schema
            ));
        }
        Ok(doc)
    }

    /// Whether tunnelled connections are recorded at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// How many domains are listed.
    pub fn len(&self) -> usize {
        self.by_domain.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }

    /// The app `host` belongs to (a normalised host: lower case, no port, no trailing dot), by the
    /// longest listed domain that is the host or a suffix of it at a label boundary.
    pub fn lookup(&self, host: &str) -> Option<Match<'_>> {
        let mut rest = host;
        loop {
            if let Some((d, &i)) = self.by_domain.get_key_value(rest) {
                return self.apps.get(i).map(|app| Match { app, domain: d });
            }
            rest = rest.split_once('.')?.1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> AiDomains {
        AiDomains::compile(&InventoryPolicy::default()).unwrap()
    }

    #[test]
    fn the_shipped_list_parses_without_duplicates_and_has_a_few_hundred_domains() {
        let doc = AiDomains::shipped().unwrap();
        let mut seen = std::collections::HashSet::new();
        let mut categories = std::collections::HashSet::new();
        for app in &doc.app {
            categories.insert(app.category);
            for d in &app.domains {
                assert!(valid_domain(d), "{d:?} in {}", app.name);
                assert!(seen.insert(d.clone()), "{d} is listed twice");
            }
        }
        assert!(seen.len() >= 300, "only {} domains", seen.len());
        assert!(doc.app.len() >= 150, "only {} apps", doc.app.len());
        // Every category of the fixed set is used, so none is dead.
        assert_eq!(categories.len(), 12, "{categories:?}");
        assert_eq!(shipped().len(), seen.len());
    }

    #[test]
    fn a_category_outside_the_fixed_set_is_refused() {
        let e = toml::from_str::<ListDocument>(
            "schema = 1\n[[app]]\nname = \"X\"\ncategory = \"crypto\"\ndomains = [\"x.example\"]\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("crypto"), "{e}");
    }

    #[test]
    fn suffix_rules_match_subdomains_and_the_longest_wins() {
        let l = shipped();
        let m = l.lookup("claude.ai").unwrap();
        assert_eq!(
            (m.app.name.as_str(), m.app.category),
            ("Claude", Category::Chat)
        );
        assert_eq!(l.lookup("a.b.claude.ai").unwrap().domain, "claude.ai");
        assert_eq!(l.lookup("api.openai.com").unwrap().app.name, "OpenAI API");
        assert_eq!(l.lookup("cdn.openai.com").unwrap().app.name, "OpenAI");
        assert_eq!(l.lookup("chatgpt.com").unwrap().app.name, "ChatGPT");
        assert_eq!(
            l.lookup("api.individual.githubcopilot.com")
                .unwrap()
                .app
                .category,
            Category::Coding
        );
        // A label boundary is required: "notclaude.ai" is not Claude, and a TLD alone matches nothing.
        assert!(l.lookup("notclaude.ai").is_none());
        assert!(l.lookup("ai").is_none());
        assert!(l.lookup("example.com").is_none());
        assert!(l.lookup("github.com").is_none(), "too broad to list");
    }

    #[test]
    fn a_policy_adds_apps_overrides_shipped_ones_and_drops_domains() {
        let policy: InventoryPolicy = toml::from_str(
            "ignore = [\"grammarly.com\"]\n\
             [[app]]\nname = \"Acme GPT\"\ncategory = \"chat\"\ndomains = [\"gpt.acme.example\"]\n\
             [[app]]\nname = \"Sanctioned Claude\"\ncategory = \"chat\"\ndomains = [\"claude.ai\"]\n",
        )
        .unwrap();
        let l = AiDomains::compile(&policy).unwrap();
        assert_eq!(
            l.lookup("eu.gpt.acme.example").unwrap().app.name,
            "Acme GPT"
        );
        assert_eq!(l.lookup("claude.ai").unwrap().app.name, "Sanctioned Claude");
        assert!(l.lookup("app.grammarly.com").is_none());
        assert!(
            l.lookup("grammarly.io").is_some(),
            "only the named domain goes"
        );

        let only: InventoryPolicy = toml::from_str(
            "builtin = false\n[[app]]\nname = \"A\"\ncategory = \"agents\"\ndomains = [\"a.example\"]\n",
        )
        .unwrap();
        let l = AiDomains::compile(&only).unwrap();
        assert_eq!(l.len(), 1);
        assert!(l.lookup("claude.ai").is_none());
    }

    #[test]
    fn bad_policy_entries_are_explained() {
        let bad = |text: &str| {
            AiDomains::compile(&toml::from_str::<InventoryPolicy>(text).unwrap()).unwrap_err()
        };
        let e = bad("[[app]]\nname = \"A\"\ncategory = \"chat\"\ndomains = [\"*.a.example\"]\n");
        assert!(e.contains("not a domain"), "{e}");
        let e = bad(
            "[[app]]\nname = \"A\"\ncategory = \"chat\"\ndomains = [\"https://a.example/x\"]\n",
        );
        assert!(e.contains("not a domain"), "{e}");
        let e = bad(
            "[[app]]\nname = \"A\"\ncategory = \"chat\"\ndomains = [\"a.example\"]\n\
             [[app]]\nname = \"B\"\ncategory = \"chat\"\ndomains = [\"A.example\"]\n",
        );
        assert!(e.contains("listed twice"), "{e}");
        let e = bad("ignore = [\"not-listed.example\"]\n");
        assert!(e.contains("not in the shipped"), "{e}");
        let e = bad("[[app]]\nname = \"\"\ncategory = \"chat\"\ndomains = [\"a.example\"]\n");
        assert!(e.contains("name"), "{e}");
    }

    #[test]
    fn disabled_inventory_keeps_the_list_but_says_so() {
        let l = AiDomains::compile(&toml::from_str("enabled = false\n").unwrap()).unwrap();
        assert!(!l.enabled());
        assert!(shipped().enabled());
    }
}
