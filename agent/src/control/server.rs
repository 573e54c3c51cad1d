//! The control socket on unix: taking the path (a stale socket of an agent that is gone is replaced;
//! a live one, or anything that is not a socket, is refused), binding it mode 0666, accepting
//! connections with their peer credentials (`tokio::net::UnixStream::peer_cred()`), serving each with
//! hyper's HTTP/1.1 (one request per connection, headers within a timeout, a bounded number at once),
//! and removing the socket file on a clean shutdown if it is still the one this server made. A socket
//! the service manager passed ([`adopt`]) is served as it is: its path is the manager's, so it is
//! neither taken over nor removed. It must not decide access (the routing does, per request).

use std::convert::Infallible;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinHandle;

use super::{Context, Peer};
use crate::{AgentError, Result};

/// Control connections served at once; more wait in the kernel's backlog, then are closed.
const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a socket left at the path may take to accept before the agent gives up on it.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest socket path the kernel takes (`sun_path` holds 108 bytes with its terminating NUL).
const MAX_PATH: usize = 107;

/// A bound control socket.
#[derive(Debug)]
pub(super) struct Bound {
    listener: UnixListener,
    path: PathBuf,
    /// The socket file this server made (device, inode), to remove at shutdown; `None` when someone
    /// else (the service manager) made it and owns the path.
    id: Option<(u64, u64)>,
}

/// A serving control socket.
#[derive(Debug)]
pub(super) struct Running {
    path: PathBuf,
    id: Option<(u64, u64)>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

fn refused(path: &Path, problem: String, fix: String) -> AgentError {
    AgentError::Control {
        path: path.to_path_buf(),
        problem,
        fix,
    }
}

pub(super) async fn bind(path: &Path) -> Result<Option<Bound>> {
    let len = path.as_os_str().len();
    if len > MAX_PATH {
        return Err(refused(
            path,
            format!("is {len} bytes long, and a unix socket's path may have at most {MAX_PATH}"),
            "pass --state-dir with a shorter path".into(),
        ));
    }
    take_over_stale(path).await?;
    let listener = UnixListener::bind(path).map_err(|e| {
        let fix = if e.kind() == std::io::ErrorKind::AddrInUse {
            "another airlockd started at the same moment with this state directory: stop one of them"
        } else {
            "check that this user may create files in the state directory"
        };
        refused(path, format!("cannot be bound ({e})"), fix.into())
    })?;
    // Any local user may connect; what each may do is decided per request from peer credentials.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| AgentError::io("cannot set permissions on", path, e))?;
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| AgentError::io("cannot read the control socket", path, e))?;
    Ok(Some(Bound {
        listener,
        path: path.to_path_buf(),
        id: Some((meta.dev(), meta.ino())),
    }))
}

/// Serves a listening socket the service manager bound: it must be the socket at `path` (the state
/// directory's, where the CLI looks), and is left there at shutdown.
pub(super) fn adopt(listener: std::os::unix::net::UnixListener, path: &Path) -> Result<Bound> {
    let bound = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf));
    let same_file = |a: &Path, b: &Path| match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    };
    match &bound {
        Some(b) if b == path || same_file(b, path) => {}
        _ => {
            let shown = bound.as_ref().map_or_else(
                || "no path (an abstract or unnamed socket)".to_string(),
                |b| b.display().to_string(),
            );
            return Err(refused(
                path,
                format!("is not where the control socket the service manager passed is bound ({shown}), so the CLI would not find the agent"),
                format!(
                    "set ListenStream={} in airlockd-control.socket, or start airlockd with the --state-dir that holds the socket",
                    path.display()
                ),
            ));
        }
    }
    listener
        .set_nonblocking(true)
        .map_err(|e| AgentError::io("cannot serve the passed control socket", path, e))?;
    let listener = UnixListener::from_std(listener)
        .map_err(|e| AgentError::io("cannot serve the passed control socket", path, e))?;
    Ok(Bound {
        listener,
        path: path.to_path_buf(),
        id: None,
    })
}

/// Removes a socket file nothing answers on; refuses a live one and anything else at the path.
async fn take_over_stale(path: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(AgentError::io("cannot read", path, e)),
    };
    if !meta.file_type().is_socket() {
        return Err(refused(
            path,
            "exists and is not a socket".into(),
            format!(
                "remove it (`rm {}`) if nothing of yours needs it; the agent keeps its control socket there",
                path.display()
            ),
        ));
    }
    let probe = tokio::time::timeout(PROBE_TIMEOUT, UnixStream::connect(path)).await;
    let Ok(probe) = probe else {
        return Err(refused(
            path,
            format!(
                "does not accept a connection within {} s (an agent that is hung, or overloaded)",
                PROBE_TIMEOUT.as_secs()
            ),
            "stop the agent using this state directory, then start airlockd again".into(),
        ));
    };
    match probe {
        Ok(stream) => {
            let pid = stream
                .peer_cred()
                .ok()
                .and_then(|c| c.pid())
                .map(|p| format!(" (pid {p})"))
                .unwrap_or_default();
            Err(refused(
                path,
                format!("is served by another running agent{pid}"),
                "stop that agent first, or start this one with a --state-dir of its own".into(),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "replacing the control socket left by an agent that is gone");
            match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(AgentError::io(
                    "cannot remove the stale control socket",
                    path,
                    e,
                )),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(refused(
            path,
            format!("cannot be checked for a running agent ({e})"),
            "remove it if no agent runs with this state directory, then start airlockd again"
                .into(),
        )),
    }
}

impl Bound {
    pub(super) fn serve(self, ctx: Arc<Context>) -> Running {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept(self.listener, ctx, stopped));
        Running {
            path: self.path,
            id: self.id,
            stop: Some(stop),
            task,
        }
    }
}

impl Running {
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        // Only our own socket: another agent may have taken the path over since, and one the
        // service manager passed is its to keep (it stays open while the agent restarts).
        let ours = self.id.is_some_and(|id| {
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == id)
        });
        if ours {
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the control socket");
            }
        }
    }
}

async fn accept(listener: UnixListener, ctx: Arc<Context>, mut stopped: oneshot::Receiver<()>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        tracing::debug!("control API: too many connections at once; closing one");
                        continue;
                    };
                    let peer = match stream.peer_cred() {
                        Ok(c) => Peer::new(c.uid(), c.gid(), c.pid()),
                        Err(e) => {
                            tracing::debug!(error = %e, "control API: the peer's credentials cannot be read");
                            Peer::default()
                        }
                    };
                    let ctx = ctx.clone();
                    tokio::spawn(async move {
                        serve(stream, peer, ctx).await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control API: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn serve(stream: UnixStream, peer: Peer, ctx: Arc<Context>) {
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(super::respond(req, peer, &ctx).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(false);
    if let Err(e) = builder.serve_connection(TokioIo::new(stream), svc).await {
        tracing::debug!(error = %e, "control connection ended with an error");
    }
}
