//! Socket activation where the OS has no such protocol (Windows) for [`super`]: nothing is ever
//! passed and nobody listens for readiness.

use super::{ActivationError, Inherited};

/// A control listener: none can exist on this OS.
#[derive(Debug)]
pub enum ControlListener {}

pub(super) fn take_from_env() -> Result<Inherited, ActivationError> {
    Ok(Inherited::default())
}

pub(super) fn socket_inode(_listener: &tokio::net::TcpListener) -> Option<u64> {
    None
}

/// A readiness notice.
#[derive(Debug, Clone, Copy)]
pub(super) enum Notice {
    Ready,
    Stopping,
}

pub(super) fn notify(_notice: Notice) {}
