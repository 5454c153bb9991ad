use std::collections::HashMap;

use envoy_types::pb::google::rpc::Status as RpcStatus;

use super::super::fixture::*;
use super::*;

fn request(subscribe: &[&str], unsubscribe: &[&str], nonce: &str) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: secret_type_url(),
        resource_names_subscribe: subscribe.iter().map(|n| n.to_string()).collect(),
        resource_names_unsubscribe: unsubscribe.iter().map(|n| n.to_string()).collect(),
        response_nonce: nonce.into(),
        ..DeltaDiscoveryRequest::default()
    }
}

/// A stream that has asked for `names`.
fn subscribed(names: &[&str]) -> Delta {
    let mut d = Delta::default();
    d.on_request(request(names, &[], "")).unwrap();
    d
}

fn sent(resp: &DeltaDiscoveryResponse) -> Vec<&str> {
    resp.resources.iter().map(|r| r.name.as_str()).collect()
}

const WILDCARD: [&str; 3] = [
    "spiffe://a.org",
    "spiffe://example.org",
    "spiffe://example.org/w1",
];

#[test]
fn a_wildcard_stream_gets_everything_then_only_changes_and_withdrawals() {
    let mut d = Delta::default();
    assert_eq!(d.on_request(request(&[], &[], "")).unwrap(), Due::Now);
    let first = d.respond(&cat(&fed_snap(1, true)), Due::Now).unwrap();
    assert_eq!(sent(&first), WILDCARD);
    assert!(first.removed_resources.is_empty());
    assert_eq!(first.nonce, "1");
    assert_eq!(first.type_url, secret_type_url());
    let versions: Vec<_> = first.resources.iter().map(|r| r.version.len()).collect();
    assert_eq!(versions, [16, 16, 16]);

    assert_eq!(
        d.on_request(request(&[], &[], "1")).unwrap(),
        Due::Nothing,
        "an ACK"
    );
    let next = cat(&fed_snap(1, true));
    assert!(d.respond(&next, Due::IfChanged).is_none());

    // The SVID rotates: only it is sent.
    let next = d.respond(&cat(&fed_snap(2, true)), Due::IfChanged).unwrap();
    assert_eq!(sent(&next), ["spiffe://example.org/w1"]);
    assert_eq!(next.nonce, "2");

    // a.org is withdrawn from the entry (SPIRE #1816).
    let next = d
        .respond(&cat(&fed_snap(2, false)), Due::IfChanged)
        .unwrap();
    assert!(next.resources.is_empty());
    assert_eq!(next.removed_resources, ["spiffe://a.org"]);
    let next = cat(&fed_snap(2, false));
    assert!(d.respond(&next, Due::IfChanged).is_none());
}

#[test]
fn explicit_subscriptions_change_on_the_open_stream() {
    let mut d = subscribed(&["default"]);
    let s = fed_snap(1, true);
    let first = d.respond(&cat(&s), Due::Now).unwrap();
    assert_eq!(sent(&first), ["default"]);

    assert_eq!(
        d.on_request(request(&["ROOTCA", "spiffe://a.org"], &[], "1"))
            .unwrap(),
        Due::Now
    );
    let more = d.respond(&cat(&s), Due::Now).unwrap();
    assert_eq!(
        sent(&more),
        ["ROOTCA", "spiffe://a.org"],
        "default is not resent"
    );

    // Unsubscribed: no removal is sent, and its changes no longer are.
    assert_eq!(
        d.on_request(request(&[], &["default"], "2")).unwrap(),
        Due::Now
    );
    assert!(d.respond(&cat(&s), Due::Now).is_none());
    let next = cat(&fed_snap(2, true));
    assert!(d.respond(&next, Due::IfChanged).is_none());

    // Withdrawn while subscribed by name: removed, once.
    let gone = d
        .respond(&cat(&fed_snap(2, false)), Due::IfChanged)
        .unwrap();
    assert_eq!(gone.removed_resources, ["spiffe://a.org"]);
    let next = cat(&fed_snap(2, false));
    assert!(d.respond(&next, Due::IfChanged).is_none());
    // And back when the entry federates again.
    let back = d.respond(&cat(&fed_snap(2, true)), Due::IfChanged).unwrap();
    assert_eq!(sent(&back), ["spiffe://a.org"]);
}

#[test]
fn a_name_the_caller_may_not_have_is_said_not_to_exist_once() {
    let mut d = Delta::default();
    d.on_request(request(&["default", "spiffe://b.org"], &[], ""))
        .unwrap();
    let first = d.respond(&cat(&fed_snap(1, true)), Due::Now).unwrap();
    assert_eq!(sent(&first), ["default"]);
    assert_eq!(first.removed_resources, ["spiffe://b.org"]);
    let next = cat(&fed_snap(2, true));
    assert!(d.respond(&next, Due::IfChanged).is_some());
    let again = d.respond(&cat(&fed_snap(3, true)), Due::IfChanged).unwrap();
    assert!(again.removed_resources.is_empty());
}

#[test]
fn a_reconnecting_client_gets_only_what_it_lacks() {
    let s = fed_snap(1, true);
    let mut d = Delta::default();
    d.on_request(request(&[], &[], "")).unwrap();
    let held: HashMap<String, String> = d
        .respond(&cat(&s), Due::Now)
        .unwrap()
        .resources
        .into_iter()
        .map(|r| (r.name, r.version))
        .collect();

    let mut again = Delta::default();
    let mut initial = held.clone();
    initial.insert("spiffe://example.org/w1".into(), "stale".into());
    initial.insert("spiffe://gone.org".into(), "0123".into());
    let first = DeltaDiscoveryRequest {
        initial_resource_versions: initial,
        ..request(&[], &[], "")
    };
    again.on_request(first).unwrap();
    let resp = again.respond(&cat(&s), Due::Now).unwrap();
    assert_eq!(sent(&resp), ["spiffe://example.org/w1"]);
    assert_eq!(resp.removed_resources, ["spiffe://gone.org"]);

    // Holding everything at the current versions: nothing to send.
    let mut same = Delta::default();
    same.on_request(DeltaDiscoveryRequest {
        initial_resource_versions: held,
        ..request(&[], &[], "")
    })
    .unwrap();
    assert!(same.respond(&cat(&s), Due::Now).is_none());
}

#[test]
fn a_nack_is_logged_and_nothing_is_resent() {
    let mut d = subscribed(&["default"]);
    let s = fed_snap(1, true);
    d.respond(&cat(&s), Due::Now).unwrap();
    let nack = DeltaDiscoveryRequest {
        error_detail: Some(RpcStatus {
            code: 3,
            message: "bad certificate".into(),
            details: Vec::new(),
        }),
        ..request(&[], &[], "1")
    };
    assert_eq!(d.on_request(nack).unwrap(), Due::Nothing);
    for _ in 0..3 {
        assert!(d.respond(&cat(&s), Due::IfChanged).is_none());
    }
}

#[test]
fn the_wildcard_can_be_left_and_joined_with_star() {
    let mut d = subscribed(&["ROOTCA"]);
    let s = fed_snap(1, true);
    assert_eq!(sent(&d.respond(&cat(&s), Due::Now).unwrap()), ["ROOTCA"]);
    d.on_request(request(&["*"], &[], "1")).unwrap();
    assert_eq!(sent(&d.respond(&cat(&s), Due::Now).unwrap()), WILDCARD);
    d.on_request(request(&[], &["*"], "2")).unwrap();
    assert!(d.respond(&cat(&s), Due::Now).is_none());
    // Withdrawn after leaving the wildcard: nothing to say.
    let next = cat(&fed_snap(1, false));
    assert!(d.respond(&next, Due::IfChanged).is_none());
}

#[test]
fn other_types_and_too_many_names_are_refused() {
    let wrong = DeltaDiscoveryRequest {
        type_url: "type.googleapis.com/envoy.config.listener.v3.Listener".into(),
        ..DeltaDiscoveryRequest::default()
    };
    refuses_other_types_and_too_many_names::<Delta>(wrong, |names| request(names, &[], ""));
}
