use super::*;

fn own() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn parse(text: &str) -> Result<FederationConfig, ConfigError> {
    let doc: toml::Value = toml::from_str(text).unwrap();
    let table = doc.get("federation").cloned().unwrap();
    FederationConfig::from_toml(&table, Path::new("server.toml"), &own())
}

fn error_of(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn a_full_table_parses() {
    let c = parse(
        r#"
[federation]
web_roots_path = "/etc/herald/roots.pem"
[federation.bundle_endpoint]
address = "127.0.0.1:8443"
profile = "https_web"
refresh_hint = "1m"
cert_path = "/etc/herald/ep.crt"
key_path = "/etc/herald/ep.key"
[[federation.relationships]]
trust_domain = "partner.org"
bundle_endpoint_url = "https://partner.org:8443/"
profile = "https_spiffe"
endpoint_spiffe_id = "spiffe://partner.org/herald/server"
[[federation.relationships]]
trust_domain = "web.org"
bundle_endpoint_url = "https://web.org/bundle"
profile = "https_web"
"#,
    )
    .unwrap();
    let ep = c.bundle_endpoint.unwrap();
    assert_eq!(ep.refresh_hint_secs, 60);
    assert!(matches!(ep.profile, EndpointProfile::HttpsWeb { .. }));
    assert_eq!(c.relationships.len(), 2);
    assert!(matches!(
        &c.relationships[0].relationship.profile,
        BundleEndpointProfile::HttpsSpiffe { endpoint_spiffe_id } if endpoint_spiffe_id.as_str() == "spiffe://partner.org/herald/server"
    ));
    assert_eq!(
        c.relationships[1].relationship.profile,
        BundleEndpointProfile::HttpsWeb
    );
}

#[test]
fn defaults_are_spiffe_hint_five_minutes_and_no_relationships() {
    let c = parse(
        "[federation.bundle_endpoint]\naddress = \"0.0.0.0:8443\"\nprofile = \"https_spiffe\"\n",
    )
    .unwrap();
    let ep = c.bundle_endpoint.unwrap();
    assert_eq!(ep.refresh_hint_secs, DEFAULT_REFRESH_HINT_SECS);
    assert_eq!(ep.profile, EndpointProfile::HttpsSpiffe);
    assert!(c.relationships.is_empty());
}

#[test]
fn mistakes_name_their_key() {
    let cases = [
        ("[federation]\nbogus = 1\n", "bogus"),
        (
            "[federation.bundle_endpoint]\naddress = \"nope\"\nprofile = \"https_spiffe\"\n",
            "federation.bundle_endpoint.address",
        ),
        (
            "[federation.bundle_endpoint]\naddress = \"0.0.0.0:1\"\nprofile = \"http\"\n",
            "federation.bundle_endpoint.profile",
        ),
        (
            "[federation.bundle_endpoint]\naddress = \"0.0.0.0:1\"\nprofile = \"https_web\"\n",
            "federation.bundle_endpoint.cert_path",
        ),
        (
            "[federation.bundle_endpoint]\naddress = \"0.0.0.0:1\"\nprofile = \"https_spiffe\"\nkey_path = \"k\"\n",
            "federation.bundle_endpoint.key_path",
        ),
        (
            "[federation.bundle_endpoint]\naddress = \"0.0.0.0:1\"\nprofile = \"https_spiffe\"\nrefresh_hint = \"0s\"\n",
            "federation.bundle_endpoint.refresh_hint",
        ),
        (
            "[[federation.relationships]]\ntrust_domain = \"Bad\"\nbundle_endpoint_url = \"https://x/\"\nprofile = \"https_web\"\n",
            "federation.relationships.trust_domain",
        ),
        (
            "[[federation.relationships]]\ntrust_domain = \"example.org\"\nbundle_endpoint_url = \"https://x/\"\nprofile = \"https_web\"\n",
            "own trust domain",
        ),
        (
            "[[federation.relationships]]\ntrust_domain = \"p.org\"\nbundle_endpoint_url = \"http://x/\"\nprofile = \"https_web\"\n",
            "federation.relationships.bundle_endpoint_url",
        ),
        (
            "[[federation.relationships]]\ntrust_domain = \"p.org\"\nbundle_endpoint_url = \"https://x/\"\nprofile = \"https_spiffe\"\n",
            "federation.relationships.endpoint_spiffe_id",
        ),
        (
            "[[federation.relationships]]\ntrust_domain = \"p.org\"\nbundle_endpoint_url = \"https://x/\"\nprofile = \"https_web\"\nendpoint_spiffe_id = \"spiffe://p.org/s\"\n",
            "federation.relationships.endpoint_spiffe_id",
        ),
        (
            "[[federation.relationships]]\ntrust_domain = \"p.org\"\nbundle_endpoint_url = \"https://x/\"\nprofile = \"https_web\"\ntrust_domain_bundle_path = \"/nonexistent/b.json\"\n",
            "federation.relationships.trust_domain_bundle_path",
        ),
        (
            "[[federation.relationships]]\ntrust_domain = \"p.org\"\nbundle_endpoint_url = \"https://x/\"\nprofile = \"https_web\"\n[[federation.relationships]]\ntrust_domain = \"p.org\"\nbundle_endpoint_url = \"https://y/\"\nprofile = \"https_web\"\n",
            "declared twice",
        ),
    ];
    for (text, needle) in cases {
        let err = error_of(text);
        assert!(err.contains(needle), "{text:?}: {err}");
        assert!(err.contains("server.toml"), "{err}");
    }
}

#[test]
fn bootstrap_bundles_are_read_and_checked() {
    let (dir, good) = crate::testing::temp_path("good.json");
    std::fs::write(&good, r#"{"keys":[],"spiffe_sequence":3}"#).unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{not json").unwrap();
    let rel = |p: &Path| {
        format!(
            "[[federation.relationships]]\ntrust_domain = \"p.org\"\nbundle_endpoint_url = \"https://x/\"\nprofile = \"https_spiffe\"\nendpoint_spiffe_id = \"spiffe://p.org/herald/server\"\ntrust_domain_bundle_path = {:?}\n",
            p.display().to_string()
        )
    };
    let c = parse(&rel(&good)).unwrap();
    let b = c.relationships[0].bootstrap_bundle.as_ref().unwrap();
    assert_eq!((b.trust_domain.name(), b.sequence), ("p.org", 3));
    let err = error_of(&rel(&bad));
    assert!(err.contains("not a SPIFFE bundle"), "{err}");
}

#[test]
fn the_deploy_example_is_valid() {
    let c = parse(include_str!("../../deploy/federation.toml")).unwrap();
    let ep = c.bundle_endpoint.unwrap();
    assert_eq!(ep.profile, EndpointProfile::HttpsSpiffe);
    assert_eq!(ep.refresh_hint_secs, 300);
    assert_eq!(c.relationships.len(), 2);
}
