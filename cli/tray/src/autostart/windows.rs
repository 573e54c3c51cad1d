//! A value under `HKCU\Software\Microsoft\Windows\CurrentVersion\Run`, which Windows runs at login,
//! set with the system's own `reg.exe`. Built and tested only on Windows (not on this project's
//! Linux CI).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

const KEY: &str = r"HKCU\Software\Microsoft\Windows\CurrentVersion\Run";
const VALUE: &str = "Airlock";

/// Sets the Run value; the key it is under.
pub fn enable(exe: &Path) -> Result<PathBuf> {
    let data = format!("\"{}\"", exe.display());
    let st = Command::new("reg")
        .args(["add", KEY, "/v", VALUE, "/t", "REG_SZ", "/d", &data, "/f"])
        .status()
        .context("cannot run reg.exe")?;
    if !st.success() {
        bail!("reg add {KEY} /v {VALUE} failed ({st})");
    }
    Ok(PathBuf::from(format!(r"{KEY}\{VALUE}")))
}

/// Deletes the Run value; the key it was under, if it was set.
pub fn disable() -> Result<Option<PathBuf>> {
    let st = Command::new("reg")
        .args(["delete", KEY, "/v", VALUE, "/f"])
        .status()
        .context("cannot run reg.exe")?;
    Ok(st
        .success()
        .then(|| PathBuf::from(format!(r"{KEY}\{VALUE}"))))
}
