//! macOS's automatic proxy URL, per network service (`networksetup -listallnetworkservices`), set
//! with `networksetup -setautoproxyurl` and read back with `-getautoproxyurl`. The saved values are
//! each service's previous URL and whether it was enabled.

use std::path::PathBuf;

use super::Saved;
use crate::cmd;
use crate::error::Result;

fn networksetup() -> Result<PathBuf> {
    cmd::require("networksetup", "the macOS proxy setting", "macOS itself")
}

pub fn backend() -> Option<&'static str> {
    cmd::find("networksetup").map(|_| "networksetup")
}

fn services(n: &std::path::Path) -> Result<Vec<String>> {
    let out = cmd::run(n, ["-listallnetworkservices"])?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1) // "An asterisk (*) denotes that a network service is disabled."
        .map(|l| l.trim_start_matches('*').trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// `(url, enabled)` of a service.
fn get(n: &std::path::Path, service: &str) -> Result<(String, bool)> {
    let out = cmd::run(n, ["-getautoproxyurl", service])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut url = String::new();
    let mut enabled = false;
    for line in text.lines() {
        if let Some(u) = line.strip_prefix("URL:") {
            url = u.trim().to_string();
            if url == "(null)" {
                url.clear();
            }
        } else if let Some(e) = line.strip_prefix("Enabled:") {
            enabled = e.trim() == "Yes";
        }
    }
    Ok((url, enabled))
}

pub fn set_pac(pac_url: &str) -> Result<Saved> {
    let n = networksetup()?;
    let mut values = Vec::new();
    for s in services(&n)? {
        let (url, enabled) = get(&n, &s)?;
        values.push((
            s.clone(),
            format!("{}|{url}", if enabled { "on" } else { "off" }),
        ));
        cmd::run(&n, ["-setautoproxyurl", &s, pac_url])?;
    }
    Ok(Saved {
        backend: "networksetup".into(),
        values,
    })
}

pub fn current_pac() -> Result<Option<String>> {
    let Some(n) = cmd::find("networksetup") else {
        return Ok(None);
    };
    for s in services(&n)? {
        let (url, enabled) = get(&n, &s)?;
        if enabled && !url.is_empty() {
            return Ok(Some(url));
        }
    }
    Ok(None)
}

pub fn restore(saved: &Saved) -> Result<()> {
    let n = networksetup()?;
    for (service, value) in &saved.values {
        let (state, url) = value.split_once('|').unwrap_or(("off", ""));
        if !url.is_empty() {
            cmd::run(&n, ["-setautoproxyurl", service, url])?;
        }
        cmd::run(&n, ["-setautoproxystate", service, state])?;
    }
    Ok(())
}
