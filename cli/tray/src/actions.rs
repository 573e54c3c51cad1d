//! What the menu's items do: open the dashboard, put the shell setup on the clipboard, pause or
//! resume interception (through `airlock`, which the agent checks against policy), and show
//! desktop notifications. Everything here runs commands or talks to D-Bus, so each runs off the GUI
//! thread and a failure becomes a notification or a log line, never a crash.

use std::io::Write;
use std::process::{Child, Command, Stdio};

use crate::alerts::Alert;
use crate::model::SHELL_SETUP;
use crate::snapshot::Cli;

/// Shows `alert` as a desktop notification; no notification daemon is logged at debug and ignored.
pub fn notify(alert: Alert) {
    std::thread::spawn(move || {
        if let Err(e) = notify_rust::Notification::new()
            .appname("Airlock")
            .summary(&alert.summary)
            .body(&alert.body)
            .show()
        {
            tracing::debug!(error = %e, "cannot show a desktop notification");
        }
    });
}

/// `airlock dashboard`, left serving until the tray ends.
pub fn open_dashboard(cli: &Cli) -> Option<Child> {
    match cli.command(&["dashboard"]).stdin(Stdio::null()).spawn() {
        Ok(child) => Some(child),
        Err(e) => {
            notify(Alert {
                summary: "Cannot open the dashboard".into(),
                body: format!("{e}; run `airlock dashboard` in a terminal"),
            });
            None
        }
    }
}

/// The clipboard tools tried, in order.
const CLIPBOARD: &[&[&str]] = &[
    &["wl-copy"],
    &["xclip", "-selection", "clipboard"],
    &["xsel", "--clipboard", "--input"],
    &["pbcopy"],
    &["clip"],
];

/// Puts the shell setup line on the clipboard, or shows it when no clipboard tool works.
pub fn copy_shell_setup() {
    std::thread::spawn(|| {
        for tool in CLIPBOARD {
            let Ok(mut child) = Command::new(tool[0])
                .args(&tool[1..])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            else {
                continue;
            };
            let wrote = child
                .stdin
                .take()
                .is_some_and(|mut i| i.write_all(SHELL_SETUP.as_bytes()).is_ok());
            if wrote && child.wait().is_ok_and(|s| s.success()) {
                notify(Alert {
                    summary: "Shell setup copied".into(),
                    body: format!("Paste it into a shell: {SHELL_SETUP}"),
                });
                return;
            }
        }
        notify(Alert {
            summary: "Shell setup".into(),
            body: format!("No clipboard tool answered; run this in your shell: {SHELL_SETUP}"),
        });
    });
}

/// `airlock pause --minutes N` or `airlock resume`, with the answer as a notification.
pub fn run_and_tell(cli: &Cli, args: Vec<String>) {
    let mut cmd = cli.command(&args.iter().map(String::as_str).collect::<Vec<_>>());
    std::thread::spawn(move || {
        let alert = match cmd.stdin(Stdio::null()).output() {
            Ok(out) => {
                let text = if out.status.success() {
                    String::from_utf8_lossy(&out.stdout).into_owned()
                } else {
                    String::from_utf8_lossy(&out.stderr).into_owned()
                };
                Alert {
                    summary: if out.status.success() {
                        "Airlock"
                    } else {
                        "Airlock refused"
                    }
                    .into(),
                    body: text.trim().trim_start_matches("airlock: ").to_string(),
                }
            }
            Err(e) => Alert {
                summary: "Cannot run airlock".into(),
                body: e.to_string(),
            },
        };
        notify(alert);
    });
}
