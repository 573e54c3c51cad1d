//! The desktop's automatic proxy configuration (a PAC URL), set on request and put back on
//! uninstall: GNOME through `gsettings`, macOS through `networksetup` for every network service,
//! Windows through the user's WinINet registry values — each in its own file. The previous values are
//! saved verbatim so uninstall restores exactly them, and only while the setting is still ours (a
//! user who changed it since keeps their change). It owns these settings only.

#[cfg(target_os = "linux")]
mod gnome;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(windows)]
mod windows;

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// The settings as they were before setup changed them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// Which backend (`gnome`, `networksetup`, `wininet`).
    pub backend: String,
    /// `(key, previous value)` pairs, in the backend's own text form.
    pub values: Vec<(String, String)>,
}

/// The backend on this machine, if its tool is there.
pub fn backend() -> Option<&'static str> {
    imp::backend()
}

/// Points the desktop at `pac_url`; returns what was there before.
pub fn set_pac(pac_url: &str) -> Result<Saved> {
    imp::set_pac(pac_url)
}

/// The PAC URL the desktop uses now, if automatic configuration is on.
pub fn current_pac() -> Result<Option<String>> {
    imp::current_pac()
}

/// Puts `saved` back if the desktop still uses `pac_url`; returns whether it did.
pub fn restore(saved: &Saved, pac_url: &str) -> Result<bool> {
    if current_pac()?.as_deref() != Some(pac_url) {
        return Ok(false);
    }
    imp::restore(saved)?;
    Ok(true)
}

/// Puts `saved` back whatever the desktop uses now.
pub fn restore_unconditionally(saved: &Saved) -> Result<()> {
    imp::restore(saved)
}

#[cfg(target_os = "linux")]
use gnome as imp;
#[cfg(target_os = "macos")]
use macos as imp;
#[cfg(windows)]
use windows as imp;

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
mod imp {
    use super::Saved;
    use crate::error::{InstallerError, Result};

    pub fn backend() -> Option<&'static str> {
        None
    }
    pub fn set_pac(_: &str) -> Result<Saved> {
        Err(InstallerError::Refused(
            "no desktop proxy setting is known on this OS".into(),
        ))
    }
    pub fn current_pac() -> Result<Option<String>> {
        Ok(None)
    }
    pub fn restore(_: &Saved) -> Result<()> {
        Ok(())
    }
}
