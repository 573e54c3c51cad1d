//! The Windows system trust store: LocalMachine\Root (silent when elevated, seen by services, unlike
//! the CurrentUser store mkcert uses), changed with `certutil -addstore -f Root` and `certutil
//! -delstore Root <serial>`. Matched by the CA's serial. It owns this store only.

use std::path::PathBuf;

use super::{Holding, Kind, Store};
use crate::ca::Ca;
use crate::cmd;
use crate::error::Result;

/// LocalMachine\Root.
#[derive(Debug, Clone)]
pub struct LocalMachineRoot {
    writable: bool,
}

impl LocalMachineRoot {
    /// The store; `writable` when elevated.
    pub fn new(writable: bool) -> Self {
        LocalMachineRoot { writable }
    }

    fn certutil() -> Result<PathBuf> {
        cmd::require("certutil.exe", "the Windows Root store", "Windows itself")
    }
}

impl Store for LocalMachineRoot {
    fn kind(&self) -> Kind {
        Kind::System
    }

    fn describe(&self) -> String {
        "system store (certutil): LocalMachine\\Root".into()
    }

    fn location(&self) -> PathBuf {
        PathBuf::from("Cert:\\LocalMachine\\Root")
    }

    fn check(&self, ca: &Ca) -> Result<Holding> {
        let (_, out) = cmd::output(&Self::certutil()?, ["-store", "Root", ca.short_serial()])?;
        Ok(Holding {
            current: out.status.success(),
            stale: Vec::new(),
        })
    }

    fn add(&self, ca: &Ca) -> Result<()> {
        super::writable_or(self.writable, || {
            "LocalMachine\\Root can only be changed elevated: run `airlock setup` as Administrator"
                .into()
        })?;
        ca.with_file("cer", |file| {
            let file = file.display().to_string();
            cmd::run(&Self::certutil()?, ["-addstore", "-f", "Root", &file]).map(|_| ())
        })
    }

    fn remove_all(&self) -> Result<usize> {
        // Certificates whose subject names Airlock; certutil matches the CN given.
        let (_, out) = cmd::output(&Self::certutil()?, ["-delstore", "Root", "Airlock"])?;
        Ok(usize::from(out.status.success()))
    }

    fn airlock_entries(&self) -> Result<Vec<String>> {
        let (_, out) = cmd::output(&Self::certutil()?, ["-store", "Root", "Airlock"])?;
        Ok(if out.status.success() {
            vec!["Airlock".into()]
        } else {
            Vec::new()
        })
    }

    fn writable(&self) -> bool {
        self.writable
    }
}
