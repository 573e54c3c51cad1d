//! The XDG autostart entry (`$XDG_CONFIG_HOME/autostart/airlock-tray.desktop`, else
//! `~/.config/autostart/`), which GNOME, KDE, Xfce and the other desktops run at login.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};

/// The entry's file name.
pub const FILE: &str = "airlock-tray.desktop";

fn dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("autostart"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            anyhow!("neither XDG_CONFIG_HOME nor HOME is set, so there is no autostart folder")
        })?;
    Ok(PathBuf::from(home).join(".config/autostart"))
}

/// The entry for the tray at `exe`.
pub fn entry(exe: &Path) -> String {
    let exe = exe.display().to_string();
    let quoted = if exe.contains([' ', '"', '\\']) {
        format!("\"{}\"", exe.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        exe
    };
    format!(
        "[Desktop Entry]\nType=Application\nName=Airlock\nComment=Airlock's state at a glance: AI traffic governance on this machine\n\
         Exec={quoted}\nIcon=security-high\nTerminal=false\nCategories=Network;Security;\n\
         X-GNOME-Autostart-enabled=true\nNoDisplay=true\n"
    )
}

/// Writes the entry; its path.
pub fn enable(exe: &Path) -> Result<PathBuf> {
    let d = dir()?;
    std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    let path = d.join(FILE);
    std::fs::write(&path, entry(exe))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Removes the entry; its path, if there was one.
pub fn disable() -> Result<Option<PathBuf>> {
    let path = dir()?.join(FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(Some(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!("cannot remove {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_runs_the_tray_at_login_and_quotes_odd_paths() {
        let e = entry(Path::new("/usr/bin/airlock-tray"));
        assert!(e.starts_with("[Desktop Entry]\nType=Application\n"), "{e}");
        assert!(
            e.contains("\nExec=/usr/bin/airlock-tray\n")
                && e.contains("X-GNOME-Autostart-enabled=true")
        );
        assert!(entry(Path::new("/opt/my apps/airlock-tray"))
            .contains("Exec=\"/opt/my apps/airlock-tray\""));
    }

    #[test]
    fn enable_writes_into_xdg_config_home_and_disable_removes_it() {
        let tmp = tempfile::tempdir().unwrap();
        // The only test in this crate that sets the environment.
        std::env::set_var("XDG_CONFIG_HOME", tmp.path());
        let path = enable(Path::new("/usr/bin/airlock-tray")).unwrap();
        assert_eq!(path, tmp.path().join("autostart").join(FILE));
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .contains("Exec=/usr/bin/airlock-tray"));
        assert_eq!(disable().unwrap(), Some(path.clone()));
        assert!(!path.exists());
        assert_eq!(disable().unwrap(), None, "disabling twice is fine");
    }
}
