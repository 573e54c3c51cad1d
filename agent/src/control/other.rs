//! The control server where there are no unix sockets (Windows): not implemented yet. It will be a
//! named pipe whose DACL lets local users connect, with the client's token read at identification
//! level to tell root-like (elevated) callers and the service's account from the rest. Until then the
//! agent runs without a control API there and says so at start.

use std::path::Path;
use std::sync::Arc;

use super::Context;
use crate::Result;

/// A bound control socket: none can exist on this OS.
#[derive(Debug)]
pub(super) enum Bound {}

/// A serving control socket: none can exist on this OS.
#[derive(Debug)]
pub(super) enum Running {}

pub(super) async fn bind(path: &Path) -> Result<Option<Bound>> {
    tracing::warn!(path = %path.display(), "the control API (a named pipe) is not implemented on this OS yet; `airlock status` cannot reach this agent");
    Ok(None)
}

pub(super) fn adopt(
    listener: crate::sys::activation::ControlListener,
    _path: &Path,
) -> Result<Bound> {
    match listener {}
}

impl Bound {
    pub(super) fn serve(self, _ctx: Arc<Context>) -> Running {
        match self {}
    }
}

impl Running {
    pub(super) fn path(&self) -> &Path {
        match *self {}
    }

    pub(super) async fn shutdown(self) {
        match self {}
    }
}
