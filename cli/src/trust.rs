//! Deciding whether what answers is this machine's own agent, before the CLI uses a word it says. The
//! chain of trust starts at the state directory, which the CLI picks locally and never from an
//! answer: the directory (owned by the agent's user, writable by nobody else) → the runtime file in it
//! (same owner; its `uid` is that owner) → the control socket (`airlock.sock` in the directory, or
//! `--socket`): its file owned by root or that uid, and the kernel's peer credentials of the very
//! connection a request goes over naming the file's pid and uid, checked before a byte is sent, on
//! every connection → the status answer (the same pid; the CA fingerprint of the certificate on disk)
//! → the proxy port in the file, where tools get pointed (its listening socket owned by that uid, held
//! by that pid). Under socket activation (the runtime file says which sockets the service manager
//! made) a socket's creator is root, not the agent: then the control socket passes only if the file's
//! pid holds it where we can see, and the kernel names that pid and uid as the writer of every byte of
//! the answer (`SCM_CREDENTIALS`); the root-owned port only if that pid holds it, or, where its open
//! files are hidden from us, the verified agent reports serving that very socket. With the control socket silent, something holding the agent's port is refused, not
//! taken for the agent. Every path the CLI hands out comes from the state directory. It owns these
//! checks and the refusal messages; it must not print anything or build environments.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use airlock_agent::ca::CaInfo;
use airlock_agent::paths::{StateDir, STATE_DIR_ENV};
use anyhow::{anyhow, Context, Result};
use serde_json::Value;

use crate::client::{self, AgentAddr};
use crate::control::{self, PeerCred, SocketPath};
use crate::owner::{self, Kind};
use crate::peer::{self, Listener, Lookup, PidProof};

/// Exit code when something answers where the agent should be but is not the verified agent.
pub const EXIT_UNTRUSTED: u8 = 4;
/// Exit code when the state directory, or a file in it, could have been written by someone else.
pub const EXIT_UNSAFE_STATE: u8 = 5;

// `SYSTEM_STATE_DIR`: where an agent run as a system service keeps its state (what
// `StateDir::resolve` picks for root). A user's `airlock` looks there when the user's own state
// directory has no running agent.
use airlock_agent::paths::SYSTEM_STATE_DIR;

const STATUS_PATH: &str = "/airlock/v1/status";

/// Why the CLI refuses to go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The state directory or a file in it may have been written by another user.
    UnsafeState,
    /// What answers on the agent's address is not the agent the state directory names.
    Untrusted,
}

/// A refusal: the CLI will not use the agent's answer or the state directory.
#[derive(Debug)]
pub struct Refused {
    /// Which kind.
    pub kind: RefusalKind,
    /// What happened, why it is not trusted, and what to do.
    pub message: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refused {}

impl Refused {
    /// The process exit code for this refusal.
    pub fn exit_code(&self) -> u8 {
        match self.kind {
            RefusalKind::UnsafeState => EXIT_UNSAFE_STATE,
            RefusalKind::Untrusted => EXIT_UNTRUSTED,
        }
    }

    fn unsafe_state(message: String) -> anyhow::Error {
        anyhow::Error::new(Refused {
            kind: RefusalKind::UnsafeState,
            message,
        })
    }

    fn untrusted(message: String) -> anyhow::Error {
        anyhow::Error::new(Refused {
            kind: RefusalKind::Untrusted,
            message,
        })
    }
}

/// A state directory that passed the ownership checks (or does not exist yet).
#[derive(Debug, Clone)]
pub struct TrustedState {
    /// The directory.
    pub dir: StateDir,
    /// Its owner: the agent's user. `None` if it does not exist or the OS has no unix owners.
    pub owner: Option<u32>,
}

/// Picks the state directory locally — `--state-dir`, else `$AIRLOCK_STATE_DIR`, else this user's
/// default, else the system one if only it has a running agent — and checks that nobody but its
/// owner (and root) could have written it.
pub fn state_dir(explicit: Option<&Path>) -> Result<TrustedState> {
    let named = explicit.map(Path::to_path_buf).or_else(|| {
        std::env::var_os(STATE_DIR_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let dir = match named {
        Some(p) => StateDir::new(p),
        None => {
            let mine = StateDir::resolve(None)?;
            let system = StateDir::new(SYSTEM_STATE_DIR);
            if !mine.runtime_file().exists() && system.runtime_file().exists() {
                system
            } else {
                mine
            }
        }
    };
    check_state_dir(dir)
}

fn check_state_dir(dir: StateDir) -> Result<TrustedState> {
    let root = dir.root().to_path_buf();
    let facts = match owner::facts(&root, true) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(TrustedState {
                dir,
                owner: None,
            })
        }
        Err(e) => {
            return Err(anyhow!(
                "cannot read the state directory {}: {e}. Pass --state-dir with the agent's state directory",
                root.display()
            ))
        }
    };
    if facts.kind != Kind::Dir {
        return Err(anyhow!(
            "the state directory {} is not a directory. Pass --state-dir with the agent's state directory",
            root.display()
        ));
    }
    if facts.writable_by_others() {
        return Err(Refused::unsafe_state(format!(
            "the state directory {} is writable by {} (mode {}): whoever can write there can plant a \
             runtime file and a CA that airlock would then trust, so airlock trusts nothing in it. Make \
             it private with `chmod 711 {}` (the way airlockd creates it), or pass --state-dir",
            root.display(),
            facts.who_else_writes(),
            facts.mode_text(),
            root.display()
        )));
    }
    if let Some(uid) = facts.uid {
        // A directory owned by you or root cannot have been planted by another user. One owned by
        // anyone else is only as safe as the directories above it: in /tmp, say, another user could
        // have made it and its whole contents.
        if uid != 0 && owner::current_uid() != Some(uid) {
            check_ancestors(&root, uid)?;
        }
    }
    Ok(TrustedState {
        dir,
        owner: facts.uid,
    })
}

/// Every directory above `root` (as given, and with symbolic links resolved) must be owned by root or
/// `uid` and writable by nobody else.
fn check_ancestors(root: &Path, uid: u32) -> Result<()> {
    let given = std::env::current_dir()
        .map(|cwd| cwd.join(root))
        .unwrap_or_else(|_| root.to_path_buf());
    let resolved = std::fs::canonicalize(root)
        .with_context(|| format!("cannot resolve the state directory {}", root.display()))?;
    for path in [given, resolved] {
        for dir in path.ancestors().skip(1) {
            let facts = owner::facts(dir, true).with_context(|| {
                format!("cannot check {} above the state directory", dir.display())
            })?;
            let why = match facts.uid {
                Some(u) if u != 0 && u != uid => Some(format!("belongs to {}", owner::who(u))),
                _ if facts.writable_by_others() => Some(format!(
                    "is writable by {} (mode {})",
                    facts.who_else_writes(),
                    facts.mode_text()
                )),
                _ => None,
            };
            if let Some(why) = why {
                return Err(Refused::unsafe_state(format!(
                    "the state directory {} belongs to {}, not to you or root, and {} above it {why}: \
                     another user could have put it there, so airlock trusts nothing in it. Pass the \
                     --state-dir of your agent, or keep the agent's state where only its user and root \
                     can write (airlockd's default is {SYSTEM_STATE_DIR} for a service, \
                     ~/.local/state/airlock for a user)",
                    root.display(),
                    owner::who(uid),
                    dir.display()
                )));
            }
        }
    }
    Ok(())
}

/// What the runtime file says about the agent that wrote it.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The file.
    pub path: PathBuf,
    /// The agent's listen address.
    pub listen: SocketAddr,
    /// The agent's pid.
    pub pid: u32,
    /// The agent's uid (`None` on systems without uids).
    pub uid: Option<u32>,
    /// The proxy port's listening socket was made by the service manager (socket activation).
    pub inherited_proxy: bool,
    /// The control socket was made by the service manager.
    pub inherited_control: bool,
}

impl Runtime {
    /// Whether any of the agent's sockets came from the service manager.
    pub fn activated(&self) -> bool {
        self.inherited_proxy || self.inherited_control
    }
}

/// Reads and checks the runtime file; `None` if there is none.
fn read_runtime(state: &TrustedState) -> Result<Option<Runtime>> {
    let path = state.dir.runtime_file();
    let facts = match owner::facts(&path, false) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(anyhow!(
                "cannot read the runtime file {}: {e}",
                path.display()
            ))
        }
    };
    let shown = path.display();
    if facts.kind != Kind::File {
        return Err(Refused::unsafe_state(format!(
            "the runtime file {shown} is not a regular file (airlockd writes one in place), so airlock \
             does not trust it. Remove it and restart airlockd"
        )));
    }
    if facts.writable_by_others() {
        return Err(Refused::unsafe_state(format!(
            "the runtime file {shown} is writable by {} (mode {}), so anyone could have changed where \
             it says the agent is. Remove it and restart airlockd, which writes it mode 0644",
            facts.who_else_writes(),
            facts.mode_text()
        )));
    }
    if let (Some(file_uid), Some(dir_uid)) = (facts.uid, state.owner) {
        if file_uid != dir_uid {
            return Err(Refused::unsafe_state(format!(
                "the runtime file {shown} belongs to {}, but its state directory belongs to {}: it was \
                 not written by the agent that owns the directory, so airlock does not trust it. Remove \
                 it and restart airlockd as {}",
                owner::who(file_uid),
                owner::who(dir_uid),
                owner::who(dir_uid)
            )));
        }
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the runtime file {shown}"))?;
    let broken = |what: &str| {
        anyhow!(
            "the runtime file {shown} {what}. It is written by airlockd: restart airlockd to rewrite it"
        )
    };
    let v: Value = serde_json::from_str(&text).map_err(|_| broken("is not JSON"))?;
    let listen: SocketAddr = v["listen"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| broken("has no \"listen\" address"))?;
    let pid = v["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .ok_or_else(|| broken("has no \"pid\""))?;
    let uid = v["uid"].as_u64().and_then(|u| u32::try_from(u).ok());
    if let Some(file_uid) = facts.uid {
        match uid {
            Some(u) if u == file_uid => {}
            Some(u) => {
                return Err(Refused::unsafe_state(format!(
                "the runtime file {shown} says the agent runs as {}, but the file belongs to {}: \
                     airlockd writes its own uid, so this file is not what it wrote. Remove it and \
                     restart airlockd",
                owner::who(u),
                owner::who(file_uid)
            )))
            }
            None => {
                return Err(broken(
                    "has no \"uid\" (an airlockd older than this airlock wrote it)",
                ))
            }
        }
    }
    if !listen.ip().is_loopback() {
        return Err(broken(&format!(
            "names {listen}, which is not a loopback address"
        )));
    }
    let inherited = |name: &str| {
        v["inherited"]
            .as_array()
            .is_some_and(|a| a.iter().any(|n| n == name))
    };
    Ok(Some(Runtime {
        path,
        listen,
        pid,
        uid,
        inherited_proxy: inherited("proxy"),
        inherited_control: inherited("control"),
    }))
}

/// The device CA as found in the state directory.
#[derive(Debug, Clone)]
pub struct CaFiles {
    /// The certificate's facts, fingerprint computed locally.
    pub info: CaInfo,
    /// The CA certificate.
    pub cert: PathBuf,
    /// The merged bundle, or the CA certificate itself when there is no current bundle.
    pub bundle: PathBuf,
    /// The Java trust store (PKCS#12), when there is one holding the current CA.
    pub java_trust_store: Option<PathBuf>,
}

/// Reads the CA certificate from the state directory, after checking that the CA directory, the
/// certificate and the bundle belong to the state directory's owner and nobody else may write them.
pub fn ca_files(state: &TrustedState) -> Result<CaFiles> {
    let dir = &state.dir;
    for path in [
        dir.ca_dir(),
        dir.ca_cert(),
        dir.merged_bundle(),
        dir.java_trust_store(),
    ] {
        let facts = match owner::facts(&path, false) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(anyhow!("cannot read {}: {e}", path.display())),
        };
        let foreign = match (facts.uid, state.owner) {
            (Some(f), Some(d)) if f != d => Some(format!("belongs to {}", owner::who(f))),
            _ => None,
        };
        let why = foreign
            .or_else(|| (facts.kind == Kind::Symlink).then(|| "is a symbolic link".to_string()))
            .or_else(|| {
                facts.writable_by_others().then(|| {
                    format!(
                        "is writable by {} (mode {})",
                        facts.who_else_writes(),
                        facts.mode_text()
                    )
                })
            });
        if let Some(why) = why {
            return Err(Refused::unsafe_state(format!(
                "{} {why}, so it may not be the CA airlockd made, and airlock will not point tools at \
                 it. Restore what airlockd writes (its user owns the ca directory, mode 0755, and the \
                 certificates in it, mode 0644), or run `airlock ca rotate` as the agent's user",
                path.display()
            )));
        }
    }
    let info = CaInfo::read(dir).map_err(|e| {
        anyhow!(
            "{e}. No device CA at {} yet: start `airlockd` once to create it (or pass --state-dir)",
            dir.ca_cert().display()
        )
    })?;
    // The bundle is rewritten whenever the CA changes; one that does not hold the current CA is
    // left from before and would make tools reject the agent's certificates.
    let bundle = std::fs::read_to_string(dir.merged_bundle())
        .ok()
        .filter(|b| b.contains(info.cert_pem.trim()))
        .map(|_| dir.merged_bundle())
        .unwrap_or_else(|| dir.ca_cert());
    let java_trust_store =
        Some(dir.java_trust_store()).filter(|p| airlock_agent::ca::trust_store_holds(p, &info));
    Ok(CaFiles {
        cert: dir.ca_cert(),
        info,
        bundle,
        java_trust_store,
    })
}

/// Whether two SHA-256 fingerprints are the same: hex digits compared case-insensitively, separators
/// ignored, and both must be complete (64 digits).
pub fn same_fingerprint(a: &str, b: &str) -> bool {
    let digits = |s: &str| -> Option<String> {
        let d: String = s
            .chars()
            .filter(|c| !matches!(c, ':' | ' '))
            .map(|c| c.to_ascii_uppercase())
            .collect();
        (d.len() == 64 && d.chars().all(|c| c.is_ascii_hexdigit())).then_some(d)
    };
    matches!((digits(a), digits(b)), (Some(a), Some(b)) if a == b)
}

/// How the control socket was tied to the runtime file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketProof {
    /// The kernel's peer credentials of the connection are the runtime file's pid and uid.
    PeerCred,
    /// This OS gives no peer credentials: the socket file's owner and the answer's pid matched.
    FileOwner,
    /// The service manager (root) made the socket; the runtime file's pid holds it (`holds`, where
    /// its open files are visible to us) and the kernel names it as the writer of every answer.
    ServiceManager {
        /// Whether we saw the pid holding the socket (its open files are hidden from other users).
        holds: bool,
    },
}

/// The agent the state directory names, verified.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The state directory.
    pub state: TrustedState,
    /// Its runtime file.
    pub runtime: Runtime,
    /// The agent's status answer.
    pub status: Value,
    /// The CA in the state directory (the one the agent presents).
    pub ca: CaFiles,
    /// The control socket the agent answers on.
    pub socket: SocketPath,
    /// How the socket was tied to the runtime file.
    socket_proof: SocketProof,
    /// How the pid was tied to the proxy port's listening socket, where the OS shows it.
    port_proof: Option<PidProof>,
}

impl Verified {
    /// The agent's address, from the runtime file.
    pub fn addr(&self) -> SocketAddr {
        self.runtime.listen
    }

    /// The agent's proxy URL, from the runtime file.
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.runtime.listen)
    }

    /// How it was verified, for `airlock status`.
    pub fn how(&self) -> String {
        let owner = self
            .runtime
            .uid
            .map(owner::who)
            .unwrap_or_else(|| "its user".into());
        let pid = self.runtime.pid;
        let socket = match self.socket_proof {
            SocketProof::PeerCred => {
                format!("pid {pid} of {owner} answers on the control socket (peer credentials)")
            }
            SocketProof::FileOwner => format!(
                "the control socket belongs to {owner} and its answer names pid {pid} (this OS gives \
                 no peer credentials)"
            ),
            SocketProof::ServiceManager { holds } => format!(
                "the service manager made the control socket and pid {pid} of {owner}{} writes its \
                 answers (kernel credentials)",
                if holds { ", which holds it," } else { "" }
            ),
        };
        let port = match self.port_proof {
            Some(PidProof::HoldsSocket) => " and holds the proxy port's listening socket",
            Some(PidProof::RunsAsOwner) => {
                " and the proxy port's listening socket belongs to that user"
            }
            Some(PidProof::ReportedByAgent) => {
                " and serves the proxy port's listening socket (root's, as it reports)"
            }
            None => " (this OS does not show who holds the proxy port)",
        };
        format!("{socket}{port}; CA matches the state directory")
    }

    /// Whether the agent lets this user change it (root, or the agent's user), as it told us.
    pub fn may_write(&self) -> bool {
        self.status["caller"]["access"] == "write"
    }

    /// GETs from the verified agent over a new connection to its control socket, whose peer must
    /// still be the runtime file's pid.
    pub fn get(&self, path: &str) -> Result<Value> {
        self.call("GET", path)
    }

    /// POSTs to the verified agent, the same way.
    pub fn post(&self, path: &str) -> Result<Value> {
        self.call("POST", path)
    }

    /// Sends `body` to the verified agent and returns the status and answer as they are (a refusal
    /// is an answer here, not an error).
    pub fn send(&self, method: &str, path: &str, body: &[u8]) -> Result<(u16, Value)> {
        let answer = self.exchange(method, path, body)?;
        Ok((answer.status, answer.body))
    }

    /// One request over a new connection whose peer is still the agent, and whose answer's writer
    /// is too.
    fn exchange(&self, method: &str, path: &str, body: &[u8]) -> Result<control::Answer> {
        let answer = self.connect()?.request(method, path, body)?;
        check_writer(&self.socket, &self.runtime, self.socket_proof, &answer)?;
        Ok(answer)
    }

    fn connect(&self) -> Result<control::Conn> {
        let shown = self.socket.path.display();
        let conn = control::connect(&self.socket.path)?.ok_or_else(|| {
            anyhow!(
                "the agent stopped answering on its control socket {shown}. Start airlockd and run \
                 the command again"
            )
        })?;
        if let Some(cred) = conn.peer() {
            let activated = matches!(self.socket_proof, SocketProof::ServiceManager { .. });
            let by_manager = activated && cred.uid == 0;
            if !same_process(cred, &self.runtime) && !by_manager {
                return Err(Refused::untrusted(format!(
                    "the control socket {shown} is served by pid {} of {} now, not by the agent \
                     airlock verified (pid {}): the agent restarted, or another program took the \
                     socket. Run the command again",
                    cred.pid,
                    owner::who(cred.uid),
                    self.runtime.pid
                )));
            }
        }
        Ok(conn)
    }

    fn call(&self, method: &str, path: &str) -> Result<Value> {
        let answer = self.exchange(method, path, &[])?;
        if answer.status == 403 {
            return Err(anyhow!(
                "the agent refused {method} {path}: {}",
                answer.message()
            ));
        }
        if !(200..300).contains(&answer.status) {
            return Err(anyhow!(
                "the agent answered {} for {method} {path}: {}",
                answer.status,
                answer.message()
            ));
        }
        Ok(answer.body)
    }
}

/// No agent answers where the state directory says it would be.
#[derive(Debug, Clone)]
pub struct NotRunning {
    /// The proxy address we looked at.
    pub target: AgentAddr,
    /// The control socket we tried.
    pub socket: SocketPath,
    /// A runtime file left by an agent that is gone.
    pub stale: Option<Runtime>,
}

impl NotRunning {
    /// The sentence for the user.
    pub fn message(&self) -> String {
        let stale = match &self.stale {
            Some(rt) => format!(
                "; {} is left from pid {}, which no longer listens there",
                rt.path.display(),
                rt.pid
            ),
            None => String::new(),
        };
        format!(
            "the Airlock agent is not running (nothing answers on the control socket {} ({}) nor at \
             {}, {}{stale}). Start it with `airlockd` (or pass --state-dir if it keeps its state \
             elsewhere)",
            self.socket.path.display(),
            self.socket.source,
            self.target.addr,
            self.target.source
        )
    }
}

/// The outcome of looking for the agent.
#[derive(Debug, Clone)]
pub enum Agent {
    /// The agent the state directory names, verified.
    Verified(Box<Verified>),
    /// Nothing answers.
    NotRunning(NotRunning),
}

/// Looks for the agent that `state` names and verifies it. Its control socket must be served by the
/// runtime file's pid and uid (the kernel's peer credentials of the connection, before a byte is
/// sent), the socket file must belong to root or that uid, the answer must carry that pid and the
/// fingerprint of the CA on disk, and the proxy port's listener must be the agent's too (it is where
/// tools get pointed). `named` is an address the user gave (`--addr`, `$AIRLOCK_ADDR`): it must be
/// where the runtime file says the agent listens, so that it can never point the CLI at another
/// program; without a runtime file nothing vouches for whatever answers, and it is refused.
pub fn find_agent(
    state: &TrustedState,
    named: Option<&AgentAddr>,
    socket: Option<&Path>,
) -> Result<Agent> {
    let socket = SocketPath::choose(socket, state.dir.control_socket());
    let deadline = std::time::Instant::now() + RESTART_WAIT;
    let (runtime, conn) = loop {
        let runtime = read_runtime(state)?;
        let conn = control::connect(&socket.path)?;
        let restarting = conn
            .as_ref()
            .and_then(control::Conn::peer)
            .is_some_and(|c| between_instances(c, runtime.as_ref()));
        if !restarting || std::time::Instant::now() >= deadline {
            break (runtime, conn);
        }
        drop(conn);
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let target = target(state, runtime.as_ref(), named)?;
    let Some(conn) = conn else {
        return nobody_on_the_socket(state, target, socket, runtime);
    };
    let Some(rt) = runtime else {
        let why = format!(
            "{} does not exist, so no agent using that state directory is running",
            state.dir.runtime_file().display()
        );
        return Err(someone_else_on_socket(&socket, conn.peer(), &why));
    };
    check_socket_file(&socket, &rt)?;
    let socket_proof = match conn.peer() {
        Some(cred) if same_process(cred, &rt) => SocketProof::PeerCred,
        Some(cred) if cred.uid == 0 && rt.inherited_control => {
            let inodes = peer::unix_listeners(&socket.path);
            match by_service_manager(&rt, &inodes, peer::holding) {
                Ok(proof) => proof,
                Err(why) => return Err(someone_else_on_socket(&socket, Some(cred), &why)),
            }
        }
        Some(cred) => {
            let why = if rt.uid.is_some_and(|u| u != cred.uid) {
                format!(
                    "{}, but the socket is served by {}",
                    runtime_says(&rt),
                    owner::who(cred.uid)
                )
            } else {
                format!(
                    "{}, but the socket is served by pid {}",
                    runtime_says(&rt),
                    cred.pid
                )
            };
            return Err(someone_else_on_socket(&socket, Some(cred), &why));
        }
        None => SocketProof::FileOwner,
    };
    let answer = conn.request("GET", STATUS_PATH, &[])?;
    check_writer(&socket, &rt, socket_proof, &answer)?;
    if answer.status != 200 {
        return Err(anyhow!(
            "the agent on {} answered {} for GET {STATUS_PATH}: {}",
            socket.path.display(),
            answer.status,
            answer.message()
        ));
    }
    let status = answer.body;
    let ca = check_answer(state, &socket, &rt, &status)?;
    let port_proof = match peer::lookup(rt.listen)? {
        Lookup::Found(l) => {
            let reported = status["listeners"]["proxy_socket_inode"].as_u64();
            Some(check_listener(&target, &l, &rt, reported)?)
        }
        Lookup::Nobody => {
            return Err(anyhow!(
            "the agent (pid {}) answers on its control socket, but nothing listens on its proxy \
                 address {} that {} names. Restart airlockd",
            rt.pid,
            rt.listen,
            rt.path.display()
        ))
        }
        Lookup::Unsupported => None,
    };
    Ok(Agent::Verified(Box::new(Verified {
        state: state.clone(),
        runtime: rt,
        status,
        ca,
        socket,
        socket_proof,
        port_proof,
    })))
}

/// Nothing answers on the control socket: the agent is not running — unless something holds its
/// proxy port, where the user's tools may still be pointed, which is refused as not the agent.
fn nobody_on_the_socket(
    state: &TrustedState,
    target: AgentAddr,
    socket: SocketPath,
    runtime: Option<Runtime>,
) -> Result<Agent> {
    let listener = match peer::lookup(target.addr)? {
        Lookup::Nobody => None,
        Lookup::Found(l) => Some(Some(l)),
        Lookup::Unsupported => client::answers(target.addr).then_some(None),
    };
    let Some(listener) = listener else {
        return Ok(Agent::NotRunning(NotRunning {
            target,
            socket,
            stale: runtime,
        }));
    };
    let Some(rt) = runtime else {
        let why = format!(
            "{} does not exist, so no agent using that state directory is running",
            state.dir.runtime_file().display()
        );
        return Err(someone_else(&target, listener.as_ref(), &why));
    };
    let Some(l) = listener else {
        let why = format!(
            "{}, but nothing answers on its control socket {}",
            runtime_says(&rt),
            socket.path.display()
        );
        return Err(someone_else(&target, None, &why));
    };
    check_listener(&target, &l, &rt, None)?;
    Err(anyhow!(
        "the agent (pid {}) listens on {} but does not answer on its control socket {} ({}): the \
         socket was removed, or the agent is older than this airlock. Restart airlockd",
        rt.pid,
        target.addr,
        socket.path.display(),
        socket.source
    ))
}

/// How long the CLI waits for a socket-activated agent to come back (`Restart=always`, `RestartSec=1`)
/// before judging what it finds.
const RESTART_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether a root-made control socket is held by the service manager between two instances of the
/// agent: its runtime file is gone (a clean stop removes it) or names a process that has exited (a
/// killed one leaves it). Connections then wait in the backlog for the next instance, whose runtime
/// file is what to verify it against.
fn between_instances(peer: PeerCred, runtime: Option<&Runtime>) -> bool {
    if peer.uid != 0 {
        return false;
    }
    match runtime {
        None => true,
        Some(rt) => {
            rt.inherited_control
                && rt.pid != peer.pid
                && peer::holding(rt.pid, 0) == peer::Holding::Gone
        }
    }
}

/// Whether the kernel's peer credentials are the runtime file's pid and uid.
fn same_process(cred: PeerCred, rt: &Runtime) -> bool {
    cred.pid == rt.pid && rt.uid.is_none_or(|u| u == cred.uid)
}

/// A control socket whose peer is root, with a runtime file that says the service manager made it:
/// the file's pid must hold one of the listening sockets bound at the path (`inodes`, from the
/// kernel's table) wherever we can see its open files; the writer check on every answer does the
/// rest. `Err` says why not, as a clause after "it is not your Airlock agent:".
fn by_service_manager(
    rt: &Runtime,
    inodes: &[u64],
    holding: impl Fn(u32, u64) -> peer::Holding,
) -> std::result::Result<SocketProof, String> {
    use peer::Holding;
    let says = runtime_says(rt);
    let mut hidden = inodes.is_empty();
    for inode in inodes {
        match holding(rt.pid, *inode) {
            Holding::Yes => return Ok(SocketProof::ServiceManager { holds: true }),
            Holding::No => {}
            Holding::Hidden => hidden = true,
            Holding::Gone => {
                return Err(format!(
                    "{says}, and that process is not running (the runtime file is stale; the agent \
                     may be restarting: run the command again)"
                ))
            }
        }
    }
    if hidden {
        // Another user's process: which sockets it holds is not ours to see. Every answer's writer
        // must still be that pid (check_writer).
        return Ok(SocketProof::ServiceManager { holds: false });
    }
    Err(format!(
        "{says}, and the socket was made by root (a service manager), but that process does not \
         hold it"
    ))
}

/// The kernel's word on who wrote an answer must agree with how the socket was verified: a socket
/// the service manager made is trusted only through the writer, so there it must be the runtime
/// file's pid and uid; elsewhere a writer that is known must be too.
fn check_writer(
    socket: &SocketPath,
    rt: &Runtime,
    proof: SocketProof,
    answer: &control::Answer,
) -> Result<()> {
    let why = match (answer.writer, proof) {
        (Some(w), _) if same_process(w, rt) => return Ok(()),
        (None, SocketProof::ServiceManager { .. }) => format!(
            "{}, and the socket was made by a service manager, but the kernel did not name one \
             process as the writer of the answer",
            runtime_says(rt)
        ),
        (None, _) => return Ok(()),
        (Some(w), _) => format!(
            "{}, but the answer was written by pid {} of {}",
            runtime_says(rt),
            w.pid,
            owner::who(w.uid)
        ),
    };
    Err(someone_else_on_socket(socket, answer.writer, &why))
}

/// The socket file must belong to root or the agent's user: nobody else can have made it.
fn check_socket_file(socket: &SocketPath, rt: &Runtime) -> Result<()> {
    let facts = owner::facts(&socket.path, true)
        .with_context(|| format!("cannot read the control socket {}", socket.path.display()))?;
    match (facts.uid, rt.uid) {
        (Some(f), Some(agent)) if f != 0 && f != agent => Err(Refused::untrusted(format!(
            "the control socket {} ({}) belongs to {}, but {}: only root or the agent's user can \
             have made the agent's socket, so airlock does not talk to it. Remove it and restart \
             airlockd, or pass the --socket of your agent",
            socket.path.display(),
            socket.source,
            owner::who(f),
            runtime_says(rt)
        ))),
        _ => Ok(()),
    }
}

/// The refusal for a control socket served by something that is not the agent.
fn someone_else_on_socket(socket: &SocketPath, cred: Option<PeerCred>, why: &str) -> anyhow::Error {
    let (who, stop) = match cred {
        Some(c) => {
            let comm = peer::command_name(c.pid)
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            (
                format!("pid {}{comm}, running as {}", c.pid, owner::who(c.uid)),
                format!("Stop that process (`kill {}`)", c.pid),
            )
        }
        None => (
            "a program airlock cannot identify on this system".to_string(),
            "Stop that program".to_string(),
        ),
    };
    Refused::untrusted(format!(
        "something else answers on the control socket {} ({}): {who}. It is not your Airlock agent: \
         {why}. airlock will not use its answers. {stop}, then start airlockd; or, if your agent \
         keeps its state elsewhere, pass its --state-dir",
        socket.path.display(),
        socket.source
    ))
}

/// Where to look: the runtime file's address (which a named address must equal), else the named
/// address, else the default.
fn target(
    state: &TrustedState,
    runtime: Option<&Runtime>,
    named: Option<&AgentAddr>,
) -> Result<AgentAddr> {
    match (runtime, named) {
        (Some(rt), Some(n)) if n.addr != rt.listen => Err(Refused::untrusted(format!(
            "{} ({}) is not where the agent of {} listens: its runtime file {} says {}. airlock talks \
             only to the agent its state directory names, so that no other program on a port can pose \
             as it. Drop --addr (and unset AIRLOCK_ADDR), or pass the --state-dir of the agent that \
             listens on {}",
            n.addr,
            n.source,
            state.dir.root().display(),
            rt.path.display(),
            rt.listen,
            n.addr
        ))),
        (Some(rt), _) => Ok(AgentAddr {
            addr: rt.listen,
            source: format!("the address in {}", rt.path.display()),
        }),
        (None, Some(n)) => Ok(n.clone()),
        (None, None) => client::default_addr(),
    }
}

/// "<runtime file> says the agent is pid N running as uid U", the premise of every refusal below.
fn runtime_says(rt: &Runtime) -> String {
    let uid = rt
        .uid
        .map(|u| format!(" running as {}", owner::who(u)))
        .unwrap_or_default();
    format!(
        "{} says the agent is pid {}{uid}",
        rt.path.display(),
        rt.pid
    )
}

/// The listening socket must belong to the runtime file's uid and be held by its pid — or, when the
/// runtime file says the service manager made it, belong to root and be the agent's (see
/// [`root_listener`]). `reported` is the socket inode the verified agent says it serves.
fn check_listener(
    target: &AgentAddr,
    l: &Listener,
    rt: &Runtime,
    reported: Option<u64>,
) -> Result<PidProof> {
    if l.uid == 0 && rt.inherited_proxy && rt.uid.is_some_and(|u| u != 0) {
        return root_listener(l, rt, reported, peer::holding)
            .map_err(|why| someone_else(target, Some(l), &why));
    }
    if let Some(uid) = rt.uid.filter(|u| *u != l.uid) {
        let why = format!(
            "{}, but the socket belongs to {}, not {}",
            runtime_says(rt),
            owner::who(l.uid),
            owner::who(uid)
        );
        return Err(someone_else(target, Some(l), &why));
    }
    peer::check_pid(l, rt.pid).map_err(|reason| {
        someone_else(
            target,
            Some(l),
            &format!("{}, but {reason}", runtime_says(rt)),
        )
    })
}

/// A root-owned proxy listener of an agent whose runtime file says the service manager made it: the
/// file's pid must hold it, or — where its open files are hidden from us — the verified agent must
/// report that very socket (its inode; only root's processes can hold a root-made socket, so what is
/// left to rule out is another of root's). `Err` says why not.
fn root_listener(
    l: &Listener,
    rt: &Runtime,
    reported: Option<u64>,
    holding: impl Fn(u32, u64) -> peer::Holding,
) -> std::result::Result<PidProof, String> {
    use peer::Holding;
    let says = runtime_says(rt);
    match holding(rt.pid, l.inode) {
        Holding::Yes => Ok(PidProof::HoldsSocket),
        Holding::No => Err(format!(
            "{says}, and the socket was made by root (a service manager), but that process does not \
             hold it"
        )),
        Holding::Gone => Err(format!(
            "{says}, and that process is not running (the runtime file is stale)"
        )),
        Holding::Hidden if reported == Some(l.inode) => Ok(PidProof::ReportedByAgent),
        Holding::Hidden => Err(format!(
            "{says}, and the socket was made by root (a service manager), but the agent does not \
             report serving that socket (inode {})",
            l.inode
        )),
    }
}

/// The answer must carry the runtime file's pid and the fingerprint of the CA certificate on disk.
fn check_answer(
    state: &TrustedState,
    socket: &SocketPath,
    rt: &Runtime,
    status: &Value,
) -> Result<CaFiles> {
    let answered_pid = status["pid"].as_u64();
    if answered_pid != Some(u64::from(rt.pid)) {
        let answered = answered_pid.map_or_else(|| "no pid".to_string(), |p| format!("pid {p}"));
        let why = format!("{}, but the answer says {answered}", runtime_says(rt));
        return Err(someone_else_on_socket(socket, None, &why));
    }
    let ca = ca_files(state)?;
    let presented = status["ca"]["fingerprint_sha256"].as_str().unwrap_or("");
    if same_fingerprint(presented, &ca.info.fingerprint_sha256) {
        return Ok(ca);
    }
    let presented = if presented.is_empty() {
        "no CA fingerprint".to_string()
    } else {
        format!("the device CA SHA-256 {presented}")
    };
    Err(Refused::untrusted(format!(
        "the agent on {} (pid {}) presents {presented}, but the CA certificate in its state directory \
         ({}) has SHA-256 {}. airlock will not point your tools at a CA the agent does not use. If the \
         certificate on disk was replaced, restart airlockd so it loads it.",
        socket.path.display(),
        rt.pid,
        ca.cert.display(),
        ca.info.fingerprint_sha256
    )))
}

/// The refusal for a listener that is not the agent.
fn someone_else(target: &AgentAddr, listener: Option<&Listener>, why: &str) -> anyhow::Error {
    let (who, stop) = match listener {
        Some(l) => {
            let holders = peer::holders(l);
            let procs: Vec<String> = holders
                .iter()
                .map(|(pid, comm)| match comm {
                    Some(c) => format!("pid {pid} ({c})"),
                    None => format!("pid {pid}"),
                })
                .collect();
            let who = if procs.is_empty() {
                format!(
                    "a process of {} (which one is not visible to you)",
                    owner::who(l.uid)
                )
            } else {
                format!("{}, running as {}", procs.join(", "), owner::who(l.uid))
            };
            let stop = match holders.first() {
                Some((pid, _)) => format!("Stop that process (`kill {pid}`)"),
                None => "Stop that process".to_string(),
            };
            (who, stop)
        }
        None => (
            "a program airlock cannot identify on this system".to_string(),
            "Stop that program".to_string(),
        ),
    };
    Refused::untrusted(format!(
        "something else answers at {} ({}): {who}. It is not your Airlock agent: {why}. airlock will \
         not point your tools at it or trust its CA. {stop}, then start airlockd; or, if your agent \
         keeps its state elsewhere, pass its --state-dir",
        target.addr, target.source
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "B0:1A:02:03:04:05:06:07:08:09:0A:0B:0C:0D:0E:0F:10:11:12:13:14:15:16:17:18:19:1A:1B:1C:1D:1E:1F";

    #[test]
    fn fingerprints_compare_by_their_digits() {
        assert!(same_fingerprint(FP, FP));
        assert!(same_fingerprint(FP, &FP.to_lowercase()));
        assert!(same_fingerprint(FP, &FP.replace(':', "")));
        let other = FP.replace("B0:1A", "B0:1B");
        assert!(!same_fingerprint(FP, &other));
        assert!(
            !same_fingerprint(FP, ""),
            "a missing fingerprint never matches"
        );
        assert!(!same_fingerprint("", ""));
        let short = &FP[..FP.len() - 3];
        assert!(
            !same_fingerprint(short, short),
            "a truncated fingerprint never matches"
        );
        let junk = FP.replace("B0", "ZZ");
        assert!(!same_fingerprint(&junk, &junk));
    }

    fn rt(pid: u32, uid: u32) -> Runtime {
        Runtime {
            path: PathBuf::from("/var/lib/airlock/runtime.json"),
            listen: "127.0.0.1:8479".parse().unwrap(),
            pid,
            uid: Some(uid),
            inherited_proxy: true,
            inherited_control: true,
        }
    }

    #[test]
    fn a_service_managers_control_socket_needs_the_runtime_pid_holding_it() {
        use peer::Holding;
        let agent = rt(4242, 998);
        // The pid holds one of the sockets at the path.
        let holds = |pid: u32, inode: u64| {
            if pid == 4242 && inode == 7 {
                Holding::Yes
            } else {
                Holding::No
            }
        };
        assert_eq!(
            by_service_manager(&agent, &[5, 7], holds),
            Ok(SocketProof::ServiceManager { holds: true })
        );
        // Visible, and it holds none of them: refused.
        let e = by_service_manager(&agent, &[5], holds).unwrap_err();
        assert!(e.contains("does not hold it"), "{e}");
        // Dead pid: refused as stale.
        let e = by_service_manager(&agent, &[7], |_, _| Holding::Gone).unwrap_err();
        assert!(e.contains("stale"), "{e}");
        // Another user's process: left to the writer check.
        assert_eq!(
            by_service_manager(&agent, &[7], |_, _| Holding::Hidden),
            Ok(SocketProof::ServiceManager { holds: false })
        );
        assert_eq!(
            by_service_manager(&agent, &[], holds),
            Ok(SocketProof::ServiceManager { holds: false }),
            "no row for the path (reached another way): the writer check decides"
        );
    }

    #[test]
    fn a_socket_made_by_the_service_manager_is_trusted_only_through_its_writer() {
        let agent = rt(4242, 998);
        let socket = SocketPath {
            path: PathBuf::from("/var/lib/airlock/airlock.sock"),
            source: "in the state directory".into(),
        };
        let answer = |writer| control::Answer {
            status: 200,
            body: Value::Null,
            writer,
        };
        let manager = SocketProof::ServiceManager { holds: false };
        let me = PeerCred {
            pid: 4242,
            uid: 998,
        };
        let other = PeerCred { pid: 4243, uid: 0 };
        assert!(check_writer(&socket, &agent, manager, &answer(Some(me))).is_ok());
        let e = check_writer(&socket, &agent, manager, &answer(Some(other))).unwrap_err();
        assert!(e.to_string().contains("written by pid 4243"), "{e}");
        let e = check_writer(&socket, &agent, manager, &answer(None)).unwrap_err();
        assert!(e.to_string().contains("writer"), "{e}");
        // A socket the agent made itself: a writer the OS names must be it, none is not required.
        assert!(check_writer(&socket, &agent, SocketProof::PeerCred, &answer(None)).is_ok());
        assert!(
            check_writer(&socket, &agent, SocketProof::PeerCred, &answer(Some(other))).is_err()
        );
    }

    #[test]
    fn a_root_owned_port_is_the_agents_when_it_holds_it_or_reports_it() {
        use peer::Holding;
        let agent = rt(4242, 998);
        let l = Listener {
            bound: "127.0.0.1:8479".parse().unwrap(),
            uid: 0,
            inode: 99,
        };
        assert_eq!(
            root_listener(&l, &agent, None, |_, _| Holding::Yes),
            Ok(PidProof::HoldsSocket)
        );
        assert!(root_listener(&l, &agent, Some(99), |_, _| Holding::No).is_err());
        assert!(root_listener(&l, &agent, Some(99), |_, _| Holding::Gone).is_err());
        assert_eq!(
            root_listener(&l, &agent, Some(99), |_, _| Holding::Hidden),
            Ok(PidProof::ReportedByAgent)
        );
        let e = root_listener(&l, &agent, Some(98), |_, _| Holding::Hidden).unwrap_err();
        assert!(e.contains("inode 99"), "{e}");
        assert!(root_listener(&l, &agent, None, |_, _| Holding::Hidden).is_err());
    }

    #[cfg(unix)]
    mod unix {
        use super::super::*;
        use std::fs;
        use std::os::unix::fs::PermissionsExt;

        fn private_state() -> (tempfile::TempDir, TrustedState) {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("state");
            fs::create_dir(&root).unwrap();
            fs::set_permissions(&root, fs::Permissions::from_mode(0o711)).unwrap();
            let state = check_state_dir(StateDir::new(&root)).unwrap();
            (dir, state)
        }

        fn refusal(e: &anyhow::Error) -> Option<RefusalKind> {
            e.downcast_ref::<Refused>().map(|r| r.kind)
        }

        #[test]
        fn a_state_dir_others_can_write_is_refused() {
            let (_dir, state) = private_state();
            assert_eq!(state.owner, owner::current_uid());
            fs::set_permissions(state.dir.root(), fs::Permissions::from_mode(0o777)).unwrap();
            let e = check_state_dir(state.dir.clone()).unwrap_err();
            assert_eq!(refusal(&e), Some(RefusalKind::UnsafeState));
            assert!(e.to_string().contains("chmod 711"), "{e}");
            fs::set_permissions(state.dir.root(), fs::Permissions::from_mode(0o770)).unwrap();
            assert!(
                check_state_dir(state.dir.clone()).is_err(),
                "group-writable too"
            );
        }

        #[test]
        fn a_missing_state_dir_is_not_an_error() {
            let dir = tempfile::tempdir().unwrap();
            let s = check_state_dir(StateDir::new(dir.path().join("nope"))).unwrap();
            assert!(s.owner.is_none());
        }

        fn write_runtime(state: &TrustedState, body: &serde_json::Value, mode: u32) {
            let p = state.dir.runtime_file();
            fs::write(&p, body.to_string()).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        }

        #[test]
        fn the_runtime_file_must_name_its_owner() {
            let (_dir, state) = private_state();
            assert!(read_runtime(&state).unwrap().is_none());
            let me = owner::current_uid().unwrap();
            let good = serde_json::json!({"listen": "127.0.0.1:8479", "pid": 42, "uid": me});
            write_runtime(&state, &good, 0o644);
            let rt = read_runtime(&state).unwrap().unwrap();
            assert_eq!((rt.listen.port(), rt.pid, rt.uid), (8479, 42, Some(me)));

            let liar = serde_json::json!({"listen": "127.0.0.1:8479", "pid": 42, "uid": me + 1});
            write_runtime(&state, &liar, 0o644);
            let e = read_runtime(&state).unwrap_err();
            assert_eq!(refusal(&e), Some(RefusalKind::UnsafeState), "{e}");

            write_runtime(&state, &good, 0o666);
            let e = read_runtime(&state).unwrap_err();
            assert_eq!(refusal(&e), Some(RefusalKind::UnsafeState), "{e}");

            let old = serde_json::json!({"listen": "127.0.0.1:8479", "pid": 42});
            write_runtime(&state, &old, 0o644);
            assert!(read_runtime(&state)
                .unwrap_err()
                .to_string()
                .contains("older"));

            let remote = serde_json::json!({"listen": "10.0.0.1:8479", "pid": 42, "uid": me});
            write_runtime(&state, &remote, 0o644);
            assert!(read_runtime(&state)
                .unwrap_err()
                .to_string()
                .contains("loopback"));
        }

        #[test]
        fn a_named_address_must_agree_with_the_runtime_file() {
            let (_dir, state) = private_state();
            let me = owner::current_uid().unwrap();
            let rt = serde_json::json!({"listen": "127.0.0.1:8479", "pid": 42, "uid": me});
            write_runtime(&state, &rt, 0o644);
            let named = AgentAddr {
                addr: "127.0.0.1:9999".parse().unwrap(),
                source: "given with --addr".into(),
            };
            let e = find_agent(&state, Some(&named), None).unwrap_err();
            assert_eq!(refusal(&e), Some(RefusalKind::Untrusted));
            assert!(e.to_string().contains("Drop --addr"), "{e}");
        }
    }
}
