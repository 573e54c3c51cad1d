//! MCP servers as AI tools configure them, read from the parsed config and reduced to what is safe to
//! show: the server's name, transport, program, arguments with anything secret-looking replaced, the
//! URL without credentials, query or secret-looking path segments, and the *names* of the environment
//! variables and headers it is given — never their values. It owns that reduction; it must not read
//! files (`configs` does) or print (`render` does).

use serde::Serialize;
use serde_json::Value;

/// Most servers read from one file; the rest are counted.
pub const MAX_SERVERS: usize = 200;
/// Most arguments shown per server.
const MAX_ARGS: usize = 32;
/// Most environment or header names shown per server.
const MAX_NAMES: usize = 64;
/// Longest text kept from any one field.
const MAX_TEXT: usize = 200;
/// What replaces a value that must not be shown.
pub const REDACTED: &str = "<redacted>";

/// One configured MCP server, safe to print.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct McpServer {
    /// Its name in the config.
    pub name: String,
    /// `stdio`, `http` or `sse`.
    pub transport: String,
    /// The program it runs (stdio).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Its arguments, secret-looking ones replaced.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Its URL (http, sse), without credentials or query.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Names of the environment variables it is given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Names of the headers it sends.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
    /// Whether the config turns it off.
    pub disabled: bool,
    /// Where in the file it sits, when not at the top (a Claude Code project path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// Servers found in one place of a file, and how many were left out past the cap.
#[derive(Debug, Default)]
pub struct Found {
    /// The servers.
    pub servers: Vec<McpServer>,
    /// Servers past [`MAX_SERVERS`].
    pub omitted: usize,
}

impl Found {
    fn push(&mut self, s: McpServer) {
        if self.servers.len() < MAX_SERVERS {
            self.servers.push(s);
        } else {
            self.omitted += 1;
        }
    }
}

fn cut(s: &str) -> String {
    if s.len() <= MAX_TEXT {
        return s.to_string();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Words in a flag or key name that mean its value is a credential.
const SECRET_WORDS: [&str; 11] = [
    "key",
    "token",
    "secret",
    "password",
    "passwd",
    "auth",
    "credential",
    "bearer",
    "cookie",
    "session",
    "pat",
];

/// Whether a flag or key name says its value is secret (`--api-key`, `GITHUB_TOKEN`, `authToken`).
fn secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    SECRET_WORDS.iter().any(|s| {
        // "pat" only as a whole word (not "path"); the others also inside camelCase ("apiKey").
        if *s == "pat" {
            words.contains(s)
        } else {
            lower.contains(s)
        }
    })
}

/// Whether a value looks like a credential by its shape: a known token prefix, or a long run of
/// letters and digits such as keys are made of.
pub fn looks_secret(v: &str) -> bool {
    const PREFIXES: [&str; 14] = [
        "sk-",
        "sk_",
        "pk_",
        "rk_",
        "ghp_",
        "gho_",
        "ghs_",
        "ghu_",
        "github_pat_",
        "glpat-",
        "xox",
        "AKIA",
        "AIza",
        "Bearer ",
    ];
    if PREFIXES.iter().any(|p| v.starts_with(p)) {
        return true;
    }
    let token_chars = v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '=' | '~'));
    let has_digit = v.chars().any(|c| c.is_ascii_digit());
    let has_alpha = v.chars().any(|c| c.is_ascii_alphabetic());
    token_chars && has_digit && has_alpha && v.len() >= 20
}

/// Arguments with secrets replaced: values of secret-named flags (`--api-key=X`, `--token X`),
/// secret-looking values, and credentials in URL arguments.
pub fn safe_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut hide_next = false;
    for a in args.iter().take(MAX_ARGS) {
        if hide_next {
            hide_next = false;
            out.push(REDACTED.to_string());
            continue;
        }
        if let Some((flag, value)) = a.split_once('=') {
            if (flag.starts_with('-') && secret_name(flag)) || looks_secret(value) {
                out.push(format!("{}={REDACTED}", cut(flag)));
                continue;
            }
        }
        if a.starts_with('-') && secret_name(a) && !a.contains('=') {
            hide_next = true;
            out.push(cut(a));
            continue;
        }
        if a.contains("://") {
            out.push(safe_url(a));
            continue;
        }
        if looks_secret(a) {
            out.push(REDACTED.to_string());
            continue;
        }
        out.push(cut(a));
    }
    if args.len() > MAX_ARGS {
        out.push(format!("… {} more", args.len() - MAX_ARGS));
    }
    out
}

/// A URL without user info, query or fragment, and with secret-looking path segments replaced
/// (some remote MCP servers take their key in the path).
pub fn safe_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s, r),
        None => return REDACTED.to_string(),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host = authority.rsplit('@').next().unwrap_or("");
    let path: Vec<String> = path
        .split('/')
        .map(|seg| {
            if looks_secret(seg) {
                REDACTED.to_string()
            } else {
                seg.to_string()
            }
        })
        .collect();
    cut(&format!("{scheme}://{host}{}", path.join("/")))
}

/// The keys of a JSON object, capped.
fn names(v: Option<&Value>) -> Vec<String> {
    let mut n: Vec<String> = v
        .and_then(Value::as_object)
        .map(|o| o.keys().take(MAX_NAMES).map(|k| cut(k)).collect())
        .unwrap_or_default();
    n.sort();
    n
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(cut)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .take(MAX_ARGS + 1)
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One server from the JSON shape every JSON-configured tool shares (Claude, Cursor, VS Code,
/// Windsurf, Gemini): `command`/`args`/`env` for stdio, `url` (or Windsurf's `serverUrl`, Gemini's
/// `httpUrl`) and `headers` for remote servers, `type`/`transport` naming the transport.
pub fn json_server(name: &str, v: &Value, scope: Option<&str>) -> McpServer {
    let url = ["url", "serverUrl", "httpUrl"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str));
    let declared = ["type", "transport"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .map(str::to_ascii_lowercase);
    let transport = match (declared.as_deref(), url, v.get("httpUrl").is_some()) {
        (Some("sse"), _, _) => "sse",
        (Some("http" | "streamable-http" | "streamablehttp"), _, _) | (_, _, true) => "http",
        (Some("stdio"), _, _) => "stdio",
        (_, Some(u), _) if u.trim_end_matches('/').ends_with("/sse") => "sse",
        (_, Some(_), _) => "http",
        _ => "stdio",
    };
    let disabled = v.get("disabled").and_then(Value::as_bool).unwrap_or(false)
        || v.get("enabled").and_then(Value::as_bool) == Some(false);
    McpServer {
        name: cut(name),
        transport: transport.into(),
        command: text(v.get("command")),
        args: safe_args(&strings(v.get("args"))),
        url: url.map(safe_url),
        env: names(v.get("env")),
        headers: names(v.get("headers")),
        disabled,
        scope: scope.map(cut),
    }
}

/// The servers of a JSON object mapping names to server configs (`mcpServers`, `servers`).
pub fn json_servers(map: Option<&Value>, scope: Option<&str>, found: &mut Found) {
    if let Some(map) = map.and_then(Value::as_object) {
        for (name, v) in map {
            if v.is_object() {
                found.push(json_server(name, v, scope));
            }
        }
    }
}

/// Codex's `[mcp_servers.<name>]` tables: `command`/`args`/`env` for stdio, `url` with
/// `bearer_token_env_var`, `http_headers` and `env_http_headers` for streamable HTTP.
pub fn codex_servers(doc: &toml::Value, found: &mut Found) {
    let Some(map) = doc.get("mcp_servers").and_then(toml::Value::as_table) else {
        return;
    };
    for (name, v) in map {
        let Some(t) = v.as_table() else { continue };
        let s = |k: &str| t.get(k).and_then(toml::Value::as_str);
        let keys = |k: &str| -> Vec<String> {
            t.get(k)
                .and_then(toml::Value::as_table)
                .map(|m| m.keys().take(MAX_NAMES).map(|k| cut(k)).collect())
                .unwrap_or_default()
        };
        let args: Vec<String> = t
            .get("args")
            .and_then(toml::Value::as_array)
            .map(|a| {
                a.iter()
                    .take(MAX_ARGS + 1)
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let mut env = keys("env");
        if let Some(vars) = t.get("env_vars").and_then(toml::Value::as_array) {
            env.extend(vars.iter().filter_map(toml::Value::as_str).map(cut));
        }
        env.sort();
        env.dedup();
        let mut headers = keys("http_headers");
        headers.extend(keys("env_http_headers"));
        if let Some(var) = s("bearer_token_env_var") {
            // The variable's name, which is not the token itself.
            headers.push(format!("Authorization (from ${})", cut(var)));
        }
        headers.sort();
        headers.dedup();
        found.push(McpServer {
            name: cut(name),
            transport: if s("url").is_some() { "http" } else { "stdio" }.into(),
            command: s("command").map(cut),
            args: safe_args(&args),
            url: s("url").map(safe_url),
            env,
            headers,
            disabled: t.get("enabled").and_then(toml::Value::as_bool) == Some(false),
            scope: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stdio_and_remote_servers_are_read_with_names_only() {
        let v = json!({
            "github": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"],
                       "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_abcdefghijklmnopqrstuvwx0123"}},
            "zapier": {"serverUrl": "https://actions.zapier.com/mcp/sk-ak-9f8e7d6c5b4a39281706/sse",
                       "headers": {"Authorization": "Bearer s3cr3t-t0ken-value-123456"}},
            "docs": {"type": "http", "url": "https://user:pw@mcp.example.com/mcp?key=abc", "disabled": true},
        });
        let mut f = Found::default();
        json_servers(Some(&v), None, &mut f);
        let by = |n: &str| f.servers.iter().find(|s| s.name == n).unwrap().clone();
        let g = by("github");
        assert_eq!(g.transport, "stdio");
        assert_eq!(g.command.as_deref(), Some("npx"));
        assert_eq!(g.args, ["-y", "@modelcontextprotocol/server-github"]);
        assert_eq!(g.env, ["GITHUB_PERSONAL_ACCESS_TOKEN"]);
        let z = by("zapier");
        assert_eq!(z.transport, "sse");
        assert_eq!(
            z.url.as_deref(),
            Some("https://actions.zapier.com/mcp/<redacted>/sse")
        );
        assert_eq!(z.headers, ["Authorization"]);
        let d = by("docs");
        assert_eq!(d.url.as_deref(), Some("https://mcp.example.com/mcp"));
        assert!(d.disabled);
        let all = serde_json::to_string(&f.servers).unwrap();
        for secret in ["ghp_", "s3cr3t", "sk-ak", "pw@", "key=abc"] {
            assert!(!all.contains(secret), "{secret} leaked: {all}");
        }
    }

    #[test]
    fn secret_arguments_are_replaced_and_the_rest_kept() {
        let args: Vec<String> = [
            "-y",
            "@upstash/context7-mcp",
            "--api-key",
            "ctx7sk-123",
            "--token=abc",
            "--stdio",
            "--path",
            "/home/me/src",
            "AKIAIOSFODNN7EXAMPLE",
            "https://me:pw@example.com/x?sig=1",
            "--port=8080",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            safe_args(&args),
            [
                "-y",
                "@upstash/context7-mcp",
                "--api-key",
                REDACTED,
                "--token=<redacted>",
                "--stdio",
                "--path",
                "/home/me/src",
                REDACTED,
                "https://example.com/x",
                "--port=8080",
            ]
        );
        let many: Vec<String> = (0..40).map(|i| format!("a{i}")).collect();
        let out = safe_args(&many);
        assert_eq!(out.len(), MAX_ARGS + 1);
        assert_eq!(out.last().map(String::as_str), Some("… 8 more"));
    }

    #[test]
    fn shapes_that_look_like_keys_are_recognised() {
        for s in [
            "sk-proj-abc",
            "xoxb-1-2",
            "0123456789abcdefABCDEF",
            "github_pat_11AAA",
        ] {
            assert!(looks_secret(s), "{s}");
        }
        for s in [
            "server-filesystem",
            "@modelcontextprotocol/server-github",
            "/usr/bin/node",
            "8080",
            "context7",
        ] {
            assert!(!looks_secret(s), "{s}");
        }
        assert!(secret_name("--api-key") && secret_name("apiKey") && secret_name("GITHUB_PAT"));
        assert!(!secret_name("--path") && !secret_name("--port"));
    }

    #[test]
    fn codex_tables_are_read() {
        let doc: toml::Value = toml::from_str(
            "model = \"gpt-5\"\n\
             [mcp_servers.figma]\nurl = \"https://mcp.figma.com/mcp\"\nbearer_token_env_var = \"FIGMA_OAUTH_TOKEN\"\n\
             http_headers = { \"X-Figma-Region\" = \"us-east-1\" }\n\
             [mcp_servers.ctx]\ncommand = \"npx\"\nargs = [\"-y\", \"@upstash/context7-mcp\"]\nenabled = false\n\
             [mcp_servers.ctx.env]\nCTX_KEY = \"secret-value-1234567890\"\n",
        )
        .unwrap();
        let mut f = Found::default();
        codex_servers(&doc, &mut f);
        let figma = f.servers.iter().find(|s| s.name == "figma").unwrap();
        assert_eq!(figma.transport, "http");
        assert_eq!(
            figma.headers,
            ["Authorization (from $FIGMA_OAUTH_TOKEN)", "X-Figma-Region"]
        );
        let ctx = f.servers.iter().find(|s| s.name == "ctx").unwrap();
        assert_eq!((ctx.transport.as_str(), ctx.disabled), ("stdio", true));
        assert_eq!(ctx.env, ["CTX_KEY"]);
        assert!(!format!("{f:?}").contains("secret-value"));
    }

    #[test]
    fn server_lists_are_capped() {
        let mut map = serde_json::Map::new();
        for i in 0..MAX_SERVERS + 7 {
            map.insert(format!("s{i}"), json!({"command": "x"}));
        }
        let mut f = Found::default();
        json_servers(Some(&Value::Object(map)), None, &mut f);
        assert_eq!((f.servers.len(), f.omitted), (MAX_SERVERS, 7));
    }
}
