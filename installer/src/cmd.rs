//! Running the platform's own tools (`update-ca-certificates`, `certutil`, `keytool`, `gsettings`,
//! `security`, `networksetup`): finding them on PATH and in the system binary folders, running them
//! with no stdin, and turning a failure into an error that names the command and quotes its stderr.
//! It owns nothing else; callers never put a secret in an argument.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::error::{InstallerError, Result};

/// Folders searched after PATH: package scripts and `sudo` may run with a PATH without them.
const SYSTEM_BIN: [&str; 4] = ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin"];

/// The full path of `tool`, if it is installed.
pub fn find(tool: &str) -> Option<PathBuf> {
    if tool.contains('/') {
        return Some(PathBuf::from(tool)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SYSTEM_BIN.iter().map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

/// Runs `program args…` and returns its output; a non-zero exit is an error quoting stderr.
pub fn run<I, S>(program: &Path, args: I) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = output(program, args)?;
    if out.1.status.success() {
        Ok(out.1)
    } else {
        Err(failed(&out.0, &out.1))
    }
}

/// Runs `program args…` and returns its output whatever its exit status (for checks whose "no" is
/// a non-zero exit).
pub fn output<I, S>(program: &Path, args: I) -> Result<(String, Output)>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<S> = args.into_iter().collect();
    let line = std::iter::once(program.display().to_string())
        .chain(
            args.iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned()),
        )
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new(program)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| InstallerError::Command {
            command: line.clone(),
            status: "could not start".into(),
            stderr: e.to_string(),
        })?;
    Ok((line, out))
}

/// The error for a command that exited non-zero.
pub fn failed(line: &str, out: &Output) -> InstallerError {
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    InstallerError::Command {
        command: line.to_string(),
        status: out.status.to_string(),
        stderr: if stderr.is_empty() { stdout } else { stderr },
    }
}

/// `tool`'s path, or the error saying which package provides it.
pub fn require(tool: &str, what: &str, package: &str) -> Result<PathBuf> {
    find(tool).ok_or_else(|| InstallerError::ToolMissing {
        tool: tool.into(),
        what: what.into(),
        package: package.into(),
    })
}
