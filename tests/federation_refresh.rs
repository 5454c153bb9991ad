//! The refresher against live peers on loopback: it takes up a foreign CA
//! rotation with no operator step, bootstraps https_spiffe from the stored
//! bundle, and keeps the last good bundle (saying why in the log and the
//! status) when a peer is unreachable, presents the wrong SPIFFE ID, serves
//! another trust domain's bundle or malformed JSON.

mod harness;

use std::time::Duration;

use harness::dirs::free_port;
use harness::peer::Peer;
use harness::web::{
    eventually, same_keys, serve_raw, spiffe_relationship, web_relationship, WebCa,
};
use herald::server::federation::{
    FetchFailure, RefreshError, RefresherHandle, RefresherSettings, WebRoots,
};
use herald::server::state::{ServerEvent, ServerState};
use herald::spiffe::{Bundle, TrustDomain};
use herald::store::FederationRelationship;

fn fast() -> RefresherSettings {
    RefresherSettings {
        min_interval: Duration::from_millis(200),
        fetch_timeout: Duration::from_secs(5),
        ..RefresherSettings::default()
    }
}

/// Only explicit refreshes and relationship changes.
fn quiet() -> RefresherSettings {
    RefresherSettings {
        default_interval: Duration::from_secs(3600),
        min_interval: Duration::from_secs(3600),
        fetch_timeout: Duration::from_secs(5),
        ..RefresherSettings::default()
    }
}

fn stored(state: &ServerState, td: &str) -> Option<Bundle> {
    state
        .store
        .get_bundle(&TrustDomain::new(td).unwrap())
        .unwrap()
}

fn put(state: &ServerState, handle: &RefresherHandle, rel: &FederationRelationship) {
    state.store.put_federation_relationship(rel).unwrap();
    handle.relationships_changed();
}

#[tokio::test]
async fn a_foreign_ca_rotation_is_taken_up_without_an_operator() {
    let a = Peer::new("a.org");
    let mut b = Peer::new("b.org");
    let ca = WebCa::new();
    let addr = b.serve_web(&ca, 1).await;
    let mut events = a.state.subscribe();
    put_relationship_only(
        &a,
        web_relationship("b.org", format!("https://localhost:{}/", addr.port())),
    );
    let (handle, task) = a.spawn_refresher(ca.roots(), fast());

    let first = b.bundle();
    assert!(
        eventually(Duration::from_secs(10), || stored(&a.state, "b.org")
            .is_some_and(|s| same_keys(&s, &first)))
        .await,
        "the first fetch did not store b.org's bundle"
    );
    assert_eq!(events.recv().await.unwrap(), ServerEvent::BundleChanged);
    let status = handle.status(&TrustDomain::new("b.org").unwrap()).unwrap();
    assert!(status.last_success_at.is_some() && status.last_error.is_none());

    b.rotate();
    let second = b.bundle();
    assert!(!same_keys(&first, &second));
    assert!(
        eventually(Duration::from_secs(10), || stored(&a.state, "b.org")
            .is_some_and(|s| same_keys(&s, &second)))
        .await,
        "the rotated bundle was not picked up"
    );
    assert_eq!(events.recv().await.unwrap(), ServerEvent::BundleChanged);
    a.shutdown.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the refresher stops at shutdown")
        .unwrap();
}

fn put_relationship_only(peer: &Peer, rel: FederationRelationship) {
    peer.state.store.put_federation_relationship(&rel).unwrap();
}

#[tokio::test]
async fn https_spiffe_starts_from_the_bootstrap_bundle() {
    let a = Peer::new("a.org");
    let b = Peer::new("b.org");
    let addr = b.serve_spiffe(90).await;
    // The operator's bootstrap bundle: what `federation create
    // --trust-domain-bundle` stores.
    a.state.store.set_bundle(&b.bundle()).unwrap();
    let (handle, _task) = a.spawn_refresher(WebRoots::empty(), quiet());
    put(
        &a.state,
        &handle,
        &spiffe_relationship(
            "b.org",
            format!("https://127.0.0.1:{}/", addr.port()),
            "spiffe://b.org/herald/server",
        ),
    );
    let td = TrustDomain::new("b.org").unwrap();
    let outcome = handle.refresh_now(&td).await.unwrap();
    // Same keys as the bootstrap: not a change agents need to hear about,
    // but the served refresh hint is kept.
    assert!(!outcome.changed);
    assert_eq!(stored(&a.state, "b.org").unwrap().refresh_hint, Some(90));

    // Without any bundle of b.org, there is nothing to trust the endpoint with.
    a.state.store.delete_bundle(&td).unwrap();
    let err = handle.refresh_now(&td).await.unwrap_err();
    let RefreshError::Fetch(e) = &err else {
        panic!("{err}")
    };
    assert!(
        matches!(e.reason, FetchFailure::NoEndpointBundle { .. }),
        "{err}"
    );
    assert!(stored(&a.state, "b.org").is_none());
}

#[tokio::test]
async fn bad_fetches_keep_the_last_good_bundle_and_say_why() {
    let a = Peer::new("a.org");
    let b = Peer::new("b.org");
    let c = Peer::new("c.org");
    let ca = WebCa::new();
    let spiffe_addr = b.serve_spiffe(60).await;
    let wrong_td_addr = c.serve_web(&ca, 60).await;
    let malformed_addr = serve_raw(
        ca.server_config(),
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{\"keys\":[".to_vec(),
    )
    .await;
    let good = b.bundle();
    a.state.store.set_bundle(&good).unwrap();
    let (handle, _task) = a.spawn_refresher(ca.roots(), quiet());
    let td = TrustDomain::new("b.org").unwrap();
    let mut events = a.state.subscribe();

    let cases: Vec<(FederationRelationship, &str)> = vec![
        (
            web_relationship("b.org", format!("https://localhost:{}/", free_port())),
            "unreachable",
        ),
        (
            spiffe_relationship(
                "b.org",
                format!("https://127.0.0.1:{}/", spiffe_addr.port()),
                "spiffe://b.org/someone/else",
            ),
            "wrong SPIFFE ID",
        ),
        (
            web_relationship(
                "b.org",
                format!("https://localhost:{}/", wrong_td_addr.port()),
            ),
            "wrong trust domain",
        ),
        (
            web_relationship(
                "b.org",
                format!("https://localhost:{}/", malformed_addr.port()),
            ),
            "malformed JSON",
        ),
    ];
    for (rel, case) in cases {
        put(&a.state, &handle, &rel);
        let err = handle.refresh_now(&td).await.unwrap_err();
        let RefreshError::Fetch(e) = &err else {
            panic!("{case}: {err}")
        };
        let expected = match case {
            "unreachable" => matches!(e.reason, FetchFailure::Unreachable(_)),
            "wrong SPIFFE ID" => matches!(e.reason, FetchFailure::WrongSpiffeId { .. }),
            "wrong trust domain" => matches!(e.reason, FetchFailure::WrongTrustDomain(_)),
            _ => matches!(e.reason, FetchFailure::MalformedBundle(_)),
        };
        assert!(expected, "{case}: {err}");
        assert!(
            err.to_string().contains(&rel.bundle_endpoint_url),
            "{case}: {err}"
        );
        assert!(err.to_string().contains("b.org"), "{case}: {err}");
        let kept = stored(&a.state, "b.org").unwrap();
        assert_eq!(kept, good, "{case}: the stored bundle changed");
        let status = handle.status(&td).unwrap();
        assert_eq!(status.last_error.as_deref(), Some(err.to_string().as_str()));
        assert!(status.consecutive_failures >= 1);
    }
    assert!(
        events.try_recv().is_err(),
        "no BundleChanged for a bad fetch"
    );

    // And once the endpoint is right again, the refresh succeeds.
    put(
        &a.state,
        &handle,
        &spiffe_relationship(
            "b.org",
            format!("https://127.0.0.1:{}/", spiffe_addr.port()),
            "spiffe://b.org/herald/server",
        ),
    );
    handle.refresh_now(&td).await.unwrap();
    let status = handle.status(&td).unwrap();
    assert!(status.last_error.is_none() && status.consecutive_failures == 0);
}

#[tokio::test]
async fn failures_are_retried_sooner_with_backoff() {
    let a = Peer::new("a.org");
    let b = Peer::new("b.org");
    let ca = WebCa::new();
    // Reserve a port, then start nothing on it for now.
    let port = free_port();
    put_relationship_only(
        &a,
        web_relationship("b.org", format!("https://localhost:{port}/")),
    );
    let (handle, _task) = a.spawn_refresher(
        ca.roots(),
        RefresherSettings {
            default_interval: Duration::from_secs(3600),
            min_interval: Duration::from_secs(3600),
            initial_backoff: Duration::from_millis(100),
            fetch_timeout: Duration::from_secs(5),
            ..RefresherSettings::default()
        },
    );
    let td = TrustDomain::new("b.org").unwrap();
    assert!(
        eventually(Duration::from_secs(5), || handle
            .status(&td)
            .is_some_and(|s| s.consecutive_failures >= 3))
        .await,
        "failures were not retried: {:?}",
        handle.status(&td)
    );
    assert!(stored(&a.state, "b.org").is_none());

    // The peer comes up on that port: the next retry gets its bundle, long
    // before the hour-long refresh interval.
    let addr = herald::server::federation::serve_bundle_endpoint(
        b.state.clone(),
        herald::server::federation::BundleEndpointConfig {
            address: format!("127.0.0.1:{port}").parse().unwrap(),
            profile: herald::server::federation::EndpointProfile::HttpsWeb {
                cert_path: ca.cert_path.clone(),
                key_path: ca.key_path.clone(),
            },
            refresh_hint_secs: 60,
        },
        b.stop(),
    )
    .await
    .unwrap();
    assert_eq!(addr.port(), port);
    assert!(
        eventually(Duration::from_secs(10), || stored(&a.state, "b.org")
            .is_some())
        .await,
        "the retry did not pick up the bundle"
    );
}

#[tokio::test]
async fn a_deleted_relationship_is_no_longer_refreshed() {
    let a = Peer::new("a.org");
    let (handle, _task) = a.spawn_refresher(WebRoots::empty(), quiet());
    let td = TrustDomain::new("b.org").unwrap();
    let err = handle.refresh_now(&td).await.unwrap_err();
    assert!(matches!(err, RefreshError::NoRelationship(_)), "{err}");

    put(
        &a.state,
        &handle,
        &web_relationship("b.org", "https://localhost:1/".into()),
    );
    assert!(eventually(Duration::from_secs(5), || handle.status(&td).is_some()).await);
    a.state.store.delete_federation_relationship(&td).unwrap();
    handle.relationships_changed();
    assert!(eventually(Duration::from_secs(5), || handle.status(&td).is_none()).await);
    let err = handle.refresh_now(&td).await.unwrap_err();
    assert!(matches!(err, RefreshError::NoRelationship(_)), "{err}");
}
