//! Unit tests of the control API's routing and access decisions, driven without a socket: the peer is
//! what the server would have read from the kernel.

use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

use super::*;
use crate::record::{InterceptMode, Outcome};

struct Fake {
    recorder: Recorder,
    inventory: Inventory,
    reloads: std::sync::atomic::AtomicU32,
}

impl Control for Fake {
    fn status(&self) -> Value {
        json!({"agent": "airlockd", "pid": 1})
    }
    fn reload_ca(&self) -> std::result::Result<Value, String> {
        self.reloads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(json!({"reloaded": true}))
    }
    fn recorder(&self) -> &Recorder {
        &self.recorder
    }
    fn inventory(&self) -> &Inventory {
        &self.inventory
    }
    fn policy(&self) -> Value {
        json!({"name": "fake"})
    }
    fn apply_bundle(&self, bytes: &[u8]) -> std::result::Result<Value, Value> {
        if bytes == b"good" {
            Ok(json!({"result": "applied", "version": 7}))
        } else {
            Err(json!({"reason": "bad_signature", "message": "altered after signing"}))
        }
    }
}

fn record(id: &str, uid: Option<u32>) -> crate::record::Record {
    let mut r: crate::record::Record = serde_json::from_value(json!({
        "id": id, "started_at": "2026-01-01T00:00:00Z", "mode": "base_url", "host": "api.openai.com",
        "provider": "openai", "operation": "chat_completions", "model": "m", "stream": false,
        "method": "POST", "path": "/v1/chat/completions", "status": 200, "outcome": "completed",
        "credential": "bearer", "response_model": null, "usage": null, "usage_estimated": false,
        "usage_injected": false, "cost_usd": null, "cost_status": null, "cost_note": null,
        "upstream_error": null, "latency_ms": null, "ttfb_ms": null, "request_bytes": 0,
        "response_bytes": 0, "error": null
    }))
    .unwrap();
    assert_eq!(
        (r.mode, r.outcome),
        (InterceptMode::BaseUrl, Outcome::Completed)
    );
    r.uid = uid;
    r
}

const DAEMON: u32 = 998;
const ALICE: u32 = 1000;
const BOB: u32 = 1001;

fn ctx() -> (Context, Arc<Fake>) {
    let fake = Arc::new(Fake {
        recorder: Recorder::new(100, None),
        inventory: Inventory::new(crate::policy::Policy::embedded().unwrap().ai_domains),
        reloads: Default::default(),
    });
    for (id, uid) in [
        ("a1", Some(ALICE)),
        ("b1", Some(BOB)),
        ("n1", None),
        ("a2", Some(ALICE)),
    ] {
        fake.recorder.begin();
        fake.recorder.finish(record(id, uid));
    }
    let daemon = DaemonUser {
        uid: Some(DAEMON),
        name: Some("airlock".into()),
    };
    (
        Context::with_routes(fake.clone(), daemon, routes::ROUTES),
        fake,
    )
}

fn peer(uid: u32) -> Peer {
    Peer::new(uid, uid, Some(4242))
}

async fn call(
    ctx: &Context,
    who: Peer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, Value, http::HeaderMap) {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = respond(req.body(Full::new(Bytes::from(body))).unwrap(), who, ctx).await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap(), headers)
}

fn ids(v: &Value) -> Vec<String> {
    v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_route_table_finds_routes_wrong_methods_and_nothing() {
    let t = routes::ROUTES;
    assert!(
        matches!(find(t, &Method::GET, "/airlock/v1/status"), Lookup::Route(r) if r.access == Access::Read)
    );
    assert!(
        matches!(
            find(t, &Method::GET, "/airlock/v1/status/"),
            Lookup::Route(_)
        ),
        "a trailing slash"
    );
    assert!(
        matches!(
            find(t, &Method::HEAD, "/airlock/v1/health"),
            Lookup::Route(_)
        ),
        "HEAD is a GET"
    );
    assert!(
        matches!(find(t, &Method::POST, "/airlock/v1/ca/reload"), Lookup::Route(r) if r.access == Access::Write)
    );
    match find(t, &Method::GET, "/airlock/v1/ca/reload") {
        Lookup::WrongMethod(m) => assert_eq!(m, vec![&Method::POST]),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        find(t, &Method::GET, "/airlock/v1/nope"),
        Lookup::Nothing
    ));
    assert!(matches!(find(t, &Method::GET, "/"), Lookup::Nothing));
    // Every write route is one only root and the agent's user may use; the reads are for anyone.
    let writes: Vec<&str> = t
        .iter()
        .filter(|r| r.access == Access::Write)
        .map(|r| r.path)
        .collect();
    assert_eq!(
        writes,
        [
            "/airlock/v1/ca/reload",
            "/airlock/v1/policy/apply",
            "/airlock/v1/credentials/set",
            "/airlock/v1/credentials/rm"
        ]
    );
    // Every other POST is a change the policy lets any local user make, and only those.
    let local: Vec<&str> = t
        .iter()
        .filter(|r| r.method == Method::POST && r.access != Access::Write)
        .map(|r| r.path)
        .collect();
    assert_eq!(local, ["/airlock/v1/pause", "/airlock/v1/resume"]);
    assert!(t
        .iter()
        .filter(|r| r.access == Access::Local)
        .all(|r| r.method == Method::POST));
    // No path and method twice.
    for (i, a) in t.iter().enumerate() {
        assert!(
            !t[i + 1..]
                .iter()
                .any(|b| a.path == b.path && a.method == b.method),
            "{}",
            a.path
        );
    }
}

#[test]
fn writes_are_for_root_and_the_daemons_user_and_the_refusal_says_who_may() {
    let daemon = DaemonUser {
        uid: Some(DAEMON),
        name: Some("airlock".into()),
    };
    let write = &routes::ROUTES[4];
    let read = &routes::ROUTES[1];
    assert_eq!(write.access, Access::Write);
    assert_eq!(refusal(write, &peer(0), &daemon), None);
    assert_eq!(refusal(write, &peer(DAEMON), &daemon), None);
    assert_eq!(refusal(read, &peer(ALICE), &daemon), None);
    assert_eq!(
        refusal(read, &Peer::default(), &daemon),
        None,
        "anyone may read"
    );
    let why = refusal(write, &peer(ALICE), &daemon).unwrap();
    assert!(
        why.starts_with(
            "POST /airlock/v1/ca/reload may only be done by root or airlock (uid 998); you are "
        ),
        "{why}"
    );
    assert!(
        why.contains("(uid 1000)") && why.contains("sudo airlock"),
        "{why}"
    );
    assert!(
        refusal(write, &Peer::default(), &daemon).is_some(),
        "an unknown uid never writes"
    );
}

#[tokio::test]
async fn a_reader_may_read_but_not_write() {
    let (ctx, fake) = ctx();
    let (s, v, _) = call(&ctx, peer(ALICE), "GET", "/airlock/v1/status", &[], vec![]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["caller"]["access"], "read");
    assert_eq!(v["caller"]["uid"], ALICE);
    let (s, v, _) = call(
        &ctx,
        peer(ALICE),
        "POST",
        "/airlock/v1/ca/reload",
        &[],
        vec![],
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(v["error"]["type"], "forbidden");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("root or airlock (uid 998)"),
        "{v}"
    );
    assert_eq!(fake.reloads.load(std::sync::atomic::Ordering::Relaxed), 0);
    for who in [0, DAEMON] {
        let (s, v, _) = call(
            &ctx,
            peer(who),
            "POST",
            "/airlock/v1/ca/reload",
            &[],
            vec![],
        )
        .await;
        assert_eq!((s, &v["reloaded"]), (StatusCode::OK, &json!(true)), "{who}");
    }
    assert_eq!(fake.reloads.load(std::sync::atomic::Ordering::Relaxed), 2);
}

#[tokio::test]
async fn a_reader_sees_only_their_own_records_and_the_privileged_see_all() {
    let (ctx, _) = ctx();
    let get = |who: Peer, path: &'static str| {
        let ctx = &ctx;
        async move { call(ctx, who, "GET", path, &[], vec![]).await.1 }
    };
    let alice = get(peer(ALICE), "/airlock/v1/requests").await;
    assert_eq!(ids(&alice), ["a1", "a2"]);
    assert_eq!(alice["all_users"], false);
    assert_eq!(ids(&get(peer(BOB), "/airlock/v1/requests").await), ["b1"]);
    assert!(ids(&get(peer(4000), "/airlock/v1/requests").await).is_empty());
    assert!(
        ids(&get(Peer::default(), "/airlock/v1/requests").await).is_empty(),
        "unknown uid"
    );
    for who in [0, DAEMON] {
        let all = get(peer(who), "/airlock/v1/requests").await;
        assert_eq!(ids(&all), ["a1", "b1", "n1", "a2"], "{who}");
        assert_eq!(all["all_users"], true);
    }
    // The limit counts what the caller may see.
    assert_eq!(
        ids(&get(peer(ALICE), "/airlock/v1/requests?limit=1").await),
        ["a2"]
    );
    assert_eq!(
        ids(&get(peer(0), "/airlock/v1/requests?limit=2").await),
        ["n1", "a2"]
    );
}

#[tokio::test]
async fn a_reader_sees_the_inventorys_sums_but_only_their_own_processes() {
    let (ctx, fake) = ctx();
    let app = crate::policy::ai_domains::AiApp {
        name: "Acme".into(),
        category: crate::policy::ai_domains::Category::Chat,
    };
    for (uid, exe) in [(ALICE, "curl"), (BOB, "python3")] {
        let s = crate::inventory::Sighting {
            started_at: String::new(),
            host: "chat.acme.example".into(),
            port: 443,
            app: "Acme".into(),
            category: app.category,
            inspected: false,
            process: crate::inventory::PeerProcess {
                pid: Some(uid),
                exe: Some(exe.into()),
                uid: Some(uid),
                user: None,
                exe_path: None,
                note: None,
            },
            bytes_up: Some(1),
            bytes_down: Some(2),
            requests: None,
            duration_ms: 1,
        };
        fake.inventory.record(s, &app);
    }
    let (_, alice, _) = call(
        &ctx,
        peer(ALICE),
        "GET",
        "/airlock/v1/inventory",
        &[],
        vec![],
    )
    .await;
    let row = &alice["apps"][0];
    assert_eq!(row["connections"], 2, "the sums are the machine's");
    assert_eq!(row["processes"].as_array().unwrap().len(), 1);
    assert_eq!(row["processes"][0]["exe"], "curl");
    assert_eq!(row["processes_of_other_users"], 1);
    let recent = alice["recent"].as_array().unwrap();
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0]["process"]["uid"], ALICE);
    assert_eq!(alice["all_users"], false);
    let (_, root, _) = call(&ctx, peer(0), "GET", "/airlock/v1/inventory", &[], vec![]).await;
    assert_eq!(root["apps"][0]["processes"].as_array().unwrap().len(), 2);
    assert_eq!(root["recent"].as_array().unwrap().len(), 2);
    assert_eq!(root["all_users"], true);
}

#[tokio::test]
async fn requests_a_browser_could_send_are_refused_whoever_sends_them() {
    let (ctx, fake) = ctx();
    for (h, v) in [
        ("origin", "https://evil.example"),
        ("origin", "null"),
        ("referer", "http://x/"),
    ] {
        for path in [
            "/airlock/v1/status",
            "/airlock/v1/ca/reload",
            "/airlock/v1/nope",
        ] {
            let (s, body, _) = call(&ctx, peer(0), "POST", path, &[(h, v)], vec![]).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{h} {path}");
            assert_eq!(body["error"]["type"], "browser_request_refused");
        }
    }
    assert_eq!(fake.reloads.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[tokio::test]
async fn unknown_paths_list_the_routes_and_wrong_methods_say_which_to_use() {
    let (ctx, _) = ctx();
    let (s, v, _) = call(&ctx, peer(ALICE), "GET", "/airlock/v1/nope", &[], vec![]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("GET /airlock/v1/status")
            && msg.contains("POST /airlock/v1/ca/reload (root or the agent's user)"),
        "{msg}"
    );
    assert_eq!(v["routes"].as_array().unwrap().len(), routes::ROUTES.len());
    let (s, v, h) = call(
        &ctx,
        peer(ALICE),
        "DELETE",
        "/airlock/v1/status",
        &[],
        vec![],
    )
    .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(v["error"]["type"], "method_not_allowed");
    assert_eq!(h.get("allow").unwrap(), "GET");
    assert_eq!(h.get("x-frame-options").unwrap(), "DENY");
}

#[tokio::test]
async fn bodies_past_the_bound_are_refused_and_a_reader_never_gets_to_send_one() {
    let (ctx, fake) = ctx();
    let big = vec![b'x'; MAX_BODY + 1];
    let (s, v, _) = call(
        &ctx,
        peer(0),
        "POST",
        "/airlock/v1/ca/reload",
        &[],
        big.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(v["error"]["type"], "payload_too_large");
    // Access is decided before the body is read.
    let (s, _, _) = call(&ctx, peer(ALICE), "POST", "/airlock/v1/ca/reload", &[], big).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = call(
        &ctx,
        peer(0),
        "POST",
        "/airlock/v1/ca/reload",
        &[],
        vec![b'x'; 1024],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(fake.reloads.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn query_parameters_are_read_by_name() {
    let c = Call {
        peer: Peer::default(),
        privileged: false,
        query: Some("recent=5&limit=abc&flag".into()),
        body: Bytes::new(),
    };
    assert_eq!(c.number("recent", 100), 5);
    assert_eq!(c.number("limit", 100), 100, "not a number");
    assert_eq!(c.param("flag"), Some(""));
    assert_eq!(c.param("nope"), None);
    assert!(!c.may_see(None));
}

#[tokio::test]
async fn a_bundle_is_applied_only_by_the_privileged_and_a_refusal_keeps_its_reason() {
    let (ctx, _fake) = ctx();
    let (s, v, _) = call(
        &ctx,
        peer(ALICE),
        "POST",
        "/airlock/v1/policy/apply",
        &[],
        b"good".to_vec(),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v, _) = call(
        &ctx,
        peer(0),
        "POST",
        "/airlock/v1/policy/apply",
        &[],
        b"good".to_vec(),
    )
    .await;
    assert_eq!(
        (s, v["result"].as_str(), v["version"].as_u64()),
        (StatusCode::OK, Some("applied"), Some(7))
    );
    let (s, v, _) = call(
        &ctx,
        peer(DAEMON),
        "POST",
        "/airlock/v1/policy/apply",
        &[],
        b"forged".to_vec(),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["error"]["type"], "bad_signature");
    let (s, v, _) = call(&ctx, peer(ALICE), "GET", "/airlock/v1/policy", &[], vec![]).await;
    assert_eq!((s, v["name"].as_str()), (StatusCode::OK, Some("fake")));
}
