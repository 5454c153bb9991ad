//! The Workload API over a real Unix socket: a `WorkloadApi` serving a cache
//! of SVIDs really signed by a test CA, attested against this very test
//! process, spoken to by the `spiffe` crate's client and by a raw tonic
//! client for the status codes.

mod harness;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use harness::bin::{my_uid, now};
use harness::workload::{raw_client, with_header};
use herald::agent::attestor::{UnixAttestor, WorkloadAttestor};
use herald::agent::cache::{Cache, CacheSnapshot, JwtSvidSource, WorkloadIdentity};
use herald::agent::workload_api::{WorkloadApi, WorkloadApiOptions};
use herald::ca::{jwt::new_kid, JwtKey, KeyPair, KeyType, SvidRequest, X509Authority};
use herald::proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use herald::proto::workload::{
    JwtBundlesRequest, JwtsvidRequest, ValidateJwtsvidRequest, WitBundlesRequest, WitsvidRequest,
    X509BundlesRequest, X509svidRequest,
};
use herald::registration::Selector;
use herald::spiffe::{Bundle, SpiffeId, TrustDomain};
use tonic::transport::Channel;
use tonic::{Code, Request};

/// Certificates are issued a minute in the past, so they are valid at once.
fn issued_at() -> i64 {
    now() - 60
}

fn unix(value: &str) -> Selector {
    Selector::new("unix", value).unwrap()
}

fn td(name: &str) -> TrustDomain {
    TrustDomain::new(name).unwrap()
}

/// A trust domain's CA, JWT key and bundle.
struct Domain {
    td: TrustDomain,
    ca: X509Authority,
    jwt: JwtKey,
    bundle: Arc<Bundle>,
}

fn domain(name: &str) -> Domain {
    let td = td(name);
    let key = Arc::new(KeyPair::generate(KeyType::EcP256).unwrap());
    let ca = X509Authority::self_signed(&td, key, 86_400, issued_at()).unwrap();
    let jwt_key = Arc::new(KeyPair::generate(KeyType::EcP256).unwrap());
    let jwt = JwtKey::new(new_kid().unwrap(), jwt_key, now() + 86_400);
    let mut bundle = Bundle::new(td.clone());
    bundle.x509_authorities = vec![ca.cert_der().to_vec()];
    bundle.jwt_authorities = vec![jwt.authority()];
    Domain {
        td,
        ca,
        jwt,
        bundle: Arc::new(bundle),
    }
}

struct Spec<'a> {
    n: i64,
    path: &'a str,
    selectors: Vec<Selector>,
    hint: &'a str,
    federates_with: &'a [&'a str],
}

/// An identity with a fresh key and an SVID really signed by `d.ca`.
fn identity(d: &Domain, spec: Spec<'_>) -> Arc<WorkloadIdentity> {
    let spiffe_id = SpiffeId::new(&d.td, spec.path).unwrap();
    let key = KeyPair::generate(KeyType::EcP256).unwrap();
    let spki = key.public_key_spki();
    let signed =
        d.ca.sign_svid(
            &SvidRequest {
                spiffe_id: &spiffe_id,
                public_key_spki: &spki,
                ttl_secs: 3600,
                dns_names: &[],
            },
            issued_at(),
        )
        .unwrap();
    Arc::new(WorkloadIdentity {
        entry_id: format!("entry{}", spec.n),
        spiffe_id,
        selectors: spec.selectors,
        hint: spec.hint.into(),
        federates_with: spec.federates_with.iter().map(|t| td(t)).collect(),
        created_at: spec.n,
        revision: 1,
        svid_chain: signed.chain,
        key_pkcs8: key.pkcs8_der().to_vec(),
        not_after: signed.not_after,
    })
}

fn snapshot(own: &Domain, fed: &Domain, identities: Vec<Arc<WorkloadIdentity>>) -> CacheSnapshot {
    let mut snap = CacheSnapshot::empty(own.td.clone());
    snap.bundle = own.bundle.clone();
    snap.federated = BTreeMap::from([(fed.td.clone(), fed.bundle.clone())]);
    snap.identities = identities;
    snap.ready = true;
    snap
}

/// Mints JWT-SVIDs with the own domain's key, as the server would.
struct TestJwtSource {
    cache: Cache,
    key: JwtKey,
}

#[tonic::async_trait]
impl JwtSvidSource for TestJwtSource {
    async fn fetch_jwt_svid(
        &self,
        entry_id: &str,
        audience: &[String],
    ) -> Result<String, tonic::Status> {
        let snap = self.cache.current();
        let id = snap
            .identities
            .iter()
            .find(|i| i.entry_id == entry_id)
            .ok_or_else(|| tonic::Status::not_found(entry_id.to_owned()))?;
        self.key
            .sign(&id.spiffe_id, audience, 300, now())
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    path: PathBuf,
    cache: Cache,
    own: Domain,
    fed: Domain,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<(), herald::agent::workload_api::WorkloadApiError>>,
}

impl Harness {
    async fn start(ready_timeout: Duration) -> Harness {
        let own = domain("example.org");
        let fed = domain("fed.org");
        let cache = Cache::new(own.td.clone());
        let jwt = Arc::new(TestJwtSource {
            cache: cache.clone(),
            key: own.jwt.clone(),
        });
        let api = WorkloadApi::new(
            cache.clone(),
            jwt,
            Arc::new(WorkloadAttestor::from(UnixAttestor::new())),
        )
        .with_options(WorkloadApiOptions {
            ready_timeout,
            ..WorkloadApiOptions::default()
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let listener = WorkloadApi::bind(&path).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(api.serve_listener(listener, async {
            let _ = stopped.await;
        }));
        Harness {
            _dir: dir,
            path,
            cache,
            own,
            fed,
            stop: Some(stop),
            server,
        }
    }

    /// Identities: two for this process (hints internal/external; the
    /// first federates with fed.org) and one for another uid.
    fn standard_identities(&self) -> Vec<Arc<WorkloadIdentity>> {
        let me = unix(&format!("uid:{}", my_uid()));
        vec![
            identity(
                &self.own,
                Spec {
                    n: 1,
                    path: "/web",
                    selectors: vec![me.clone()],
                    hint: "internal",
                    federates_with: &["fed.org"],
                },
            ),
            identity(
                &self.own,
                Spec {
                    n: 2,
                    path: "/db-client",
                    selectors: vec![me],
                    hint: "external",
                    federates_with: &[],
                },
            ),
            self.stranger(3),
        ]
    }

    fn stranger(&self, n: i64) -> Arc<WorkloadIdentity> {
        identity(
            &self.own,
            Spec {
                n,
                path: "/someone-else",
                selectors: vec![unix(&format!("uid:{}", my_uid().wrapping_add(4242)))],
                hint: "",
                federates_with: &["fed.org"],
            },
        )
    }

    fn publish(&self, identities: Vec<Arc<WorkloadIdentity>>) {
        self.cache
            .publish(snapshot(&self.own, &self.fed, identities));
    }

    async fn spiffe_client(&self) -> spiffe::WorkloadApiClient {
        harness::workload::client(&self.path).await
    }

    async fn raw_client(&self) -> SpiffeWorkloadApiClient<Channel> {
        raw_client(&self.path).await
    }
}

#[tokio::test]
async fn spiffe_client_gets_svids_bundles_and_jwts() {
    let h = Harness::start(Duration::from_secs(5)).await;
    h.publish(h.standard_identities());
    let mode = std::fs::metadata(&h.path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o777);
    let client = h.spiffe_client().await;
    let web = spiffe::SpiffeId::new("spiffe://example.org/web").unwrap();
    let db = spiffe::SpiffeId::new("spiffe://example.org/db-client").unwrap();
    let own_td = spiffe::TrustDomain::new("example.org").unwrap();
    let fed_td = spiffe::TrustDomain::new("fed.org").unwrap();

    let ctx = client.fetch_x509_context().await.unwrap();
    let ids: Vec<_> = ctx.svids().iter().map(|s| s.spiffe_id().clone()).collect();
    assert_eq!(ids, [web.clone(), db.clone()]);
    assert_eq!(ctx.svids()[0].hint(), Some("internal"));
    assert_eq!(ctx.svids()[1].hint(), Some("external"));
    let own = ctx.bundle_set().get(&own_td).unwrap();
    assert_eq!(own.authorities()[0].as_ref(), h.own.ca.cert_der());
    let fed = ctx.bundle_set().get(&fed_td).unwrap();
    assert_eq!(fed.authorities()[0].as_ref(), h.fed.ca.cert_der());
    assert_eq!(client.fetch_x509_svid().await.unwrap().spiffe_id(), &web);

    let bundles = client.fetch_x509_bundles().await.unwrap();
    assert_eq!(bundles.len(), 2);
    let jwt_bundles = client.fetch_jwt_bundles().await.unwrap();
    let own_jwt = jwt_bundles.get(&own_td).unwrap();
    assert!(own_jwt.find_jwt_authority(h.own.jwt.kid()).is_some());
    let fed_jwt = jwt_bundles.get(&fed_td).unwrap();
    assert!(fed_jwt.find_jwt_authority(h.fed.jwt.kid()).is_some());

    let svid = client.fetch_jwt_svid(["aud1"], None).await.unwrap();
    assert_eq!(svid.spiffe_id(), &web);
    assert_eq!(svid.audience(), ["aud1"]);
    let all = client.fetch_all_jwt_svids(["aud1"], None).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].hint(), Some("external"));
    let chosen = client.fetch_jwt_svid(["aud2"], Some(&db)).await.unwrap();
    assert_eq!(chosen.spiffe_id(), &db);

    let valid = client
        .validate_jwt_token("aud1", svid.token())
        .await
        .unwrap();
    assert_eq!(valid.spiffe_id(), &web);
    let err = client
        .validate_jwt_token("other-audience", svid.token())
        .await
        .unwrap_err();
    assert!(err.is_invalid_argument(), "{err:?}");
    // Change one character well inside the signature.
    let token = svid.token();
    let at = token.len() - 10;
    let swapped = if &token[at..=at] == "A" { "B" } else { "A" };
    let tampered = format!("{}{swapped}{}", &token[..at], &token[at + 1..]);
    let err = client
        .validate_jwt_token("aud1", &tampered)
        .await
        .unwrap_err();
    assert!(err.is_invalid_argument(), "{err:?}");

    // A token of the federated domain validates against its bundle; only
    // the SPIFFE claims come back.
    let foreign_id = SpiffeId::new(&h.fed.td, "/peer").unwrap();
    let foreign = h
        .fed
        .jwt
        .sign(&foreign_id, &["aud1".into()], 300, now())
        .unwrap();
    let resp = h
        .raw_client()
        .await
        .validate_jwtsvid(with_header(ValidateJwtsvidRequest {
            audience: "aud1".into(),
            svid: foreign,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.spiffe_id, "spiffe://fed.org/peer");
    let claims = resp.claims.unwrap();
    let keys: Vec<_> = claims.fields.keys().map(String::as_str).collect();
    assert_eq!(keys, ["aud", "exp", "iat", "sub"]);
}

#[tokio::test]
async fn callers_without_an_identity_are_denied() {
    let h = Harness::start(Duration::from_secs(5)).await;
    h.publish(vec![h.stranger(1)]);
    let err = h.spiffe_client().await.fetch_x509_svid().await.unwrap_err();
    assert!(
        matches!(err, spiffe::WorkloadApiError::NoIdentityIssued),
        "{err:?}"
    );

    let mut c = h.raw_client().await;
    let statuses = [
        c.fetch_x509svid(with_header(X509svidRequest {}))
            .await
            .unwrap_err(),
        c.fetch_x509_bundles(with_header(X509BundlesRequest {}))
            .await
            .unwrap_err(),
        c.fetch_jwt_bundles(with_header(JwtBundlesRequest {}))
            .await
            .unwrap_err(),
        c.fetch_jwtsvid(with_header(JwtsvidRequest {
            audience: vec!["a".into()],
            spiffe_id: String::new(),
        }))
        .await
        .unwrap_err(),
    ];
    for status in statuses {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert_eq!(status.message(), "no identity issued");
    }

    // Validation needs no identity.
    let token = h
        .own
        .jwt
        .sign(&h.stranger(9).spiffe_id, &["a".into()], 300, now())
        .unwrap();
    let resp = c
        .validate_jwtsvid(with_header(ValidateJwtsvidRequest {
            audience: "a".into(),
            svid: token,
        }))
        .await
        .unwrap();
    assert_eq!(
        resp.into_inner().spiffe_id,
        "spiffe://example.org/someone-else"
    );
}

#[tokio::test]
async fn request_errors_have_the_spec_codes() {
    let h = Harness::start(Duration::from_secs(5)).await;
    h.publish(h.standard_identities());
    let mut c = h.raw_client().await;

    // No security header: InvalidArgument on every method.
    let statuses = [
        c.fetch_x509svid(X509svidRequest {}).await.unwrap_err(),
        c.fetch_x509_bundles(X509BundlesRequest {})
            .await
            .unwrap_err(),
        c.fetch_jwt_bundles(JwtBundlesRequest {}).await.unwrap_err(),
        c.fetch_jwtsvid(JwtsvidRequest {
            audience: vec!["a".into()],
            spiffe_id: String::new(),
        })
        .await
        .unwrap_err(),
        c.validate_jwtsvid(ValidateJwtsvidRequest {
            audience: "a".into(),
            svid: "x.y.z".into(),
        })
        .await
        .unwrap_err(),
        c.fetch_witsvid(WitsvidRequest::default())
            .await
            .unwrap_err(),
        c.fetch_wit_bundles(WitBundlesRequest {}).await.unwrap_err(),
    ];
    for status in statuses {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(status.message(), "security header missing from request");
    }
    let mut wrong = Request::new(X509svidRequest {});
    wrong
        .metadata_mut()
        .insert("workload.spiffe.io", "yes".parse().unwrap());
    let status = c.fetch_x509svid(wrong).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    // WIT profile: Unimplemented.
    let status = c
        .fetch_witsvid(with_header(WitsvidRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    let status = c
        .fetch_wit_bundles(with_header(WitBundlesRequest {}))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);

    // FetchJWTSVID argument checks.
    let jwt = |audience: Vec<String>, spiffe_id: &str| {
        with_header(JwtsvidRequest {
            audience,
            spiffe_id: spiffe_id.into(),
        })
    };
    let status = c.fetch_jwtsvid(jwt(vec![], "")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "audience must be specified");
    let status = c
        .fetch_jwtsvid(jwt(vec!["a".into()], "not a spiffe id"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = c
        .fetch_jwtsvid(jwt(vec!["a".into()], "spiffe://example.org/someone-else"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // ValidateJWTSVID argument checks.
    let validate = |audience: &str, svid: &str| {
        with_header(ValidateJwtsvidRequest {
            audience: audience.into(),
            svid: svid.into(),
        })
    };
    let status = c.validate_jwtsvid(validate("", "x")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("audience"), "{status:?}");
    let status = c.validate_jwtsvid(validate("a", "")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("svid"), "{status:?}");
}

#[tokio::test]
async fn streams_follow_the_cache_and_end_when_identities_go() {
    let h = Harness::start(Duration::from_secs(5)).await;
    let mut ids = h.standard_identities();
    h.publish(ids.clone());
    let mut c = h.raw_client().await;
    let mut stream = c
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.svids.len(), 2);
    assert!(first.federated_bundles.contains_key("spiffe://fed.org"));

    // An unrelated change (another workload's identity renewed) sends nothing.
    ids[2] = h.stranger(3);
    h.publish(ids.clone());
    let quiet = tokio::time::timeout(Duration::from_millis(300), stream.message()).await;
    assert!(quiet.is_err(), "unexpected message: {quiet:?}");

    // The default SVID is renewed: a second, full-state message.
    let me = unix(&format!("uid:{}", my_uid()));
    ids[0] = identity(
        &h.own,
        Spec {
            n: 1,
            path: "/web",
            selectors: vec![me],
            hint: "internal",
            federates_with: &["fed.org"],
        },
    );
    h.publish(ids.clone());
    let second = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second.svids.len(), 2);
    assert_ne!(second.svids[0].x509_svid, first.svids[0].x509_svid);
    assert_eq!(second.svids[0].x509_svid, ids[0].svid_chain.concat());
    assert_eq!(second.svids[1], first.svids[1]);

    // The caller's identities disappear: the stream ends with PermissionDenied.
    h.publish(vec![ids[2].clone()]);
    let status = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.message(), "no identity issued");
}

#[tokio::test]
async fn not_ready_is_unavailable_then_served() {
    let h = Harness::start(Duration::from_millis(200)).await;
    let mut c = h.raw_client().await;
    let status = c
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let status = c
        .fetch_jwtsvid(with_header(JwtsvidRequest {
            audience: vec!["a".into()],
            spiffe_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    // A request that arrives before the first sync is answered once it lands.
    let h = Harness::start(Duration::from_secs(5)).await;
    let mut c = h.raw_client().await;
    let pending = tokio::spawn(async move {
        c.fetch_x509_bundles(with_header(X509BundlesRequest {}))
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.publish(h.standard_identities());
    let mut stream = pending.await.unwrap().unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(first.bundles.contains_key("spiffe://example.org"));
}

#[tokio::test]
async fn shutdown_ends_open_streams_and_returns() {
    let mut h = Harness::start(Duration::from_secs(5)).await;
    h.publish(h.standard_identities());
    let mut c = h.raw_client().await;
    let mut stream = c
        .fetch_jwt_bundles(with_header(JwtBundlesRequest {}))
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();

    h.stop.take().unwrap().send(()).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    tokio::time::timeout(Duration::from_secs(5), &mut h.server)
        .await
        .expect("server did not stop")
        .unwrap()
        .unwrap();
}
