//! `airlock inventory [--json]`: the AI apps this machine talks to and the AI tools configured on it.
//! The traffic side comes from the verified agent (`GET /airlock/v1/inventory`): each app × host with
//! its connection and request counts, whether the agent inspected it or only saw it tunnelled, and
//! the processes behind it. The configuration side is read here, as the invoking user, from the
//! tools' own files ([`configs`]). It prints names of credentials, never their values, and never
//! writes anything.

pub mod configs;
pub mod jsonc;
pub mod read;
pub mod servers;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use serde_json::{json, Value};

use crate::trust::{Agent, Verified};
use configs::ToolFile;

/// The user's home directory, from the environment the command runs in.
fn home_dir() -> Option<PathBuf> {
    let var = if cfg!(windows) { "USERPROFILE" } else { "HOME" };
    std::env::var_os(var)
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// Runs the command against what `find_agent` found.
pub fn run(agent: Agent, json: bool) -> Result<ExitCode> {
    let (traffic, agent_line) = match &agent {
        Agent::Verified(v) => (Some(traffic(v)?), v.how()),
        Agent::NotRunning(n) => (None, n.message()),
    };
    let files = match home_dir() {
        Some(home) => {
            let cwd = std::env::current_dir().unwrap_or_else(|_| home.clone());
            let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
            configs::scan(&configs::locations(&home, &cwd, &env))
        }
        None => Vec::new(),
    };
    if json {
        let out = json!({
            "agent": {
                "running": traffic.is_some(),
                "detail": agent_line,
            },
            "traffic": traffic,
            "config_files": files,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        out!(
            "{}",
            render(traffic.as_ref(), &agent_line, &files, home_dir().as_deref())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The agent's inventory, without its list of recent sightings (which `--json` readers can get from
/// the API itself).
fn traffic(v: &Verified) -> Result<Value> {
    let mut t = v.get("/airlock/v1/inventory?recent=0")?;
    if let Some(o) = t.as_object_mut() {
        o.remove("recent");
    }
    Ok(t)
}

/// Text safe for a terminal: control characters (escape sequences) shown as `?`.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn tilde(path: &Path, home: Option<&Path>) -> String {
    match home.and_then(|h| path.strip_prefix(h).ok()) {
        Some(rest) => format!("~/{}", rest.display()),
        None => path.display().to_string(),
    }
}

fn processes(row: &Value) -> String {
    let mut out: Vec<String> = row["processes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    let exe = p["exe"].as_str().unwrap_or("unknown process");
                    let mut who = Vec::new();
                    if let Some(pid) = p["pid"].as_u64() {
                        who.push(format!("pid {pid}"));
                    }
                    match (p["user"].as_str(), p["uid"].as_u64()) {
                        (Some(u), _) => who.push(u.to_string()),
                        (None, Some(uid)) => who.push(format!("uid {uid}")),
                        _ => {}
                    }
                    if who.is_empty() {
                        clean(exe)
                    } else {
                        format!("{} ({})", clean(exe), clean(&who.join(", ")))
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(n) = row["more_processes"].as_u64().filter(|n| *n > 0) {
        out.push(format!("{n} more"));
    }
    if let Some(n) = row["processes_of_other_users"].as_u64().filter(|n| *n > 0) {
        out.push(format!("{n} of other users"));
    }
    if out.is_empty() {
        "-".into()
    } else {
        out.join(", ")
    }
}

/// The human report.
pub fn render(
    traffic: Option<&Value>,
    agent: &str,
    files: &[ToolFile],
    home: Option<&Path>,
) -> String {
    let mut out = String::new();
    match traffic {
        None => out.push_str(&format!("AI traffic: unknown, {agent}\n")),
        Some(t) => {
            let rows = t["apps"].as_array().cloned().unwrap_or_default();
            if t["enabled"] == false {
                out.push_str("AI traffic: the policy turns the inventory off (inventory.enabled = false); only inspected hosts are listed\n");
            }
            if rows.is_empty() {
                out.push_str(&format!(
                    "AI traffic: none seen since the agent started ({} AI domains listed)\n",
                    t["domains_listed"]
                ));
            } else {
                out.push_str("AI traffic seen by the agent since it started:\n");
                let head = [
                    "APP",
                    "CATEGORY",
                    "HOST",
                    "CONNECTIONS",
                    "REQUESTS",
                    "INSPECTED",
                    "PROCESSES",
                ];
                let mut table: Vec<[String; 7]> = vec![head.map(str::to_string)];
                for r in &rows {
                    let inspected = r["inspected"] == true;
                    table.push([
                        clean(r["app"].as_str().unwrap_or("?")),
                        clean(r["category"].as_str().unwrap_or("?")),
                        clean(r["host"].as_str().unwrap_or("?")),
                        r["connections"].to_string(),
                        if inspected {
                            r["requests"].to_string()
                        } else {
                            "-".into()
                        },
                        if inspected {
                            "yes".into()
                        } else {
                            "no (seen, tunnelled)".into()
                        },
                        processes(r),
                    ]);
                }
                let widths: Vec<usize> = (0..6)
                    .map(|i| {
                        table
                            .iter()
                            .map(|row| row[i].chars().count())
                            .max()
                            .unwrap_or(0)
                    })
                    .collect();
                for row in &table {
                    out.push_str("  ");
                    for (i, w) in widths.iter().enumerate() {
                        out.push_str(&format!("{:<w$}  ", row[i], w = *w));
                    }
                    out.push_str(&row[6]);
                    out.push('\n');
                }
                if let Some(n) = t["rows_dropped"].as_u64().filter(|n| *n > 0) {
                    out.push_str(&format!(
                        "  ({n} connections to further hosts were not summed: too many hosts)\n"
                    ));
                }
            }
        }
    }
    out.push_str("\nAI tools configured for this user:\n");
    let mut missing: Vec<&str> = Vec::new();
    let mut any = false;
    for f in files {
        match f.state {
            "missing" => {
                if !missing.contains(&f.tool)
                    && !files
                        .iter()
                        .any(|g| g.tool == f.tool && g.state != "missing")
                {
                    missing.push(f.tool);
                }
                continue;
            }
            "unreadable" => {
                any = true;
                out.push_str(&format!(
                    "  {}  {}: unreadable: {}\n",
                    f.tool,
                    clean(&tilde(&f.path, home)),
                    clean(f.reason.as_deref().unwrap_or("unknown reason"))
                ));
                continue;
            }
            _ => {}
        }
        any = true;
        let count = f.mcp_servers.len() + f.mcp_servers_omitted;
        out.push_str(&format!(
            "  {}  {}: {}\n",
            f.tool,
            clean(&tilde(&f.path, home)),
            match count {
                0 => "no MCP servers".to_string(),
                1 => "1 MCP server".to_string(),
                n => format!("{n} MCP servers"),
            }
        ));
        for s in &f.mcp_servers {
            let what = match (&s.command, &s.url) {
                (Some(c), _) => std::iter::once(c.clone())
                    .chain(s.args.iter().cloned())
                    .collect::<Vec<_>>()
                    .join(" "),
                (None, Some(u)) => u.clone(),
                (None, None) => "-".into(),
            };
            let mut extra = Vec::new();
            if let Some(scope) = &s.scope {
                extra.push(format!("project {scope}"));
            }
            if !s.env.is_empty() {
                extra.push(format!("env {}", s.env.join(", ")));
            }
            if !s.headers.is_empty() {
                extra.push(format!("headers {}", s.headers.join(", ")));
            }
            if s.disabled {
                extra.push("disabled".into());
            }
            let extra = if extra.is_empty() {
                String::new()
            } else {
                format!("  [{}]", extra.join("; "))
            };
            out.push_str(&clean(&format!(
                "    {} ({}): {what}{extra}",
                s.name, s.transport
            )));
            out.push('\n');
        }
        if f.mcp_servers_omitted > 0 {
            out.push_str(&format!("    … {} more not shown\n", f.mcp_servers_omitted));
        }
        for n in &f.notes {
            out.push_str(&format!("    note: {}\n", clean(n)));
        }
    }
    if !any {
        out.push_str("  none found\n");
    }
    if !missing.is_empty() {
        out.push_str(&format!("  Not found: {}\n", missing.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use servers::McpServer;

    #[test]
    fn the_report_lists_apps_and_tools_and_cleans_terminal_escapes() {
        let traffic = json!({"enabled": true, "domains_listed": 500, "rows_dropped": 0, "apps": [
            {"app": "Claude", "category": "chat", "host": "claude.ai", "inspected": false, "connections": 2,
             "requests": 0, "processes": [{"pid": 42, "exe": "curl", "uid": 1000, "user": "alice", "connections": 2}]},
            {"app": "OpenAI API", "category": "model_api", "host": "api.openai.com", "inspected": true,
             "connections": 1, "requests": 7, "processes": []},
        ]});
        let files = vec![
            ToolFile {
                tool: "Cursor",
                path: PathBuf::from("/home/alice/.cursor/mcp.json"),
                state: "found",
                reason: None,
                mcp_servers: vec![McpServer {
                    name: "evil\u{1b}[31m".into(),
                    transport: "stdio".into(),
                    command: Some("npx".into()),
                    args: vec!["-y".into(), "pkg".into()],
                    env: vec!["TOKEN".into()],
                    ..McpServer::default()
                }],
                mcp_servers_omitted: 0,
                notes: vec![],
            },
            ToolFile {
                tool: "Codex",
                path: PathBuf::from("/home/alice/.codex/config.toml"),
                state: "unreadable",
                reason: Some("is a symbolic link (not followed)".into()),
                mcp_servers: vec![],
                mcp_servers_omitted: 0,
                notes: vec![],
            },
            ToolFile {
                tool: "Windsurf",
                path: PathBuf::from("/home/alice/.codeium/windsurf/mcp_config.json"),
                state: "missing",
                reason: None,
                mcp_servers: vec![],
                mcp_servers_omitted: 0,
                notes: vec![],
            },
        ];
        let out = render(Some(&traffic), "ok", &files, Some(Path::new("/home/alice")));
        assert!(out.contains("claude.ai"), "{out}");
        assert!(out.contains("no (seen, tunnelled)"), "{out}");
        assert!(out.contains("curl (pid 42, alice)"), "{out}");
        let openai = out.lines().find(|l| l.contains("api.openai.com")).unwrap();
        assert!(openai.contains(" 7 ") && openai.contains("yes"), "{openai}");
        assert!(out.contains("~/.cursor/mcp.json: 1 MCP server"), "{out}");
        assert!(
            out.contains("evil?[31m (stdio): npx -y pkg  [env TOKEN]"),
            "{out}"
        );
        assert!(!out.contains('\u{1b}'));
        assert!(
            out.contains("~/.codex/config.toml: unreadable: is a symbolic link"),
            "{out}"
        );
        assert!(out.contains("Not found: Windsurf"), "{out}");

        let down = render(None, "the Airlock agent is not running", &[], None);
        assert!(
            down.contains("AI traffic: unknown, the Airlock agent is not running"),
            "{down}"
        );
        assert!(down.contains("none found"));
    }
}
