//! Envoy SDS v3 on a real agent's socket (issue 12), driven with the client
//! envoy-types generates: `default` and `ROOTCA` served and verified
//! against each other, a renewal pushed on the open stream, a federated
//! bundle withdrawn from an entry disappearing from both stream variants,
//! a NACK that starts no resend loop, and a caller without an identity
//! refused as the Workload API refuses it.

mod harness;

use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use harness::bin::my_uid;
use harness::cluster::{Agent, Server};
use harness::sds::*;
use harness::workload::{raw_client, rt, with_header};
use rustls::pki_types::{CertificateDer, UnixTime};
use tonic::transport::Channel;

const WEB: &str = "spiffe://example.org/sds/web";

fn setup(dir: &std::path::Path) -> (Server, Agent, String) {
    let server = Server::start(&dir.join("server"), "");
    let (agent, agent_id) = server.start_agent(&dir.join("agent"));
    (server, agent, agent_id)
}

/// FetchSecrets for `names`, retried until served (an entry takes a
/// moment to reach the agent); panics after 20 s.
async fn wait_served(
    c: &mut SecretDiscoveryServiceClient<Channel>,
    names: &[&str],
) -> DiscoveryResponse {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match c.fetch_secrets(request(names, "", "")).await {
            Ok(r) => return r.into_inner(),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("{names:?} not served within 20s: {e:?}"),
        }
    }
}

fn secret(
    resp: &DiscoveryResponse,
    name: &str,
) -> envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret {
    secrets(resp)
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", names(resp)))
}

/// The default SVID of `resp`, checked against its ROOTCA: its SPIFFE ID
/// and leaf serial.
fn verified_default(resp: &DiscoveryResponse) -> (String, String) {
    let (chain, _key) = tls_der(&secret(resp, "default"));
    let roots = roots_der(&secret(resp, "ROOTCA"));
    assert_eq!(roots.len(), 1);
    assert_eq!(roots[0].0, "example.org");
    let inter: Vec<CertificateDer<'_>> = chain[1..]
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let id = herald::tls::verify_svid(
        &CertificateDer::from(chain[0].as_slice()),
        &inter,
        &roots[0].1,
        UnixTime::now(),
        webpki::KeyUsage::client_auth(),
    )
    .expect("the default SVID chains to ROOTCA");
    let serial = herald::ca::x509::cert_facts(&chain[0]).unwrap().serial;
    (id.as_str().to_string(), serial)
}

#[test]
fn default_and_rootca_are_served_and_a_renewal_is_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let (server, agent, agent_id) = setup(dir.path());
    server.create_entry(WEB, &agent_id, &["--x509-svid-ttl", "10s"]);
    rt().block_on(async {
        let mut c = sds_client(&agent.socket).await;
        let fetched =
            wait_served(&mut c, &["default", "ROOTCA", WEB, "spiffe://example.org"]).await;
        assert_eq!(
            names(&fetched),
            ["ROOTCA", "default", "spiffe://example.org", WEB]
        );

        let (mut s, first) = sotw_first(&mut c, request(&["default", "ROOTCA"], "", "")).await;
        assert_eq!(first.type_url, SECRET);
        assert!(!first.version_info.is_empty() && !first.nonce.is_empty());
        let (id, serial) = verified_default(&first);
        assert_eq!(id, WEB);

        // The subscription grows on the open stream.
        let names3 = ["default", "ROOTCA", "ALL"];
        s.send(request(&names3, &first.version_info, &first.nonce))
            .await;
        let grown = s
            .next(Duration::from_secs(10), "response to the new subscription")
            .await;
        assert_eq!(names(&grown), ["ALL", "ROOTCA", "default"]);
        assert_ne!(grown.nonce, first.nonce);
        s.send(request(&names3, &grown.version_info, &grown.nonce))
            .await;

        // The 10 s SVID is renewed at half its life: pushed without asking.
        let renewed = s
            .next(Duration::from_secs(30), "no renewal pushed within 30s")
            .await;
        assert_ne!(renewed.version_info, grown.version_info);
        let (id, new_serial) = verified_default(&renewed);
        assert_eq!(id, WEB);
        assert_ne!(new_serial, serial);
    });
}

#[test]
fn a_withdrawn_federated_bundle_leaves_delta_and_sotw_streams() {
    let dir = tempfile::tempdir().unwrap();
    let (server, agent, agent_id) = setup(dir.path());
    server.set_foreign_bundle("other.org", dir.path());
    let entry = server.create_entry(WEB, &agent_id, &["--federates-with", "other.org"]);
    let other = "spiffe://other.org";
    rt().block_on(async {
        let mut c = sds_client(&agent.socket).await;
        let fetched = wait_served(&mut c, &[other, "ALL"]).await;
        let all: Vec<String> = roots_der(&secret(&fetched, "ALL"))
            .into_iter()
            .map(|(td, _)| td)
            .collect();
        assert_eq!(all, ["example.org", "other.org"]);

        let (mut delta, first) = delta_first(&mut c, delta_request(&[], &[], "")).await;
        let mut held: Vec<&str> = first.resources.iter().map(|r| r.name.as_str()).collect();
        held.sort();
        assert_eq!(held, ["spiffe://example.org", WEB, other]);
        assert!(first.resources.iter().all(|r| !r.version.is_empty()));
        delta.send(delta_request(&[], &[], &first.nonce)).await;

        let names2 = [other, "ROOTCA"];
        let (mut sotw, first) = sotw_first(&mut c, request(&names2, "", "")).await;
        assert_eq!(names(&first), ["ROOTCA", other]);
        sotw.send(request(&names2, &first.version_info, &first.nonce))
            .await;

        // The entry no longer federates with other.org.
        let uid = format!("unix:uid:{}", my_uid());
        server.cli_ok(&[
            "entry",
            "update",
            "--entry-id",
            &entry,
            "--spiffe-id",
            WEB,
            "--parent-id",
            &agent_id,
            "--selector",
            &uid,
        ]);

        let deadline = Duration::from_secs(20);
        loop {
            let resp = delta
                .next(deadline, "other.org never removed (delta)")
                .await;
            delta.send(delta_request(&[], &[], &resp.nonce)).await;
            assert!(resp.resources.iter().all(|r| r.name != other));
            if resp.removed_resources.iter().any(|n| n == other) {
                break;
            }
        }
        loop {
            let resp = sotw
                .next(deadline, "other.org never left the sotw response")
                .await;
            sotw.send(request(&names2, &resp.version_info, &resp.nonce))
                .await;
            if names(&resp) == ["ROOTCA"] {
                break;
            }
        }
        // FetchSecrets now refuses the name outright.
        let err = c
            .fetch_secrets(request(&[other], "", ""))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    });
}

#[test]
fn a_nack_is_logged_and_starts_no_resend_loop() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut agent, agent_id) = setup(dir.path());
    server.create_entry(WEB, &agent_id, &[]);
    let quiet = Duration::from_secs(3);
    rt().block_on(async {
        let mut c = sds_client(&agent.socket).await;
        wait_served(&mut c, &["default"]).await;

        let (mut sotw, first) = sotw_first(&mut c, request(&[], "", "")).await;
        sotw.send(nack(&[], &first.nonce)).await;
        let (mut delta, dfirst) = delta_first(&mut c, delta_request(&[], &[], "")).await;
        let mut dnack = delta_request(&[], &[], &dfirst.nonce);
        dnack.error_detail = nack(&[], "").error_detail;
        delta.send(dnack).await;

        assert!(sotw.try_next(quiet).await.is_none(), "a NACK was answered");
        assert!(delta.try_next(quiet).await.is_none(), "a NACK was answered");
        let line = agent
            .proc
            .wait_for_line("rejected the secrets", Duration::from_secs(5));
        assert!(line.contains("rejected on purpose"), "{line}");

        // The streams still follow the cache: a new identity is sent.
        let second = "spiffe://example.org/sds/second";
        server.create_entry(second, &agent_id, &[]);
        let next = sotw
            .next(Duration::from_secs(20), "no update after the NACK")
            .await;
        assert!(
            names(&next).iter().any(|n| n == second),
            "{:?}",
            names(&next)
        );
        let dnext = delta
            .next(Duration::from_secs(20), "no delta update after the NACK")
            .await;
        let sent: Vec<&str> = dnext.resources.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(sent, [second]);
    });
}

/// The status a stream ends with at once: at its opening, or as its first message.
async fn refusal<Req, Resp: std::fmt::Debug>(
    opened: Result<Open<Req, Resp>, tonic::Status>,
) -> tonic::Status {
    match opened {
        Ok(mut s) => s
            .try_next(Duration::from_secs(10))
            .await
            .expect("an answer")
            .expect_err("a refusal"),
        Err(e) => e,
    }
}

#[test]
fn a_caller_without_an_identity_is_refused_like_the_workload_api() {
    let dir = tempfile::tempdir().unwrap();
    let (server, agent, agent_id) = setup(dir.path());
    let someone_else = format!("unix:uid:{}", my_uid() + 1);
    server.cli_ok(&[
        "entry",
        "create",
        "--spiffe-id",
        WEB,
        "--parent-id",
        &agent_id,
        "--selector",
        &someone_else,
    ]);
    rt().block_on(async {
        let mut wl = raw_client(&agent.socket).await;
        let wl_err = match wl
            .fetch_x509svid(with_header(herald::proto::workload::X509svidRequest {}))
            .await
        {
            Ok(resp) => resp.into_inner().message().await.unwrap_err(),
            Err(e) => e,
        };
        assert_eq!(wl_err.code(), tonic::Code::PermissionDenied);

        let mut c = sds_client(&agent.socket).await;
        let fetch = c.fetch_secrets(request(&[], "", "")).await.unwrap_err();
        let sotw = refusal(open_sotw(&mut c, request(&["default"], "", "")).await).await;
        let delta = refusal(open_delta(&mut c, delta_request(&[], &[], "")).await).await;
        for err in [fetch, sotw, delta] {
            assert_eq!(err.code(), wl_err.code(), "{err:?}");
            assert_eq!(err.message(), wl_err.message());
        }
    });
}
