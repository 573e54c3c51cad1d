//! File changes the installer can undo exactly: writing a file while remembering which folders it had
//! to create, inserting and removing a marked block in a file the user owns (a shell rc file) so that
//! the file is byte for byte what it was, and removing created folders again only when empty. It
//! owns those rules; it knows nothing of what the files mean.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{InstallerError, Result};

/// The line that opens the installer's block in a file it shares with the user.
pub const BEGIN: &str =
    "# >>> airlock >>> (added by `airlock setup`; `airlock uninstall` removes it)";
/// The line that closes it.
pub const END: &str = "# <<< airlock <<<";

/// `dir` and those of its parents that do not exist, outermost first.
pub fn missing_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut missing: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .map(Path::to_path_buf)
        .collect();
    missing.reverse();
    missing
}

/// Creates `dir` and its missing parents; returns the folders it created, outermost first.
pub fn create_dirs(dir: &Path, mode: u32) -> Result<Vec<PathBuf>> {
    let missing = missing_dirs(dir);
    for d in &missing {
        fs::create_dir(d).map_err(|e| InstallerError::io("create the folder", d, e))?;
        set_mode(d, mode)?;
    }
    Ok(missing)
}

/// Removes the folders in `created` (outermost first, as [`create_dirs`] gives them) that are empty,
/// innermost first.
pub fn remove_created_dirs(created: &[PathBuf]) {
    for d in created.iter().rev() {
        // Not empty (the user put something there since) or gone: left as it is.
        let _ = fs::remove_dir(d);
    }
}

/// Writes `contents` to `path` with `mode`, through a temporary file in the same folder; returns
/// the folders it had to create.
pub fn write_file(path: &Path, contents: &str, mode: u32) -> Result<Vec<PathBuf>> {
    let created = match path.parent() {
        Some(parent) => create_dirs(parent, 0o755)?,
        None => Vec::new(),
    };
    let tmp = path.with_extension("airlock-tmp");
    fs::write(&tmp, contents).map_err(|e| InstallerError::io("write", &tmp, e))?;
    set_mode(&tmp, mode)?;
    fs::rename(&tmp, path).map_err(|e| InstallerError::io("write", path, e))?;
    Ok(created)
}

/// Removes `path` if it exists.
pub fn remove_file(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(InstallerError::io("remove", path, e)),
    }
}

/// How a block was put into a file, so that taking it out restores the file exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlockAdded {
    /// The file did not exist: removing the block removes the file.
    pub created_file: bool,
    /// A newline was added before the block because the file did not end with one.
    pub added_newline: bool,
}

/// Puts `body` (lines, no markers) into `path` between the markers, replacing a block already there.
pub fn insert_block(path: &Path, body: &str, mode: u32) -> Result<(BlockAdded, Vec<PathBuf>)> {
    let existing = match fs::read_to_string(path) {
        Ok(s) => Some(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(InstallerError::io("read", path, e)),
    };
    let base = match &existing {
        Some(text) => cut_block(text).map_or_else(|| text.clone(), |(without, _)| without),
        None => String::new(),
    };
    let added_newline = !base.is_empty() && !base.ends_with('\n');
    let mut text = base;
    if added_newline {
        text.push('\n');
    }
    text.push_str(&block(body));
    let created = match path.parent() {
        Some(parent) => create_dirs(parent, 0o755)?,
        None => Vec::new(),
    };
    let mode = match fs::metadata(path) {
        Ok(m) => mode_of(&m).unwrap_or(mode),
        Err(_) => mode,
    };
    let tmp = path.with_extension("airlock-tmp");
    fs::write(&tmp, &text).map_err(|e| InstallerError::io("write", &tmp, e))?;
    set_mode(&tmp, mode)?;
    fs::rename(&tmp, path).map_err(|e| InstallerError::io("write", path, e))?;
    Ok((
        BlockAdded {
            created_file: existing.is_none(),
            added_newline,
        },
        created,
    ))
}

/// Takes the block out of `path` again; `how` is what [`insert_block`] returned. A file that
/// holds nothing else and was created for the block is removed.
pub fn remove_block(path: &Path, how: BlockAdded) -> Result<bool> {
    let text = match fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(InstallerError::io("read", path, e)),
    };
    let Some((mut without, _)) = cut_block(&text) else {
        return Ok(false);
    };
    if how.added_newline && without.ends_with('\n') {
        without.pop();
    }
    if how.created_file && without.is_empty() {
        remove_file(path)?;
        return Ok(true);
    }
    let mode = fs::metadata(path)
        .ok()
        .and_then(|m| mode_of(&m))
        .unwrap_or(0o644);
    let tmp = path.with_extension("airlock-tmp");
    fs::write(&tmp, &without).map_err(|e| InstallerError::io("write", &tmp, e))?;
    set_mode(&tmp, mode)?;
    fs::rename(&tmp, path).map_err(|e| InstallerError::io("write", path, e))?;
    Ok(true)
}

/// Whether `path` holds the installer's block.
pub fn has_block(path: &Path) -> bool {
    fs::read_to_string(path)
        .map(|t| cut_block(&t).is_some())
        .unwrap_or(false)
}

fn block(body: &str) -> String {
    let mut s = String::from(BEGIN);
    s.push('\n');
    s.push_str(body.trim_end_matches('\n'));
    s.push('\n');
    s.push_str(END);
    s.push('\n');
    s
}

/// `text` without the block (from the BEGIN line through the END line and its newline), and the block.
fn cut_block(text: &str) -> Option<(String, String)> {
    let start = line_start(text, BEGIN)?;
    let end_line = start + text[start..].find(END)?;
    let end = text[end_line..]
        .find('\n')
        .map_or(text.len(), |n| end_line + n + 1);
    let mut without = text[..start].to_string();
    without.push_str(&text[end..]);
    Some((without, text[start..end].to_string()))
}

/// Where a line starting with `prefix` begins.
fn line_start(text: &str, prefix: &str) -> Option<usize> {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if line.starts_with(prefix) {
            return Some(at);
        }
        at += line.len();
    }
    None
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| InstallerError::io("set permissions on", path, e))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<()> {
    Ok(())
}

#[cfg(unix)]
fn mode_of(m: &fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    Some(m.permissions().mode() & 0o7777)
}

#[cfg(not(unix))]
fn mode_of(_m: &fs::Metadata) -> Option<u32> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_comes_out_leaving_the_file_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        for original in ["alias ll='ls -l'\n", "no newline at the end", "", "a\n\n"] {
            let rc = dir.path().join("bashrc");
            fs::write(&rc, original).unwrap();
            let (how, created) = insert_block(&rc, "export A=1\nexport B=2\n", 0o644).unwrap();
            assert!(created.is_empty());
            let with = fs::read_to_string(&rc).unwrap();
            assert!(with.starts_with(original), "{with:?}");
            assert!(with.contains("export A=1\nexport B=2\n# <<< airlock <<<\n"));
            // Setup run again: one block, not two (the manifest keeps the first `how`).
            insert_block(&rc, "export A=3\n", 0o644).unwrap();
            let twice = fs::read_to_string(&rc).unwrap();
            assert_eq!(twice.matches(BEGIN).count(), 1, "{twice}");
            assert!(twice.contains("export A=3") && !twice.contains("export A=1"));
            assert!(remove_block(&rc, how).unwrap());
            assert_eq!(fs::read_to_string(&rc).unwrap(), original);
        }
    }

    #[test]
    fn a_file_made_for_the_block_goes_with_it_and_so_do_its_folders() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join(".config/fish/conf.d/airlock.fish");
        let (how, created) = insert_block(&conf, "set -gx A 1\n", 0o644).unwrap();
        assert!(how.created_file);
        assert_eq!(created.len(), 3, "{created:?}");
        assert!(remove_block(&conf, how).unwrap());
        assert!(!conf.exists());
        remove_created_dirs(&created);
        assert!(!dir.path().join(".config").exists());
    }

    #[test]
    fn a_created_folder_the_user_filled_since_stays() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a/b/f");
        let created = write_file(&file, "x", 0o644).unwrap();
        fs::write(dir.path().join("a/mine"), "keep").unwrap();
        remove_file(&file).unwrap();
        remove_created_dirs(&created);
        assert!(!dir.path().join("a/b").exists());
        assert!(dir.path().join("a/mine").exists());
    }
}
