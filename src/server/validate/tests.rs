use super::*;

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn good() -> admin::Entry {
    admin::Entry {
        spiffe_id: "spiffe://example.org/web".into(),
        parent_id: "spiffe://example.org/herald/agent/join_token/abc".into(),
        selectors: vec![admin::Selector {
            r#type: "unix".into(),
            value: "uid:1000".into(),
        }],
        ..Default::default()
    }
}

fn err(entry: &admin::Entry) -> ValidationError {
    validate_entry(&td(), entry, &[TrustDomain::new("other.org").unwrap()]).unwrap_err()
}

fn assert_field(entry: admin::Entry, field: &str, needle: &str) {
    let e = err(&entry);
    assert_eq!(e.field, field, "{e}");
    assert!(e.to_string().contains(needle), "{e}");
    let status: tonic::Status = e.into();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().starts_with(field), "{}", status.message());
}

#[test]
fn a_good_entry_becomes_a_record() {
    let mut e = good();
    e.x509_svid_ttl = 60;
    e.jwt_svid_ttl = MAX_SVID_TTL;
    e.dns_names = vec!["web.example.org".into(), "*.svc.example.org".into()];
    e.federates_with = vec!["other.org".into(), "spiffe://other.org".into()];
    e.hint = "h".repeat(MAX_HINT_LEN);
    e.expires_at = 0;
    e.id = "my-entry_1".into();
    let r = validate_entry(&td(), &e, &[TrustDomain::new("other.org").unwrap()]).unwrap();
    assert_eq!(r.spiffe_id.as_str(), "spiffe://example.org/web");
    assert_eq!(r.x509_svid_ttl, 60);
    assert_eq!(r.jwt_svid_ttl, MAX_SVID_TTL as u32);
    assert_eq!(r.federates_with.len(), 1, "duplicates collapse");
    assert_eq!(r.expires_at, None);
    assert_eq!(r.selectors[0].to_string(), "unix:uid:1000");
    e.expires_at = 5;
    let r = validate_entry(&td(), &e, &[TrustDomain::new("other.org").unwrap()]).unwrap();
    assert_eq!(r.expires_at, Some(5));
}

#[test]
fn spiffe_id_rules() {
    for (id, needle) in [
        ("spiffe://Example.org/x", "is not a valid SPIFFE ID"),
        ("", "must not be empty"),
        ("http://example.org/x", "is not a valid SPIFFE ID"),
        ("spiffe://other.org/x", "not in trust domain example.org"),
        ("spiffe://example.org", "has no path"),
        ("spiffe://example.org/herald", "reserved path"),
        ("spiffe://example.org/herald/agent/x", "reserved path"),
    ] {
        assert_field(with(|e| e.spiffe_id = id.into()), "spiffe_id", needle);
    }
    // Only the exact segment is reserved.
    let mut e = good();
    e.spiffe_id = "spiffe://example.org/heraldry".into();
    validate_entry(&td(), &e, &[]).unwrap();
}

#[test]
fn parent_id_rules() {
    for (id, needle) in [
        ("spiffe://example.org/a//b", "is not a valid SPIFFE ID"),
        ("spiffe://other.org/agent", "not in trust domain"),
        ("spiffe://example.org", "has no path"),
        ("", "must not be empty"),
    ] {
        assert_field(with(|e| e.parent_id = id.into()), "parent_id", needle);
    }
}

/// The good entry with one change.
fn with(change: impl FnOnce(&mut admin::Entry)) -> admin::Entry {
    let mut e = good();
    change(&mut e);
    e
}

#[test]
fn selector_rules() {
    let mut e = good();
    e.selectors.clear();
    assert_field(e, "selectors", "at least one");
    let sel = |t: &str, v: &str| admin::Selector {
        r#type: t.into(),
        value: v.into(),
    };
    for (s, field, needle) in [
        (sel("", "x"), "selectors[1].type", "must not be empty"),
        (sel("Unix", "x"), "selectors[1].type", "only a-z"),
        (sel("a:b", "x"), "selectors[1].type", "only a-z"),
        (sel("unix", ""), "selectors[1].value", "must not be empty"),
        (sel("unix", "a\0b"), "selectors[1].value", "NUL"),
    ] {
        let mut e = good();
        e.selectors.push(s);
        assert_field(e, field, needle);
    }
}

#[test]
fn ttl_rules() {
    for v in [-1, MAX_SVID_TTL + 1, i32::MIN, i32::MAX] {
        let mut e = good();
        e.x509_svid_ttl = v;
        assert_field(e, "x509_svid_ttl", "out of range");
        let mut e = good();
        e.jwt_svid_ttl = v;
        assert_field(e, "jwt_svid_ttl", "out of range");
    }
}

#[test]
fn dns_name_rules() {
    for bad in [
        "",
        "*.",
        "bad name",
        "-a.org",
        "a..org",
        "a.*.org",
        "*.*.org",
        &"a".repeat(64),
    ] {
        let mut e = good();
        e.dns_names = vec!["ok.org".into(), bad.to_string()];
        assert_field(e, "dns_names[1]", "not a valid DNS name");
    }
    for ok in ["a", "a-b.example.org", "*.example.org", "xn--bcher-kva.de"] {
        validate_dns_name(ok).unwrap();
    }
}

#[test]
fn wildcard_overlap() {
    let v = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(check_wildcard_overlap(&v(&["*.a.org", "b.a.org"])).is_err());
    assert!(check_wildcard_overlap(&v(&["*.a.org", "a.org", "c.b.a.org"])).is_ok());
}

#[test]
fn federates_with_rules() {
    let mut e = good();
    e.federates_with = vec!["unknown.org".into()];
    let msg = err(&e).to_string();
    assert_eq!(
        msg,
        "federates_with: no bundle for trust domain unknown.org; federate with it first"
    );
    let mut e = good();
    e.federates_with = vec!["Bad.Org".into()];
    assert_field(e, "federates_with[0]", "not a valid trust domain");
    let mut e = good();
    e.federates_with = vec!["example.org".into()];
    assert_field(e, "federates_with[0]", "own trust domain");
}

#[test]
fn hint_expiry_and_id_rules() {
    let mut e = good();
    e.hint = "h".repeat(MAX_HINT_LEN + 1);
    assert_field(e, "hint", "at most 1024");
    let mut e = good();
    e.expires_at = -1;
    assert_field(e, "expires_at", "negative");
    let mut e = good();
    e.id = "has space".into();
    assert_field(e, "id", "printable ASCII");
    let mut e = good();
    e.id = "x".repeat(MAX_ENTRY_ID_LEN + 1);
    assert_field(e, "id", "at most 255");
}

/// An entry parented to the server is a node alias: node selectors only,
/// and nothing that would shape an SVID; its own ID is a workload ID.
#[test]
fn node_alias_entries_take_node_selectors_only() {
    let alias = || admin::Entry {
        spiffe_id: "spiffe://example.org/fleet/db".into(),
        parent_id: "spiffe://example.org/herald/server".into(),
        selectors: vec![admin::Selector {
            r#type: "x509pop".into(),
            value: "subject:cn:db-1".into(),
        }],
        ..Default::default()
    };
    let r = validate_entry(&td(), &alias(), &[]).unwrap();
    assert!(is_alias_entry(&r));
    let mut unix = alias();
    unix.selectors = good().selectors;
    assert_field(
        unix,
        "selectors[0].type",
        "\"unix\" is not a node selector type",
    );
    let mut admin_flag = alias();
    admin_flag.admin = true;
    assert_field(admin_flag, "admin", "no SVID is issued for an alias");
    let mut reserved = alias();
    reserved.spiffe_id = "spiffe://example.org/herald/server".into();
    assert_field(reserved, "spiffe_id", "reserved path");
    // Under an agent, node selector types are the operator's business.
    let mut workload = good();
    workload.selectors = alias().selectors;
    assert!(validate_entry(&td(), &workload, &[]).is_ok());
}
