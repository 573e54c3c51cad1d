//! One tray per user session: an exclusive lock on `airlock-tray.lock` in the user's runtime
//! directory (`$XDG_RUNTIME_DIR`, else a 0700 folder in the temp directory named after the uid),
//! held for the process's life and released by the kernel when it ends, however it ends. The file
//! holds the holder's pid, for the "already running" message. Elsewhere than unix there is no lock
//! yet (documented, not pretended).

use std::path::PathBuf;

use anyhow::Result;

/// The held lock (dropping it releases the instance).
#[derive(Debug)]
pub struct Instance {
    #[cfg(unix)]
    _file: std::fs::File,
}

/// `Ok(Some)` when this is the only tray; `Ok(None)` with the other's pid printed when one runs.
pub fn acquire(dir: Option<PathBuf>) -> Result<std::result::Result<Instance, Option<u32>>> {
    os::acquire(dir)
}

#[cfg(unix)]
mod os {
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    use std::path::PathBuf;

    use anyhow::{Context, Result};
    use rustix::fs::{flock, FlockOperation};

    use super::Instance;

    fn runtime_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            return PathBuf::from(d);
        }
        std::env::temp_dir().join(format!(
            "airlock-tray-{}",
            rustix::process::getuid().as_raw()
        ))
    }

    pub fn acquire(dir: Option<PathBuf>) -> Result<std::result::Result<Instance, Option<u32>>> {
        let dir = dir.unwrap_or_else(runtime_dir);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join("airlock-tray.lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Ok(Err(text.trim().parse().ok()));
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        Ok(Ok(Instance { _file: file }))
    }
}

#[cfg(not(unix))]
mod os {
    use std::path::PathBuf;

    use anyhow::Result;

    use super::Instance;

    pub fn acquire(_dir: Option<PathBuf>) -> Result<std::result::Result<Instance, Option<u32>>> {
        Ok(Ok(Instance {}))
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_second_tray_is_told_the_first_ones_pid_and_the_lock_frees_when_it_ends() {
        let tmp = tempfile::tempdir().unwrap();
        let first = acquire(Some(tmp.path().into()))
            .unwrap()
            .expect("the first is alone");
        // flock locks belong to the open file description: a second open in this process conflicts
        // exactly as another process's would.
        let second = acquire(Some(tmp.path().into())).unwrap();
        assert_eq!(second.unwrap_err(), Some(std::process::id()));
        drop(first);
        assert!(acquire(Some(tmp.path().into())).unwrap().is_ok());
    }
}
