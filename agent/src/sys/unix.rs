//! Unix resource limits for [`super`].

use rustix::process::{getrlimit, setrlimit, Resource};

pub(super) fn raise_open_files_limit() -> Option<u64> {
    let mut lim = getrlimit(Resource::Nofile);
    if let (Some(cur), max) = (lim.current, lim.maximum) {
        // macOS refuses a soft limit above OPEN_MAX even when the hard limit is "unlimited".
        let target = max.unwrap_or(cur.max(1 << 16)).min(1 << 20);
        if target > cur {
            lim.current = Some(target);
            if let Err(e) = setrlimit(Resource::Nofile, lim) {
                tracing::debug!(error = %e, "cannot raise the open-files limit");
            }
        }
    }
    getrlimit(Resource::Nofile).current
}
