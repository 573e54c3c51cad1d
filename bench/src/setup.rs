//! Bringing the system under test up: the mock provider, airlockd with a policy that routes
//! api.openai.com to the mock, mitmdump with a small addon doing the same, and nginx as a plain
//! TLS-terminating reverse proxy to the mock (the floor); then the client targets, the pre-flight
//! checks that each answers 200 with the expected body, and facts about the machine. Everything
//! listens on and talks to 127.0.0.1 only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

use crate::client::{self, Client, Route, Target, PROVIDER_HOST, STREAM_BODY, STREAM_BODY_USAGE};
use crate::procs::{self, ChildGuard};
use crate::results::{
    Machine, Verification, AIRLOCK_BASE, AIRLOCK_MITM, AIRLOCK_TUNNEL, DIRECT, DIRECT_USAGE,
    MITMPROXY, NGINX,
};

/// How long a child may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The mock's ready file.
#[derive(Debug, Deserialize)]
struct MockReady {
    port: u16,
    ca_file: PathBuf,
}

/// airlockd's runtime file.
#[derive(Debug, Deserialize)]
struct AgentRuntime {
    listen: SocketAddr,
}

/// A started mock provider.
#[derive(Debug)]
pub struct Mock {
    /// Process.
    pub proc: ChildGuard,
    /// TLS address.
    pub addr: SocketAddr,
    /// Its root CA.
    pub ca_file: PathBuf,
}

/// Starts `airlock-mock` pinned to `cpus` and waits for its ready file.
pub async fn start_mock(
    bin: &Path,
    dir: &Path,
    cpus: Option<&str>,
    workers: usize,
) -> Result<Mock> {
    let cert_dir = dir.join("mock");
    std::fs::create_dir_all(&cert_dir)?;
    let ready = cert_dir.join("ready.json");
    let args: Vec<String> = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--cert-dir".into(),
        path_arg(&cert_dir),
        "--ready-file".into(),
        path_arg(&ready),
        "--workers".into(),
        workers.to_string(),
        "--record-limit".into(),
        "0".into(),
    ];
    let mut proc = ChildGuard::spawn("airlock-mock", bin, &args, cpus, dir.join("mock.log"), &[])?;
    let info: MockReady = proc
        .wait_for(READY_TIMEOUT, || {
            let text = std::fs::read_to_string(&ready).ok()?;
            serde_json::from_str(&text).ok()
        })
        .await?;
    Ok(Mock {
        proc,
        addr: SocketAddr::from(([127, 0, 0, 1], info.port)),
        ca_file: info.ca_file,
    })
}

/// A started airlockd.
#[derive(Debug)]
pub struct Agent {
    /// Process.
    pub proc: ChildGuard,
    /// Listen address.
    pub addr: SocketAddr,
    /// Its device CA.
    pub ca_file: PathBuf,
    /// Its control API's unix socket.
    pub control_socket: PathBuf,
}

/// The benchmark policy: api.openai.com intercepted and routed to the mock.
pub fn bench_policy(mock: &Mock) -> String {
    format!(
        "schema = 1\nname = \"bench\"\n\n[[hosts]]\nhost = \"{PROVIDER_HOST}\"\nprovider = \"openai\"\nprefix = \"openai\"\n\n\
         [upstream.overrides.\"{PROVIDER_HOST}\"]\naddress = \"{}\"\nca_file = {}\n",
        mock.addr,
        toml_string(&mock.ca_file)
    )
}

fn toml_string(p: &Path) -> String {
    serde_json::to_string(&p.to_string_lossy()).unwrap_or_else(|_| "\"\"".into())
}

fn path_arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Starts airlockd pinned to `cpus` with `threads` workers and waits for its runtime file and CA.
pub async fn start_agent(
    bin: &Path,
    dir: &Path,
    mock: &Mock,
    cpus: Option<&str>,
    threads: usize,
    nofile: Option<u64>,
    extra_policy: &str,
) -> Result<Agent> {
    let state = dir.join("agent-state");
    std::fs::create_dir_all(&state)?;
    let policy = dir.join("bench-policy.toml");
    let mut text = bench_policy(mock);
    text.push_str(extra_policy);
    std::fs::write(&policy, text)?;
    let args: Vec<String> = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--policy".into(),
        path_arg(&policy),
        "--state-dir".into(),
        path_arg(&state),
        "--threads".into(),
        threads.to_string(),
    ];
    let mut proc = ChildGuard::spawn_limited(
        "airlockd",
        bin,
        &args,
        cpus,
        nofile,
        dir.join("airlockd.log"),
        &[],
    )?;
    let runtime = state.join("airlockd.json");
    let ca_file = state.join("ca").join("airlock-ca.pem");
    let info: AgentRuntime = proc
        .wait_for(READY_TIMEOUT, || {
            let text = std::fs::read_to_string(&runtime).ok()?;
            let info: AgentRuntime = serde_json::from_str(&text).ok()?;
            (ca_file.exists() && procs::accepts(info.listen)).then_some(info)
        })
        .await?;
    if !info.listen.ip().is_loopback() {
        bail!("airlockd listens on {}, not loopback", info.listen);
    }
    Ok(Agent {
        proc,
        addr: info.listen,
        ca_file,
        control_socket: state.join("airlock.sock"),
    })
}

/// A started mitmdump.
#[derive(Debug)]
pub struct Mitm {
    /// Process.
    pub proc: ChildGuard,
    /// Listen address.
    pub addr: SocketAddr,
    /// Its CA.
    pub ca_file: PathBuf,
}

/// The addon: send api.openai.com to the mock (keeping the Host header), and stream SSE responses
/// instead of buffering them, as anyone running mitmproxy in front of LLM traffic would.
pub fn mitm_addon(mock: &Mock) -> String {
    format!(
        r#""""Airlock benchmark addon (written at run time): route {host} to the local mock provider."""

MOCK_HOST = "127.0.0.1"
MOCK_PORT = {port}


def request(flow):
    if flow.request.host == "{host}":
        flow.request.host = MOCK_HOST
        flow.request.port = MOCK_PORT


def responseheaders(flow):
    if flow.response.headers.get("content-type", "").startswith("text/event-stream"):
        flow.response.stream = True
"#,
        host = PROVIDER_HOST,
        port = mock.addr.port()
    )
}

/// Starts mitmdump pinned to `cpus`, with its own confdir (so its CA is fresh and ours), the addon,
/// upstream verification against the mock's CA, lazy upstream connections (so it never resolves or
/// dials the real api.openai.com) and no flow logging.
pub async fn start_mitm(
    mitmdump: &Path,
    dir: &Path,
    mock: &Mock,
    cpus: Option<&str>,
) -> Result<Mitm> {
    let confdir = dir.join("mitmproxy-conf");
    std::fs::create_dir_all(&confdir)?;
    let addon = dir.join("airlock_bench_addon.py");
    std::fs::write(&addon, mitm_addon(mock))?;
    let port = procs::free_port()?;
    let set = |kv: String| ["--set".to_string(), kv];
    let mut args: Vec<String> = vec![
        "--listen-host".into(),
        "127.0.0.1".into(),
        "--listen-port".into(),
        port.to_string(),
        "-q".into(),
        "-s".into(),
        path_arg(&addon),
    ];
    for kv in [
        format!("confdir={}", path_arg(&confdir)),
        format!("ssl_verify_upstream_trusted_ca={}", path_arg(&mock.ca_file)),
        "connection_strategy=lazy".into(),
        "upstream_cert=false".into(),
        "keep_host_header=true".into(),
        "flow_detail=0".into(),
        "termlog_verbosity=error".into(),
    ] {
        args.extend(set(kv));
    }
    let mut proc = ChildGuard::spawn(
        "mitmdump",
        mitmdump,
        &args,
        cpus,
        dir.join("mitmdump.log"),
        &[],
    )?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let ca_file = confdir.join("mitmproxy-ca-cert.pem");
    proc.wait_for(READY_TIMEOUT, || {
        (ca_file.exists() && procs::accepts(addr)).then_some(())
    })
    .await?;
    Ok(Mitm {
        proc,
        addr,
        ca_file,
    })
}

/// A started nginx (master and its one worker).
#[derive(Debug)]
pub struct Nginx {
    /// The master process.
    pub proc: ChildGuard,
    /// The worker process.
    pub worker: u32,
    /// TLS listen address.
    pub addr: SocketAddr,
    /// The CA that issued its server certificate (made by the harness).
    pub ca_file: PathBuf,
    /// `nginx -v`.
    pub version: String,
}

impl Drop for Nginx {
    /// A killed nginx master leaves its worker running (and holding the listening socket), so
    /// nginx is stopped the way it is meant to be, with SIGTERM to the master, which stops the
    /// worker first; a worker still alive after 3 s is killed by pid.
    fn drop(&mut self) {
        let alive = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .and_then(|(_, r)| r.split_whitespace().next().map(str::to_string))
                })
                .is_some_and(|state| state != "Z" && state != "X")
        };
        let _ = Command::new("kill")
            .args(["-TERM", &self.proc.pid().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while alive(self.worker) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if alive(self.worker) {
            let _ = Command::new("kill")
                .args(["-KILL", &self.worker.to_string()])
                .status();
        }
    }
}

/// Files of the harness-made PKI for nginx's listener.
#[derive(Debug)]
struct NginxPki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// Runs `openssl args…` in `dir`, failing with its stderr.
fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("cannot run openssl (needed to make nginx's server certificate)")?;
    if !out.status.success() {
        bail!(
            "openssl {} failed: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A fresh P-256 CA and a leaf for api.openai.com signed by it (the same key type as airlockd's and
/// the mock's leaves), with the openssl CLI.
fn nginx_pki(dir: &Path) -> Result<NginxPki> {
    std::fs::create_dir_all(dir)?;
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca_args = vec!["req", "-x509"];
    ca_args.extend(ec);
    ca_args.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=airlock-bench nginx CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca_args)?;
    let mut csr_args = vec!["req"];
    csr_args.extend(ec);
    csr_args.extend([
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=api.openai.com",
    ]);
    openssl(dir, &csr_args)?;
    std::fs::write(
        dir.join("leaf.ext"),
        format!(
            "subjectAltName=DNS:{PROVIDER_HOST}\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "2",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
            "-out",
            "leaf.pem",
        ],
    )?;
    Ok(NginxPki {
        ca: dir.join("ca.pem"),
        cert: dir.join("leaf.pem"),
        key: dir.join("leaf.key"),
    })
}

/// Whether this process runs as root (nginx's master then needs `user root;` to keep its workers
/// able to read the harness's files).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        .is_some_and(|euid| euid == "0")
}

/// nginx.conf: one worker, TLS in, `proxy_pass https://` to the mock with verification against the
/// mock's CA, SNI api.openai.com, HTTP/1.1 upstream with a keep-alive pool, no buffering (streams
/// pass as they come), no access log. Keep-alive request limits are lifted on both sides, as airlockd
/// has none, so no connection is recycled in the middle of a measurement.
pub fn nginx_conf(
    prefix: &Path,
    port: u16,
    mock: &Mock,
    cert: &Path,
    key: &Path,
    nofile: Option<u64>,
    as_root: bool,
) -> String {
    let p = |x: &Path| x.to_string_lossy().into_owned();
    let fds = nofile.unwrap_or(16_384);
    format!(
        r#"# Written by airlock-bench at run time: the floor for a TLS-in/TLS-out proxy.
{user}worker_processes 1;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
worker_rlimit_nofile {fds};

events {{
    worker_connections {conns};
}}

http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 120s;

    upstream mock {{
        server {mock_addr};
        keepalive 64;
        keepalive_requests 10000000;
        keepalive_timeout 120s;
    }}

    server {{
        listen 127.0.0.1:{port} ssl;
        server_name {host};
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;

        location / {{
            proxy_pass https://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host {host};
            proxy_ssl_server_name on;
            proxy_ssl_name {host};
            proxy_ssl_verify on;
            proxy_ssl_verify_depth 2;
            proxy_ssl_trusted_certificate {mock_ca};
            proxy_ssl_session_reuse on;
            proxy_buffering off;
        }}
    }}
}}
"#,
        user = if as_root { "user root;\n" } else { "" },
        prefix = p(prefix),
        fds = fds,
        conns = (fds / 2).max(1024),
        mock_addr = mock.addr,
        port = port,
        host = PROVIDER_HOST,
        cert = p(cert),
        key = p(key),
        mock_ca = p(&mock.ca_file),
    )
}

/// Starts Debian's nginx (`nginx` on PATH, or `bin`) pinned to `cpus`, in its own prefix under
/// `dir`, and waits until it accepts connections. Its worker's pid is read from the master's children.
pub async fn start_nginx(
    bin: &Path,
    dir: &Path,
    mock: &Mock,
    cpus: Option<&str>,
    nofile: Option<u64>,
) -> Result<Nginx> {
    let prefix = dir.join("nginx");
    for sub in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir_all(prefix.join(sub))?;
    }
    let pki = nginx_pki(&prefix.join("pki"))?;
    let port = procs::free_port()?;
    let conf = prefix.join("nginx.conf");
    std::fs::write(
        &conf,
        nginx_conf(&prefix, port, mock, &pki.cert, &pki.key, nofile, is_root()),
    )?;
    let args: Vec<String> = vec![
        "-p".into(),
        path_arg(&prefix),
        "-c".into(),
        path_arg(&conf),
        "-e".into(),
        path_arg(&prefix.join("error.log")),
    ];
    let version = Command::new(bin)
        .arg("-v")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
        .unwrap_or_default();
    let mut proc = ChildGuard::spawn_limited(
        "nginx",
        bin,
        &args,
        cpus,
        nofile,
        dir.join("nginx.log"),
        &[],
    )?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let master = proc.pid();
    let worker = proc
        .wait_for(READY_TIMEOUT, || {
            let w = procs::children(master).into_iter().next()?;
            procs::accepts(addr).then_some(w)
        })
        .await
        .map_err(|e| {
            anyhow!(
                "{e:#}\nnginx error log:\n{}",
                procs::tail(&prefix.join("error.log"), 20)
            )
        })?;
    Ok(Nginx {
        proc,
        worker,
        addr,
        ca_file: pki.ca,
        version,
    })
}

/// The scenarios (nginx and mitmproxy only when started): direct, airlockd intercepting (MITM),
/// airlockd base-URL mode, airlockd tunnelling blind to the mock (the cost of the extra hop alone),
/// nginx reverse-proxying (the floor), and mitmproxy intercepting.
pub fn targets(
    mock: &Mock,
    agent: &Agent,
    mitm: Option<&Mitm>,
    nginx: Option<&Nginx>,
) -> Result<Vec<Arc<Target>>> {
    let mock_tls = client::tls_config(&mock.ca_file)?;
    let t = |name: &str, route: Route, tls, path: &str, host: String| {
        Arc::new(Target {
            name: name.into(),
            route,
            tls,
            path: path.into(),
            host_header: host,
            connect_timeout: Duration::from_secs(5),
            stream_body: STREAM_BODY,
        })
    };
    let api = "/v1/chat/completions";
    let connect = |proxy: SocketAddr| Route::Connect {
        proxy,
        authority: format!("{PROVIDER_HOST}:443"),
    };
    let mut out = vec![
        t(
            DIRECT,
            Route::Direct { addr: mock.addr },
            Some(mock_tls.clone()),
            api,
            PROVIDER_HOST.into(),
        ),
        t(
            AIRLOCK_MITM,
            connect(agent.addr),
            Some(client::tls_config(&agent.ca_file)?),
            api,
            PROVIDER_HOST.into(),
        ),
        t(
            AIRLOCK_BASE,
            Route::Plain { addr: agent.addr },
            None,
            "/openai/v1/chat/completions",
            agent.addr.to_string(),
        ),
        t(
            AIRLOCK_TUNNEL,
            Route::Connect {
                proxy: agent.addr,
                authority: mock.addr.to_string(),
            },
            Some(mock_tls.clone()),
            api,
            PROVIDER_HOST.into(),
        ),
    ];
    if let Some(n) = nginx {
        out.push(t(
            NGINX,
            Route::Direct { addr: n.addr },
            Some(client::tls_config(&n.ca_file)?),
            api,
            PROVIDER_HOST.into(),
        ));
    }
    if let Some(m) = mitm {
        out.push(t(
            MITMPROXY,
            connect(m.addr),
            Some(client::tls_config(&m.ca_file)?),
            api,
            PROVIDER_HOST.into(),
        ));
    }
    Ok(out)
}

/// The direct target asking for a usage chunk in streams, as airlockd does upstream.
pub fn direct_with_usage(direct: &Arc<Target>) -> Arc<Target> {
    let mut t = (**direct).clone();
    t.name = DIRECT_USAGE.into();
    t.stream_body = STREAM_BODY_USAGE;
    Arc::new(t)
}

/// Checks that a target answers the chat body with a 200 chat.completion carrying text, and a
/// stream with chunks and `[DONE]`. Returns the check's description, or what was wrong.
pub async fn verify(target: &Arc<Target>) -> Verification {
    let r = verify_inner(target).await;
    Verification {
        target: target.name.clone(),
        ok: r.is_ok(),
        detail: match r {
            Ok(d) => d,
            Err(e) => format!("{e:#}"),
        },
    }
}

async fn verify_inner(target: &Arc<Target>) -> Result<String> {
    let mut c = Client::new(target.clone());
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), c.chat_raw(None))
        .await
        .map_err(|_| anyhow!("no answer within 10 s"))??;
    let text = String::from_utf8_lossy(&body);
    if status != http::StatusCode::OK {
        bail!(
            "status {status}: {}",
            text.chars().take(300).collect::<String>()
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&body).with_context(|| format!("body is not JSON: {text:.200}"))?;
    if v["object"] != "chat.completion" {
        bail!("object is {:?}, expected \"chat.completion\"", v["object"]);
    }
    let content = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    if content.is_empty() {
        bail!("no choices[0].message.content in {text:.300}");
    }
    let (status, timing, body) = tokio::time::timeout(Duration::from_secs(10), c.stream(0, 5))
        .await
        .map_err(|_| anyhow!("stream did not finish within 10 s"))??;
    let stext = String::from_utf8_lossy(&body);
    if status != http::StatusCode::OK {
        bail!(
            "stream status {status}: {}",
            stext.chars().take(300).collect::<String>()
        );
    }
    if !stext.contains("chat.completion.chunk") || !stext.contains("data: [DONE]") {
        bail!("stream lacks chat.completion.chunk events or data: [DONE]: {stext:.300}");
    }
    Ok(format!(
        "200 chat.completion ({} bytes, content {:?}); stream 200, {} bytes in {} SSE events ending in [DONE]",
        text.len(),
        content.chars().take(40).collect::<String>(),
        timing.bytes,
        timing.events
    ))
}

/// Facts about the machine.
pub fn machine(agent_bin: &Path, mitmdump: Option<&Path>) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let nproc = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let mem_total_mib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024);
    Machine {
        nproc,
        cpu_model,
        kernel,
        mem_total_mib,
        clk_tck: procs::clock_ticks_per_sec(),
        agent_version: version_line(agent_bin),
        mitmproxy_version: mitmdump.map(version_line),
        nginx_version: None,
        source: source_tree(),
    }
}

/// The commit the binaries were built from (read-only git queries), and whether agent/ or the mock
/// had uncommitted changes at the time.
fn source_tree() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(commit) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown (not a git checkout)".into();
    };
    let dirty = git(&[
        "status",
        "--porcelain",
        "--",
        "agent",
        "tests/mock-provider",
    ])
    .map(|s| s.lines().count())
    .unwrap_or(0);
    if dirty > 0 {
        format!("{commit} + {dirty} uncommitted files in agent/ and tests/mock-provider/")
    } else {
        commit
    }
}

fn version_line(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// Processes that would disturb a measurement (compilers, cargo, test runners), as `pid comm`.
pub fn busy_processes() -> Vec<String> {
    const NOISY: &[&str] = &[
        "cargo",
        "rustc",
        "clippy-driver",
        "rustdoc",
        "cc",
        "cc1",
        "ld",
        "lld",
        "rust-lld",
        "rust-analyzer",
        "python3",
        "node",
        "pytest",
    ];
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        let comm = comm.trim();
        if NOISY.contains(&comm) {
            out.push(format!("{pid} {comm}"));
        }
    }
    out.sort();
    out
}

/// /proc/loadavg.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Busy ticks from one read of /proc/stat: the whole machine (the `cpu` line) and each CPU (`cpu0`,
/// `cpu1`, …). Busy is user + nice + system + irq + softirq + steal: every state but idle and iowait.
/// Interrupt time includes the loopback TCP processing of the benchmark's own traffic, so "other
/// processes" is an upper bound of what disturbed a run.
pub fn busy_ticks() -> (u64, Vec<u64>) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let busy = |line: &str| -> u64 {
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal guest guest_nice
        [0usize, 1, 2, 5, 6, 7]
            .iter()
            .filter_map(|&i| f.get(i))
            .sum()
    };
    let total = s.lines().find(|l| l.starts_with("cpu ")).map_or(0, busy);
    let per_cpu = s
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .map(busy)
        .collect();
    (total, per_cpu)
}
