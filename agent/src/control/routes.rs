//! The control API's routes: the table ([`ROUTES`]) that says for every method and path who may use
//! it and which handler answers, and the handlers. Adding a route is one line in the table and a
//! [`Handler`](super::Handler) here — `fn(&dyn Control, &Call) -> Reply`, run on the blocking pool with
//! the caller's credentials and the whole body. A handler must show a non-privileged caller nothing of
//! another user's beyond machine-wide counts ([`Call::may_see`]); access itself is decided before it
//! runs, by the table.

use http::StatusCode;
use serde_json::{json, Value};

use super::{Access, Call, Control, Reply, Route};
use crate::record::Record;

/// Every route of the control API, with who may use it.
pub static ROUTES: &[Route] = &[
    Route::get("/airlock/v1/health", Access::Read, health),
    Route::get("/airlock/v1/status", Access::Read, status),
    Route::get("/airlock/v1/requests", Access::Read, requests),
    Route::get("/airlock/v1/inventory", Access::Read, inventory),
    Route::post("/airlock/v1/ca/reload", Access::Write, reload_ca),
    Route::get("/airlock/v1/policy", Access::Read, policy),
    Route::post("/airlock/v1/policy/apply", Access::Write, apply_policy),
    Route::get("/airlock/v1/journal", Access::Read, journal_rows),
    Route::get("/airlock/v1/journal/verify", Access::Read, journal_verify),
    Route::get("/airlock/v1/credentials", Access::Read, credentials_list),
    Route::post(
        "/airlock/v1/credentials/set",
        Access::Write,
        credentials_set,
    ),
    Route::post("/airlock/v1/credentials/rm", Access::Write, credentials_rm),
    Route::post("/airlock/v1/pause", Access::Local, pause),
    Route::post("/airlock/v1/resume", Access::Local, resume),
];

fn no_store() -> Reply {
    Reply::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "credential_store_unavailable",
        "this agent has no credential store",
    )
}

/// Names of the org credentials and when each was set (never their values).
fn credentials_list(agent: &dyn Control, _: &Call) -> Reply {
    let Some(store) = agent.credentials() else {
        return no_store();
    };
    Reply::ok(json!({"store": store.kind(), "credentials": store.list()}))
}

fn credential_name(call: &Call) -> Result<String, Reply> {
    call.param("name")
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            Reply::error(
                StatusCode::BAD_REQUEST,
                "missing_name",
                "name the credential: ?name=NAME",
            )
        })
}

/// `?name=NAME` with the secret as the whole body: stored, replacing any earlier one.
fn credentials_set(agent: &dyn Control, call: &Call) -> Reply {
    let Some(store) = agent.credentials() else {
        return no_store();
    };
    let name = match credential_name(call) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let text = match std::str::from_utf8(&call.body) {
        Ok(t) => t.trim_end_matches(['\n', '\r']).to_string(),
        Err(_) => {
            return Reply::error(
                StatusCode::BAD_REQUEST,
                "bad_secret",
                "the secret is not UTF-8 text",
            )
        }
    };
    match store.set(&name, crate::credentials::Secret::new(text)) {
        Ok(()) => Reply::ok(json!({"result": "set", "name": name, "store": store.kind()})),
        Err(e) => Reply::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "credential_not_set",
            e.to_string(),
        ),
    }
}

/// `?name=NAME`: removed from the store.
fn credentials_rm(agent: &dyn Control, call: &Call) -> Reply {
    let Some(store) = agent.credentials() else {
        return no_store();
    };
    let name = match credential_name(call) {
        Ok(n) => n,
        Err(r) => return r,
    };
    match store.remove(&name) {
        Ok(existed) => {
            Reply::ok(json!({"result": if existed { "removed" } else { "absent" }, "name": name}))
        }
        Err(e) => Reply::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "credential_not_removed",
            e.to_string(),
        ),
    }
}

/// How long a journal read waits for the writer to commit what it holds.
const FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Most journal rows one `GET /airlock/v1/journal` returns; `next` pages on.
const JOURNAL_PAGE: usize = 5_000;

fn journal_unavailable(e: impl std::fmt::Display) -> Reply {
    Reply::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "journal_unavailable",
        format!("the agent cannot read its journal: {e}"),
    )
}

/// `?since_ms=T&after=SEQ&limit=N`: journal rows in chain order (a request once, as it ended),
/// the caller's own and the machine's events unless privileged; `next` is the `after` of the next
/// page, `null` at the end.
fn journal_rows(agent: &dyn Control, call: &Call) -> Reply {
    let Some(journal) = agent.recorder().journal() else {
        return journal_unavailable("it is not open");
    };
    let since = call
        .param("since_ms")
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0);
    let after = call
        .param("after")
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0);
    let limit = call.number("limit", JOURNAL_PAGE).clamp(1, JOURNAL_PAGE);
    let uid = match (call.privileged, call.peer.uid) {
        (true, _) => None,
        (false, Some(uid)) => Some(uid),
        (false, None) => return Reply::error(
            StatusCode::FORBIDDEN,
            "unknown_caller",
            "the agent cannot tell which user is asking, so it shows no journal rows; ask as root",
        ),
    };
    // Rows handed to the writer before this call are in the answer (a finished request's row may
    // still be waiting for company in the writer).
    journal.flush_blocking(FLUSH_WAIT);
    let rows = journal
        .reader()
        .and_then(|c| Ok(crate::journal::read::export(&c, since, after, limit, uid)?));
    match rows {
        Ok(rows) => {
            let next = crate::journal::read::next_page(&rows, limit);
            Reply::ok(json!({"rows": rows, "next": next, "all_users": call.privileged}))
        }
        Err(e) => journal_unavailable(e),
    }
}

/// The hash chain, checked row by row.
fn journal_verify(agent: &dyn Control, _: &Call) -> Reply {
    let Some(journal) = agent.recorder().journal() else {
        return journal_unavailable("it is not open");
    };
    journal.flush_blocking(FLUSH_WAIT);
    match journal
        .reader()
        .and_then(|c| Ok(crate::journal::read::verify(&c)?))
    {
        Ok(v) => Reply::ok(json!({"path": journal.path(), "verification": v})),
        Err(e) => journal_unavailable(e),
    }
}

/// The policy in force: source, fleet, version, bundle, last refusal, counters.
fn policy(agent: &dyn Control, _: &Call) -> Reply {
    Reply::ok(agent.policy())
}

/// A signed bundle from `airlock policy apply`, through the same verifier as the other sources.
fn apply_policy(agent: &dyn Control, call: &Call) -> Reply {
    match agent.apply_bundle(&call.body) {
        Ok(v) => Reply::ok(v),
        Err(v) => {
            let reason = v["reason"].as_str().unwrap_or("refused").to_string();
            let status = if reason == "not_enrolled" {
                StatusCode::CONFLICT
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            Reply::error(status, &reason, v["message"].as_str().unwrap_or_default())
        }
    }
}

/// `POST /airlock/v1/pause` with `{"minutes": N}` (optional: the policy's longest): pauses
/// interception for everyone on the machine, when the policy allows it; 403 `pause_not_allowed` or
/// 400 `pause_too_long` otherwise.
fn pause(agent: &dyn Control, call: &Call) -> Reply {
    let minutes = if call.body.is_empty() {
        None
    } else {
        match serde_json::from_slice::<Value>(&call.body) {
            Ok(v) if v["minutes"].is_null() => None,
            Ok(v) => match v["minutes"].as_u64().and_then(|m| u32::try_from(m).ok()) {
                Some(m) => Some(m),
                None => {
                    return Reply::error(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        "minutes must be a whole number, e.g. {\"minutes\": 15}",
                    )
                }
            },
            Err(e) => {
                return Reply::error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("the body must be JSON like {{\"minutes\": 15}}: {e}"),
                )
            }
        }
    };
    match agent.pause(call.peer.uid, minutes) {
        Ok(v) => Reply::ok(v),
        Err((reason, message)) => {
            let status = if reason == "pause_too_long" {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::FORBIDDEN
            };
            Reply::error(status, &reason, message)
        }
    }
}

/// `POST /airlock/v1/resume`: ends the running pause, if any.
fn resume(agent: &dyn Control, call: &Call) -> Reply {
    Reply::ok(agent.resume(call.peer.uid))
}

/// Records a `GET /airlock/v1/requests` returns when it names no `limit`.
const DEFAULT_LIMIT: usize = 100;

fn health(_: &dyn Control, _: &Call) -> Reply {
    Reply::ok(json!({"status": "ok"}))
}

/// The status report, and what the caller may do (so a client can say so before it tries).
fn status(agent: &dyn Control, call: &Call) -> Reply {
    let mut s = agent.status();
    s["caller"] = json!({
        "uid": call.peer.uid,
        "pid": call.peer.pid,
        "access": if call.privileged { "write" } else { "read" },
        "records": if call.privileged { "all users" } else { "own" },
    });
    Reply::ok(s)
}

/// `?limit=N` most recent finished records the caller may see, oldest first; with `&after=ID`, only
/// those that finished after the record `ID` (all recent ones when `ID` has left the ring), so a
/// follower (`airlock requests -f`, the dashboard) polls without repeats.
fn requests(agent: &dyn Control, call: &Call) -> Reply {
    let limit = call.number("limit", DEFAULT_LIMIT);
    let recent = match call.param("after").filter(|a| !a.is_empty()) {
        Some(after) => agent
            .recorder()
            .after_matching(after, limit, |r| call.may_see(r.uid)),
        None => agent
            .recorder()
            .recent_matching(limit, |r| call.may_see(r.uid)),
    };
    let records: Vec<&Record> = recent.iter().map(|r| &**r).collect();
    Reply::ok(json!({
        "records": records,
        "all_users": call.privileged,
        "uid": call.peer.uid,
    }))
}

/// The shadow-AI inventory, `?recent=N` sightings. Its per-host sums are the machine's; which
/// processes and users are behind them, and the sightings, a non-privileged caller sees only of
/// their own.
fn inventory(agent: &dyn Control, call: &Call) -> Reply {
    let mut v = agent.inventory().snapshot(call.number("recent", 100));
    if !call.privileged {
        hide_other_users(&mut v, call);
    }
    v["all_users"] = json!(call.privileged);
    Reply::ok(v)
}

fn uid_of(v: &Value) -> Option<u32> {
    v["uid"].as_u64().and_then(|u| u32::try_from(u).ok())
}

fn hide_other_users(v: &mut Value, call: &Call) {
    if let Some(apps) = v["apps"].as_array_mut() {
        for row in apps {
            if let Some(ps) = row["processes"].as_array_mut() {
                let before = ps.len();
                ps.retain(|p| call.may_see(uid_of(p)));
                row["processes_of_other_users"] = json!(before - ps.len());
            }
        }
    }
    if let Some(recent) = v["recent"].as_array_mut() {
        recent.retain(|s| call.may_see(uid_of(&s["process"])));
    }
}

/// Re-reads the device CA (after `airlock ca rotate` wrote a new one).
fn reload_ca(agent: &dyn Control, _: &Call) -> Reply {
    match agent.reload_ca() {
        Ok(status) => Reply::ok(status),
        Err(e) => Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ca_reload_failed",
            format!("the agent could not reload the device CA: {e}"),
        ),
    }
}
