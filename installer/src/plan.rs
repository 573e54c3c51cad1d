//! What `airlock setup` and `airlock uninstall` will do, as a list of steps that can be shown before
//! anything changes and then carried out one by one, each recorded in the manifest as it succeeds.
//! Setup: create the NSS databases asked for, add the CA to every store this process may change
//! (system → NSS → Java; read-only ones are left to root), write the environment files, and point the
//! desktop at the PAC file if asked. Uninstall: every Airlock CA out of every store this process may
//! change (Java → NSS → system), then each recorded change undone in reverse, then the state folder
//! with `--purge`. A step that fails is reported and the rest go on, so one broken store never leaves
//! the others half done. It owns the order and the recording; the stores and files do the work.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::ca::Ca;
use crate::desktop;
use crate::env::{self, EnvText, Target};
use crate::error::{InstallerError, Result};
use crate::fsutil;
use crate::manifest::{Change, Manifest};
use crate::stores::{self, Holding, Kind, NssDb, Store, Where};

/// System-wide or for one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// As root, for the whole machine.
    System,
    /// For the user running it, without root.
    User,
}

impl Scope {
    /// `system` or `user`.
    pub fn word(self) -> &'static str {
        match self {
            Scope::System => "system",
            Scope::User => "user",
        }
    }
}

/// What setup is asked to do.
#[derive(Debug, Clone)]
pub struct Setup {
    /// System or user.
    pub scope: Scope,
    /// The home whose NSS databases and shell files are changed (the user's; root's own in
    /// system mode, whose existing NSS databases are included).
    pub home: Option<PathBuf>,
    /// The user's login shell (`$SHELL`), to pick rc files.
    pub shell: Option<String>,
    /// The agent's merged bundle, checked as a store.
    pub bundle: Option<PathBuf>,
    /// The environment for new shells; `None` leaves shells alone.
    pub env: Option<EnvText>,
    /// Point the desktop's automatic proxy at this PAC URL.
    pub pac_url: Option<String>,
    /// Only these kinds of trust store (`None`: all).
    pub only: Option<Vec<Kind>>,
}

impl Setup {
    fn stores(&self) -> Vec<Box<dyn Store>> {
        let at = Where {
            system: self.scope == Scope::System,
            home: self.home.clone(),
            create_user_nssdb: self.scope == Scope::User,
            bundle: self.bundle.clone(),
        };
        stores::discover(&at)
            .into_iter()
            .filter(|s| self.only.as_ref().is_none_or(|o| o.contains(&s.kind())))
            .collect()
    }
}

/// One step of setup.
pub enum Step {
    /// Create an NSS database that does not exist yet.
    CreateNss(NssDb),
    /// Add the CA to a store.
    Trust(Box<dyn Store>),
    /// Write an environment file or block.
    Env(Target),
    /// Point the desktop at the PAC URL.
    DesktopProxy(String),
}

impl Step {
    /// What it will do, for people.
    pub fn describe(&self) -> String {
        match self {
            Step::CreateNss(db) => format!("create the NSS database {}", db.dir().display()),
            Step::Trust(s) => format!("trust the device CA in the {}", s.describe()),
            Step::Env(Target::File { path, .. }) => {
                format!("write {} for new shells", path.display())
            }
            Step::Env(Target::Block { path, .. }) => {
                format!("add an Airlock block to {}", path.display())
            }
            Step::DesktopProxy(url) => format!(
                "set the desktop's automatic proxy configuration ({}) to {url}",
                desktop::backend().unwrap_or("none")
            ),
        }
    }
}

/// Setup's steps, and the stores it leaves alone (with why).
pub struct SetupPlan {
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Stores that need root, shown so the user knows what remains.
    pub left: Vec<String>,
}

/// What setup will do.
pub fn plan_setup(s: &Setup) -> SetupPlan {
    let mut steps = Vec::new();
    let mut left = Vec::new();
    for store in s.stores() {
        if !store.writable() {
            if store.kind() != Kind::Bundle {
                left.push(format!(
                    "{} (needs root: `sudo airlock setup`)",
                    store.describe()
                ));
            }
            continue;
        }
        steps.push(Step::Trust(store));
    }
    // A database to create goes right before the CA is added to it.
    let mut ordered = Vec::new();
    for step in steps {
        if let Step::Trust(store) = &step {
            if let Some(dir) = store.to_create() {
                ordered.push(Step::CreateNss(NssDb::to_create(dir)));
            }
        }
        ordered.push(step);
    }
    if let Some(text) = &s.env {
        let home = s.home.as_deref();
        for t in env::targets(s.scope == Scope::System, home, s.shell.as_deref(), text) {
            ordered.push(Step::Env(t));
        }
    }
    if let Some(url) = &s.pac_url {
        ordered.push(Step::DesktopProxy(url.clone()));
    }
    SetupPlan {
        steps: ordered,
        left,
    }
}

/// How each step went, in order.
#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    /// Each step: whether it worked, and what was done or why it failed (with what to do).
    pub steps: Vec<(bool, String)>,
}

impl Outcome {
    fn result(&mut self, what: String, r: Result<()>) {
        match r {
            Ok(()) => self.steps.push((true, what)),
            Err(e) => self.steps.push((false, format!("{what}: {e}"))),
        }
    }

    /// How many steps failed.
    pub fn failures(&self) -> usize {
        self.steps.iter().filter(|(ok, _)| !ok).count()
    }
}

/// Carries out `plan` for `ca`, recording each change in the manifest at `manifest_path` as it
/// succeeds. `created_before` are folders the caller made for this setup before (the state folder
/// the CA went into), outermost first: uninstall removes them when they are empty again.
pub fn apply_setup(
    plan: SetupPlan,
    scope: Scope,
    ca: &Ca,
    manifest_path: &Path,
    created_before: Vec<PathBuf>,
) -> Result<Outcome> {
    let mut m = match Manifest::load(manifest_path)? {
        Some(m) => m,
        None => Manifest {
            created_dirs: created_before.into_iter().filter(|d| d.is_dir()).collect(),
            ..Manifest::new(scope.word())
        },
    };
    m.ca_serial = Some(ca.short_serial().to_string());
    m.save(manifest_path)?;
    let mut out = Outcome::default();
    for step in plan.steps {
        let what = step.describe();
        let r = match step {
            Step::CreateNss(db) => db.create().map(|created_dirs| {
                m.record(Change::NssDb {
                    dir: db.dir().to_path_buf(),
                    created_dirs,
                })
            }),
            Step::Trust(store) => store.add(ca).map(|()| {
                m.record(Change::Store {
                    describe: store.describe(),
                })
            }),
            Step::Env(Target::File { path, contents }) => {
                let had = path.exists() && !m.has_path(&path);
                if had && !is_ours(&path) {
                    Err(InstallerError::Refused(format!(
                        "{} exists and was not written by Airlock; move it aside and run setup again",
                        path.display()
                    )))
                } else {
                    fsutil::write_file(&path, &contents, 0o644)
                        .map(|created_dirs| m.record(Change::File { path, created_dirs }))
                }
            }
            Step::Env(Target::Block { path, body }) => {
                fsutil::insert_block(&path, &body, 0o644).map(|(how, created_dirs)| {
                    // A rerun finds the block already there: keep the first record (it knows
                    // whether the file was ours to begin with).
                    m.record(Change::Block {
                        path,
                        how,
                        created_dirs,
                    })
                })
            }
            Step::DesktopProxy(url) => {
                if desktop::current_pac()?.as_deref() == Some(url.as_str())
                    && m.desktop_proxy().is_some()
                {
                    Ok(())
                } else {
                    desktop::set_pac(&url)
                        .map(|previous| m.record(Change::DesktopProxy { previous }))
                }
            }
        };
        out.result(what, r);
        m.save(manifest_path)?;
    }
    Ok(out)
}

/// Whether a file Airlock would write holds Airlock's header (an earlier setup whose manifest went).
fn is_ours(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.starts_with("# Airlock: "))
}

/// What uninstall is asked to do.
#[derive(Debug, Clone)]
pub struct Uninstall {
    /// System or user.
    pub scope: Scope,
    /// The home whose NSS databases are searched.
    pub home: Option<PathBuf>,
    /// Remove this state folder too (`--purge`).
    pub purge: Option<PathBuf>,
}

/// One step of uninstall.
pub enum UndoStep {
    /// Remove these Airlock CAs from a store.
    Untrust(Box<dyn Store>, Vec<String>),
    /// Undo a recorded change.
    Undo(Change),
    /// Remove the state folder.
    Purge(PathBuf),
}

impl UndoStep {
    /// What it will do, for people.
    pub fn describe(&self) -> String {
        match self {
            UndoStep::Untrust(s, names) => {
                format!("remove {} from the {}", names.join(", "), s.describe())
            }
            UndoStep::Undo(Change::File { path, .. }) => format!("remove {}", path.display()),
            UndoStep::Undo(Change::Block { path, .. }) => {
                format!("take the Airlock block out of {}", path.display())
            }
            UndoStep::Undo(Change::NssDb { dir, .. }) => {
                format!(
                    "remove the NSS database {} that setup created",
                    dir.display()
                )
            }
            UndoStep::Undo(Change::DesktopProxy { previous }) => format!(
                "put the desktop's proxy setting back ({})",
                previous
                    .values
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            UndoStep::Undo(Change::Store { describe }) => format!("(trusted in {describe})"),
            UndoStep::Purge(dir) => format!(
                "delete the state directory {} (device CA, journal, credentials)",
                dir.display()
            ),
        }
    }
}

/// What uninstall will do: every store this process may change that holds an Airlock CA, every
/// recorded change, and the purge.
pub fn plan_uninstall(u: &Uninstall, manifest: Option<&Manifest>) -> Vec<UndoStep> {
    let mut steps = Vec::new();
    let stores = stores::discover(&Where {
        system: u.scope == Scope::System,
        home: u.home.clone(),
        create_user_nssdb: false,
        bundle: None,
    });
    for store in stores.into_iter().rev() {
        if !store.writable() {
            continue;
        }
        match store.airlock_entries() {
            Ok(names) if names.is_empty() => {}
            Ok(names) => steps.push(UndoStep::Untrust(store, names)),
            // Listing failed (a tool went missing): try anyway, and report what fails.
            Err(_) => steps.push(UndoStep::Untrust(store, vec!["Airlock CAs".into()])),
        }
    }
    if let Some(m) = manifest {
        for c in m.changes.iter().rev() {
            if !matches!(c, Change::Store { .. }) {
                steps.push(UndoStep::Undo(c.clone()));
            }
        }
    }
    if let Some(dir) = &u.purge {
        if dir.exists() {
            steps.push(UndoStep::Purge(dir.clone()));
        }
    }
    steps
}

/// Carries out uninstall, then removes the manifest (and the folders made for it) when nothing
/// failed.
pub fn apply_uninstall(
    steps: Vec<UndoStep>,
    manifest_path: &Path,
    pac_url: Option<&str>,
) -> Result<Outcome> {
    // Read first: a purge may take the manifest's folder with it.
    let created = Manifest::load(manifest_path)
        .ok()
        .flatten()
        .map(|m| m.created_dirs)
        .unwrap_or_default();
    let mut out = Outcome::default();
    for step in steps {
        let what = step.describe();
        let r =
            match step {
                UndoStep::Untrust(store, _) => store.remove_all().map(|_| ()),
                UndoStep::Undo(Change::File { path, created_dirs }) => fsutil::remove_file(&path)
                    .map(|_| {
                        fsutil::remove_created_dirs(&created_dirs);
                    }),
                UndoStep::Undo(Change::Block {
                    path,
                    how,
                    created_dirs,
                }) => fsutil::remove_block(&path, how)
                    .map(|_| fsutil::remove_created_dirs(&created_dirs)),
                UndoStep::Undo(Change::NssDb { dir, created_dirs }) => {
                    NssDb::destroy(&dir, &created_dirs)
                }
                UndoStep::Undo(Change::DesktopProxy { previous }) => match pac_url {
                    Some(url) => desktop::restore(&previous, url).map(|_| ()),
                    None => desktop::restore_unconditionally(&previous),
                },
                UndoStep::Undo(Change::Store { .. }) => Ok(()),
                UndoStep::Purge(dir) => {
                    std::fs::remove_dir_all(&dir).map_err(|e| InstallerError::io("remove", &dir, e))
                }
            };
        out.result(what, r);
    }
    if out.failures() == 0 {
        fsutil::remove_file(manifest_path)?;
        fsutil::remove_created_dirs(&created);
    }
    Ok(out)
}

/// One store's line in `airlock ca trust-status`.
#[derive(Debug, Serialize)]
pub struct StoreStatus {
    /// Its kind.
    pub kind: Kind,
    /// What and where.
    pub store: String,
    /// Its file or folder.
    pub location: PathBuf,
    /// What it holds (absent when it could not be read).
    #[serde(flatten)]
    pub holding: Option<Holding>,
    /// Why it could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether this process could change it.
    pub writable: bool,
}

/// Every store's status for `ca`: the system ones, and the NSS databases under `home`.
pub fn trust_status(
    system: bool,
    home: Option<PathBuf>,
    bundle: Option<PathBuf>,
    ca: &Ca,
) -> Vec<StoreStatus> {
    stores::discover(&Where {
        system,
        home,
        create_user_nssdb: false,
        bundle,
    })
    .into_iter()
    .map(|s| {
        let (holding, error) = match s.check(ca) {
            Ok(h) => (Some(h), None),
            Err(e) => (None, Some(e.to_string())),
        };
        StoreStatus {
            kind: s.kind(),
            store: s.describe(),
            location: s.location(),
            holding,
            error,
            writable: s.writable(),
        }
    })
    .collect()
}
