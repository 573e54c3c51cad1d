//! The drop folder (`policy.d/` in the configuration directory): a bundle an MDM or an admin writes
//! there is applied. Files are read when they are complete — closed after writing, or renamed into
//! the folder (the atomic way to publish) — and when the agent starts; hidden and temporary names
//! (`.x`, `x.tmp`, `x~`, `x.swp`) are ignored. It owns watching (notify) and reading; the
//! [`Governor`] decides.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};

use super::Governor;
use crate::bundle::MAX_BUNDLE_BYTES;

/// Whether a file name in the folder is a bundle to read.
fn wanted(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !(name.starts_with('.')
        || name.ends_with(".tmp")
        || name.ends_with('~')
        || name.ends_with(".swp"))
}

/// Reads one file and offers it (a file past the size bound is offered one byte past it, so it is
/// refused as `too_large` without being read whole).
fn offer(gov: &Governor, path: &Path) {
    if !wanted(path) || !path.is_file() {
        return;
    }
    let source = format!(
        "policy.d/{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    let bytes = match read_bounded(path) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read a bundle in the drop folder");
            return;
        }
    };
    let _ = gov.offer(&bytes, &source);
}

fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_BUNDLE_BYTES as u64 + 1)
        .read_to_end(&mut out)?;
    Ok(out)
}

/// The files in the folder now, oldest first.
fn present(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            let t = e.metadata().ok()?.modified().ok()?;
            Some((t, p))
        })
        .collect();
    files.sort();
    files.into_iter().map(|(_, p)| p).collect()
}

/// Watches `dir` (created if missing and possible) and offers every completed bundle, until the
/// returned watcher is dropped. Bundles already there are offered first.
pub fn watch(gov: Arc<Governor>, dir: PathBuf) -> notify::Result<notify::RecommendedWatcher> {
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::debug!(dir = %dir.display(), error = %e, "cannot create the policy drop folder");
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else { return };
        let complete = matches!(
            ev.kind,
            EventKind::Access(AccessKind::Close(AccessMode::Write))
                | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
        );
        if complete {
            // For a rename the last path is the new name.
            if let Some(p) = ev.paths.last() {
                let _ = tx.send(p.clone());
            }
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    let initial = present(&dir);
    tokio::spawn(async move {
        for p in initial {
            let g = gov.clone();
            let _ = tokio::task::spawn_blocking(move || offer(&g, &p)).await;
        }
        while let Some(p) = rx.recv().await {
            let g = gov.clone();
            let _ = tokio::task::spawn_blocking(move || offer(&g, &p)).await;
        }
    });
    tracing::info!(dir = %dir.display(), "watching the policy drop folder");
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_and_temporary_files_are_not_bundles() {
        for name in ["fleet.bundle", "v12.json", "policy"] {
            assert!(wanted(Path::new(name)), "{name}");
        }
        for name in [
            ".fleet.bundle.tmp.42",
            "fleet.bundle.tmp",
            "fleet.bundle~",
            ".fleet.bundle.swp",
        ] {
            assert!(!wanted(Path::new(name)), "{name}");
        }
    }
}
