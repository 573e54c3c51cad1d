//! Starting the tray at login: `airlock-tray --autostart enable|disable`. Each OS keeps its own
//! mechanism in its own file — an XDG autostart entry on Linux and the BSDs, a LaunchAgent on macOS, a
//! Run key on Windows — and this module only picks one. It must not start the tray itself.

#[cfg(all(unix, not(target_os = "macos")))]
mod xdg;
#[cfg(all(unix, not(target_os = "macos")))]
pub use xdg::{disable, enable};

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
pub use macos::{disable, enable};

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::{disable, enable};
