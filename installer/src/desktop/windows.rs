//! Windows' per-user automatic proxy URL: `AutoConfigURL` under
//! `HKCU\Software\Microsoft\Windows\CurrentVersion\Internet Settings`, through `reg.exe`. A value
//! that was absent is saved as absent and deleted again on restore. Running programs pick the change
//! up when they next read the setting (the tray, which runs as the user, can broadcast it).

use std::path::PathBuf;

use super::Saved;
use crate::cmd;
use crate::error::Result;

const KEY: &str = r"HKCU\Software\Microsoft\Windows\CurrentVersion\Internet Settings";
const VALUE: &str = "AutoConfigURL";
/// What the saved value is when there was none.
const ABSENT: &str = "\u{0}absent";

fn reg() -> Result<PathBuf> {
    cmd::require("reg.exe", "the Windows proxy setting", "Windows itself")
}

pub fn backend() -> Option<&'static str> {
    cmd::find("reg.exe").map(|_| "wininet")
}

pub fn current_pac() -> Result<Option<String>> {
    let (_, out) = cmd::output(&reg()?, ["query", KEY, "/v", VALUE])?;
    if !out.status.success() {
        return Ok(None);
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix(VALUE))
        .and_then(|rest| rest.trim().strip_prefix("REG_SZ"))
        .map(|v| v.trim().to_string()))
}

pub fn set_pac(pac_url: &str) -> Result<Saved> {
    let previous = current_pac()?.unwrap_or_else(|| ABSENT.into());
    cmd::run(
        &reg()?,
        ["add", KEY, "/v", VALUE, "/t", "REG_SZ", "/d", pac_url, "/f"],
    )?;
    Ok(Saved {
        backend: "wininet".into(),
        values: vec![(VALUE.into(), previous)],
    })
}

pub fn restore(saved: &Saved) -> Result<()> {
    let r = reg()?;
    for (_, v) in &saved.values {
        if v == ABSENT {
            cmd::run(&r, ["delete", KEY, "/v", VALUE, "/f"])?;
        } else {
            cmd::run(&r, ["add", KEY, "/v", VALUE, "/t", "REG_SZ", "/d", v, "/f"])?;
        }
    }
    Ok(())
}
