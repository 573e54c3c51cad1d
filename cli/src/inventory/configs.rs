//! The AI tools configured for the invoking user, from their own config files: Claude Desktop, Claude
//! Code (`~/.claude.json`, `~/.claude/settings.json`, the project's `.mcp.json`), Cursor, VS Code,
//! Windsurf, Codex and Gemini CLI, each file with the MCP servers it names. Files are read with
//! [`super::read`] (no symbolic links, bounded); a file that cannot be read or parsed is reported as
//! unreadable with the reason, never as an error of the command. Only names are kept from
//! credentials-bearing fields (see [`super::servers`]). It must not write to any of these files.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::read::{self, Contents};
use super::servers::{self, Found, McpServer};

/// Most Claude Code projects looked at in `~/.claude.json`.
const MAX_PROJECTS: usize = 500;

/// How a file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON with `mcpServers` at the top (Claude Desktop, `.mcp.json`, Cursor, Windsurf, Gemini CLI).
    McpServers,
    /// `~/.claude.json`: `mcpServers` at the top and per project under `projects.<path>`.
    ClaudeCode,
    /// `~/.claude/settings.json`: environment and helper settings, no servers.
    ClaudeSettings,
    /// Gemini CLI's `settings.json`: `mcpServers` and the sign-in method.
    Gemini,
    /// VS Code's user `settings.json` (JSON with comments): servers under `mcp.servers`.
    VsCodeSettings,
    /// VS Code's `mcp.json` (JSON with comments): servers under `servers`.
    VsCodeMcp,
    /// Codex's `config.toml`: `[mcp_servers.<name>]` tables.
    Codex,
}

/// One place a tool keeps its configuration.
#[derive(Debug, Clone)]
pub struct Location {
    /// The tool.
    pub tool: &'static str,
    /// The file.
    pub path: PathBuf,
    /// Its layout.
    pub format: Format,
}

/// What one config file says.
#[derive(Debug, Clone, Serialize)]
pub struct ToolFile {
    /// The tool.
    pub tool: &'static str,
    /// The file.
    pub path: PathBuf,
    /// `found`, `missing` or `unreadable`.
    pub state: &'static str,
    /// Why it is unreadable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The MCP servers it names.
    pub mcp_servers: Vec<McpServer>,
    /// Servers past the cap.
    #[serde(skip_serializing_if = "is_zero")]
    pub mcp_servers_omitted: usize,
    /// Other facts worth knowing (sign-in method, environment variable names), never values of
    /// credentials.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Where per-user application settings live: `~/.config` (or `$XDG_CONFIG_HOME`) on Linux,
/// `~/Library/Application Support` on macOS, `%APPDATA%` on Windows.
fn app_config_dir(home: &Path, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    if cfg!(target_os = "macos") {
        home.join("Library").join("Application Support")
    } else if cfg!(windows) {
        env("APPDATA").map_or_else(|| home.join("AppData").join("Roaming"), PathBuf::from)
    } else {
        env("XDG_CONFIG_HOME")
            .filter(|d| Path::new(d).is_absolute())
            .map_or_else(|| home.join(".config"), PathBuf::from)
    }
}

/// Every place looked at, for a user with home `home` working in `cwd`.
pub fn locations(home: &Path, cwd: &Path, env: &dyn Fn(&str) -> Option<String>) -> Vec<Location> {
    let config = app_config_dir(home, env);
    let codex_home = env("CODEX_HOME")
        .filter(|d| Path::new(d).is_absolute())
        .map_or_else(|| home.join(".codex"), PathBuf::from);
    let at = |tool, path: PathBuf, format| Location { tool, path, format };
    vec![
        at(
            "Claude Desktop",
            config.join("Claude").join("claude_desktop_config.json"),
            Format::McpServers,
        ),
        at("Claude Code", home.join(".claude.json"), Format::ClaudeCode),
        at(
            "Claude Code",
            home.join(".claude").join("settings.json"),
            Format::ClaudeSettings,
        ),
        at("Claude Code", cwd.join(".mcp.json"), Format::McpServers),
        at(
            "Cursor",
            home.join(".cursor").join("mcp.json"),
            Format::McpServers,
        ),
        at(
            "Cursor",
            cwd.join(".cursor").join("mcp.json"),
            Format::McpServers,
        ),
        at(
            "VS Code",
            config.join("Code").join("User").join("settings.json"),
            Format::VsCodeSettings,
        ),
        at(
            "VS Code",
            config.join("Code").join("User").join("mcp.json"),
            Format::VsCodeMcp,
        ),
        at(
            "VS Code",
            cwd.join(".vscode").join("mcp.json"),
            Format::VsCodeMcp,
        ),
        at(
            "Windsurf",
            home.join(".codeium")
                .join("windsurf")
                .join("mcp_config.json"),
            Format::McpServers,
        ),
        at("Codex", codex_home.join("config.toml"), Format::Codex),
        at(
            "Gemini CLI",
            home.join(".gemini").join("settings.json"),
            Format::Gemini,
        ),
        at(
            "Gemini CLI",
            cwd.join(".gemini").join("settings.json"),
            Format::Gemini,
        ),
    ]
}

/// Reads every location; a project file that is the user's own file (cwd = home) is read once.
pub fn scan(locations: &[Location]) -> Vec<ToolFile> {
    let mut seen: Vec<&Path> = Vec::new();
    let mut out = Vec::new();
    for loc in locations {
        if seen.contains(&loc.path.as_path()) {
            continue;
        }
        seen.push(loc.path.as_path());
        out.push(scan_one(loc));
    }
    out
}

/// Reads and parses one file.
pub fn scan_one(loc: &Location) -> ToolFile {
    let mut file = ToolFile {
        tool: loc.tool,
        path: loc.path.clone(),
        state: "found",
        reason: None,
        mcp_servers: Vec::new(),
        mcp_servers_omitted: 0,
        notes: Vec::new(),
    };
    let text = match read::read_config(&loc.path, read::MAX_FILE) {
        Contents::Missing => {
            file.state = "missing";
            return file;
        }
        Contents::Unreadable(why) => {
            file.state = "unreadable";
            file.reason = Some(why);
            return file;
        }
        Contents::Text(t) => t,
    };
    let mut found = Found::default();
    let parsed = match loc.format {
        Format::Codex => toml::from_str::<toml::Value>(&text)
            .map_err(|e| format!("is not valid TOML ({})", first_line(&e.to_string())))
            .map(|doc| {
                servers::codex_servers(&doc, &mut found);
                codex_notes(&doc, &mut file.notes);
            }),
        Format::VsCodeSettings | Format::VsCodeMcp => {
            parse_json(&super::jsonc::strip(&text)).map(|v| vscode(&v, loc.format, &mut found))
        }
        _ => parse_json(&text).map(|v| json_file(&v, loc.format, &mut found, &mut file.notes)),
    };
    if let Err(why) = parsed {
        file.state = "unreadable";
        file.reason = Some(why);
        return file;
    }
    file.mcp_servers = found.servers;
    file.mcp_servers_omitted = found.omitted;
    file
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// serde_json, whose nesting limit keeps a hostile file from exhausting the stack.
fn parse_json(text: &str) -> Result<Value, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("is not valid JSON ({e})"))?;
    if v.is_object() {
        Ok(v)
    } else {
        Err("is JSON but not an object".into())
    }
}

fn json_file(v: &Value, format: Format, found: &mut Found, notes: &mut Vec<String>) {
    match format {
        Format::ClaudeCode => {
            servers::json_servers(v.get("mcpServers"), None, found);
            if let Some(projects) = v.get("projects").and_then(Value::as_object) {
                for (path, p) in projects.iter().take(MAX_PROJECTS) {
                    servers::json_servers(p.get("mcpServers"), Some(path), found);
                }
                if projects.len() > MAX_PROJECTS {
                    notes.push(format!(
                        "only the first {MAX_PROJECTS} of {} projects were read",
                        projects.len()
                    ));
                }
            }
            if v.get("oauthAccount").is_some_and(Value::is_object) {
                notes.push("signed in with a Claude account".into());
            }
            if v.get("primaryApiKey").is_some() {
                notes.push("stores an API key (primaryApiKey)".into());
            }
        }
        Format::ClaudeSettings => {
            env_names(v.get("env"), notes);
            if v.get("apiKeyHelper").is_some() {
                notes.push("gets its API key from an apiKeyHelper command".into());
            }
            for key in ["enabledMcpjsonServers", "disabledMcpjsonServers"] {
                let list: Vec<String> = v
                    .get(key)
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .take(64)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                if !list.is_empty() {
                    notes.push(format!("{key}: {}", list.join(", ")));
                }
            }
        }
        Format::Gemini => {
            servers::json_servers(v.get("mcpServers"), None, found);
            let auth = v
                .pointer("/security/auth/selectedType")
                .or_else(|| v.get("selectedAuthType"))
                .and_then(Value::as_str);
            if let Some(a) = auth {
                notes.push(format!("signs in with {}", short(a)));
            }
        }
        _ => servers::json_servers(v.get("mcpServers"), None, found),
    }
}

fn vscode(v: &Value, format: Format, found: &mut Found) {
    let map = match format {
        Format::VsCodeSettings => v.pointer("/mcp/servers"),
        _ => v.get("servers"),
    };
    servers::json_servers(map, None, found);
}

fn codex_notes(doc: &toml::Value, notes: &mut Vec<String>) {
    for key in ["model_provider", "model", "preferred_auth_method"] {
        if let Some(v) = doc.get(key).and_then(toml::Value::as_str) {
            notes.push(format!("{key} = {}", short(v)));
        }
    }
    if let Some(providers) = doc.get("model_providers").and_then(toml::Value::as_table) {
        let names: Vec<&str> = providers.keys().map(String::as_str).take(32).collect();
        notes.push(format!("model providers: {}", names.join(", ")));
    }
}

fn env_names(env: Option<&Value>, notes: &mut Vec<String>) {
    if let Some(env) = env.and_then(Value::as_object) {
        let names: Vec<&str> = env.keys().map(String::as_str).take(64).collect();
        if !names.is_empty() {
            notes.push(format!("sets environment variables: {}", names.join(", ")));
        }
    }
}

/// A setting's value when it is a plain name (an auth method, a model), else a placeholder.
fn short(v: &str) -> String {
    if v.len() <= 64 && !servers::looks_secret(v) {
        v.to_string()
    } else {
        servers::REDACTED.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn every_tool_file_is_read_in_its_own_layout() {
        let home = tempfile::tempdir().unwrap();
        let cwd = tempfile::tempdir().unwrap();
        let h = home.path();
        let desktop = if cfg!(target_os = "macos") {
            "Library/Application Support/Claude/claude_desktop_config.json"
        } else {
            ".config/Claude/claude_desktop_config.json"
        };
        write(
            h,
            desktop,
            r#"{"mcpServers": {"fs": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]}}}"#,
        );
        write(
            h,
            ".claude.json",
            r#"{"mcpServers": {"user": {"type": "http", "url": "https://mcp.example.com/mcp"}},
            "projects": {"/home/me/app": {"mcpServers": {"local": {"command": "uvx", "args": ["mcp-server-git"]}}}},
            "oauthAccount": {"emailAddress": "me@example.com"}, "primaryApiKey": "sk-ant-api03-SECRET0123456789"}"#,
        );
        write(
            h,
            ".claude/settings.json",
            r#"{"env": {"ANTHROPIC_API_KEY": "sk-ant-SECRET9876543210abcdef"}, "apiKeyHelper": "~/bin/key.sh"}"#,
        );
        write(
            cwd.path(),
            ".mcp.json",
            r#"{"mcpServers": {"proj": {"command": "node", "args": ["server.js"]}}}"#,
        );
        write(
            h,
            ".cursor/mcp.json",
            r#"{"mcpServers": {"remote": {"url": "https://mcp.cursor.example/sse", "headers": {"Authorization": "Bearer SECRETcursor1234567890"}}}}"#,
        );
        let code = if cfg!(target_os = "macos") {
            "Library/Application Support/Code/User"
        } else {
            ".config/Code/User"
        };
        write(h, &format!("{code}/settings.json"), "{\n  // my settings\n  \"mcp\": {\"servers\": {\"gh\": {\"type\": \"stdio\", \"command\": \"docker\",},},},\n}");
        write(h, &format!("{code}/mcp.json"), "{\"servers\": {\"x\": {\"type\": \"sse\", \"url\": \"http://localhost:3000/sse\"}}, /* c */ \"inputs\": []}");
        write(
            h,
            ".codeium/windsurf/mcp_config.json",
            r#"{"mcpServers": {"zap": {"serverUrl": "https://actions.zapier.com/mcp/abcDEF1234567890ghijKLMN/sse"}}}"#,
        );
        write(h, ".codex/config.toml", "model = \"gpt-5-codex\"\n[mcp_servers.ctx]\ncommand = \"npx\"\nargs = [\"-y\", \"@upstash/context7-mcp\"]\n[mcp_servers.ctx.env]\nKEY = \"SECRETcodex1234567890abc\"\n");
        write(
            h,
            ".gemini/settings.json",
            r#"{"mcpServers": {"g": {"httpUrl": "https://g.example/mcp", "headers": {"X-Api-Key": "SECRETgem1234567890abcd"}}}, "security": {"auth": {"selectedType": "oauth-personal"}}}"#,
        );

        let files = scan(&locations(h, cwd.path(), &no_env));
        let get = |tool: &str, end: &str| {
            files
                .iter()
                .find(|f| f.tool == tool && f.path.ends_with(end))
                .unwrap_or_else(|| panic!("{tool} {end} missing from {files:#?}"))
        };
        let names = |f: &ToolFile| {
            f.mcp_servers
                .iter()
                .map(|s| s.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(get("Claude Desktop", "claude_desktop_config.json")),
            ["fs"]
        );
        let cc = get("Claude Code", ".claude.json");
        assert_eq!(names(cc), ["user", "local"]);
        assert_eq!(cc.mcp_servers[1].scope.as_deref(), Some("/home/me/app"));
        assert!(
            cc.notes.iter().any(|n| n.contains("signed in")),
            "{:?}",
            cc.notes
        );
        let settings = get("Claude Code", "settings.json");
        assert!(settings
            .notes
            .iter()
            .any(|n| n.contains("ANTHROPIC_API_KEY")));
        assert_eq!(names(get("Claude Code", ".mcp.json")), ["proj"]);
        assert_eq!(names(get("Cursor", ".cursor/mcp.json")), ["remote"]);
        assert_eq!(names(get("VS Code", "User/settings.json")), ["gh"]);
        let vs = get("VS Code", "User/mcp.json");
        assert_eq!(
            (vs.mcp_servers[0].transport.as_str(), vs.state),
            ("sse", "found")
        );
        assert_eq!(get("VS Code", ".vscode/mcp.json").state, "missing");
        let ws = get("Windsurf", "mcp_config.json");
        assert_eq!(
            ws.mcp_servers[0].url.as_deref(),
            Some("https://actions.zapier.com/mcp/<redacted>/sse")
        );
        let codex = get("Codex", "config.toml");
        assert_eq!(names(codex), ["ctx"]);
        assert!(codex.notes.contains(&"model = gpt-5-codex".to_string()));
        let gem = get("Gemini CLI", ".gemini/settings.json");
        assert_eq!(
            (
                gem.mcp_servers[0].transport.as_str(),
                gem.mcp_servers[0].headers.clone()
            ),
            ("http", vec!["X-Api-Key".to_string()])
        );
        assert!(gem
            .notes
            .contains(&"signs in with oauth-personal".to_string()));

        let all = serde_json::to_string(&files).unwrap();
        assert!(!all.contains("SECRET"), "a secret was kept: {all}");
        assert!(!all.contains("me@example.com"), "account details were kept");
    }

    #[test]
    fn broken_linked_and_huge_files_are_reported_not_fatal() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        write(h, ".cursor/mcp.json", "{\"mcpServers\": {\"a\": ");
        write(h, ".codex/config.toml", "[mcp_servers.x\ncommand = 1");
        write(h, ".gemini/settings.json", "[1, 2]");
        let real = write(
            h,
            "elsewhere.json",
            r#"{"mcpServers": {"hidden": {"command": "x"}}}"#,
        );
        #[cfg(unix)]
        std::os::unix::fs::symlink(&real, h.join(".claude.json")).unwrap();
        let big = "{\"mcpServers\": {}, \"pad\": \"".to_string()
            + &"x".repeat((read::MAX_FILE + 10) as usize)
            + "\"}";
        write(h, ".codeium/windsurf/mcp_config.json", &big);
        let deep = "[".repeat(100_000);
        write(h, ".mcp.json", &deep);

        let files = scan(&locations(h, h, &no_env));
        let state = |end: &str| {
            let f = files.iter().find(|f| f.path.ends_with(end)).unwrap();
            (
                f.state,
                f.reason.clone().unwrap_or_default(),
                f.mcp_servers.len(),
            )
        };
        let (s, why, _) = state(".cursor/mcp.json");
        assert_eq!(s, "unreadable");
        assert!(why.contains("not valid JSON"), "{why}");
        assert!(state(".codex/config.toml").1.contains("not valid TOML"));
        assert!(state(".gemini/settings.json").1.contains("not an object"));
        #[cfg(unix)]
        {
            let (s, why, n) = state(".claude.json");
            assert_eq!((s, n), ("unreadable", 0));
            assert!(why.contains("symbolic link"), "{why}");
        }
        assert!(
            state("mcp_config.json").1.contains("MiB"),
            "{:?}",
            state("mcp_config.json")
        );
        assert!(
            state(".mcp.json").1.contains("not valid JSON"),
            "deep nesting is refused, not a crash"
        );
        let _ = real;
    }

    #[test]
    fn environment_moves_codex_and_the_config_dir() {
        let env = |k: &str| match k {
            "CODEX_HOME" => Some("/opt/codex".to_string()),
            "XDG_CONFIG_HOME" => Some("/xdg".to_string()),
            _ => None,
        };
        let locs = locations(Path::new("/home/u"), Path::new("/w"), &env);
        assert!(locs
            .iter()
            .any(|l| l.path == Path::new("/opt/codex/config.toml")));
        if cfg!(target_os = "linux") {
            assert!(locs
                .iter()
                .any(|l| l.path == Path::new("/xdg/Claude/claude_desktop_config.json")));
        }
        assert!(locs.iter().any(|l| l.path == Path::new("/w/.mcp.json")));
    }
}
