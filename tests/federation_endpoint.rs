//! The bundle endpoint with both profiles, and one fetch of it: the
//! endpoint serves valid SPIFFE bundle JSON (sequence and refresh hint) over
//! https_spiffe and https_web, answers 404/405 like SPIRE, speaks TLS 1.2
//! and 1.3; a fetch authenticates the endpoint by its profile and names
//! what went wrong when it cannot.

mod harness;

use std::time::Duration;

use harness::dirs::free_port;
use harness::peer::Peer;
use harness::web::{raw_request, serve_raw, spiffe_relationship, web_relationship, WebCa};
use herald::config::limits::DEFAULT_FEDERATION_MAX_BUNDLE_KEYS;
use herald::server::federation::{fetch_bundle, FetchFailure, FetchLimits, WebRoots};
use herald::spiffe::{Bundle, TrustDomain};

const TIMEOUT: FetchLimits = FetchLimits {
    timeout: Duration::from_secs(10),
    max_keys: DEFAULT_FEDERATION_MAX_BUNDLE_KEYS,
};

#[tokio::test]
async fn https_spiffe_endpoint_serves_the_bundle_to_the_right_endpoint_id() {
    let b = Peer::new("b.org");
    let addr = b.serve_spiffe(60).await;
    let url = format!("https://127.0.0.1:{}/", addr.port());
    let roots = b.bundle().x509_authorities;

    let rel = spiffe_relationship("b.org", url.clone(), "spiffe://b.org/herald/server");
    let fetched = fetch_bundle(&rel, &roots, &WebRoots::empty(), TIMEOUT)
        .await
        .unwrap();
    let served = b.bundle();
    assert_eq!(fetched.x509_authorities, served.x509_authorities);
    assert_eq!(fetched.jwt_authorities.len(), served.jwt_authorities.len());
    assert_eq!(fetched.sequence, served.sequence);
    assert!(fetched.sequence > 0);
    assert_eq!(fetched.refresh_hint, Some(60));

    // Another workload of the same trust domain is not the endpoint.
    let rel = spiffe_relationship("b.org", url.clone(), "spiffe://b.org/not/the/endpoint");
    let err = fetch_bundle(&rel, &roots, &WebRoots::empty(), TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(&err.reason, FetchFailure::WrongSpiffeId { found, expected }
            if found.as_str() == "spiffe://b.org/herald/server"
            && expected.as_str() == "spiffe://b.org/not/the/endpoint"),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("b.org") && message.contains(&url),
        "{message}"
    );

    // Roots of another trust domain do not authenticate it.
    let other = Peer::new("c.org");
    let rel = spiffe_relationship("b.org", url, "spiffe://b.org/herald/server");
    let err = fetch_bundle(
        &rel,
        &other.bundle().x509_authorities,
        &WebRoots::empty(),
        TIMEOUT,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err.reason, FetchFailure::UntrustedCertificate(_)),
        "{err}"
    );
}

#[tokio::test]
async fn https_web_endpoint_serves_the_bundle_under_web_pki() {
    let b = Peer::new("b.org");
    let ca = WebCa::new();
    let addr = b.serve_web(&ca, 300).await;

    let rel = web_relationship("b.org", format!("https://localhost:{}/", addr.port()));
    let fetched = fetch_bundle(&rel, &[], &ca.roots(), TIMEOUT).await.unwrap();
    assert_eq!(fetched.x509_authorities, b.bundle().x509_authorities);
    assert_eq!(fetched.refresh_hint, Some(300));

    // The roots file of the configuration works the same way.
    let roots = WebRoots::load(Some(&ca.ca_path)).unwrap();
    assert!(!roots.is_empty());
    fetch_bundle(&rel, &[], &roots, TIMEOUT).await.unwrap();

    // Without the test CA the certificate is not trusted.
    let stranger = WebCa::new();
    let err = fetch_bundle(&rel, &[], &stranger.roots(), TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(err.reason, FetchFailure::UntrustedCertificate(_)),
        "{err}"
    );
    let err = fetch_bundle(&rel, &[], &WebRoots::empty(), TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err.reason, FetchFailure::NoWebRoots), "{err}");

    // The certificate names localhost, not 127.0.0.1.
    let rel = web_relationship("b.org", format!("https://127.0.0.1:{}/", addr.port()));
    let err = fetch_bundle(&rel, &[], &ca.roots(), TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(err.reason, FetchFailure::UntrustedCertificate(_)),
        "{err}"
    );
}

#[tokio::test]
async fn endpoint_speaks_http_like_spire() {
    let b = Peer::new("b.org");
    let ca = WebCa::new();
    let addr = b.serve_web(&ca, 120).await;
    let roots = [ca.ca_der.clone()];
    let tls12: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
    let tls13: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

    for versions in [tls12, tls13] {
        let response = raw_request(
            addr,
            &roots,
            versions,
            "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        )
        .await;
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(head.contains("Content-Type: application/json"), "{head}");
        let doc: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(doc["spiffe_refresh_hint"], 120);
        assert_eq!(doc["spiffe_sequence"], b.bundle().sequence);
        let parsed =
            Bundle::from_spiffe_json(TrustDomain::new("b.org").unwrap(), body.as_bytes()).unwrap();
        assert_eq!(parsed.x509_authorities, b.bundle().x509_authorities);
    }

    let response = raw_request(
        addr,
        &roots,
        tls13,
        "GET /other HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    let response = raw_request(
        addr,
        &roots,
        tls13,
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 405"), "{response}");
    assert!(response.contains("Allow: GET"), "{response}");
    // A query string does not change the resource.
    let response = raw_request(
        addr,
        &roots,
        tls13,
        "GET /?x=1 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test]
async fn endpoint_stops_at_shutdown() {
    let b = Peer::new("b.org");
    let addr = b.serve_spiffe(60).await;
    b.shutdown.send(true).unwrap();
    let rel = spiffe_relationship(
        "b.org",
        format!("https://127.0.0.1:{}/", addr.port()),
        "spiffe://b.org/herald/server",
    );
    let roots = b.bundle().x509_authorities;
    let mut gone = false;
    for _ in 0..50 {
        if fetch_bundle(&rel, &roots, &WebRoots::empty(), TIMEOUT)
            .await
            .is_err()
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "the endpoint still answers after shutdown");
}

#[tokio::test]
async fn bad_endpoints_give_errors_that_say_why() {
    let ca = WebCa::new();
    let roots = ca.roots();

    // Nothing listening.
    let rel = web_relationship("b.org", format!("https://localhost:{}/", free_port()));
    let err = fetch_bundle(&rel, &[], &roots, TIMEOUT).await.unwrap_err();
    assert!(matches!(err.reason, FetchFailure::Unreachable(_)), "{err}");
    assert!(err.to_string().contains("unreachable"), "{err}");

    // A bundle of another trust domain (c.org's CA served for b.org).
    let c = Peer::new("c.org");
    let addr = c.serve_web(&ca, 60).await;
    let rel = web_relationship("b.org", format!("https://localhost:{}/", addr.port()));
    let err = fetch_bundle(&rel, &[], &roots, TIMEOUT).await.unwrap_err();
    assert!(
        matches!(err.reason, FetchFailure::WrongTrustDomain(_)),
        "{err}"
    );
    assert!(err.to_string().contains("spiffe://c.org"), "{err}");

    // Malformed JSON, chunked.
    let body = "{\"keys\": [";
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let addr = serve_raw(ca.server_config(), response.into_bytes()).await;
    let rel = web_relationship("b.org", format!("https://localhost:{}/", addr.port()));
    let err = fetch_bundle(&rel, &[], &roots, TIMEOUT).await.unwrap_err();
    assert!(
        matches!(err.reason, FetchFailure::MalformedBundle(_)),
        "{err}"
    );

    // An HTTP error.
    let addr = serve_raw(
        ca.server_config(),
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n".to_vec(),
    )
    .await;
    let rel = web_relationship("b.org", format!("https://localhost:{}/", addr.port()));
    let err = fetch_bundle(&rel, &[], &roots, TIMEOUT).await.unwrap_err();
    assert!(matches!(err.reason, FetchFailure::HttpStatus(503)), "{err}");

    // An empty key set would distrust the whole trust domain: refused.
    let addr = serve_raw(
        ca.server_config(),
        b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"keys\":[]}".to_vec(),
    )
    .await;
    let rel = web_relationship("b.org", format!("https://localhost:{}/", addr.port()));
    let err = fetch_bundle(&rel, &[], &roots, TIMEOUT).await.unwrap_err();
    assert!(matches!(err.reason, FetchFailure::EmptyBundle), "{err}");

    // A server that never answers runs into the timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rel = web_relationship(
        "b.org",
        format!("https://localhost:{}/", silent.local_addr().unwrap().port()),
    );
    let err = fetch_bundle(
        &rel,
        &[],
        &roots,
        FetchLimits::with_timeout(Duration::from_millis(300)),
    )
    .await
    .unwrap_err();
    assert!(matches!(err.reason, FetchFailure::Timeout(_)), "{err}");

    // URLs that break the profile rules are refused before connecting.
    let rel = web_relationship("b.org", "http://localhost/".into());
    let err = fetch_bundle(&rel, &[], &roots, TIMEOUT).await.unwrap_err();
    assert!(matches!(err.reason, FetchFailure::BadUrl(_)), "{err}");
}

#[tokio::test]
async fn redirects_are_followed_with_the_same_checks() {
    let b = Peer::new("b.org");
    let ca = WebCa::new();
    let target = b.serve_web(&ca, 60).await;
    let location = format!("https://localhost:{}/", target.port());
    let redirect = serve_raw(
        ca.server_config(),
        format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes(),
    )
    .await;
    let rel = web_relationship("b.org", format!("https://localhost:{}/", redirect.port()));
    let fetched = fetch_bundle(&rel, &[], &ca.roots(), TIMEOUT).await.unwrap();
    assert_eq!(fetched.x509_authorities, b.bundle().x509_authorities);

    // To a plain-http URL: refused.
    let bad = serve_raw(
        ca.server_config(),
        b"HTTP/1.1 302 Found\r\nLocation: http://localhost/\r\nContent-Length: 0\r\n\r\n".to_vec(),
    )
    .await;
    let rel = web_relationship("b.org", format!("https://localhost:{}/", bad.port()));
    let err = fetch_bundle(&rel, &[], &ca.roots(), TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err.reason, FetchFailure::Redirect(_)), "{err}");
}
