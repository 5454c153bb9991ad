use envoy_types::pb::google::rpc::Status as RpcStatus;

use super::super::fixture::*;
use super::super::resources::unpack;
use super::*;

fn request(names: &[&str], nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        response_nonce: nonce.into(),
        type_url: secret_type_url(),
        ..DiscoveryRequest::default()
    }
}

fn nack(names: &[&str], nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        error_detail: Some(RpcStatus {
            code: 3,
            message: "bad certificate".into(),
            details: Vec::new(),
        }),
        ..request(names, nonce)
    }
}

fn names(resp: &DiscoveryResponse) -> Vec<String> {
    resp.resources.iter().map(|a| unpack(a).name).collect()
}

#[test]
fn the_first_request_is_answered_with_a_version_and_a_nonce() {
    let mut s = Sotw::default();
    assert_eq!(
        s.on_request(request(&["default", "ROOTCA"], "")).unwrap(),
        Due::Now
    );
    let resp = s.respond(&cat(&fed_snap(1, true)), Due::Now).unwrap();
    assert_eq!(names(&resp), ["ROOTCA", "default"]);
    assert_eq!(resp.type_url, secret_type_url());
    assert_eq!(resp.nonce, "1");
    assert_eq!(resp.version_info.len(), 16);
}

#[test]
fn an_empty_or_star_subscription_is_a_wildcard() {
    for first in [request(&[], ""), request(&["*", "ALL"], "")] {
        let extra = !first.resource_names.is_empty();
        let mut s = Sotw::default();
        s.on_request(first).unwrap();
        let resp = s.respond(&cat(&fed_snap(1, true)), Due::Now).unwrap();
        let mut want = vec![
            "spiffe://example.org/w1",
            "spiffe://a.org",
            "spiffe://example.org",
        ];
        if extra {
            want.push("ALL");
        }
        assert_eq!(names(&resp), want);
    }
}

#[test]
fn acks_and_unchanged_snapshots_send_nothing_a_change_sends_a_new_version() {
    let mut s = Sotw::default();
    s.on_request(request(&["default"], "")).unwrap();
    let first = s.respond(&cat(&fed_snap(1, true)), Due::Now).unwrap();
    let ack = DiscoveryRequest {
        version_info: first.version_info.clone(),
        ..request(&["default"], &first.nonce)
    };
    assert_eq!(s.on_request(ack).unwrap(), Due::Nothing);
    // A new snapshot that changes nothing this subscription holds.
    let next = cat(&fed_snap(1, false));
    assert!(s.respond(&next, Due::IfChanged).is_none());
    // The SVID rotates.
    let next = s
        .respond(&cat(&fed_snap(2, false)), Due::IfChanged)
        .unwrap();
    assert_ne!(next.version_info, first.version_info);
    assert_eq!(next.nonce, "2");
}

#[test]
fn a_nack_is_not_answered_and_what_it_rejected_is_not_sent_again() {
    let mut s = Sotw::default();
    s.on_request(request(&["default"], "")).unwrap();
    let snap = fed_snap(1, true);
    let first = s.respond(&cat(&snap), Due::Now).unwrap();
    assert_eq!(
        s.on_request(nack(&["default"], &first.nonce)).unwrap(),
        Due::Nothing
    );
    for _ in 0..3 {
        assert!(s.respond(&cat(&snap), Due::IfChanged).is_none());
    }
    // Something new is sent.
    let next = cat(&fed_snap(2, true));
    assert!(s.respond(&next, Due::IfChanged).is_some());
}

#[test]
fn a_stale_nonce_is_ignored_and_subscriptions_change_on_the_open_stream() {
    let mut s = Sotw::default();
    s.on_request(request(&["default"], "")).unwrap();
    let snap = fed_snap(1, true);
    s.respond(&cat(&snap), Due::Now).unwrap();
    let second = s.respond(&cat(&fed_snap(2, true)), Due::IfChanged).unwrap();
    assert_eq!(
        s.on_request(request(&["default", "ROOTCA"], "1")).unwrap(),
        Due::Nothing,
        "a request answering an older response"
    );
    assert_eq!(
        s.on_request(request(&["default", "ROOTCA"], &second.nonce))
            .unwrap(),
        Due::Now
    );
    let third = s.respond(&cat(&snap), Due::Now).unwrap();
    assert_eq!(names(&third), ["ROOTCA", "default"]);
    assert_eq!(
        s.on_request(request(&["ROOTCA"], "")).unwrap(),
        Due::Now,
        "no nonce: a new subscription"
    );
}

#[test]
fn a_withdrawn_federated_bundle_is_gone_from_the_next_response() {
    let mut s = Sotw::default();
    s.on_request(request(&["spiffe://a.org", "ROOTCA"], ""))
        .unwrap();
    let first = s.respond(&cat(&fed_snap(1, true)), Due::Now).unwrap();
    assert_eq!(names(&first), ["ROOTCA", "spiffe://a.org"]);
    let next = s
        .respond(&cat(&fed_snap(1, false)), Due::IfChanged)
        .unwrap();
    assert_eq!(names(&next), ["ROOTCA"]);
    assert_eq!(s.missing(&cat(&fed_snap(1, false))), ["spiffe://a.org"]);
}

#[test]
fn other_types_and_too_many_names_are_refused() {
    let wrong = DiscoveryRequest {
        type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
        ..DiscoveryRequest::default()
    };
    refuses_other_types_and_too_many_names::<Sotw>(wrong, |names| request(names, ""));
    // An empty type URL means secrets, and the response says so.
    let mut s = Sotw::default();
    s.on_request(DiscoveryRequest::default()).unwrap();
    let resp = s.respond(&cat(&fed_snap(1, true)), Due::Now).unwrap();
    assert_eq!(resp.type_url, secret_type_url());
}
