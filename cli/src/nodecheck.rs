//! Whether the command `airlock run` starts is a Node.js too old to honour `HTTPS_PROXY` in `fetch`
//! (`NODE_USE_ENV_PROXY` arrived in Node 24 and 22.21; 23 never had it), so its AI calls would go around
//! the agent. The command counts as Node when it is `node` itself or a script whose `#!` line runs node
//! (`npx`, `claude`, `gemini` …); the version comes from running that node with `--version`, bounded in
//! time. It only warns: it never changes what runs, and any doubt (no such file, no answer) means no
//! warning.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long `node --version` may take before the check gives up.
const VERSION_TIMEOUT: Duration = Duration::from_secs(3);

/// The one-line warning for `program`, or `None` when it is not an old Node. `path` is the `PATH` the
/// command will run with.
pub fn warning(program: &str, path: Option<&str>) -> Option<String> {
    let node = node_of(program, path)?;
    let version = node_version(&node)?;
    if proxies_fetch(version) {
        return None;
    }
    let (major, minor, patch) = version;
    Some(format!(
        "airlock: warning: {} is Node v{major}.{minor}.{patch}, whose fetch ignores HTTPS_PROXY (that needs \
         Node 22.21 or 24+), so its AI calls may bypass Airlock: use `airlock run --base-url -- …` or a \
         newer Node",
        node.display()
    ))
}

/// Whether Node `version` honours `HTTPS_PROXY` in `fetch` with `NODE_USE_ENV_PROXY=1`.
fn proxies_fetch((major, minor, _): (u32, u32, u32)) -> bool {
    major >= 24 || (major == 22 && minor >= 21)
}

/// The node binary that `program` runs on, if it is one.
fn node_of(program: &str, path: Option<&str>) -> Option<PathBuf> {
    let file = resolve(program, path)?;
    if is_node_name(&file) {
        return Some(file);
    }
    let interpreter = shebang_node(&file)?;
    if interpreter.components().count() > 1 {
        Some(interpreter)
    } else {
        resolve(&interpreter.to_string_lossy(), path)
    }
}

/// `program` as a file: a name with a slash as it is, else the first executable match on `path`.
fn resolve(program: &str, path: Option<&str>) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    std::env::split_paths(path?)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

fn is_node_name(p: &Path) -> bool {
    matches!(
        p.file_name().and_then(|n| n.to_str()),
        Some("node" | "nodejs")
    )
}

/// The node a `#!` line names: `#!/usr/bin/node`, `#!/usr/bin/env node`, `#!/usr/bin/env -S node …`.
fn shebang_node(file: &Path) -> Option<PathBuf> {
    let mut head = [0u8; 256];
    let n = std::fs::File::open(file).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    let first = PathBuf::from(words.next()?);
    if is_node_name(&first) {
        return Some(first);
    }
    if first.file_name().and_then(|n| n.to_str()) != Some("env") {
        return None;
    }
    let word = words.find(|w| !w.starts_with('-') && !w.contains('='))?;
    let candidate = PathBuf::from(word);
    is_node_name(&candidate).then_some(candidate)
}

/// `node --version` as (major, minor, patch), or `None` if it does not answer like Node in time.
fn node_version(node: &Path) -> Option<(u32, u32, u32)> {
    let mut child = Command::new(node)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + VERSION_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut out = String::new();
    child.stdout.take()?.read_to_string(&mut out).ok()?;
    parse_version(&out)
}

/// `v20.20.2` → (20, 20, 2).
fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let v = text.trim().strip_prefix('v')?;
    let mut parts = v.splitn(3, '.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts
        .next()?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    Some((major, minor, patch))
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A directory with a fake `node` printing `version`.
    fn fake_node(dir: &Path, version: &str) -> PathBuf {
        let node = dir.join("node");
        std::fs::write(&node, format!("#!/bin/sh\necho {version}\n")).unwrap();
        std::fs::set_permissions(&node, std::fs::Permissions::from_mode(0o755)).unwrap();
        node
    }

    fn script(dir: &Path, name: &str, shebang: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("{shebang}\nconsole.log('hi')\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn an_old_node_on_path_is_named_in_the_warning() {
        let dir = tempfile::tempdir().unwrap();
        let node = fake_node(dir.path(), "v20.20.2");
        let path = dir.path().display().to_string();
        let w = warning("node", Some(&path)).unwrap();
        assert!(w.contains(&node.display().to_string()), "{w}");
        assert!(w.contains("v20.20.2") && w.contains("--base-url"), "{w}");
        assert!(!w.contains('\n'), "one line: {w}");
    }

    #[test]
    fn node_22_21_and_24_are_fine_and_23_is_not() {
        for (v, warns) in [
            ("v22.20.0", true),
            ("v22.21.0", false),
            ("v23.11.1", true),
            ("v24.11.0", false),
            ("v25.0.0", false),
            ("v18.19.1", true),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let node = fake_node(dir.path(), v);
            assert_eq!(
                warning(&node.display().to_string(), None).is_some(),
                warns,
                "{v}"
            );
        }
    }

    #[test]
    fn scripts_run_by_node_are_checked_through_their_shebang() {
        let dir = tempfile::tempdir().unwrap();
        fake_node(dir.path(), "v20.1.0");
        let path = dir.path().display().to_string();
        script(dir.path(), "npx", "#!/usr/bin/env node");
        assert!(warning("npx", Some(&path)).is_some());
        script(dir.path(), "claude", "#!/usr/bin/env -S node --no-warnings");
        assert!(warning("claude", Some(&path)).is_some());
        let direct = dir.path().join("node").display().to_string();
        let tool = script(dir.path(), "tool", &format!("#!{direct}"));
        assert!(warning(&tool.display().to_string(), None).is_some());
    }

    #[test]
    fn other_programs_and_unknown_answers_do_not_warn() {
        let dir = tempfile::tempdir().unwrap();
        fake_node(dir.path(), "v20.1.0");
        let path = dir.path().display().to_string();
        script(dir.path(), "py", "#!/usr/bin/env python3");
        assert_eq!(warning("py", Some(&path)), None);
        assert_eq!(warning("no-such-program", Some(&path)), None);
        let weird = tempfile::tempdir().unwrap();
        let node = fake_node(weird.path(), "not-a-version");
        assert_eq!(warning(&node.display().to_string(), None), None);
    }

    #[test]
    fn versions_parse_with_suffixes() {
        assert_eq!(parse_version("v22.21.0\n"), Some((22, 21, 0)));
        assert_eq!(parse_version("v24.0.0-nightly2025"), Some((24, 0, 0)));
        assert_eq!(parse_version("22.1.0"), None);
    }
}
