//! JWT-SVID encode/parse: a round trip and every rejection.

use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;

fn header() -> JwtHeader {
    JwtHeader {
        alg: JwtAlgorithm::ES256,
        kid: "k1".into(),
        typ: Some("JWT".into()),
    }
}

fn claims() -> JwtClaims {
    let mut extra = Map::new();
    extra.insert("iss".into(), json!("https://herald.example"));
    JwtClaims {
        sub: SpiffeId::parse("spiffe://example.org/web").unwrap(),
        aud: vec!["db".into(), "cache".into()],
        exp: 1_700_000_300,
        iat: Some(1_700_000_000),
        extra,
    }
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// A token from raw header and claims JSON with a fake signature.
fn token(h: &Value, c: &Value) -> String {
    format!("{}.{}.c2ln", b64(h), b64(c))
}

fn good_header() -> Value {
    json!({"alg": "ES256", "kid": "k1", "typ": "JWT"})
}

fn good_claims() -> Value {
    json!({"sub": "spiffe://example.org/web", "aud": ["db"], "exp": 1_700_000_300})
}

#[test]
fn round_trip_through_encode_and_parse() {
    let input = encode_unsigned(&header(), &claims()).unwrap();
    let (h, c) = input.split_once('.').unwrap();
    let h_json: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
    assert_eq!(
        String::from_utf8(URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap(),
        r#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#
    );
    assert_eq!(h_json["typ"], "JWT");
    let c_text = String::from_utf8(URL_SAFE_NO_PAD.decode(c).unwrap()).unwrap();
    assert_eq!(
        c_text,
        r#"{"sub":"spiffe://example.org/web","aud":["db","cache"],"exp":1700000300,"iat":1700000000,"iss":"https://herald.example"}"#
    );
    let signature = vec![0xAB; 64];
    let tok = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&signature));
    let parsed = parse_compact(&tok).unwrap();
    assert_eq!(parsed.header, header());
    assert_eq!(parsed.claims, claims());
    assert_eq!(parsed.signing_input, input);
    assert_eq!(parsed.signature, signature);
    assert!(parsed.claims.has_audience("cache"));
    assert!(!parsed.claims.has_audience("web"));
}

#[test]
fn encode_without_typ_or_iat_and_single_aud() {
    let mut h = header();
    h.typ = None;
    let mut c = claims();
    c.iat = None;
    c.aud = vec!["x".into()];
    c.extra.clear();
    let input = encode_unsigned(&h, &c).unwrap();
    let parsed = parse_compact(&format!("{input}.AA")).unwrap();
    assert_eq!(parsed.header.typ, None);
    assert_eq!(parsed.claims.iat, None);
    assert!(parsed.claims.extra.is_empty());
    let (_, body) = input.split_once('.').unwrap();
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap();
    assert!(
        text.contains(r#""aud":["x"]"#),
        "aud is always an array: {text}"
    );
}

#[test]
fn encode_refuses_what_parse_would_refuse() {
    let mut h = header();
    h.kid.clear();
    assert!(matches!(
        encode_unsigned(&h, &claims()),
        Err(JwtError::EmptyKid)
    ));
    let mut h = header();
    h.typ = Some("jwt".into());
    assert!(matches!(
        encode_unsigned(&h, &claims()),
        Err(JwtError::BadTyp { .. })
    ));
    let mut c = claims();
    c.aud.clear();
    assert!(matches!(
        encode_unsigned(&header(), &c),
        Err(JwtError::EmptyAudience)
    ));
    c.aud = (0..33).map(|i| i.to_string()).collect();
    assert!(matches!(
        encode_unsigned(&header(), &c),
        Err(JwtError::TooManyAudiences { count: 33 })
    ));
    let mut c = claims();
    c.sub = SpiffeId::parse("spiffe://example.org").unwrap();
    assert!(matches!(
        encode_unsigned(&header(), &c),
        Err(JwtError::SubjectWithoutPath)
    ));
    let mut c = claims();
    c.extra.insert("exp".into(), json!(1));
    assert!(
        matches!(encode_unsigned(&header(), &c), Err(JwtError::ReservedClaim { ref name }) if name == "exp")
    );
}

#[test]
fn algorithms() {
    for alg in JwtAlgorithm::ALL {
        assert_eq!(alg.as_str().parse::<JwtAlgorithm>().unwrap(), alg);
        assert_eq!(alg.to_string(), alg.as_str());
    }
    for bad in ["none", "HS256", "EdDSA", "es256", ""] {
        assert!(
            matches!(
                bad.parse::<JwtAlgorithm>(),
                Err(JwtError::UnsupportedAlgorithm { .. })
            ),
            "{bad}"
        );
        let mut h = good_header();
        h["alg"] = json!(bad);
        let err = parse_compact(&token(&h, &good_claims())).unwrap_err();
        assert!(
            matches!(err, JwtError::UnsupportedAlgorithm { ref alg } if alg == bad),
            "{err}"
        );
    }
}

#[test]
fn structural_rejections() {
    let good = token(&good_header(), &good_claims());
    assert!(parse_compact(&good).is_ok());
    assert!(matches!(
        parse_compact(""),
        Err(JwtError::PartCount { count: 1 })
    ));
    assert!(matches!(
        parse_compact("a.b"),
        Err(JwtError::PartCount { count: 2 })
    ));
    assert!(matches!(
        parse_compact(&format!("{good}.x")),
        Err(JwtError::PartCount { count: 4 })
    ));
    let (hc, _) = good.rsplit_once('.').unwrap();
    assert!(matches!(
        parse_compact(&format!("{hc}.")),
        Err(JwtError::EmptySignature)
    ));
    assert!(matches!(
        parse_compact(&format!("{hc}.c2ln=")),
        Err(JwtError::Base64 {
            part: "signature",
            ..
        })
    ));
    assert!(matches!(
        parse_compact(&format!(
            "{}=.{}",
            b64(&good_header()),
            &good[good.find('.').unwrap() + 1..]
        )),
        Err(JwtError::Base64 { part: "header", .. })
    ));
    assert!(matches!(
        parse_compact(&format!("{}.!!.c2ln", b64(&good_header()))),
        Err(JwtError::Base64 { part: "claims", .. })
    ));
    let not_json = format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode("{"),
        b64(&good_claims())
    );
    assert!(matches!(
        parse_compact(&not_json),
        Err(JwtError::Json { part: "header", .. })
    ));
    let array = format!("{}.{}.c2ln", b64(&good_header()), b64(&json!([1])));
    assert!(matches!(
        parse_compact(&array),
        Err(JwtError::NotAnObject { part: "claims" })
    ));
    let dup = format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","kid":"a","kid":"b"}"#),
        b64(&good_claims())
    );
    assert!(matches!(
        parse_compact(&dup),
        Err(JwtError::Json { part: "header", .. })
    ));
    let huge = "a".repeat(64 * 1024 + 1);
    assert!(matches!(
        parse_compact(&huge),
        Err(JwtError::TooLong { len: 65537 })
    ));
}

#[test]
fn header_rejections() {
    let check = |h: Value| parse_compact(&token(&h, &good_claims())).unwrap_err();
    let err = check(json!({"alg": "ES256", "kid": "k", "jku": "https://evil"}));
    assert!(
        matches!(err, JwtError::UnexpectedHeader { ref name } if name == "jku"),
        "{err}"
    );
    assert!(err.to_string().contains("jku"));
    assert!(matches!(
        check(json!({"kid": "k"})),
        JwtError::MissingHeader { name: "alg" }
    ));
    assert!(matches!(
        check(json!({"alg": "ES256"})),
        JwtError::MissingHeader { name: "kid" }
    ));
    assert!(matches!(
        check(json!({"alg": "ES256", "kid": ""})),
        JwtError::EmptyKid
    ));
    assert!(matches!(
        check(json!({"alg": "ES256", "kid": 1})),
        JwtError::HeaderNotString { name: "kid" }
    ));
    assert!(matches!(
        check(json!({"alg": 1, "kid": "k"})),
        JwtError::HeaderNotString { name: "alg" }
    ));
    assert!(matches!(
        check(json!({"alg": "ES256", "kid": "k", "typ": "at+jwt"})),
        JwtError::BadTyp { .. }
    ));
    assert!(matches!(
        check(json!({"alg": "ES256", "kid": "k", "typ": null})),
        JwtError::HeaderNotString { name: "typ" }
    ));
    let jose = json!({"alg": "PS512", "kid": "k", "typ": "JOSE"});
    assert_eq!(
        parse_compact(&token(&jose, &good_claims()))
            .unwrap()
            .header
            .alg,
        JwtAlgorithm::PS512
    );
}

/// Parses a token whose claims are the good ones with `name` set to
/// `value` (or removed, for `None`) and asserts that it is refused with an
/// error matching `pattern`; a failure names the edit and what came back.
macro_rules! assert_claim_rejected {
    ($name:expr, $value:expr, $pattern:pat) => {{
        let (name, value): (&str, Option<Value>) = ($name, $value);
        let mut claims = good_claims();
        let object = claims.as_object_mut().unwrap();
        match &value {
            Some(v) => object.insert(name.into(), v.clone()),
            None => object.remove(name),
        };
        let got = parse_compact(&token(&good_header(), &claims));
        assert!(matches!(got, Err($pattern)), "{name} = {value:?}: {got:?}");
    }};
}

#[test]
fn claim_rejections() {
    assert_claim_rejected!("sub", None, JwtError::MissingClaim { name: "sub" });
    assert_claim_rejected!("aud", None, JwtError::MissingClaim { name: "aud" });
    assert_claim_rejected!("exp", None, JwtError::MissingClaim { name: "exp" });
    assert_claim_rejected!("sub", Some(json!(5)), JwtError::SubjectNotString);
    assert_claim_rejected!(
        "sub",
        Some(json!("spiffe://Example.org/x")),
        JwtError::BadSubject(IdError::UppercaseTrustDomain { .. })
    );
    let no_path = Some(json!("spiffe://example.org"));
    assert_claim_rejected!("sub", no_path, JwtError::SubjectWithoutPath);
    assert_claim_rejected!("aud", Some(json!([])), JwtError::EmptyAudience);
    let mixed = Some(json!(["a", 1]));
    assert_claim_rejected!("aud", mixed, JwtError::AudienceNotString { index: 1 });
    let object = Some(json!({"a": 1}));
    assert_claim_rejected!("aud", object, JwtError::AudienceNotStringOrArray);
    let many: Vec<String> = (0..33).map(|i| i.to_string()).collect();
    let many = Some(json!(many));
    assert_claim_rejected!("aud", many, JwtError::TooManyAudiences { count: 33 });
    for bad in [
        json!(1.5),
        json!(1700000000.0),
        json!("1700000000"),
        json!(null),
        json!(u64::MAX),
    ] {
        assert_claim_rejected!(
            "exp",
            Some(bad.clone()),
            JwtError::NotAnInteger { name: "exp" }
        );
        assert_claim_rejected!("iat", Some(bad), JwtError::NotAnInteger { name: "iat" });
    }
    let exponent = format!(
        "{}.{}.c2ln",
        b64(&good_header()),
        URL_SAFE_NO_PAD.encode(r#"{"sub":"spiffe://example.org/web","aud":"db","exp":1.7e9}"#)
    );
    assert!(matches!(
        parse_compact(&exponent),
        Err(JwtError::NotAnInteger { name: "exp" })
    ));
}

#[test]
fn string_audience_and_extras_kept() {
    let mut c = good_claims();
    c["aud"] = json!("db");
    c["nbf"] = json!(1);
    c["jti"] = json!("abc");
    let parsed = parse_compact(&token(&good_header(), &c)).unwrap();
    assert_eq!(parsed.claims.aud, vec!["db".to_owned()]);
    assert_eq!(parsed.claims.extra.len(), 2);
    assert_eq!(parsed.claims.extra["jti"], "abc");
    assert_eq!(
        parsed.claims.to_json_object(),
        json!({"sub": "spiffe://example.org/web", "aud": ["db"], "exp": 1_700_000_300, "nbf": 1, "jti": "abc"})
            .as_object()
            .unwrap()
            .clone()
    );
}

#[test]
fn never_panics_on_odd_tokens() {
    for t in [
        "..",
        "...",
        ".a.",
        "a..",
        "\u{0}.\u{0}.\u{0}",
        "é.é.é",
        "e30.e30.AA",
        "e30.W10.AA",
    ] {
        assert!(parse_compact(t).is_err(), "{t}");
    }
}
