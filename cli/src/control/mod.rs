//! Talking to the agent's control API: HTTP/1.1 over its unix socket (`--socket`, `$AIRLOCK_SOCKET`,
//! else `airlock.sock` in the state directory). A connection's peer credentials — the pid and uid of
//! the process that made the socket listen, from the kernel — are read before a byte is sent, so
//! `trust` can hold the very connection a request goes over to the agent's runtime file; and each
//! answer comes with the kernel's word on which process wrote it (the one that accepted the
//! connection: the agent, even on a socket its service manager made). The HTTP is written by
//! hand (one request per connection, `Connection: close`, a bounded answer with `Content-Length` or
//! chunked framing): no client crate takes a connection whose credentials were checked first — ureq
//! 3's connector API is semver-exempt ("unversioned") and hides the socket — and a blocking CLI has no
//! use for hyper's runtime. It must not interpret what the agent says, nor decide whether to believe it.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as os;
#[cfg(not(unix))]
mod other;
#[cfg(not(unix))]
use other as os;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde_json::Value;

use os::StreamExt;

/// The environment variable naming the control socket.
pub const SOCKET_ENV: &str = "AIRLOCK_SOCKET";
/// Longest answer read from the agent.
const MAX_ANSWER: u64 = 64 << 20;
/// How long the agent may take to answer.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Where the control socket is, and where that came from.
#[derive(Debug, Clone)]
pub struct SocketPath {
    /// The socket.
    pub path: PathBuf,
    /// As a phrase: "given with --socket", "given in $AIRLOCK_SOCKET", "in the state directory".
    pub source: String,
}

impl SocketPath {
    /// `--socket`, else `$AIRLOCK_SOCKET`, else `default` (the state directory's socket).
    pub fn choose(explicit: Option<&Path>, default: PathBuf) -> SocketPath {
        if let Some(p) = explicit {
            return SocketPath {
                path: p.to_path_buf(),
                source: "given with --socket".into(),
            };
        }
        if let Some(p) = std::env::var_os(SOCKET_ENV).filter(|v| !v.is_empty()) {
            return SocketPath {
                path: PathBuf::from(p),
                source: format!("given in ${SOCKET_ENV}"),
            };
        }
        SocketPath {
            path: default,
            source: "in the state directory".into(),
        }
    }
}

/// The kernel's word on who serves a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    /// The server process.
    pub pid: u32,
    /// Its effective uid.
    pub uid: u32,
}

/// An open connection to the control socket.
pub struct Conn {
    stream: os::Stream,
    path: PathBuf,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("path", &self.path).finish()
    }
}

/// An answer: its status and JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Value,
    /// The one process that wrote every byte of it, as the kernel attests (Linux); `None` where
    /// the OS does not tell, or when several processes (or one without credentials) wrote it.
    pub writer: Option<PeerCred>,
}

impl Answer {
    /// The error message the agent gave, or the status.
    pub fn message(&self) -> String {
        self.body["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("status {}", self.status))
    }
}

/// Connects to the socket. `Ok(None)`: nothing answers there (no socket, or one left by an agent
/// that is gone).
pub fn connect(path: &Path) -> Result<Option<Conn>> {
    match os::connect(path) {
        Ok(stream) => {
            stream.set_timeouts(TIMEOUT)?;
            Ok(Some(Conn {
                stream,
                path: path.to_path_buf(),
            }))
        }
        Err(e) if is_not_there(&e) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(anyhow!(
            "cannot connect to the agent's control socket {}: {e}. Its state directory must let \
             other users pass (`chmod 711` it, as airlockd creates it) and the socket must be mode \
             0666; or run airlock as the agent's user",
            path.display()
        )),
        Err(e) => Err(anyhow!(
            "cannot connect to the agent's control socket {}: {e}",
            path.display()
        )),
    }
}

fn is_not_there(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
    )
}

impl Conn {
    /// Who serves the socket, where the OS tells (Linux: `SO_PEERCRED`).
    pub fn peer(&self) -> Option<PeerCred> {
        self.stream.peer()
    }

    /// Sends one request and reads its answer; the connection is used up.
    pub fn request(mut self, method: &str, path: &str, body: &[u8]) -> Result<Answer> {
        let shown = self.path.display().to_string();
        let (raw, writer) = send_request(&mut self.stream, method, path, body)
            .and_then(|()| self.stream.read_answer(MAX_ANSWER))
            .with_context(|| format!("{method} {path} on the control socket {shown} failed"))?;
        let (status, bytes) = parse(&raw).map_err(|e| {
            anyhow!("the agent on {shown} sent an answer that is not HTTP for {path}: {e}")
        })?;
        let body: Value = serde_json::from_slice(&bytes).map_err(|_| {
            anyhow!(
                "the agent on {shown} sent something that is not JSON for {path} (status {status})"
            )
        })?;
        Ok(Answer {
            status,
            body,
            writer,
        })
    }
}

fn send_request<S: Write>(s: &mut S, method: &str, path: &str, body: &[u8]) -> io::Result<()> {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: airlock\r\nUser-Agent: airlock/{}\r\nAccept: application/json\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n",
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    s.flush()
}

/// The status and body of one HTTP/1.1 response read to its end.
fn parse(raw: &[u8]) -> std::result::Result<(u16, Vec<u8>), String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the headers never ended")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "the headers are not text")?;
    let rest = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..5))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("{status_line:?} is not a status line"))?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| "a bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    if chunked {
        return Ok((status, dechunk(rest)?));
    }
    match length {
        Some(n) if rest.len() < n => {
            Err(format!("the body ended after {} of {n} bytes", rest.len()))
        }
        Some(n) => Ok((status, rest[..n].to_vec())),
        None => Ok((status, rest.to_vec())),
    }
}

fn dechunk(mut rest: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk size line never ended")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| "a bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "a bad chunk size")?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size + 2 {
            return Err("a chunk ended early".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn answers_are_read_with_either_framing_and_junk_is_refused() {
        let (s, b) = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}trailing").unwrap();
        assert_eq!((s, b.as_slice()), (200, b"{}".as_slice()));
        let (s, b) = parse(
            b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;x=1\r\n\":1}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((s, b.as_slice()), (403, b"{\"a\":1}".as_slice()));
        let (s, b) = parse(b"HTTP/1.0 404 Not Found\r\n\r\n{}").unwrap();
        assert_eq!((s, b.as_slice()), (404, b"{}".as_slice()));
        assert!(parse(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{}").is_err());
        assert!(parse(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
    }

    #[test]
    fn the_request_is_one_closed_exchange_with_its_length() {
        struct Wire {
            sent: Vec<u8>,
            reply: io::Cursor<Vec<u8>>,
        }
        impl Read for Wire {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.reply.read(buf)
            }
        }
        impl Write for Wire {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.sent.extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = Wire {
            sent: Vec::new(),
            reply: io::Cursor::new(b"HTTP/1.1 200 OK\r\n\r\n{}".to_vec()),
        };
        send_request(&mut w, "POST", "/airlock/v1/ca/reload", b"abc").unwrap();
        let mut raw = Vec::new();
        w.read_to_end(&mut raw).unwrap();
        let sent = String::from_utf8(w.sent).unwrap();
        assert!(
            sent.starts_with("POST /airlock/v1/ca/reload HTTP/1.1\r\nHost: airlock\r\n"),
            "{sent}"
        );
        assert!(
            sent.contains("Connection: close\r\nContent-Length: 3\r\n\r\nabc"),
            "{sent}"
        );
        assert!(
            !sent.to_ascii_lowercase().contains("origin")
                && !sent.to_ascii_lowercase().contains("referer")
        );
        assert_eq!(parse(&raw).unwrap().0, 200);
    }

    #[test]
    fn the_socket_is_the_flag_then_the_environment_then_the_state_dirs() {
        let d = PathBuf::from("/s/airlock.sock");
        let p = SocketPath::choose(Some(Path::new("/x.sock")), d.clone());
        assert_eq!(
            (p.path.as_path(), p.source.as_str()),
            (Path::new("/x.sock"), "given with --socket")
        );
        if std::env::var_os(SOCKET_ENV).is_none() {
            assert_eq!(SocketPath::choose(None, d.clone()).path, d);
        }
    }
}
