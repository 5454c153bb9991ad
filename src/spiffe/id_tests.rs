//! Every vector from SPIFFE.md §1.2, plus trust-domain and serde cases.

use super::*;

fn long_td(n: usize) -> String {
    format!("spiffe://{}/x", "a".repeat(n))
}

fn bad_td_char(character: char, position: usize) -> IdError {
    IdError::BadTrustDomainChar {
        character,
        position,
    }
}

fn bad_path_char(character: char, position: usize) -> IdError {
    IdError::BadPathSegmentChar {
        character,
        position,
    }
}

fn uppercase_td(character: char, position: usize) -> IdError {
    IdError::UppercaseTrustDomain {
        character,
        position,
    }
}

#[test]
fn valid_vectors_1_to_15() {
    let long_path = format!("spiffe://example.org/{}", "a".repeat(2027));
    assert_eq!(long_path.len(), 2048);
    let cases: Vec<(String, &str, &str)> = vec![
        ("spiffe://example.org".into(), "example.org", ""),
        (
            "spiffe://example.org/service".into(),
            "example.org",
            "/service",
        ),
        (
            "spiffe://staging.example.com/payments/mysql".into(),
            "staging.example.com",
            "/payments/mysql",
        ),
        (
            "spiffe://k8s-west.example.com/ns/staging/sa/default".into(),
            "k8s-west.example.com",
            "/ns/staging/sa/default",
        ),
        (
            "spiffe://example.org/9eebccd2-12bf-40a6-b262-65fe0487d453".into(),
            "example.org",
            "/9eebccd2-12bf-40a6-b262-65fe0487d453",
        ),
        (
            "spiffe://trust_domain.example.com/a_b/c-d/e.f".into(),
            "trust_domain.example.com",
            "/a_b/c-d/e.f",
        ),
        (
            "spiffe://192.168.1.1/workload".into(),
            "192.168.1.1",
            "/workload",
        ),
        (
            "spiffe://example.org/Path/UPPER".into(),
            "example.org",
            "/Path/UPPER",
        ),
        (
            "spiffe://example.org/.hidden".into(),
            "example.org",
            "/.hidden",
        ),
        (
            "spiffe://example.org/..path".into(),
            "example.org",
            "/..path",
        ),
        ("spiffe://example.org/...".into(), "example.org", "/..."),
        ("spiffe://example..org/x".into(), "example..org", "/x"),
        ("spiffe://-example.org./x".into(), "-example.org.", "/x"),
    ];
    for (input, td, path) in &cases {
        let id = SpiffeId::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(id.trust_domain().name(), *td, "{input}");
        assert_eq!(id.path(), *path, "{input}");
        assert_eq!(id.as_str(), input);
        assert_eq!(id.to_string(), *input);
        assert_eq!(id.is_trust_domain_id(), path.is_empty());
    }
    // 14: trust domain exactly 255 bytes.
    let id = SpiffeId::parse(&long_td(255)).unwrap();
    assert_eq!(id.trust_domain().name().len(), 255);
    // 15: exactly 2048 bytes in total.
    let id = SpiffeId::parse(&long_path).unwrap();
    assert_eq!(id.as_str().len(), 2048);
}

#[test]
fn invalid_vectors_16_to_46() {
    use IdError::*;
    let cases: Vec<(String, IdError)> = vec![
        ("".into(), Empty),
        ("spiffe://".into(), MissingTrustDomain),
        ("spiffe:///path".into(), MissingTrustDomain),
        ("spiffe:/example.org/path".into(), WrongScheme),
        ("spiffe:example.org/path".into(), WrongScheme),
        ("http://example.org/path".into(), WrongScheme),
        ("spiffe://example.org/".into(), TrailingSlash),
        ("spiffe://example.org/path/".into(), TrailingSlash),
        (
            "spiffe://example.org//".into(),
            EmptySegment { position: 21 },
        ),
        (
            "spiffe://example.org/a//b".into(),
            EmptySegment { position: 23 },
        ),
        ("spiffe://example.org/.".into(), DotSegment { position: 21 }),
        (
            "spiffe://example.org/..".into(),
            DotSegment { position: 21 },
        ),
        (
            "spiffe://example.org/a/./b".into(),
            DotSegment { position: 23 },
        ),
        (
            "spiffe://example.org/a/../b".into(),
            DotSegment { position: 23 },
        ),
        (
            "spiffe://example.org/path?query=1".into(),
            bad_path_char('?', 25),
        ),
        (
            "spiffe://example.org/path#frag".into(),
            bad_path_char('#', 25),
        ),
        (
            "spiffe://example.org:8443/path".into(),
            bad_td_char(':', 20),
        ),
        (
            "spiffe://user@example.org/path".into(),
            bad_td_char('@', 13),
        ),
        (
            "spiffe://user:pass@example.org/path".into(),
            bad_td_char(':', 13),
        ),
        ("spiffe://[::1]/path".into(), bad_td_char('[', 9)),
        ("spiffe://exa%6Dple.org/path".into(), bad_td_char('%', 12)),
        ("spiffe://example.org/p%20q".into(), bad_path_char('%', 22)),
        ("spiffe://example.org/~user".into(), bad_path_char('~', 21)),
        ("spiffe://example.org/a+b".into(), bad_path_char('+', 22)),
        ("spiffe://example.org/a:b".into(), bad_path_char(':', 22)),
        ("spiffe://example.org/a@b".into(), bad_path_char('@', 22)),
        ("spiffe://example.org/café".into(), bad_path_char('é', 24)),
        ("spiffe://exa mple.org/path".into(), bad_td_char(' ', 12)),
        ("spiffe://example.org/a b".into(), bad_path_char(' ', 22)),
        ("spiffe://exa$mple.org/path".into(), bad_td_char('$', 12)),
        (long_td(256), TrustDomainTooLong { len: 256 }),
    ];
    assert_eq!(cases.len(), 31);
    for (input, want) in cases {
        assert_eq!(SpiffeId::parse(&input), Err(want), "{input}");
    }
}

#[test]
fn implementation_dependent_vectors_47_48_rejected() {
    assert_eq!(
        SpiffeId::parse("SPIFFE://example.org/path"),
        Err(IdError::WrongScheme)
    );
    assert_eq!(
        SpiffeId::parse("spiffe://Example.ORG/path"),
        Err(uppercase_td('E', 9))
    );
}

#[test]
fn over_2048_bytes_rejected() {
    let s = format!("spiffe://example.org/{}", "a".repeat(2028));
    assert_eq!(SpiffeId::parse(&s), Err(IdError::TooLong { len: 2049 }));
    let td = TrustDomain::new("example.org").unwrap();
    let path = format!("/{}", "a".repeat(2027));
    assert_eq!(SpiffeId::new(&td, &path).unwrap().as_str().len(), 2048);
    let path = format!("/{}", "a".repeat(2028));
    assert_eq!(
        SpiffeId::new(&td, &path),
        Err(IdError::TooLong { len: 2049 })
    );
}

#[test]
fn messages_name_character_and_position() {
    let msg = SpiffeId::parse("spiffe://example.org/a+b")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("'+'") && msg.contains("byte 22"), "{msg}");
    let msg = SpiffeId::parse("spiffe://Example.org")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("'E'") && msg.contains("lowercase"), "{msg}");
}

#[test]
fn new_builds_from_parts() {
    let td = TrustDomain::new("example.org").unwrap();
    let id = SpiffeId::new(&td, "/ns/default/sa/web").unwrap();
    assert_eq!(id.as_str(), "spiffe://example.org/ns/default/sa/web");
    assert_eq!(id.trust_domain(), &td);
    assert_eq!(id, SpiffeId::parse(id.as_str()).unwrap());
    assert!(SpiffeId::new(&td, "").unwrap().is_trust_domain_id());
    let rejected = [
        ("a/b", IdError::PathNotAbsolute),
        ("/a/", IdError::TrailingSlash),
        ("/", IdError::TrailingSlash),
        ("/a//b", IdError::EmptySegment { position: 3 }),
        ("/a/..", IdError::DotSegment { position: 3 }),
        ("/a?b", bad_path_char('?', 2)),
    ];
    for (path, want) in rejected {
        assert_eq!(SpiffeId::new(&td, path), Err(want), "{path:?}");
    }
}

#[test]
fn trust_domain_new_is_bare_and_strict() {
    let td = TrustDomain::new("example.org").unwrap();
    assert_eq!(td.name(), "example.org");
    assert_eq!(td.to_string(), "example.org");
    assert_eq!(td.id_string(), "spiffe://example.org");
    let id = td.to_spiffe_id();
    assert!(id.is_trust_domain_id());
    assert_eq!(id, SpiffeId::parse("spiffe://example.org").unwrap());

    assert!(TrustDomain::new(&"a".repeat(255)).is_ok());
    let rejected = [
        (String::new(), IdError::MissingTrustDomain),
        ("Example.org".into(), uppercase_td('E', 0)),
        ("example.org:443".into(), bad_td_char(':', 11)),
        ("example.org/x".into(), bad_td_char('/', 11)),
        ("spiffe://example.org".into(), IdError::TrustDomainIdNotName),
        ("a".repeat(256), IdError::TrustDomainTooLong { len: 256 }),
    ];
    for (name, want) in rejected {
        assert_eq!(TrustDomain::new(&name), Err(want), "{name:?}");
    }
}

#[test]
fn trust_domain_parse_accepts_both_forms() {
    let td = TrustDomain::new("example.org").unwrap();
    assert_eq!(TrustDomain::parse("example.org").unwrap(), td);
    assert_eq!(TrustDomain::parse("spiffe://example.org").unwrap(), td);
    assert_eq!("spiffe://example.org".parse::<TrustDomain>().unwrap(), td);
    let rejected = [
        ("spiffe://example.org/", IdError::TrailingSlash),
        ("spiffe://example.org/x", IdError::UnexpectedPath),
        ("http://example.org", IdError::WrongScheme),
        ("SPIFFE://example.org", IdError::WrongScheme),
        ("", IdError::MissingTrustDomain),
    ];
    for (input, want) in rejected {
        assert_eq!(TrustDomain::parse(input), Err(want), "{input:?}");
    }
}

#[test]
fn ordering_and_from_str() {
    let a: SpiffeId = "spiffe://a.org/z".parse().unwrap();
    let b: SpiffeId = "spiffe://b.org/a".parse().unwrap();
    assert!(a < b);
    assert!("spiffe://x/".parse::<SpiffeId>().is_err());
}

/// Serialises `value` to exactly `json`, reads that back to an equal
/// value, and refuses every string in `refused`.
fn check_serde<T>(value: &T, json: &str, refused: &[&str])
where
    T: Serialize + serde::de::DeserializeOwned + PartialEq + fmt::Debug,
{
    assert_eq!(serde_json::to_string(value).unwrap(), json);
    assert_eq!(&serde_json::from_str::<T>(json).unwrap(), value);
    for input in refused {
        assert!(serde_json::from_str::<T>(input).is_err(), "{input}");
    }
}

#[test]
fn serde_round_trips_and_validates() {
    check_serde(
        &SpiffeId::parse("spiffe://example.org/web").unwrap(),
        "\"spiffe://example.org/web\"",
        &[
            "\"spiffe://example.org/\"",
            "\"spiffe://Example.org/a\"",
            "42",
        ],
    );
    check_serde(
        &TrustDomain::new("example.org").unwrap(),
        "\"example.org\"",
        &["\"Example.org\"", "\"spiffe://example.org\"", "\"\""],
    );
}

#[test]
fn never_panics_on_odd_input() {
    for s in [
        "spiffe://é/",
        "spiffe://\u{0}",
        "spiffe://a/\u{10FFFF}",
        "spiffe://a/.//",
        "spiffe://a/b/.",
        "spiffe:////",
        "spiffe",
    ] {
        let _ = SpiffeId::parse(s);
        let _ = TrustDomain::parse(s);
        let _ = TrustDomain::new(s);
    }
}
