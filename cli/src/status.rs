//! `airlock status`: whether the agent is up and what it is doing, for people and (`--json`) for
//! scripts. The address and paths shown are the ones the agent was verified against, never the
//! answer's own.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::Value;

use crate::trust::{Agent, Refused};
use crate::Session;

pub fn run(ctx: &Session, json: bool) -> Result<ExitCode> {
    let found = match ctx.find_agent() {
        Ok(found) => found,
        Err(e) => {
            if let (true, Some(r)) = (json, e.downcast_ref::<Refused>()) {
                let v = serde_json::json!({"running": false, "refused": true, "reason": r.message});
                outln!("{}", serde_json::to_string_pretty(&v)?);
            }
            return Err(e);
        }
    };
    let v = match found {
        Agent::Verified(v) => v,
        Agent::NotRunning(n) => {
            if json {
                let v = serde_json::json!({"running": false, "listen": n.target.addr.to_string(),
                                           "control_socket": n.socket.path});
                outln!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                outln!("Airlock agent: not running");
                outln!("  {}", n.message());
            }
            return Ok(ExitCode::from(3));
        }
    };
    let s = &v.status;
    let listen = v.addr();
    if json {
        // Paths and the address are the local ones the agent was verified against, never the answer's.
        let mut out = s.clone();
        out["running"] = Value::Bool(true);
        out["listen"] = Value::String(listen.to_string());
        out["proxy_url"] = Value::String(v.proxy_url());
        out["state_dir"] = serde_json::json!(v.state.dir.root());
        out["control_socket"] = serde_json::json!(v.socket.path);
        out["ca"]["cert_path"] = serde_json::json!(v.ca.cert);
        out["ca"]["bundle_path"] = serde_json::json!(v.ca.bundle);
        out["ca"]["java_trust_store_path"] = serde_json::json!(v.ca.java_trust_store);
        out["verified"] = Value::String(v.how());
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "Airlock agent: running (pid {}, version {}, up {}s)",
        v.runtime.pid,
        s["version"].as_str().unwrap_or("?"),
        s["uptime_secs"]
    );
    let held = if v.runtime.activated() {
        " (sockets held by the service manager)"
    } else {
        ""
    };
    outln!(
        "  Listening:     {listen}  (proxy http://{listen}, PAC http://{listen}/proxy.pac){held}"
    );
    outln!("  Verified:      {}", v.how());
    outln!(
        "  Control:       {} ({})",
        v.socket.path.display(),
        if v.may_write() {
            "you may change the agent"
        } else {
            "you may read it, and see your own requests; changes need root or the agent's user"
        }
    );
    out!("{}", health_lines(s));
    outln!(
        "  Policy:        {} ({})",
        s["policy"]["name"].as_str().unwrap_or("?"),
        s["policy"]["source"].as_str().unwrap_or("?")
    );
    outln!(
        "  Device CA:     {}\n                 SHA-256 {}",
        v.ca.cert.display(),
        v.ca.info.fingerprint_sha256
    );
    let hosts: Vec<&str> = s["interception_hosts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|h| h["intercepted"] == true)
                .filter_map(|h| h["host"].as_str())
                .collect()
        })
        .unwrap_or_default();
    outln!(
        "  Intercepting:  {} hosts: {}",
        hosts.len(),
        hosts.join(", ")
    );
    if let Some(p) = s["upstream"]["proxy"].as_str() {
        outln!(
            "  Upstream:      through {p} ({})",
            s["upstream"]["proxy_source"].as_str().unwrap_or("?")
        );
    }
    outln!(
        "  Requests:      {} seen, {} in flight",
        s["requests_seen"],
        s["requests_in_flight"]
    );
    if let Some(t) = tunnels_line(s) {
        outln!("{t}");
    }
    out!("{}", limits_lines(s));
    out!("{}", governance_lines(s));
    let uncovered = uncovered_hosts(s);
    if !uncovered.is_empty() {
        outln!(
            "  WARNING: the policy intercepts {} outside the device CA's name constraints, so they are \
             tunnelled uninspected. Run `airlock ca rotate` to make a CA that covers them.",
            uncovered.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `Health: up`, or `degraded` and each reason on its own line; a running pause.
fn health_lines(s: &Value) -> String {
    let h = &s["health"];
    let Some(state) = h["state"].as_str() else {
        return String::new();
    };
    let mut out = format!("  Health:        {state}\n");
    for r in h["reasons"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "    {}: {}\n",
            r["code"].as_str().unwrap_or("?"),
            r["message"].as_str().unwrap_or("")
        ));
    }
    if let Some(until) = s["pause"]["paused_until"].as_str() {
        out.push_str(&format!(
            "  PAUSED:        interception is paused until {until}; AI hosts are tunnelled \
             uninspected (`airlock resume` ends it)\n"
        ));
    }
    out
}

/// Tunnels opened and failed by reason (`airlock status`): "12 opened, 3 failed (dns 1, refused 2)".
fn tunnels_line(s: &Value) -> Option<String> {
    let t = &s["tunnels"];
    let opened = t["opened"].as_u64()?;
    let failed = &t["failed"];
    let total = failed["total"].as_u64().unwrap_or(0);
    let mut line = format!("  Tunnels:       {opened} opened, {total} could not connect");
    if total > 0 {
        let reasons: Vec<String> = failed
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, v)| *k != "total" && v.as_u64().unwrap_or(0) > 0)
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect()
            })
            .unwrap_or_default();
        line.push_str(&format!(" ({})", reasons.join(", ")));
    }
    Some(line)
}

/// Bytes as MiB for people.
fn mib(v: &Value) -> String {
    match v.as_u64() {
        Some(b) if b >= 1 << 20 => format!("{} MiB", b >> 20),
        Some(b) => format!("{} KiB", b.div_ceil(1024)),
        None => "?".into(),
    }
}

/// The bounds in force and how close the agent is to them (`airlock status`).
/// Each budget's use, limit and reset, and each rate limit's headroom (`airlock status`).
fn governance_lines(s: &Value) -> String {
    let g = &s["governance"];
    let mut out = String::new();
    for b in g["budgets"].as_array().into_iter().flatten() {
        let mut parts = Vec::new();
        if let Some(l) = b["limit_tokens"].as_u64() {
            parts.push(format!(
                "{} of {l} tokens",
                b["used_tokens"].as_u64().unwrap_or(0)
            ));
        }
        if let Some(l) = b["limit_usd"].as_f64() {
            parts.push(format!(
                "${:.2} of ${l:.2}",
                b["used_usd"].as_f64().unwrap_or(0.0)
            ));
        }
        out.push_str(&format!(
            "  Budget:        {}{} — {} this {}{}\n",
            b["name"].as_str().unwrap_or("?"),
            b["scope"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(|s| format!(" ({s})"))
                .unwrap_or_default(),
            parts.join(", "),
            b["window"].as_str().unwrap_or("window"),
            b["resets_at"]
                .as_str()
                .map(|r| format!(", resets {r}"))
                .unwrap_or_default(),
        ));
    }
    for l in g["rate_limits"].as_array().into_iter().flatten() {
        let mut parts = Vec::new();
        if let Some(obj) = l.as_object() {
            for (k, v) in obj {
                if let (Some(used), Some(limit)) = (v["used"].as_u64(), v["limit"].as_u64()) {
                    parts.push(format!("{k} {used}/{limit}"));
                }
            }
        }
        if let Some(c) = l["concurrency"].as_u64() {
            parts.push(format!(
                "in flight {}/{c}",
                l["in_flight"].as_u64().unwrap_or(0)
            ));
        }
        out.push_str(&format!(
            "  Rate limit:    {} ({}) — {}\n",
            l["name"].as_str().unwrap_or("?"),
            l["scope"].as_str().unwrap_or(""),
            parts.join(", ")
        ));
    }
    out
}

fn limits_lines(s: &Value) -> String {
    let l = &s["limits"];
    if l.is_null() {
        return String::new();
    }
    let mut out = format!(
        "  Limits:        request body {} MiB, buffered bodies {} of {}, connections {} of {}\n",
        l["max_request_body_mib"],
        mib(&s["buffered_request_bytes"]["in_use"]),
        mib(&s["buffered_request_bytes"]["max"]),
        s["connections"]["open"],
        s["connections"]["max"],
    );
    out.push_str(&format!(
        "                 timeouts: headers {} s, TLS handshake {} s, provider response {} s, stream idle {} s\n",
        l["header_read_timeout_secs"],
        l["tls_handshake_timeout_secs"],
        l["response_header_timeout_secs"],
        l["stream_idle_timeout_secs"],
    ));
    let j = &s["journal"];
    if !j.is_null() {
        out.push_str(&format!(
            "  Journal:       {} ({}, {} rows, sync {})\n",
            j["path"].as_str().unwrap_or("?"),
            mib(&j["bytes"]),
            j["head_seq"],
            j["sync"].as_str().unwrap_or("?"),
        ));
        let failed = j["failed_commits"].as_u64().unwrap_or(0);
        if failed > 0 || j["retrying"].as_u64().unwrap_or(0) > 0 {
            out.push_str(&format!(
                "  WARNING: {failed} journal commits failed ({}); finished records are kept and retried, \
                 new requests are refused until it can write. Free disk space in the state directory\n",
                j["last_error"].as_str().unwrap_or("unknown error"),
            ));
        }
        if j["lost"].as_u64().unwrap_or(0) > 0 {
            out.push_str(&format!(
                "  WARNING: {} journal rows could not be written at all\n",
                j["lost"]
            ));
        }
    }
    out
}

pub(crate) fn uncovered_hosts(s: &Value) -> Vec<String> {
    s["ca"]["uncovered_hosts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_says_degraded_with_each_reason_and_a_running_pause() {
        let s = serde_json::json!({"health": {"state": "degraded", "reasons": [
            {"code": "policy_expired", "message": "the bundle expired"}]},
            "pause": {"allowed": true, "paused_until": "2026-12-02T20:15:00Z"}});
        let out = health_lines(&s);
        assert!(
            out.starts_with("  Health:        degraded\n    policy_expired: the bundle expired\n"),
            "{out}"
        );
        assert!(out.contains("paused until 2026-12-02T20:15:00Z"), "{out}");
        let up = serde_json::json!({"health": {"state": "up", "reasons": []}, "pause": {"paused_until": null}});
        assert_eq!(health_lines(&up), "  Health:        up\n");
        assert_eq!(health_lines(&serde_json::json!({})), "", "an older agent");
    }

    #[test]
    fn status_counts_failed_tunnels_by_reason() {
        let s = serde_json::json!({"tunnels": {"opened": 12, "failed": {
            "dns": 1, "refused": 2, "timeout": 0, "unreachable": 0, "proxy_refused": 0, "other": 0, "total": 3}}});
        assert_eq!(
            tunnels_line(&s).unwrap(),
            "  Tunnels:       12 opened, 3 could not connect (dns 1, refused 2)"
        );
        let none = serde_json::json!({"tunnels": {"opened": 0, "failed": {"total": 0}}});
        assert_eq!(
            tunnels_line(&none).unwrap(),
            "  Tunnels:       0 opened, 0 could not connect"
        );
        assert_eq!(tunnels_line(&serde_json::json!({})), None, "an older agent");
    }

    #[test]
    fn status_shows_the_limits_and_warns_about_a_failing_journal() {
        let s = serde_json::json!({
            "limits": {"max_request_body_mib": 64, "header_read_timeout_secs": 10,
                       "tls_handshake_timeout_secs": 10, "response_header_timeout_secs": 600,
                       "stream_idle_timeout_secs": 300},
            "buffered_request_bytes": {"in_use": 3 << 20, "max": 512u64 << 20},
            "connections": {"open": 7, "max": 10000},
            "journal": {"path": "/s/journal.db", "bytes": 1u64 << 20, "head_seq": 42, "sync": "normal",
                        "failed_commits": 2, "retrying": 1, "lost": 0, "last_error": "database or disk is full"},
        });
        let out = limits_lines(&s);
        assert!(
            out.contains(
                "request body 64 MiB, buffered bodies 3 MiB of 512 MiB, connections 7 of 10000"
            ),
            "{out}"
        );
        assert!(out.contains("stream idle 300 s"), "{out}");
        assert!(
            out.contains("/s/journal.db (1 MiB, 42 rows, sync normal)"),
            "{out}"
        );
        assert!(
            out.contains("2 journal commits failed (database or disk is full)"),
            "{out}"
        );
        assert!(!out.contains("could not be written at all"), "{out}");
        assert_eq!(limits_lines(&serde_json::json!({})), "");
    }
}
