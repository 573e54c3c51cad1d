//! Opens a URL in the user's browser with the OS's own opener (`xdg-open`, `open`, `start`). It
//! reports failure and leaves the fallback (printing the URL) to the caller; it must not block the
//! server while the browser runs.

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

/// Starts the browser on `url`. The opener may not return until the browser exits (xdg-open
/// starting a new Firefox does), so it is waited for on a thread of its own; if it fails, `failed`
/// runs there with the reason. An error here means it could not even start.
pub fn browser(url: &str, failed: impl FnOnce(String) + Send + 'static) -> Result<(), String> {
    let mut c = opener(url);
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let program = format!("{:?}", c.get_program());
    let mut child = c.spawn().map_err(|e| format!("{program}: {e}"))?;
    std::thread::spawn(move || match child.wait() {
        Ok(s) if s.success() => {}
        Ok(s) => failed(format!("{program} exited with {s}")),
        Err(e) => failed(e.to_string()),
    });
    Ok(())
}
