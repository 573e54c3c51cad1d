//! Where an admin or an MDM puts Airlock's managed configuration on Windows:
//! `C:\ProgramData\Airlock\Config`, beside the service's state in `C:\ProgramData\Airlock`
//! (ACL'd by the installer: the service and Administrators may write, users may read).

/// The system-wide configuration directory: read by the Windows service, and by every per-user
/// agent for the managed files in it (a managed enrollment beats the user's own).
pub(super) const SYSTEM_CONFIG_DIR: &str = r"C:\ProgramData\Airlock\Config";
