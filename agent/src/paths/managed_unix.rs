//! Where an admin or an MDM puts Airlock's managed configuration on Linux and the other unixes
//! (macOS has its own file): `/etc/airlock`, the FHS place for a host's configuration, which
//! packages own (`conf-files`) and configuration management tools write.

/// The system-wide configuration directory: read by the system daemon, and by every per-user
/// agent for the managed files in it (a managed enrollment beats the user's own).
pub(super) const SYSTEM_CONFIG_DIR: &str = "/etc/airlock";
