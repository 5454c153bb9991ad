use envoy_types::pb::envoy::config::core::v3::{
    data_source::Specifier, node::UserAgentVersionType, BuildVersion, DataSource, Node,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    secret, Secret, SpiffeCertValidatorConfig,
};
use envoy_types::pb::envoy::r#type::v3::SemanticVersion;
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
use prost::Message as _;

use super::super::fixture::*;
use super::*;
use crate::ca::keys::der_to_pem;

fn text(d: &Option<DataSource>) -> String {
    match d.as_ref().and_then(|d| d.specifier.as_ref()) {
        Some(Specifier::InlineBytes(b)) => String::from_utf8(b.clone()).unwrap(),
        other => panic!("not inline bytes: {other:?}"),
    }
}

/// The trust domains (name, PEM) of a SPIFFE-validator context.
fn spiffe_domains(s: &Secret) -> Vec<(String, String)> {
    let Some(secret::Type::ValidationContext(vc)) = &s.r#type else {
        panic!("{} is not a validation context", s.name)
    };
    let ext = vc.custom_validator_config.as_ref().unwrap();
    assert_eq!(ext.name, "envoy.tls.cert_validator.spiffe");
    let any = ext.typed_config.as_ref().unwrap();
    assert_eq!(
        any.type_url,
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig"
    );
    assert!(vc.trusted_ca.is_none());
    SpiffeCertValidatorConfig::decode(any.value.as_slice())
        .unwrap()
        .trust_domains
        .iter()
        .map(|t| (t.name.clone(), text(&t.trust_bundle)))
        .collect()
}

fn trusted_ca(s: &Secret) -> String {
    let Some(secret::Type::ValidationContext(vc)) = &s.r#type else {
        panic!("{} is not a validation context", s.name)
    };
    assert!(vc.custom_validator_config.is_none());
    text(&vc.trusted_ca)
}

fn pem(roots: &[u8]) -> String {
    roots
        .iter()
        .map(|r| der_to_pem(&[*r], "CERTIFICATE"))
        .collect()
}

fn two_workloads() -> CacheSnapshot {
    snapshot(
        vec![
            identity(1, "uid:1", &["a.org", "jwt-only.org"], 1),
            identity(2, "uid:1", &[], 1),
            identity(3, "uid:2", &["b.org"], 1),
        ],
        &[("a.org", &[0xa]), ("b.org", &[0xb]), ("jwt-only.org", &[])],
    )
}

#[test]
fn names_are_spire_s_and_only_what_the_caller_may_have() {
    let cat = catalogue(&two_workloads(), Validation::SpiffeValidator);
    let mut names: Vec<_> = cat.by_name.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "ALL",
            "ROOTCA",
            "default",
            "spiffe://a.org",
            "spiffe://example.org",
            "spiffe://example.org/w1",
            "spiffe://example.org/w2",
        ]
    );
    // b.org belongs to another caller's entry; jwt-only.org has no X.509 root.
    assert_eq!(
        cat.wildcard(),
        [
            "spiffe://example.org/w1",
            "spiffe://example.org/w2",
            "spiffe://a.org",
            "spiffe://example.org",
        ]
    );
}

#[test]
fn tls_certificates_are_pem_chain_and_pkcs8_key() {
    let cat = catalogue(&two_workloads(), Validation::SpiffeValidator);
    let (chain, key) = tls_pem(&secret(&cat, "default"));
    assert_eq!(
        chain,
        format!(
            "{}{}",
            der_to_pem(&[1, 1], "CERTIFICATE"),
            der_to_pem(&[1, 0xca], "CERTIFICATE")
        )
    );
    assert_eq!(key, der_to_pem(&[1, 1, 9], "PRIVATE KEY"));
    // The default is the first identity, also served under its ID.
    assert_eq!(
        tls_pem(&secret(&cat, "spiffe://example.org/w1")),
        (chain, key)
    );
    let (w2, _) = tls_pem(&secret(&cat, "spiffe://example.org/w2"));
    assert!(w2.starts_with(&der_to_pem(&[2, 1], "CERTIFICATE")));
}

#[test]
fn validation_contexts_bind_each_bundle_to_its_trust_domain() {
    let cat = catalogue(&two_workloads(), Validation::SpiffeValidator);
    let own = vec![("example.org".to_string(), pem(&[0xe]))];
    assert_eq!(spiffe_domains(&secret(&cat, "ROOTCA")), own);
    assert_eq!(spiffe_domains(&secret(&cat, "spiffe://example.org")), own);
    assert_eq!(
        spiffe_domains(&secret(&cat, "spiffe://a.org")),
        [("a.org".to_string(), pem(&[0xa]))]
    );
    assert_eq!(
        spiffe_domains(&secret(&cat, "ALL")),
        [
            ("a.org".to_string(), pem(&[0xa])),
            ("example.org".to_string(), pem(&[0xe]))
        ]
    );
}

#[test]
fn trusted_ca_mode_is_a_flat_pem() {
    let cat = catalogue(&two_workloads(), Validation::TrustedCa);
    assert_eq!(trusted_ca(&secret(&cat, "ROOTCA")), pem(&[0xe]));
    assert_eq!(trusted_ca(&secret(&cat, "spiffe://a.org")), pem(&[0xa]));
    assert_eq!(trusted_ca(&secret(&cat, "ALL")), pem(&[0xa, 0xe]));
}

#[test]
fn versions_follow_content_only() {
    let snap = two_workloads();
    let a = catalogue(&snap, Validation::SpiffeValidator);
    let mut later = snap.clone();
    later.generation = 9;
    let b = catalogue(&later, Validation::SpiffeValidator);
    for name in a.by_name.keys() {
        assert_eq!(
            a.get(name).unwrap().version,
            b.get(name).unwrap().version,
            "{name}"
        );
    }
    assert_eq!(b.generation(), 9);

    // w1 renewed: its two names change version, nothing else does.
    later.identities[0] = identity(1, "uid:1", &["a.org", "jwt-only.org"], 2);
    let c = catalogue(&later, Validation::SpiffeValidator);
    for name in a.by_name.keys() {
        let changed = a.get(name).unwrap().version != c.get(name).unwrap().version;
        let renewed = name == "default" || name == "spiffe://example.org/w1";
        assert_eq!(changed, renewed, "{name}");
    }
    // The validation shape is part of the content.
    let d = catalogue(&snap, Validation::TrustedCa);
    assert_ne!(
        a.get("ROOTCA").unwrap().version,
        d.get("ROOTCA").unwrap().version
    );
}

#[test]
fn a_caller_without_identity_or_an_empty_bundle_is_refused_like_the_workload_api() {
    let settings = SdsSettings::default();
    let build = |snap: &CacheSnapshot, uid: &str| {
        Catalogue::build(snap, &[sel(uid)], &settings, Validation::SpiffeValidator)
    };
    let snap = two_workloads();
    let err = build(&snap, "uid:7").unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert_eq!(err.message(), "no identity issued");

    let mut empty = snap;
    empty.bundle = bundle("example.org", &[]);
    assert_eq!(refusal(build(&empty, "uid:1")), tonic::Code::Unavailable);
}

#[test]
fn custom_names_replace_spire_s() {
    let settings = SdsSettings {
        default_svid_name: "svid".into(),
        default_bundle_name: "ca".into(),
        default_all_bundles_name: "everything".into(),
        disable_spiffe_cert_validation: false,
    };
    let cat = Catalogue::build(
        &two_workloads(),
        &[sel("uid:1")],
        &settings,
        Validation::SpiffeValidator,
    )
    .unwrap();
    for name in ["svid", "ca", "everything"] {
        assert!(cat.get(name).is_some(), "{name}");
    }
    for name in ["default", "ROOTCA", "ALL"] {
        assert!(cat.get(name).is_none(), "{name}");
    }
}

fn node_with(key_value: Option<Kind>, version: Option<(u32, u32)>) -> Node {
    Node {
        metadata: key_value.map(|k| Struct {
            fields: [(
                "disable_spiffe_cert_validation".to_string(),
                Value { kind: Some(k) },
            )]
            .into_iter()
            .collect(),
        }),
        user_agent_name: "envoy".into(),
        user_agent_version_type: version.map(|(major, minor)| {
            UserAgentVersionType::UserAgentBuildVersion(BuildVersion {
                version: Some(SemanticVersion {
                    major_number: major,
                    minor_number: minor,
                    patch: 0,
                }),
                metadata: None,
            })
        }),
        ..Node::default()
    }
}

#[test]
fn the_spiffe_validator_unless_config_node_or_an_old_envoy_says_otherwise() {
    use Validation::*;
    let v = |node: Option<Node>, disabled| Validation::for_node(node.as_ref(), disabled);
    assert_eq!(v(None, false), SpiffeValidator);
    assert_eq!(v(None, true), TrustedCa);
    assert_eq!(
        v(Some(node_with(Some(Kind::BoolValue(true)), None)), false),
        TrustedCa
    );
    assert_eq!(
        v(
            Some(node_with(Some(Kind::StringValue("true".into())), None)),
            false
        ),
        TrustedCa
    );
    assert_eq!(
        v(
            Some(node_with(Some(Kind::StringValue("false".into())), None)),
            false
        ),
        SpiffeValidator
    );
    assert_eq!(
        v(Some(node_with(Some(Kind::BoolValue(false)), None)), false),
        SpiffeValidator
    );
    assert_eq!(v(Some(node_with(None, Some((1, 17)))), false), TrustedCa);
    assert_eq!(
        v(Some(node_with(None, Some((1, 18)))), false),
        SpiffeValidator
    );
    assert_eq!(
        v(Some(node_with(None, Some((2, 0)))), false),
        SpiffeValidator
    );
}
