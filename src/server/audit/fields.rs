//! The fields of one audited call, and how the messages of the admin API
//! turn into them (entries, batch results, federation relationships).
//! [`super::methods`] says which message of which method they come from.

use prost::Message;
use serde_json::{json, Map, Value};

use super::redact::{token_ref, Redactor};
use crate::proto::admin;

/// The fields of one call, and the secrets they must not show.
#[derive(Debug, Default)]
pub(super) struct Fields {
    map: Map<String, Value>,
    redactor: Redactor,
}

impl Fields {
    pub(super) fn put(&mut self, key: &str, value: impl Into<Value>) {
        self.map.insert(key.to_string(), value.into());
    }

    /// Puts `value` unless it is empty (proto3's "not set").
    pub(super) fn text(&mut self, key: &str, value: &str) {
        if !value.is_empty() {
            self.put(key, value);
        }
    }

    /// A join token: kept as a secret of the call, written as its reference.
    pub(super) fn token(&mut self, key: &str, token: &str) {
        if !token.is_empty() {
            self.redactor.secret(token);
            self.put(key, token_ref(token));
        }
    }

    /// The fields, every string redacted, and the redactor for the status
    /// message.
    pub(super) fn finish(self) -> (Map<String, Value>, Redactor) {
        let mut value = Value::Object(self.map);
        self.redactor.redact_value(&mut value);
        let map = match value {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        (map, self.redactor)
    }
}

/// Decodes `bytes` as an `M` and lets `fill` take its fields.
pub(super) fn with<M: Message + Default>(
    bytes: &[u8],
    f: &mut Fields,
    fill: impl FnOnce(M, &mut Fields),
) -> Result<(), prost::DecodeError> {
    fill(M::decode(bytes)?, f);
    Ok(())
}

/// The name of a google.rpc.Code number (`InvalidArgument`).
pub(super) fn code_name(code: tonic::Code) -> String {
    format!("{code:?}")
}

pub(super) fn selectors(s: &[admin::Selector]) -> Value {
    s.iter()
        .map(|s| format!("{}:{}", s.r#type, s.value))
        .collect()
}

pub(super) fn entry(e: &admin::Entry) -> Value {
    let mut m = Map::new();
    let mut text = |k: &str, v: &str| {
        if !v.is_empty() {
            m.insert(k.into(), v.into());
        }
    };
    text("id", &e.id);
    text("spiffe_id", &e.spiffe_id);
    text("parent_id", &e.parent_id);
    m.insert("selectors".into(), selectors(&e.selectors));
    let lists = [
        ("federates_with", &e.federates_with),
        ("dns_names", &e.dns_names),
    ];
    for (k, v) in lists {
        if !v.is_empty() {
            m.insert(k.into(), json!(v));
        }
    }
    for (k, on) in [("admin", e.admin), ("downstream", e.downstream)] {
        if on {
            m.insert(k.into(), true.into());
        }
    }
    let numbers = [
        ("x509_svid_ttl", i64::from(e.x509_svid_ttl)),
        ("jwt_svid_ttl", i64::from(e.jwt_svid_ttl)),
        ("expires_at", e.expires_at),
    ];
    for (k, n) in numbers {
        if n != 0 {
            m.insert(k.into(), n.into());
        }
    }
    Value::Object(m)
}

/// One item's outcome in a batch response.
pub(super) fn result(key: &str, id: &str, status: Option<&admin::Status>) -> Value {
    let mut m = Map::new();
    m.insert(key.into(), id.into());
    let code = status.map_or(0, |s| s.code);
    m.insert("status".into(), code_name(tonic::Code::from(code)).into());
    if let Some(s) = status.filter(|s| !s.message.is_empty()) {
        m.insert("message".into(), s.message.clone().into());
    }
    Value::Object(m)
}

pub(super) fn entries(entries: &[admin::Entry], f: &mut Fields) {
    f.put("entries", entries.iter().map(entry).collect::<Value>());
}

pub(super) fn entry_results(results: &[admin::EntryResult], f: &mut Fields) {
    let v = results.iter().map(|r| {
        let id = r.entry.as_ref().map_or("", |e| e.id.as_str());
        result("id", id, r.status.as_ref())
    });
    f.put("results", v.collect::<Value>());
}

pub(super) fn relationship(r: &admin::FederationRelationship) -> Value {
    use admin::federation_relationship::BundleEndpointProfile as P;
    let mut m = Map::new();
    m.insert("trust_domain".into(), r.trust_domain.clone().into());
    m.insert(
        "bundle_endpoint_url".into(),
        r.bundle_endpoint_url.clone().into(),
    );
    match &r.bundle_endpoint_profile {
        Some(P::HttpsWeb(_)) => {
            m.insert("profile".into(), "https_web".into());
        }
        Some(P::HttpsSpiffe(p)) => {
            m.insert("profile".into(), "https_spiffe".into());
            m.insert(
                "endpoint_spiffe_id".into(),
                p.endpoint_spiffe_id.clone().into(),
            );
        }
        None => {}
    }
    if !r.trust_domain_bundle.is_empty() {
        m.insert("trust_domain_bundle_given".into(), true.into());
    }
    Value::Object(m)
}

pub(super) fn relationship_results(
    results: &[admin::FederationRelationshipResult],
    f: &mut Fields,
) {
    let v = results.iter().map(|r| {
        let td = r
            .federation_relationship
            .as_ref()
            .map_or("", |r| r.trust_domain.as_str());
        result("trust_domain", td, r.status.as_ref())
    });
    f.put("results", v.collect::<Value>());
}

pub(super) fn trust_domain_results<'a>(
    results: impl Iterator<Item = (&'a str, Option<&'a admin::Status>)>,
    f: &mut Fields,
) {
    let v = results.map(|(td, s)| result("trust_domain", td, s));
    f.put("results", v.collect::<Value>());
}
