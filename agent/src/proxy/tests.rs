//! Unit tests of the listener's own checks, driven without sockets where the kernel would not let a
//! test produce the case (a connection from another machine).

use std::sync::Arc;

use super::*;
use crate::paths::StateDir;
use crate::policy::Policy;

fn state(max_connections: usize) -> (ProxyState, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let policy = Policy::embedded().unwrap();
    let sd = StateDir::new(dir.path());
    let ca = CertificateAuthority::load_or_create(&sd, &policy.hosts.ca_domains()).unwrap();
    let upstream = UpstreamClient::new(
        &policy.upstream,
        crate::upstream::OwnCaCheck::new(|_| false),
        None,
    )
    .unwrap();
    let recorder = Arc::new(crate::record::Recorder::new(10, None));
    let pipeline = Arc::new(Pipeline::new(
        upstream.clone(),
        recorder,
        policy.limits.clone(),
    ));
    let st = ProxyState {
        hosts: policy.hosts.clone(),
        blocked: policy.blocked.clone(),
        unavailable: None,
        ca: Arc::new(ArcSwap::from_pointee(ca)),
        pipeline,
        upstream,
        listen: "127.0.0.1:8479".parse().unwrap(),
        limits: policy.limits.clone(),
        connections: Arc::new(Connections::new(max_connections)),
        refusals: Arc::new(Refusals::default()),
        control_socket: None,
        callers: crate::caller::Callers::disabled(),
        inventory: Arc::new(crate::inventory::Inventory::new(policy.ai_domains.clone())),
        tunnels: Arc::new(tunnels::TunnelStats::default()),
        pause: Arc::new(crate::pause::Pause::new()),
        policy: Arc::new(policy),
    };
    (st, dir)
}

#[test]
fn only_loopback_peers_are_allowed() {
    for ok in [
        "127.0.0.1:5000",
        "127.9.9.9:1",
        "[::1]:5000",
        "[::ffff:127.0.0.1]:80",
    ] {
        assert!(is_allowed_peer(&ok.parse().unwrap()), "{ok}");
    }
    for bad in [
        "10.0.0.2:5000",
        "192.168.1.5:1",
        "[2001:db8::1]:80",
        "[::ffff:10.0.0.1]:80",
        "0.0.0.0:1",
    ] {
        assert!(!is_allowed_peer(&bad.parse().unwrap()), "{bad}");
    }
}

#[tokio::test]
async fn the_accept_path_drops_a_foreign_peer_and_counts_it() {
    let (st, _dir) = state(4);
    let (a, permit) = admit(&st, &"10.1.2.3:40000".parse().unwrap());
    assert_eq!(a, Admission::ForeignPeer);
    assert!(permit.is_none());
    assert_eq!(st.refusals.non_loopback_peers.load(Ordering::Relaxed), 1);
    assert_eq!(st.connections.open(), 0, "a refused peer holds no place");
    let (a, permit) = admit(&st, &"127.0.0.1:40000".parse().unwrap());
    assert_eq!(a, Admission::Serve);
    assert!(permit.is_some());
    assert_eq!(st.connections.open(), 1);
}

#[tokio::test]
async fn the_connection_cap_turns_new_connections_away_until_one_ends() {
    let (st, _dir) = state(2);
    let peer = "127.0.0.1:1".parse().unwrap();
    let (_, p1) = admit(&st, &peer);
    let (_, p2) = admit(&st, &peer);
    let (a, p3) = admit(&st, &peer);
    assert!(p1.is_some() && p2.is_some());
    assert_eq!(a, Admission::Full);
    assert!(p3.is_none());
    assert_eq!(st.refusals.over_connection_limit.load(Ordering::Relaxed), 1);
    drop(p1);
    assert_eq!(admit(&st, &peer).0, Admission::Serve);
}

#[tokio::test]
async fn binding_a_non_loopback_address_is_refused_with_advice() {
    let e = bind("0.0.0.0:0".parse().unwrap()).await.unwrap_err();
    assert!(e.to_string().contains("loopback only"), "{e}");
}

#[tokio::test]
async fn a_taken_port_names_the_port_and_the_fix() {
    let first = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = first.local_addr().unwrap();
    let e = bind(addr).await.unwrap_err().to_string();
    assert!(
        e.contains(&addr.port().to_string()) && e.contains("--listen"),
        "{e}"
    );
}

#[tokio::test]
async fn own_address_is_recognised_in_every_spelling() {
    let (st, _dir) = state(1);
    for h in ["127.0.0.1", "localhost", "[::1]", "::1", "0.0.0.0"] {
        assert!(st.is_own_address(h, 8479), "{h}");
    }
    assert!(!st.is_own_address("127.0.0.1", 8480));
    assert!(!st.is_own_address("example.com", 8479));
}
