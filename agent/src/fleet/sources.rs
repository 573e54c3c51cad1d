//! The running sources of an enrolled device's bundles: the HTTPS pull (or, without a URL, a timer
//! that checks the bundle in force for expiry) and the drop-folder watcher, all feeding one
//! [`Governor`]. It owns starting and stopping them together; it must not verify anything.

use std::sync::Arc;
use std::time::Duration;

use super::{dropdir, pull, Governor};
use crate::paths::ConfigDir;
use crate::Result;

/// How often expiry is checked when no pull loop does it.
const EXPIRY_CHECK: Duration = Duration::from_secs(5);

/// The sources of one governor; dropping it stops them all.
pub struct Sources {
    _watcher: Option<notify::RecommendedWatcher>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("tasks", &self.tasks.len())
            .field("watching", &self._watcher.is_some())
            .finish()
    }
}

impl Drop for Sources {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Sources {
    /// Starts `gov`'s sources from its enrollment (call within the tokio runtime). A drop folder
    /// that cannot be watched is a warning, not an error: the pull and `airlock policy apply` still
    /// work. An unusable `ca_file` is an error.
    pub fn start(gov: Arc<Governor>, config: &ConfigDir) -> Result<Sources> {
        let e = gov.enrollment().clone();
        tracing::info!(fleet = %e.fleet, url = ?e.url, "enrolled: policy comes from signed bundles");
        let mut tasks = Vec::new();
        if let Some(url) = e.url.clone() {
            let client = pull::client(e.ca_file.as_deref())?;
            let interval = Duration::from_secs(e.interval_secs);
            tasks.push(tokio::spawn(pull::run(gov.clone(), url, client, interval)));
        } else {
            let g = gov.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(EXPIRY_CHECK).await;
                    g.check_expiry();
                }
            }));
        }
        let watcher = match dropdir::watch(gov, config.drop_dir()) {
            Ok(w) => Some(w),
            Err(err) => {
                tracing::warn!(dir = %config.drop_dir().display(), error = %err, "cannot watch the policy drop folder; bundles dropped there are not applied");
                None
            }
        };
        Ok(Sources {
            _watcher: watcher,
            tasks,
        })
    }
}
