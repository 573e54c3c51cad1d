//! The daemon's configuration directory: where an admin or an MDM puts what the daemon reads but
//! does not own — the fleet enrollment (`enrollment.toml`) and the policy drop folder (`policy.d/`)
//! — and which of two such directories is in force. A per-user agent has its own
//! (`~/.config/airlock`) and also sees the system's managed one ([`SYSTEM_CONFIG_DIR`], per OS in
//! `managed_*.rs`). Managed beats user: while the managed directory holds an enrollment, that
//! enrollment and that drop folder are in force and the user's own are ignored, so a user can
//! never override what the MDM set; when it holds none, the user's own directory is in force. The
//! choice is made each time a path is asked for, so an MDM dropping or removing the file is
//! followed by a running agent. An explicit `--config-dir` or `$AIRLOCK_CONFIG_DIR` names the one
//! directory used, with nothing managed beside it: that is for tests and for admins running a
//! daemon by hand. It only names paths and makes that choice; reading them is the fleet module's
//! job.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::{AgentError, Result};

/// The system-wide configuration directory (the daemon run as root or as a service user) and the
/// managed directory every per-user agent also looks at: `/etc/airlock` on Linux,
/// `/Library/Application Support/Airlock/Config` on macOS, `C:\ProgramData\Airlock\Config` on
/// Windows.
pub const SYSTEM_CONFIG_DIR: &str = super::managed::SYSTEM_CONFIG_DIR;

/// Environment variable naming the configuration directory (for tests and admins: it turns the
/// managed directory off, exactly like `--config-dir`).
pub const CONFIG_DIR_ENV: &str = "AIRLOCK_CONFIG_DIR";

/// File name of the fleet enrollment in a configuration directory.
pub const ENROLLMENT_FILE: &str = "enrollment.toml";

/// Name of the policy drop folder in a configuration directory.
pub const DROP_DIR: &str = "policy.d";

/// Which directory is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InForce {
    Own,
    Managed,
}

/// The daemon's configuration directory and the well-known files in it.
#[derive(Debug, Clone)]
pub struct ConfigDir {
    /// This user's own directory, or the one named explicitly.
    own: PathBuf,
    /// A managed directory whose enrollment, when it has one, beats `own`'s.
    managed: Option<PathBuf>,
    /// The choice last logged, so each change is logged once (shared by clones).
    logged: Arc<Mutex<Option<InForce>>>,
}

impl PartialEq for ConfigDir {
    fn eq(&self, other: &Self) -> bool {
        self.own == other.own && self.managed == other.managed
    }
}

impl Eq for ConfigDir {}

impl ConfigDir {
    /// Uses `root` as the configuration directory, with nothing managed beside it.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ConfigDir {
            own: root.into(),
            managed: None,
            logged: Arc::default(),
        }
    }

    /// A user's own directory `own` under the managed directory `managed`: while `managed` holds
    /// an enrollment it is in force, else `own` is.
    pub fn with_managed(own: impl Into<PathBuf>, managed: impl Into<PathBuf>) -> Self {
        ConfigDir {
            own: own.into(),
            managed: Some(managed.into()),
            logged: Arc::default(),
        }
    }

    /// An explicit path, else `$AIRLOCK_CONFIG_DIR` (either: that directory alone — for tests and
    /// admins), else [`SYSTEM_CONFIG_DIR`] for root, else `$XDG_CONFIG_HOME/airlock` or
    /// `~/.config/airlock` under the managed [`SYSTEM_CONFIG_DIR`] (see [`ConfigDir::root`]). A
    /// user without a home gets the managed directory when it holds an enrollment.
    pub fn resolve(explicit: Option<&Path>) -> Result<Self> {
        Self::resolve_in(
            explicit,
            |name| std::env::var_os(name),
            super::current_uid() == Some(0),
            Path::new(SYSTEM_CONFIG_DIR),
        )
    }

    /// [`ConfigDir::resolve`] with the environment, the user and the system directory given.
    fn resolve_in(
        explicit: Option<&Path>,
        var: impl Fn(&str) -> Option<OsString>,
        superuser: bool,
        system: &Path,
    ) -> Result<Self> {
        let var = |name: &str| var(name).filter(|v| !v.is_empty());
        if let Some(p) = explicit {
            return Ok(Self::new(p));
        }
        if let Some(p) = var(CONFIG_DIR_ENV) {
            return Ok(Self::new(PathBuf::from(p)));
        }
        if superuser {
            return Ok(Self::new(system));
        }
        let own = match (var("XDG_CONFIG_HOME"), var("HOME")) {
            (Some(xdg), _) => PathBuf::from(xdg).join("airlock"),
            (None, Some(home)) => PathBuf::from(home).join(".config/airlock"),
            (None, None) if present(&system.join(ENROLLMENT_FILE)) => {
                return Ok(Self::new(system));
            }
            (None, None) => {
                return Err(AgentError::Policy {
                    origin: "environment".into(),
                    message: format!(
                        "cannot find a configuration directory: HOME is not set and {} holds no managed enrollment; \
                         pass --config-dir or set {CONFIG_DIR_ENV}",
                        system.display()
                    ),
                })
            }
        };
        if own == system {
            return Ok(Self::new(system));
        }
        Ok(Self::with_managed(own, system))
    }

    /// The directory in force now: the managed one while it holds an enrollment, else this user's
    /// own (or the one named explicitly).
    pub fn root(&self) -> &Path {
        match (self.in_force(), &self.managed) {
            (InForce::Managed, Some(m)) => m,
            _ => &self.own,
        }
    }

    /// This user's own directory (or the one named explicitly), whether or not it is in force.
    pub fn own_dir(&self) -> &Path {
        &self.own
    }

    /// The managed directory looked at beside [`ConfigDir::own_dir`], if any.
    pub fn managed_dir(&self) -> Option<&Path> {
        self.managed.as_deref()
    }

    /// Whether the managed directory is in force now (it holds an enrollment).
    pub fn is_managed(&self) -> bool {
        self.in_force() == InForce::Managed
    }

    /// The fleet enrollment in force, written by `airlock enroll` or dropped by an MDM.
    pub fn enrollment_file(&self) -> PathBuf {
        self.root().join(ENROLLMENT_FILE)
    }

    /// The drop folder beside the enrollment in force: a signed bundle written (or renamed) here
    /// is applied.
    pub fn drop_dir(&self) -> PathBuf {
        self.root().join(DROP_DIR)
    }

    /// Decides which directory is in force, logging a change of mind once.
    fn in_force(&self) -> InForce {
        let Some(managed) = &self.managed else {
            return InForce::Own;
        };
        let managed_file = managed.join(ENROLLMENT_FILE);
        let now = if present(&managed_file) {
            InForce::Managed
        } else {
            InForce::Own
        };
        let before = match self.logged.lock() {
            Ok(mut last) => last.replace(now),
            // A poisoned lock only loses a log line.
            Err(_) => return now,
        };
        if before == Some(now) {
            return now;
        }
        let own_file = self.own.join(ENROLLMENT_FILE);
        match now {
            InForce::Managed if present(&own_file) => tracing::warn!(
                managed = %managed_file.display(),
                ignored = %own_file.display(),
                "the managed enrollment is in force; this user's own enrollment is ignored (managed beats user)"
            ),
            InForce::Managed => tracing::info!(
                file = %managed_file.display(),
                "the managed enrollment is in force (managed beats user)"
            ),
            InForce::Own if before.is_some() => tracing::info!(
                managed = %managed.display(),
                own = %self.own.display(),
                "the managed enrollment is gone; this user's own configuration directory is in force"
            ),
            InForce::Own => tracing::info!(
                own = %self.own.display(),
                managed = %managed.display(),
                "this user's own configuration directory is in force (no managed enrollment)"
            ),
        }
        now
    }
}

/// Whether `path` is there as far as choosing goes: anything but "not found" counts, so a managed
/// file that exists but cannot be read or parsed is still the one in force (and its error is
/// reported) rather than quietly giving way to the user's.
fn present(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Ok(_) => true,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::fs;

    /// A machine with a managed directory and a user's home, in a temp dir.
    struct Machine {
        _dir: tempfile::TempDir,
        system: PathBuf,
        home: PathBuf,
    }

    impl Machine {
        fn new() -> Machine {
            let dir = tempfile::tempdir().unwrap();
            let system = dir.path().join("etc/airlock");
            let home = dir.path().join("home/ada");
            fs::create_dir_all(&system).unwrap();
            fs::create_dir_all(&home).unwrap();
            Machine {
                _dir: dir,
                system,
                home,
            }
        }

        fn own(&self) -> PathBuf {
            self.home.join(".config/airlock")
        }

        fn resolve(
            &self,
            explicit: Option<&Path>,
            env: &[(&str, &Path)],
            superuser: bool,
        ) -> Result<ConfigDir> {
            let env: HashMap<String, OsString> = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_os_str().to_owned()))
                .collect();
            ConfigDir::resolve_in(explicit, |k| env.get(k).cloned(), superuser, &self.system)
        }

        fn user(&self) -> ConfigDir {
            self.resolve(None, &[("HOME", &self.home)], false).unwrap()
        }
    }

    fn enroll(dir: &Path, text: &str) -> PathBuf {
        fs::create_dir_all(dir).unwrap();
        let p = dir.join(ENROLLMENT_FILE);
        fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_user_without_a_managed_enrollment_uses_their_own_directory() {
        let m = Machine::new();
        let c = m.user();
        assert_eq!(c.root(), m.own());
        assert!(!c.is_managed());
        assert_eq!(c.own_dir(), m.own());
        assert_eq!(c.managed_dir(), Some(m.system.as_path()));
        assert_eq!(c.enrollment_file(), m.own().join("enrollment.toml"));
        assert_eq!(c.drop_dir(), m.own().join("policy.d"));
        // Their own enrollment is theirs to use.
        enroll(&m.own(), "fleet = \"mine\"\n");
        assert_eq!(c.enrollment_file(), m.own().join("enrollment.toml"));
    }

    #[test]
    fn a_managed_enrollment_beats_the_users_own() {
        let m = Machine::new();
        let own = enroll(&m.own(), "fleet = \"mine\"\n");
        let managed = enroll(&m.system, "fleet = \"acme\"\n");
        let c = m.user();
        assert!(c.is_managed());
        assert_eq!(c.root(), m.system);
        assert_eq!(c.enrollment_file(), managed);
        assert_eq!(c.drop_dir(), m.system.join("policy.d"));
        // The user's file is left alone, just not used.
        assert_eq!(fs::read_to_string(own).unwrap(), "fleet = \"mine\"\n");
        assert_eq!(c.own_dir(), m.own());
    }

    #[test]
    fn a_running_agent_follows_the_managed_file_coming_and_going() {
        let m = Machine::new();
        enroll(&m.own(), "fleet = \"mine\"\n");
        let c = m.user();
        let follower = c.clone();
        assert_eq!(c.enrollment_file(), m.own().join(ENROLLMENT_FILE));
        let managed = enroll(&m.system, "fleet = \"acme\"\n");
        assert_eq!(follower.enrollment_file(), managed);
        assert_eq!(c.enrollment_file(), managed);
        fs::remove_file(&managed).unwrap();
        assert_eq!(c.enrollment_file(), m.own().join(ENROLLMENT_FILE));
        assert!(!follower.is_managed());
    }

    #[test]
    fn a_managed_file_that_cannot_be_used_still_beats_the_users() {
        let m = Machine::new();
        enroll(&m.own(), "fleet = \"mine\"\n");
        // Not TOML at all: the fleet module reports the error; the user's file does not step in.
        let managed = enroll(&m.system, "this is not an enrollment");
        assert_eq!(m.user().enrollment_file(), managed);
        // A directory where the file should be is not "absent" either.
        fs::remove_file(&managed).unwrap();
        fs::create_dir(&managed).unwrap();
        assert!(m.user().is_managed());
    }

    #[test]
    fn an_explicit_directory_or_the_variable_wins_and_turns_managed_off() {
        let m = Machine::new();
        enroll(&m.system, "fleet = \"acme\"\n");
        let explicit = m.home.join("test-config");
        let c = m
            .resolve(
                Some(&explicit),
                &[("HOME", &m.home), (CONFIG_DIR_ENV, &m.home.join("env"))],
                false,
            )
            .unwrap();
        assert_eq!(c.root(), explicit);
        assert_eq!(c.managed_dir(), None);
        assert!(!c.is_managed());
        assert_eq!(c.enrollment_file(), explicit.join(ENROLLMENT_FILE));
        let env_dir = m.home.join("env");
        let c = m
            .resolve(None, &[("HOME", &m.home), (CONFIG_DIR_ENV, &env_dir)], true)
            .unwrap();
        assert_eq!(c.root(), env_dir);
        assert_eq!(c.managed_dir(), None);
        // An empty variable is no variable.
        let c = m
            .resolve(
                None,
                &[("HOME", &m.home), (CONFIG_DIR_ENV, Path::new(""))],
                false,
            )
            .unwrap();
        assert!(c.is_managed());
    }

    #[test]
    fn root_uses_the_system_directory_alone() {
        let m = Machine::new();
        let c = m.resolve(None, &[("HOME", &m.home)], true).unwrap();
        assert_eq!(c.root(), m.system);
        assert_eq!(c.managed_dir(), None);
        assert_eq!(c, ConfigDir::new(&m.system));
    }

    #[test]
    fn xdg_config_home_moves_the_users_own_directory() {
        let m = Machine::new();
        let xdg = m.home.join("xdg");
        let c = m
            .resolve(None, &[("HOME", &m.home), ("XDG_CONFIG_HOME", &xdg)], false)
            .unwrap();
        assert_eq!(c.root(), xdg.join("airlock"));
        assert_eq!(c, ConfigDir::with_managed(xdg.join("airlock"), &m.system));
    }

    #[test]
    fn a_user_without_a_home_gets_only_the_managed_directory() {
        let m = Machine::new();
        let e = m.resolve(None, &[], false).unwrap_err().to_string();
        assert!(
            e.contains("HOME is not set") && e.contains("--config-dir"),
            "{e}"
        );
        enroll(&m.system, "fleet = \"acme\"\n");
        let c = m.resolve(None, &[], false).unwrap();
        assert_eq!(c.root(), m.system);
        assert_eq!(c.managed_dir(), None);
    }

    #[test]
    fn the_system_directory_is_the_platforms() {
        let expected = if cfg!(target_os = "macos") {
            "/Library/Application Support/Airlock/Config"
        } else if cfg!(windows) {
            r"C:\ProgramData\Airlock\Config"
        } else {
            "/etc/airlock"
        };
        assert_eq!(SYSTEM_CONFIG_DIR, expected);
        assert!(Path::new(SYSTEM_CONFIG_DIR).is_absolute());
    }
}
