//! Where new shells pick up what `airlock env` prints: system-wide `/etc/profile.d/airlock.sh` (and
//! fish's `/etc/fish/conf.d` where fish is installed); for one user, a marked block in the rc files of
//! the shells they use, a fish `conf.d` file and a systemd `environment.d` file for their graphical
//! session. The texts come from the caller (the CLI renders them with the same code as `airlock env`);
//! this module owns only which files and in what form.

use std::path::{Path, PathBuf};

use crate::cmd;

/// The environment, rendered for each kind of file.
#[derive(Debug, Clone)]
pub struct EnvText {
    /// POSIX shell `export` lines.
    pub posix: String,
    /// fish `set -gx` lines.
    pub fish: String,
    /// The variables themselves (for `environment.d`, one `KEY=VALUE` a line).
    pub vars: Vec<(String, String)>,
}

/// One file that gets the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A file of its own, written whole.
    File {
        /// Where.
        path: PathBuf,
        /// What goes in it.
        contents: String,
    },
    /// A marked block in the user's own file.
    Block {
        /// Where.
        path: PathBuf,
        /// The lines of the block.
        body: String,
    },
}

impl Target {
    /// The file.
    pub fn path(&self) -> &Path {
        match self {
            Target::File { path, .. } | Target::Block { path, .. } => path,
        }
    }
}

const HEADER: &str = "# Airlock: send this session's tools through the local agent. Written by `airlock setup`;\n# `airlock uninstall` removes it.\n";

/// The files for `system` (root) or for the user whose home is `home`; `shell` is their login shell
/// (`$SHELL`).
pub fn targets(
    system: bool,
    home: Option<&Path>,
    shell: Option<&str>,
    text: &EnvText,
) -> Vec<Target> {
    let posix = format!("{HEADER}{}", text.posix);
    let fish = format!("{HEADER}{}", text.fish);
    let mut out = Vec::new();
    if system {
        out.push(Target::File {
            path: PathBuf::from("/etc/profile.d/airlock.sh"),
            contents: posix,
        });
        if Path::new("/etc/fish").is_dir() {
            out.push(Target::File {
                path: PathBuf::from("/etc/fish/conf.d/airlock.fish"),
                contents: fish,
            });
        }
        return out;
    }
    let Some(home) = home else {
        return out;
    };
    let shell = shell.unwrap_or("");
    let mut rc = Vec::new();
    for (file, name) in [(".bashrc", "bash"), (".zshrc", "zsh")] {
        let path = home.join(file);
        if path.is_file() || shell.ends_with(&format!("/{name}")) {
            rc.push(path);
        }
    }
    if rc.is_empty() {
        rc.push(home.join(".profile"));
    }
    for path in rc {
        out.push(Target::Block {
            path,
            body: text.posix.clone(),
        });
    }
    if cmd::find("fish").is_some() || home.join(".config/fish").is_dir() || shell.ends_with("/fish")
    {
        out.push(Target::File {
            path: home.join(".config/fish/conf.d/airlock.fish"),
            contents: fish,
        });
    }
    if cfg!(target_os = "linux") {
        let mut lines = String::from(HEADER);
        for (k, v) in &text.vars {
            lines.push_str(&format!("{k}={v}\n"));
        }
        out.push(Target::File {
            path: home.join(".config/environment.d/90-airlock.conf"),
            contents: lines,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> EnvText {
        EnvText {
            posix: "export HTTPS_PROXY='http://127.0.0.1:8479'\n".into(),
            fish: "set -gx HTTPS_PROXY 'http://127.0.0.1:8479'\n".into(),
            vars: vec![("HTTPS_PROXY".into(), "http://127.0.0.1:8479".into())],
        }
    }

    #[test]
    fn a_user_gets_blocks_in_the_rc_files_of_their_shells() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join(".zshrc"), "").unwrap();
        let t = targets(false, Some(home.path()), Some("/bin/bash"), &text());
        let paths: Vec<_> = t.iter().map(|t| t.path().to_path_buf()).collect();
        assert!(paths.contains(&home.path().join(".bashrc")), "{paths:?}");
        assert!(paths.contains(&home.path().join(".zshrc")), "{paths:?}");
        assert!(!paths.contains(&home.path().join(".profile")));
        let envd = t
            .iter()
            .find(|t| t.path().ends_with("environment.d/90-airlock.conf"))
            .unwrap();
        match envd {
            Target::File { contents, .. } => {
                assert!(contents.contains("\nHTTPS_PROXY=http://127.0.0.1:8479\n"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_system_gets_profile_d() {
        let t = targets(true, None, None, &text());
        assert_eq!(t[0].path(), Path::new("/etc/profile.d/airlock.sh"));
    }
}
