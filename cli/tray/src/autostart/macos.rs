//! A LaunchAgent (`~/Library/LaunchAgents/ai.airlock.tray.plist`) that launchd runs at login. Built
//! and tested only on macOS (not on this project's Linux CI).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};

const LABEL: &str = "ai.airlock.tray";

fn path() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").ok_or_else(|| anyhow!("HOME is not set"))?;
    Ok(PathBuf::from(home).join(format!("Library/LaunchAgents/{LABEL}.plist")))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Writes the LaunchAgent; its path.
pub fn enable(exe: &Path) -> Result<PathBuf> {
    let p = path()?;
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let plist = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \
         \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n<plist version=\"1.0\"><dict>\n\
         <key>Label</key><string>{LABEL}</string>\n<key>ProgramArguments</key><array><string>{}</string></array>\n\
         <key>RunAtLoad</key><true/>\n<key>LimitLoadToSessionType</key><string>Aqua</string>\n</dict></plist>\n",
        escape(&exe.display().to_string())
    );
    std::fs::write(&p, plist).with_context(|| format!("cannot write {}", p.display()))?;
    Ok(p)
}

/// Removes the LaunchAgent; its path, if there was one.
pub fn disable() -> Result<Option<PathBuf>> {
    let p = path()?;
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(Some(p)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!("cannot remove {}: {e}", p.display())),
    }
}
