//! Opens a URL in the user's browser with the OS's own opener (`xdg-open`, `open`, `start`). It
//! reports failure and leaves the fallback (printing the URL) to the caller; it must not wait for
//! the browser to exit.

use std::process::{Command, Stdio};

/// The opener and its arguments on this OS.
#[cfg(target_os = "macos")]
fn opener(url: &str) -> Command {
    let mut c = Command::new("open");
    c.arg(url);
    c
}

/// The opener and its arguments on this OS.
#[cfg(windows)]
fn opener(url: &str) -> Command {
    let mut c = Command::new("cmd");
    // `start`'s first quoted argument is the window title.
    c.args(["/C", "start", "", url]);
    c
}

/// The opener and its arguments on this OS.
#[cfg(not(any(target_os = "macos", windows)))]
fn opener(url: &str) -> Command {
    let mut c = Command::new("xdg-open");
    c.arg(url);
    c
}

/// Starts the browser on `url`; an error says why it could not.
pub fn browser(url: &str) -> Result<(), String> {
    let mut c = opener(url);
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c
        .spawn()
        .map_err(|e| format!("{:?}: {e}", c.get_program()))?;
    // xdg-open and open return once the browser has the URL; a failure shows in their status.
    match child.wait() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("{:?} exited with {s}", c.get_program())),
        Err(e) => Err(e.to_string()),
    }
}
