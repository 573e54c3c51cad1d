//! Operating-system integration for Airlock: putting the device CA into every trust store the
//! machine's software reads (`stores`), the environment new shells start with (`env`), the
//! desktop's automatic proxy (`desktop`), and undoing all of it exactly (`manifest`, `fsutil`), in
//! the order `plan` gives. It owns changes to the machine outside the agent's state directory and
//! must never run inside the hardened daemon: `airlock setup` and `airlock uninstall` (and the
//! package scripts that call them) are its only users. It takes the CA's public certificate; it never
//! sees the CA key.

pub mod ca;
pub mod cmd;
pub mod desktop;
pub mod env;
pub mod error;
pub mod fsutil;
pub mod manifest;
pub mod plan;
pub mod stores;

pub use ca::Ca;
pub use error::{InstallerError, Result};
pub use plan::Scope;
