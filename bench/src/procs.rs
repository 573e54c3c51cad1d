//! Child processes of the harness (the mock provider, airlockd, mitmdump, nginx, CPU hogs) and what
//! /proc says about them: CPU ticks, memory, context switches, open file descriptors. Every child is
//! pinned with `taskset` (and given a file-descriptor limit with `prlimit` when asked), logs to a file
//! in the run's temporary directory, and is killed and reaped when its guard drops, so an error or
//! Ctrl-C never leaves one behind. Readiness is awaited with a deadline; a child that exits early fails
//! the run with the tail of its log.

use std::fs::File;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

/// A running child process, killed and reaped on drop.
#[derive(Debug)]
pub struct ChildGuard {
    /// What it is, for messages.
    pub name: String,
    child: Child,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl ChildGuard {
    /// Starts `program args…`, pinned to `cpus` (a taskset list such as `0`) when given, with output
    /// to `log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        cpus: Option<&str>,
        log: PathBuf,
        envs: &[(&str, &str)],
    ) -> Result<ChildGuard> {
        Self::spawn_limited(name, program, args, cpus, None, log, envs)
    }

    /// Like [`ChildGuard::spawn`], and with `nofile` the child's RLIMIT_NOFILE (soft and hard) is set
    /// to that value by `prlimit`, which then execs the program (so the pid stays the program's).
    pub fn spawn_limited(
        name: &str,
        program: &Path,
        args: &[String],
        cpus: Option<&str>,
        nofile: Option<u64>,
        log: PathBuf,
        envs: &[(&str, &str)],
    ) -> Result<ChildGuard> {
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        // prlimit and taskset both exec what follows them, so the pid is the program's own.
        let mut chain: Vec<std::ffi::OsString> = Vec::new();
        if let Some(n) = nofile {
            chain.extend([
                "prlimit".into(),
                format!("--nofile={n}:{n}").into(),
                "--".into(),
            ]);
        }
        if let Some(c) = cpus {
            chain.extend(["taskset".into(), "-c".into(), c.into()]);
        }
        let mut cmd = match chain.split_first() {
            Some((first, rest)) => {
                let mut cmd = Command::new(first);
                cmd.args(rest).arg(program);
                cmd
            }
            None => Command::new(program),
        };
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name} ({})", program.display()))?;
        Ok(ChildGuard {
            name: name.to_string(),
            child,
            log,
        })
    }

    /// Process id (taskset execs the program, so this is the program's own pid).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails with the log's tail if the child has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited early ({status}); last lines of {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 30)
            );
        }
        Ok(())
    }

    /// Waits for the child to exit by itself, up to `timeout` (then it is killed on drop).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                bail!("{} did not exit within {timeout:?}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Polls `probe` every 20 ms until it gives a value, the child dies, or `timeout` passes.
    pub async fn wait_for<T>(
        &mut self,
        timeout: Duration,
        mut probe: impl FnMut() -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = probe() {
                return Ok(v);
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!(
                    "{} not ready after {timeout:?}; last lines of {}:\n{}",
                    self.name,
                    self.log.display(),
                    tail(&self.log, 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The last `n` lines of a file (for error messages).
pub fn tail(path: &Path, n: usize) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// CPU time of a process (all threads), from /proc/PID/stat.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTicks {
    /// utime + stime, in clock ticks.
    pub ticks: u64,
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 if that fails).
pub fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t: &u64| t > 0)
        .unwrap_or(100)
}

/// Reads utime + stime of `pid` (or of this process for `None`).
pub fn cpu_ticks(pid: Option<u32>) -> Result<CpuTicks> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let s = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // The command name (field 2) may contain spaces; fields after the last ')' are space separated,
    // starting at field 3 (state). utime and stime are fields 14 and 15.
    let rest = s
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("unexpected format of {path}"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Result<u64> {
        f.get(n - 3)
            .ok_or_else(|| anyhow!("{path} has no field {n}"))?
            .parse::<u64>()
            .with_context(|| format!("field {n} of {path}"))
    };
    Ok(CpuTicks {
        ticks: field(14)? + field(15)?,
    })
}

/// Memory of a process from /proc/PID/status, in kB.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Memory {
    /// Resident set size now.
    pub rss_kb: u64,
    /// Peak resident set size.
    pub hwm_kb: u64,
}

/// Reads VmRSS and VmHWM of `pid`.
pub fn memory(pid: u32) -> Result<Memory> {
    let s = read_status(pid)?;
    let kb = |key: &str| -> u64 {
        s.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(Memory {
        rss_kb: kb("VmRSS:"),
        hwm_kb: kb("VmHWM:"),
    })
}

/// The CPUs a process may run on (`Cpus_allowed_list`), or `?`.
pub fn cpus_allowed(pid: Option<u32>) -> String {
    let s = match pid {
        Some(p) => read_status(p).unwrap_or_default(),
        None => std::fs::read_to_string("/proc/self/status").unwrap_or_default(),
    };
    s.lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| "?".into())
}

/// Number of threads of a process.
pub fn threads(pid: u32) -> u64 {
    read_status(pid)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Context switches of a process, summed over its threads (`voluntary_ctxt_switches`: it blocked,
/// e.g. in epoll_wait or on a futex; `nonvoluntary_ctxt_switches`: the scheduler took the CPU away).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CtxSwitches {
    /// Voluntary switches.
    pub voluntary: u64,
    /// Involuntary switches (preemptions).
    pub nonvoluntary: u64,
}

/// Reads the context-switch counters of every thread of `pid` (threads that exited are not counted).
pub fn ctx_switches(pid: u32) -> CtxSwitches {
    let mut out = CtxSwitches::default();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in dir.flatten() {
        let s = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        for l in s.lines() {
            let num = |v: &str| v.trim().parse::<u64>().unwrap_or(0);
            if let Some(v) = l.strip_prefix("voluntary_ctxt_switches:") {
                out.voluntary += num(v);
            } else if let Some(v) = l.strip_prefix("nonvoluntary_ctxt_switches:") {
                out.nonvoluntary += num(v);
            }
        }
    }
    out
}

/// Open file descriptors of `pid` (entries of /proc/PID/fd), or 0 if unreadable.
pub fn fd_count(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// Child processes of `pid` (from /proc/PID/task/*/children).
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in dir.flatten() {
        let s = std::fs::read_to_string(e.path().join("children")).unwrap_or_default();
        out.extend(s.split_whitespace().filter_map(|v| v.parse::<u32>().ok()));
    }
    out
}

/// RLIMIT_NOFILE of this process as (soft, hard), from /proc/self/limits; `None` for unlimited or
/// unreadable values.
pub fn nofile_limit() -> (Option<u64>, Option<u64>) {
    let s = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let Some(line) = s.lines().find(|l| l.starts_with("Max open files")) else {
        return (None, None);
    };
    let f: Vec<&str> = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .collect();
    let v = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    (v(0), v(1))
}

/// Raises this process's RLIMIT_NOFILE with `prlimit --pid` (the harness forbids unsafe code, so no
/// setrlimit of its own): the soft limit to the hard one, and both to `want` when the hard limit is
/// lower and raising it is allowed (root). Children started afterwards inherit it. Returns the limits in force afterwards.
pub fn raise_nofile(want: u64) -> (Option<u64>, Option<u64>) {
    let pid = std::process::id().to_string();
    let try_set = |soft: u64, hard: Option<u64>| {
        let hard = hard.map_or_else(|| "unlimited".to_string(), |h| h.to_string());
        Command::new("prlimit")
            .args(["--pid", &pid, &format!("--nofile={soft}:{hard}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let (soft, hard) = nofile_limit();
    match hard {
        // No hard limit: raise the soft one to what is wanted.
        None => {
            if soft.is_some_and(|s| s < want) {
                let _ = try_set(want, None);
            }
        }
        Some(h) if h < want && try_set(want, Some(want)) => {}
        Some(h) => {
            if soft != Some(h) {
                let _ = try_set(h, Some(h));
            }
        }
    }
    nofile_limit()
}

fn read_status(pid: u32) -> Result<String> {
    let path = format!("/proc/{pid}/status");
    std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))
}

/// Picks a free loopback port by binding port 0 and releasing it (for mitmdump, which cannot report
/// an ephemeral port).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Whether something accepts TCP connections at `addr`.
pub fn accepts(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_cpu_and_memory() {
        let Ok(t) = cpu_ticks(None) else {
            unreachable!("cannot read /proc/self/stat")
        };
        let _ = t.ticks;
        let Ok(m) = memory(std::process::id()) else {
            unreachable!("cannot read /proc/self/status")
        };
        assert!(m.rss_kb > 0 && m.hwm_kb >= m.rss_kb);
        assert!(clock_ticks_per_sec() > 0);
        assert_ne!(cpus_allowed(None), "?");
        let me = std::process::id();
        assert!(fd_count(me) >= 3);
        let cs = ctx_switches(me);
        assert!(cs.voluntary + cs.nonvoluntary > 0);
        let (soft, hard) = nofile_limit();
        assert!(soft.is_some() && hard.is_some_and(|h| h >= soft.unwrap_or(0)));
    }
}
