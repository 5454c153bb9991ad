//! The ops listener of real processes (`herald server run`, `herald agent
//! run`, `herald dev`) scraped over HTTP: counters move when a workload
//! fetches its SVID through the Workload API (and an Envoy its certificate
//! over SDS), a refused call is counted
//! with its code, the outage budget is within the SVID's lifetime, /ready
//! follows the roles' state, and no label carries a SPIFFE ID.

mod harness;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use harness::cluster::Agent;
use harness::dirs::temp_dir;
use harness::ops::{get, parse, request, scrape, start_with_ops, value, Sample};
use harness::sds::{request as sds_request, sds_client, sotw_first};
use harness::workload::{client, raw_client, rt, wait_for_svid};
use herald::proto::workload::X509svidRequest;

/// The X509-SVID lifetime of the servers here (the default).
const SVID_TTL: f64 = 3600.0;

/// Polls `check` on fresh scrapes of `addr` until it holds (20 s at most).
fn scrape_until(addr: SocketAddr, what: &str, check: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let samples = scrape(addr);
        if check(&samples) {
            return samples;
        }
        assert!(Instant::now() < deadline, "{what}: {samples:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// No label value names an identity: the labels stay bounded.
fn assert_bounded(samples: &[Sample]) {
    for s in samples {
        for (k, v) in &s.labels {
            assert!(!v.contains("spiffe://"), "{}: label {k}={v:?}", s.name);
        }
    }
}

#[test]
fn the_exposition_parser_reads_escapes_and_infinities() {
    let s = parse(
        "# HELP x y\nx_total{a=\"1\",b=\"q\\\"z\"} 3\nup 1.5\nh_bucket{le=\"+Inf\"} 2\n# EOF\n",
    );
    assert_eq!(s.len(), 3);
    assert_eq!(s[0].labels["b"], "q\"z");
    assert_eq!(value(&s, "x_total", &[("a", "1")]), Some(3.0));
    assert_eq!(value(&s, "up", &[]), Some(1.5));
    assert_eq!(value(&s, "h_bucket", &[("le", "+Inf")]), Some(2.0));
}

#[test]
fn counters_and_gauges_follow_a_workload_fetch() {
    let dir = temp_dir("ops");
    let (server, agent, agent_id, server_ops, agent_ops) = start_with_ops(dir.path());

    // Probes and the HTTP surface.
    for addr in [server_ops, agent_ops] {
        let live = get(addr, "/live");
        assert_eq!(live.status, 200, "{}", live.body);
        assert_eq!(get(addr, "/nope").status, 404);
        assert_eq!(request(addr, "POST", "/metrics").status, 405);
        let metrics = get(addr, "/metrics");
        assert!(
            metrics.headers["content-type"].starts_with("application/openmetrics-text"),
            "{:?}",
            metrics.headers
        );
        assert!(metrics.body.ends_with("# EOF\n"), "{}", metrics.body);
    }
    // The server's dashboard, on its loopback ops listener; an agent has none.
    let page = get(server_ops, "/");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.headers["content-type"].starts_with("text/html"));
    let overview = get(server_ops, "/dashboard/api/overview");
    assert!(
        overview.body.contains("\"trust_domain\""),
        "{}",
        overview.body
    );
    assert_eq!(get(agent_ops, "/").status, 404);
    assert_eq!(get(agent_ops, "/dashboard/api/overview").status, 404);

    // A call without the security header is refused, and counted so.
    rt().block_on(async {
        let mut raw = raw_client(&agent.socket).await;
        let mut stream = raw.fetch_x509svid(X509svidRequest {}).await;
        if let Ok(s) = &mut stream {
            let first = s.get_mut().message().await;
            assert!(first.is_err(), "answered without the header: {first:?}");
        }
    });
    let refused = [("rpc", "FetchX509SVID"), ("code", "InvalidArgument")];
    scrape_until(agent_ops, "the refused call counted", |s| {
        value(s, "herald_agent_workload_api_requests_total", &refused) >= Some(1.0)
    });

    // An entry, and the workload fetches its SVID.
    server.create_entry("spiffe://example.org/ops/web", &agent_id, &[]);
    rt().block_on(async {
        let c = client(&agent.socket).await;
        let svid = wait_for_svid(&c).await;
        assert_eq!(svid.spiffe_id().to_string(), "spiffe://example.org/ops/web");
        // And an Envoy asks for its default certificate over SDS.
        let mut sds = sds_client(&agent.socket).await;
        let _stream = sotw_first(&mut sds, sds_request(&["default"], "", "")).await;
    });

    let ok = [("rpc", "FetchX509SVID"), ("code", "OK")];
    let sds_ok = [("rpc", "StreamSecrets"), ("code", "OK")];
    let agent_samples = scrape_until(agent_ops, "the agent's gauges after the fetch", |s| {
        value(s, "herald_agent_workload_api_requests_total", &ok) >= Some(1.0)
            && value(s, "herald_agent_sds_requests_total", &sds_ok) >= Some(1.0)
            && value(s, "herald_agent_svids", &[]) == Some(1.0)
            && value(s, "herald_agent_ready", &[]) == Some(1.0)
    });
    let budget = value(&agent_samples, "herald_agent_outage_budget_seconds", &[]).unwrap();
    assert!(budget > 0.0 && budget <= SVID_TTL, "outage budget {budget}");
    assert!(
        value(
            &agent_samples,
            "herald_agent_last_sync_timestamp_seconds",
            &[]
        ) > Some(0.0)
    );
    assert!(
        value(
            &agent_samples,
            "herald_agent_attestation_duration_seconds_count",
            &[]
        ) >= Some(1.0)
    );
    assert_eq!(
        value(&agent_samples, "herald_agent_entries", &[]),
        Some(1.0)
    );
    assert_eq!(get(agent_ops, "/ready").status, 200);
    assert_bounded(&agent_samples);

    let server_samples = scrape_until(server_ops, "the server's metrics after the fetch", |s| {
        value(s, "herald_server_bundle_acknowledged_ratio", &[]) == Some(1.0)
            && value(s, "herald_server_entries", &[]) == Some(1.0)
    });
    let at_least_one = |name: &str, labels: &[(&str, &str)]| {
        let v = value(&server_samples, name, labels);
        assert!(v >= Some(1.0), "{name}{labels:?} = {v:?}");
    };
    at_least_one(
        "herald_server_svids_signed_total",
        &[("kind", "x509"), ("result", "ok")],
    );
    at_least_one(
        "herald_server_svids_signed_total",
        &[("kind", "agent"), ("result", "ok")],
    );
    at_least_one(
        "herald_server_signing_duration_seconds_count",
        &[("kind", "x509")],
    );
    at_least_one(
        "herald_server_node_api_requests_total",
        &[("method", "BatchNewX509SVID"), ("code", "OK")],
    );
    at_least_one(
        "herald_server_node_api_requests_total",
        &[("method", "Attest"), ("code", "OK")],
    );
    at_least_one(
        "herald_server_admin_api_requests_total",
        &[("method", "BatchCreateEntry"), ("code", "OK")],
    );
    at_least_one(
        "herald_server_store_operation_duration_seconds_count",
        &[("op", "create_entries")],
    );
    let one = |name: &str, labels: &[(&str, &str)]| {
        assert_eq!(
            value(&server_samples, name, labels),
            Some(1.0),
            "{name}{labels:?}"
        );
    };
    one("herald_server_agents_connected", &[]);
    one(
        "herald_server_authorities",
        &[("kind", "x509"), ("state", "active")],
    );
    one(
        "herald_server_authorities",
        &[("kind", "jwt"), ("state", "active")],
    );
    one("herald_server_ready", &[]);
    let expiry = value(
        &server_samples,
        "herald_server_authority_expiry_seconds",
        &[("kind", "x509"), ("state", "active")],
    )
    .unwrap();
    let ca_ttl = value(&server_samples, "herald_server_ca_ttl_seconds", &[]).unwrap();
    assert!(
        expiry > 0.0 && expiry <= ca_ttl,
        "CA expiry {expiry}, ttl {ca_ttl}"
    );
    assert_eq!(get(server_ops, "/ready").status, 200);
    assert_bounded(&server_samples);
}

#[test]
fn an_agent_restarted_without_its_server_is_not_ready() {
    let dir = temp_dir("ops-offline");
    let (mut server, mut agent, agent_id, _, agent_ops) = start_with_ops(dir.path());
    server.create_entry("spiffe://example.org/ops/offline", &agent_id, &[]);
    rt().block_on(async {
        wait_for_svid(&client(&agent.socket).await).await;
    });
    assert_eq!(get(agent_ops, "/ready").status, 200);

    agent.proc.stop();
    server.proc.kill();
    let agent = Agent::start(&agent.config);
    // It serves the SVID it saved, but has not synced since it started.
    let ready = get(agent_ops, "/ready");
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(ready.body.contains("agent: not synced"), "{}", ready.body);
    let samples = scrape_until(agent_ops, "reconnect attempts counted", |s| {
        value(s, "herald_agent_reconnects_total", &[]) >= Some(1.0)
    });
    assert_eq!(value(&samples, "herald_agent_ready", &[]), Some(0.0));
    assert_eq!(value(&samples, "herald_agent_svids", &[]), Some(1.0));
    let budget = value(&samples, "herald_agent_outage_budget_seconds", &[]).unwrap();
    assert!(budget > 0.0 && budget <= SVID_TTL, "outage budget {budget}");
    drop(agent);
}

#[test]
fn herald_dev_prints_its_metrics_url_and_serves_both_roles() {
    let dir = temp_dir("ops-dev");
    let mut dev = harness::process::Proc::herald_dev(dir.path());
    let line = dev.wait_for_line("metrics: http://", Duration::from_secs(30));
    let url = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .and_then(|w| w.strip_suffix("/metrics"))
        .expect("metrics: http://ADDR/metrics");
    let addr: SocketAddr = url.parse().expect("an address in the metrics URL");
    assert!(addr.ip().is_loopback(), "{addr}");
    let samples = scrape_until(addr, "both roles ready", |s| {
        value(s, "herald_server_ready", &[]) == Some(1.0)
            && value(s, "herald_agent_ready", &[]) == Some(1.0)
    });
    assert!(value(&samples, "herald_agent_entries", &[]) == Some(1.0));
    let ready = get(addr, "/ready");
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_bounded(&samples);
    dev.stop();
}
