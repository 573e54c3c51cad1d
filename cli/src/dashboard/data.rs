//! What the dashboard shows, read with this user's own rights: the agent through its control API
//! ([`Verified::get`], so a user sees their own requests and root everyone's), the journal rows
//! through [`crate::journal`], and the trust stores through the installer's `trust_status`. Every
//! function here blocks (it is called on tokio's blocking pool) and answers JSON for the page; an
//! agent that is down is an answer (`agent.up = false` with the reason), not an error. It must not
//! change anything.

use std::sync::Mutex;
use std::time::Duration;

use airlock_agent::ca::CaInfo;
use serde_json::{json, Value};

use crate::trust::{Agent, Verified};
use crate::Session;

/// The agent as last verified, verified again when it stops answering (it may have restarted).
pub struct Link {
    session: Session,
    agent: Mutex<Option<Verified>>,
}

impl Link {
    /// A link for the session's agent (not looked for yet).
    pub fn new(ctx: &Session) -> Link {
        Link {
            session: Session {
                state: ctx.state.clone(),
                named: ctx.named.clone(),
                socket: ctx.socket.clone(),
            },
            agent: Mutex::new(None),
        }
    }

    fn verified(&self) -> Result<Verified, String> {
        match self.session.find_agent() {
            Ok(Agent::Verified(v)) => Ok(*v),
            Ok(Agent::NotRunning(n)) => Err(n.message()),
            Err(e) => Err(format!("{e:#}")),
        }
    }

    /// GETs `path` from the agent, verifying it again once if the one we knew stopped answering.
    pub fn get(&self, path: &str) -> Result<Value, String> {
        let mut cached = self
            .agent
            .lock()
            .map_err(|_| "internal error: lock".to_string())?;
        if let Some(v) = cached.as_ref() {
            if let Ok(answer) = v.get(path) {
                return Ok(answer);
            }
        }
        *cached = None;
        let v = self.verified()?;
        let answer = v.get(path).map_err(|e| format!("{e:#}"))?;
        *cached = Some(v);
        Ok(answer)
    }

    /// The overview the page polls: agent up or down, status sections, policy.
    pub fn overview(&self) -> Value {
        let status = match self.get("/airlock/v1/status") {
            Ok(s) => s,
            Err(message) => return json!({"agent": {"up": false, "message": message}}),
        };
        let policy = self
            .get("/airlock/v1/policy")
            .unwrap_or_else(|_| status["policy"].clone());
        json!({
            "agent": {"up": true, "version": status["version"], "pid": status["pid"],
                      "listen": status["listen"], "uptime_secs": status["uptime_secs"],
                      "caller": status["caller"], "requests_seen": status["requests_seen"]},
            "health": status["health"],
            "pause": status["pause"],
            "governance": status["governance"],
            "policy": policy,
            "ca": status["ca"],
            "journal": status["journal"],
            "upstream": status["upstream"],
        })
    }

    /// Records after `after` (the agent may ignore `after`; the caller dedupes by id).
    pub fn requests(&self, after: Option<&str>) -> Result<Vec<Value>, String> {
        let path = match after {
            Some(id) => format!("/airlock/v1/requests?limit=200&after={id}"),
            None => "/airlock/v1/requests?limit=200".to_string(),
        };
        let v = self.get(&path)?;
        Ok(v["records"].as_array().cloned().unwrap_or_default())
    }

    /// The usage view for the last `since`.
    pub fn usage(&self, since: Duration) -> Value {
        let src = crate::journal::row_source(&self.session.state, self.session.find_agent(), None);
        let rows = src.and_then(|s| crate::journal::rows_since(&s, Some(since)));
        match rows {
            Ok(rows) => {
                let to = airlock_agent::record::now_ms();
                let from = to - i64::try_from(since.as_millis()).unwrap_or(i64::MAX / 2);
                let mut v = super::usage::charts(&rows, from, to);
                v["ok"] = json!(true);
                v
            }
            Err(e) => json!({"ok": false, "message": format!("cannot read the journal: {e:#}")}),
        }
    }

    /// The device CA and which trust stores hold it (as `airlock ca trust-status` reports).
    pub fn trust(&self) -> Value {
        let info = match CaInfo::read(&self.session.state.dir) {
            Ok(i) => i,
            Err(e) => {
                return json!({"ok": false, "message": format!(
                    "{e}; there is no device CA yet: start airlockd or run `airlock setup`")})
            }
        };
        let ca = match airlock_installer::Ca::new(
            &info.cert_pem,
            &info.serial,
            &info.fingerprint_sha256,
        ) {
            Ok(c) => c,
            Err(e) => {
                return json!({"ok": false, "message": format!("cannot read the device CA: {e}")})
            }
        };
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(std::path::PathBuf::from);
        let root = crate::owner::current_uid() == Some(0);
        let rows = airlock_installer::plan::trust_status(
            root,
            home,
            Some(self.session.state.dir.merged_bundle()),
            &ca,
        );
        json!({"ok": true,
               "ca": {"serial": info.serial, "subject": info.subject,
                      "fingerprint_sha256": info.fingerprint_sha256, "not_after": info.not_after,
                      "cert_path": info.cert_path, "permitted_domains": info.permitted_domains},
               "stores": rows})
    }
}
