//! The Federation and FederatedBundles admin services over real gRPC on a
//! Unix socket: create → get → list (paged) → update → refresh → delete,
//! federated bundles set by hand, and every kind of bad input refused with
//! InvalidArgument naming the field.

mod harness;

use std::time::Duration;

use harness::admin::assert_item;
use harness::dirs::free_port;
use harness::peer::{serve_unix, Peer};
use herald::proto::admin;
use herald::proto::admin::federated_bundles_client::FederatedBundlesClient;
use herald::proto::admin::federation_client::FederationClient;
use herald::proto::admin::federation_relationship::BundleEndpointProfile as Profile;
use herald::server::federation::{federation_routes, RefresherSettings, WebRoots};
use herald::server::state::ServerEvent;
use herald::spiffe::TrustDomain;
use tonic::transport::Channel;
use tonic::Code;

struct Harness {
    peer: Peer,
    channel: Channel,
}

impl Harness {
    async fn start() -> Harness {
        let peer = Peer::new("example.org");
        let (refresher, _task) = peer.spawn_refresher(
            WebRoots::empty(),
            RefresherSettings {
                default_interval: Duration::from_secs(3600),
                min_interval: Duration::from_secs(3600),
                fetch_timeout: Duration::from_secs(5),
                ..RefresherSettings::default()
            },
        );
        let socket = peer.dir().join("admin.sock");
        let channel = serve_unix(federation_routes(peer.state.clone(), refresher), &socket).await;
        Harness { peer, channel }
    }

    fn federation(&self) -> FederationClient<Channel> {
        FederationClient::new(self.channel.clone())
    }

    fn bundles(&self) -> FederatedBundlesClient<Channel> {
        FederatedBundlesClient::new(self.channel.clone())
    }
}

fn spiffe_rel(td: &str, url: &str, id: &str, bundle: &str) -> admin::FederationRelationship {
    admin::FederationRelationship {
        trust_domain: td.into(),
        bundle_endpoint_url: url.into(),
        bundle_endpoint_profile: Some(Profile::HttpsSpiffe(admin::HttpsspiffeProfile {
            endpoint_spiffe_id: id.into(),
        })),
        trust_domain_bundle: bundle.into(),
        refresh_status: None,
    }
}

fn web_rel(td: &str, url: &str) -> admin::FederationRelationship {
    admin::FederationRelationship {
        trust_domain: td.into(),
        bundle_endpoint_url: url.into(),
        bundle_endpoint_profile: Some(Profile::HttpsWeb(admin::HttpsWebProfile {})),
        trust_domain_bundle: String::new(),
        refresh_status: None,
    }
}

async fn create_one(
    c: &mut FederationClient<Channel>,
    rel: admin::FederationRelationship,
) -> admin::FederationRelationshipResult {
    let mut res = c
        .batch_create_federation_relationship(admin::BatchCreateFederationRelationshipRequest {
            federation_relationships: vec![rel],
        })
        .await
        .unwrap()
        .into_inner();
    res.results.pop().unwrap()
}

#[tokio::test]
async fn bad_relationships_are_refused_naming_the_field() {
    let h = Harness::start().await;
    let mut c = h.federation();
    let b = Peer::new("b.org");
    let c_org = Peer::new("c.org");
    let b_json = b.bundle().to_spiffe_json().unwrap();
    let c_json = c_org.bundle().to_spiffe_json().unwrap();
    let id = "spiffe://b.org/herald/server";
    let url = "https://b.org:8443/";

    let mut no_profile = web_rel("b.org", url);
    no_profile.bundle_endpoint_profile = None;
    let cases = vec![
        (web_rel("", url), "trust_domain"),
        (web_rel("B.ORG", url), "trust_domain"),
        (web_rel("example.org", url), "trust_domain"),
        (web_rel("b.org", "http://b.org/"), "bundle_endpoint_url"),
        (
            web_rel("b.org", "https://u:p@b.org/"),
            "bundle_endpoint_url",
        ),
        (web_rel("b.org", "not a url"), "bundle_endpoint_url"),
        (no_profile, "bundle_endpoint_profile"),
        (
            spiffe_rel("b.org", url, "", &b_json),
            "https_spiffe.endpoint_spiffe_id",
        ),
        (
            spiffe_rel("b.org", url, "https://b.org/x", &b_json),
            "https_spiffe.endpoint_spiffe_id",
        ),
        (
            spiffe_rel("b.org", url, "spiffe://b.org", &b_json),
            "https_spiffe.endpoint_spiffe_id",
        ),
        (
            spiffe_rel("b.org", url, id, "{not json"),
            "trust_domain_bundle",
        ),
        (
            spiffe_rel("b.org", url, id, "{\"keys\": 3}"),
            "trust_domain_bundle",
        ),
        // c.org's bundle given as b.org's.
        (spiffe_rel("b.org", url, id, &c_json), "trust_domain_bundle"),
        // A self-serving https_spiffe endpoint needs a first bundle.
        (spiffe_rel("b.org", url, id, ""), "trust_domain_bundle"),
    ];
    for (rel, field) in cases {
        let item = create_one(&mut c, rel.clone()).await;
        assert_item(&item.status, Code::InvalidArgument, field);
        assert!(
            item.status.unwrap().message.starts_with(field),
            "the message starts with the field: {rel:?}"
        );
    }
    // Nothing was stored.
    let listed = c
        .list_federation_relationships(admin::ListFederationRelationshipsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.federation_relationships.is_empty());
    assert!(h
        .peer
        .state
        .store
        .get_bundle(&TrustDomain::new("b.org").unwrap())
        .unwrap()
        .is_none());

    // Non-self-serving endpoint whose trust domain we know nothing of.
    let item = create_one(
        &mut c,
        spiffe_rel("b.org", url, "spiffe://d.org/herald/server", ""),
    )
    .await;
    assert_item(
        &item.status,
        Code::FailedPrecondition,
        "https_spiffe.endpoint_spiffe_id",
    );

    for (td, code) in [
        ("", Code::InvalidArgument),
        ("Nope", Code::InvalidArgument),
        ("x.org", Code::NotFound),
    ] {
        let err = c
            .get_federation_relationship(admin::GetFederationRelationshipRequest {
                trust_domain: td.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{td:?}: {}", err.message());
        assert!(
            err.message().starts_with("trust_domain"),
            "{}",
            err.message()
        );
    }
    let err = c
        .list_federation_relationships(admin::ListFederationRelationshipsRequest {
            page_size: -1,
            page_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("page_size"), "{}", err.message());
    let err = c
        .refresh_bundle(admin::RefreshBundleRequest {
            trust_domain: "bad domain".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("trust_domain"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn relationships_round_trip_and_refresh() {
    let h = Harness::start().await;
    let mut c = h.federation();
    let mut events = h.peer.state.subscribe();
    let b = Peer::new("b.org");
    let addr = b.serve_spiffe(120).await;
    let url = format!("https://127.0.0.1:{}/", addr.port());
    let id = "spiffe://b.org/herald/server";
    let b_json = b.bundle().to_spiffe_json().unwrap();
    let b_td = TrustDomain::new("b.org").unwrap();

    let item = create_one(&mut c, spiffe_rel("b.org", &url, id, &b_json)).await;
    assert_item(&item.status, Code::Ok, "");
    let created = item.federation_relationship.unwrap();
    assert_eq!(created.trust_domain, "b.org");
    assert!(created.trust_domain_bundle.is_empty());
    assert_eq!(
        created.refresh_status.unwrap().bundle_sequence,
        b.bundle().sequence
    );
    // The bootstrap bundle is stored and agents hear of it.
    assert_eq!(events.recv().await.unwrap(), ServerEvent::BundleChanged);
    assert!(h.peer.state.store.get_bundle(&b_td).unwrap().is_some());

    let dup = create_one(&mut c, spiffe_rel("b.org", &url, id, "")).await;
    assert_item(&dup.status, Code::AlreadyExists, "trust_domain");

    let item = create_one(&mut c, web_rel("c.org", "https://c.org/")).await;
    assert_item(&item.status, Code::Ok, "");

    // Paged listing, in trust domain order.
    let first = c
        .list_federation_relationships(admin::ListFederationRelationshipsRequest {
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.federation_relationships.len(), 1);
    assert_eq!(first.federation_relationships[0].trust_domain, "b.org");
    assert!(!first.next_page_token.is_empty());
    let second = c
        .list_federation_relationships(admin::ListFederationRelationshipsRequest {
            page_size: 1,
            page_token: first.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.federation_relationships[0].trust_domain, "c.org");
    assert!(second.next_page_token.is_empty());

    // Refresh now: fetched over https_spiffe with the bootstrap bundle.
    let refreshed = c
        .refresh_bundle(admin::RefreshBundleRequest {
            trust_domain: "b.org".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!refreshed.changed);
    let got = c
        .get_federation_relationship(admin::GetFederationRelationshipRequest {
            trust_domain: "b.org".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let status = got.refresh_status.unwrap();
    assert!(status.last_success_at > 0 && status.last_error.is_empty());
    assert!(status.next_refresh_at > 0);

    // Update to an endpoint that is down: the refresh fails, says why, and
    // the bundle in use stays.
    let down = format!("https://127.0.0.1:{}/", free_port());
    let res = c
        .batch_update_federation_relationship(admin::BatchUpdateFederationRelationshipRequest {
            federation_relationships: vec![
                spiffe_rel("b.org", &down, id, ""),
                web_rel("nobody.org", "https://nobody.org/"),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_item(&res.results[0].status, Code::Ok, "");
    assert_eq!(
        res.results[0]
            .federation_relationship
            .as_ref()
            .unwrap()
            .bundle_endpoint_url,
        down
    );
    assert_item(&res.results[1].status, Code::NotFound, "trust_domain");
    let before = h.peer.state.store.get_bundle(&b_td).unwrap().unwrap();
    let err = c
        .refresh_bundle(admin::RefreshBundleRequest {
            trust_domain: "b.org".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    assert!(err.message().contains("unreachable"), "{}", err.message());
    assert!(err.message().contains(&down), "{}", err.message());
    assert_eq!(
        h.peer.state.store.get_bundle(&b_td).unwrap().unwrap(),
        before
    );
    let got = c
        .get_federation_relationship(admin::GetFederationRelationshipRequest {
            trust_domain: "b.org".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(got
        .refresh_status
        .unwrap()
        .last_error
        .contains("unreachable"));

    // Delete: the relationship and its bundle go, agents hear of it.
    while events.try_recv().is_ok() {}
    let res = c
        .batch_delete_federation_relationship(admin::BatchDeleteFederationRelationshipRequest {
            trust_domains: vec!["b.org".into(), "b.org".into(), "BAD".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_item(&res.results[0].status, Code::Ok, "");
    assert_item(&res.results[1].status, Code::NotFound, "trust_domain");
    assert_item(
        &res.results[2].status,
        Code::InvalidArgument,
        "trust_domain",
    );
    assert_eq!(events.recv().await.unwrap(), ServerEvent::BundleChanged);
    assert!(h.peer.state.store.get_bundle(&b_td).unwrap().is_none());
    let err = c
        .refresh_bundle(admin::RefreshBundleRequest {
            trust_domain: "b.org".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn federated_bundles_set_by_hand() {
    let h = Harness::start().await;
    let mut bundles = h.bundles();
    let mut events = h.peer.state.subscribe();
    let b = Peer::new("b.org");
    let c = Peer::new("c.org");
    let b_json = b.bundle().to_spiffe_json().unwrap();
    let c_json = c.bundle().to_spiffe_json().unwrap();

    let set = |td: &str, json: &str| admin::Bundle {
        trust_domain: td.into(),
        spiffe_json: json.into(),
        sequence_number: 0,
    };
    let res = bundles
        .batch_set_federated_bundle(admin::BatchSetFederatedBundleRequest {
            bundle: vec![
                set("b.org", &b_json),
                set("example.org", &b_json),
                set("b.org", "{]"),
                set("b.org", &c_json),
                set("", &b_json),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_item(&res.results[0].status, Code::Ok, "");
    assert_item(
        &res.results[1].status,
        Code::InvalidArgument,
        "trust_domain",
    );
    assert_item(&res.results[2].status, Code::InvalidArgument, "spiffe_json");
    assert_item(&res.results[3].status, Code::InvalidArgument, "spiffe_json");
    assert_item(
        &res.results[4].status,
        Code::InvalidArgument,
        "trust_domain",
    );
    assert_eq!(events.recv().await.unwrap(), ServerEvent::BundleChanged);

    let got = bundles
        .get_federated_bundle(admin::GetFederatedBundleRequest {
            trust_domain: "b.org".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.sequence_number, b.bundle().sequence);
    let err = bundles
        .get_federated_bundle(admin::GetFederatedBundleRequest {
            trust_domain: "example.org".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // The own bundle is not listed.
    let listed = bundles
        .list_federated_bundles(admin::ListFederatedBundlesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = listed
        .bundles
        .iter()
        .map(|b| b.trust_domain.as_str())
        .collect();
    assert_eq!(names, ["b.org"]);

    // A bundle with a relationship is deleted with the relationship.
    let mut fed = h.federation();
    let item = create_one(&mut fed, web_rel("b.org", "https://b.org/")).await;
    assert_item(&item.status, Code::Ok, "");
    let res = bundles
        .batch_delete_federated_bundle(admin::BatchDeleteFederatedBundleRequest {
            trust_domains: vec!["b.org".into(), "zzz.org".into(), "example.org".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_item(
        &res.results[0].status,
        Code::FailedPrecondition,
        "trust_domain",
    );
    assert_item(&res.results[1].status, Code::NotFound, "trust_domain");
    assert_item(
        &res.results[2].status,
        Code::InvalidArgument,
        "trust_domain",
    );

    fed.batch_delete_federation_relationship(admin::BatchDeleteFederationRelationshipRequest {
        trust_domains: vec!["b.org".into()],
    })
    .await
    .unwrap();
    let res = bundles
        .batch_set_federated_bundle(admin::BatchSetFederatedBundleRequest {
            bundle: vec![set("b.org", &b_json)],
        })
        .await
        .unwrap()
        .into_inner();
    assert_item(&res.results[0].status, Code::Ok, "");
    let res = bundles
        .batch_delete_federated_bundle(admin::BatchDeleteFederatedBundleRequest {
            trust_domains: vec!["b.org".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_item(&res.results[0].status, Code::Ok, "");
    let listed = bundles
        .list_federated_bundles(admin::ListFederatedBundlesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.bundles.is_empty());
}
