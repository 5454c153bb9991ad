//! Every vector from SPIFFE.md §1.2, plus trust-domain and serde cases.

use super::*;

fn long_td(n: usize) -> String {
    format!("spiffe://{}/x", "a".repeat(n))
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
            BadPathSegmentChar {
                character: '?',
                position: 25,
            },
        ),
        (
            "spiffe://example.org/path#frag".into(),
            BadPathSegmentChar {
                character: '#',
                position: 25,
            },
        ),
        (
            "spiffe://example.org:8443/path".into(),
            BadTrustDomainChar {
                character: ':',
                position: 20,
            },
        ),
        (
            "spiffe://user@example.org/path".into(),
            BadTrustDomainChar {
                character: '@',
                position: 13,
            },
        ),
        (
            "spiffe://user:pass@example.org/path".into(),
            BadTrustDomainChar {
                character: ':',
                position: 13,
            },
        ),
        (
            "spiffe://[::1]/path".into(),
            BadTrustDomainChar {
                character: '[',
                position: 9,
            },
        ),
        (
            "spiffe://exa%6Dple.org/path".into(),
            BadTrustDomainChar {
                character: '%',
                position: 12,
            },
        ),
        (
            "spiffe://example.org/p%20q".into(),
            BadPathSegmentChar {
                character: '%',
                position: 22,
            },
        ),
        (
            "spiffe://example.org/~user".into(),
            BadPathSegmentChar {
                character: '~',
                position: 21,
            },
        ),
        (
            "spiffe://example.org/a+b".into(),
            BadPathSegmentChar {
                character: '+',
                position: 22,
            },
        ),
        (
            "spiffe://example.org/a:b".into(),
            BadPathSegmentChar {
                character: ':',
                position: 22,
            },
        ),
        (
            "spiffe://example.org/a@b".into(),
            BadPathSegmentChar {
                character: '@',
                position: 22,
            },
        ),
        (
            "spiffe://example.org/café".into(),
            BadPathSegmentChar {
                character: 'é',
                position: 24,
            },
        ),
        (
            "spiffe://exa mple.org/path".into(),
            BadTrustDomainChar {
                character: ' ',
                position: 12,
            },
        ),
        (
            "spiffe://example.org/a b".into(),
            BadPathSegmentChar {
                character: ' ',
                position: 22,
            },
        ),
        (
            "spiffe://exa$mple.org/path".into(),
            BadTrustDomainChar {
                character: '$',
                position: 12,
            },
        ),
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
        Err(IdError::UppercaseTrustDomain {
            character: 'E',
            position: 9
        })
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
    assert_eq!(SpiffeId::new(&td, "a/b"), Err(IdError::PathNotAbsolute));
    assert_eq!(SpiffeId::new(&td, "/a/"), Err(IdError::TrailingSlash));
    assert_eq!(SpiffeId::new(&td, "/"), Err(IdError::TrailingSlash));
    assert_eq!(
        SpiffeId::new(&td, "/a//b"),
        Err(IdError::EmptySegment { position: 3 })
    );
    assert_eq!(
        SpiffeId::new(&td, "/a/.."),
        Err(IdError::DotSegment { position: 3 })
    );
    assert_eq!(
        SpiffeId::new(&td, "/a?b"),
        Err(IdError::BadPathSegmentChar {
            character: '?',
            position: 2
        })
    );
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

    assert_eq!(TrustDomain::new(""), Err(IdError::MissingTrustDomain));
    assert_eq!(
        TrustDomain::new("Example.org"),
        Err(IdError::UppercaseTrustDomain {
            character: 'E',
            position: 0
        })
    );
    assert_eq!(
        TrustDomain::new("example.org:443"),
        Err(IdError::BadTrustDomainChar {
            character: ':',
            position: 11
        })
    );
    assert_eq!(
        TrustDomain::new("example.org/x"),
        Err(IdError::BadTrustDomainChar {
            character: '/',
            position: 11
        })
    );
    assert_eq!(
        TrustDomain::new("spiffe://example.org"),
        Err(IdError::TrustDomainIdNotName)
    );
    assert!(TrustDomain::new(&"a".repeat(255)).is_ok());
    assert_eq!(
        TrustDomain::new(&"a".repeat(256)),
        Err(IdError::TrustDomainTooLong { len: 256 })
    );
}

#[test]
fn trust_domain_parse_accepts_both_forms() {
    let td = TrustDomain::new("example.org").unwrap();
    assert_eq!(TrustDomain::parse("example.org").unwrap(), td);
    assert_eq!(TrustDomain::parse("spiffe://example.org").unwrap(), td);
    assert_eq!("spiffe://example.org".parse::<TrustDomain>().unwrap(), td);
    assert_eq!(
        TrustDomain::parse("spiffe://example.org/"),
        Err(IdError::TrailingSlash)
    );
    assert_eq!(
        TrustDomain::parse("spiffe://example.org/x"),
        Err(IdError::UnexpectedPath)
    );
    assert_eq!(
        TrustDomain::parse("http://example.org"),
        Err(IdError::WrongScheme)
    );
    assert_eq!(
        TrustDomain::parse("SPIFFE://example.org"),
        Err(IdError::WrongScheme)
    );
    assert_eq!(TrustDomain::parse(""), Err(IdError::MissingTrustDomain));
}

#[test]
fn ordering_and_from_str() {
    let a: SpiffeId = "spiffe://a.org/z".parse().unwrap();
    let b: SpiffeId = "spiffe://b.org/a".parse().unwrap();
    assert!(a < b);
    assert!("spiffe://x/".parse::<SpiffeId>().is_err());
}

#[test]
fn serde_round_trips_and_validates() {
    let id = SpiffeId::parse("spiffe://example.org/web").unwrap();
    let json = serde_json::to_string(&id).unwrap();
    assert_eq!(json, "\"spiffe://example.org/web\"");
    assert_eq!(serde_json::from_str::<SpiffeId>(&json).unwrap(), id);
    assert!(serde_json::from_str::<SpiffeId>("\"spiffe://example.org/\"").is_err());
    assert!(serde_json::from_str::<SpiffeId>("\"spiffe://Example.org/a\"").is_err());
    assert!(serde_json::from_str::<SpiffeId>("42").is_err());

    let td = TrustDomain::new("example.org").unwrap();
    let json = serde_json::to_string(&td).unwrap();
    assert_eq!(json, "\"example.org\"");
    assert_eq!(serde_json::from_str::<TrustDomain>(&json).unwrap(), td);
    assert!(serde_json::from_str::<TrustDomain>("\"Example.org\"").is_err());
    assert!(serde_json::from_str::<TrustDomain>("\"spiffe://example.org\"").is_err());
    assert!(serde_json::from_str::<TrustDomain>("\"\"").is_err());
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
