//! Where an admin or an MDM puts Airlock's managed configuration on macOS:
//! `/Library/Application Support/Airlock/Config`, beside the system daemon's state in
//! `/Library/Application Support/Airlock`. A configuration profile cannot write files there
//! itself (its payloads land as plists in `/Library/Managed Preferences`, which the agent does not
//! read); the MDM's install script or package writes the files, as `packaging/mdm/` shows.

/// The system-wide configuration directory: read by the LaunchDaemon, and by every per-user
/// agent for the managed files in it (a managed enrollment beats the user's own).
pub(super) const SYSTEM_CONFIG_DIR: &str = "/Library/Application Support/Airlock/Config";
