//! Which fields each audited method records: decoded from the request
//! message (and, where the server picks them, from the response: a created
//! entry's id, a generated join token, the agent ID an attestation
//! granted), and whether the method changes state.
//!
//! Never recorded: key material, CSRs, certificates, bundle contents, JWTs,
//! or a join token in full (see [`super::redact`]).

use serde_json::Value;

use super::fields::{
    entries, entry_results, relationship, relationship_results, result, selectors,
    trust_domain_results, with, Fields,
};
use crate::proto::{admin, node};

/// A decoder of one message into fields.
pub(super) type Decode = fn(&[u8], &mut Fields) -> Result<(), prost::DecodeError>;

/// What the audit log knows of one method.
pub(super) struct MethodSpec {
    /// It changes state: its record is synced to disk before the reply.
    pub(super) mutating: bool,
    /// Fields of the request message.
    pub(super) request: Decode,
    /// Fields of the response message.
    pub(super) response: Option<Decode>,
}

/// The spec of the method at `path` (`/package.Service/Method`). A method
/// this table does not know is recorded without fields, and synced unless
/// its name says it only reads.
pub(super) fn spec(path: &str) -> MethodSpec {
    let (service, method) = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or(("", ""));
    let read_only = ["Get", "List", "Count", "Show"]
        .iter()
        .any(|p| method.starts_with(p));
    let (request, response) = decoders(service, method);
    MethodSpec {
        mutating: !read_only,
        request,
        response,
    }
}

/// Request and response decoders of one method.
fn decoders(service: &str, method: &str) -> (Decode, Option<Decode>) {
    match (service, method) {
        ("herald.node.v1.Node", "Attest") => (
            |b, f| {
                with(b, f, |m: node::AttestRequest, f| {
                    f.token("join_token", &m.join_token)
                })
            },
            Some(|b, f| {
                with(b, f, |m: node::AttestResponse, f| {
                    f.text("agent_id", &m.spiffe_id)
                })
            }),
        ),
        // Create and update share their wire shapes (`repeated Entry
        // entries = 1`, `repeated EntryResult results = 1`).
        ("herald.admin.v1.Entries", "BatchCreateEntry" | "BatchUpdateEntry") => (
            |b, f| {
                with(b, f, |m: admin::BatchCreateEntryRequest, f| {
                    entries(&m.entries, f)
                })
            },
            Some(|b, f| {
                with(b, f, |m: admin::BatchCreateEntryResponse, f| {
                    entry_results(&m.results, f)
                })
            }),
        ),
        ("herald.admin.v1.Entries", "BatchDeleteEntry") => (
            |b, f| {
                with(b, f, |m: admin::BatchDeleteEntryRequest, f| {
                    f.put("ids", m.ids)
                })
            },
            Some(|b, f| {
                with(b, f, |m: admin::BatchDeleteEntryResponse, f| {
                    let v = m
                        .results
                        .iter()
                        .map(|r| result("id", &r.id, r.status.as_ref()));
                    f.put("results", v.collect::<Value>());
                })
            }),
        ),
        ("herald.admin.v1.Entries", "GetEntry") => (
            |b, f| with(b, f, |m: admin::GetEntryRequest, f| f.text("id", &m.id)),
            None,
        ),
        ("herald.admin.v1.Entries", "ListEntries") => (
            |b, f| {
                with(b, f, |m: admin::ListEntriesRequest, f| {
                    let Some(filter) = m.filter else { return };
                    f.text("by_spiffe_id", &filter.by_spiffe_id);
                    f.text("by_parent_id", &filter.by_parent_id);
                    if let Some(s) = filter.by_selectors {
                        f.put("by_selectors", selectors(&s.selectors));
                    }
                })
            },
            None,
        ),
        ("herald.admin.v1.Agents", "CreateJoinToken") => (
            |b, f| {
                with(b, f, |m: admin::CreateJoinTokenRequest, f| {
                    f.token("token", &m.token);
                    f.text("agent_id", &m.agent_id);
                    f.put("ttl", m.ttl);
                })
            },
            Some(|b, f| {
                with(b, f, |m: admin::JoinToken, f| {
                    f.token("token", &m.value);
                    f.text("agent_id", &m.agent_id);
                    f.put("expires_at", m.expires_at);
                })
            }),
        ),
        ("herald.admin.v1.Agents", "GetAgent" | "DeleteAgent" | "BanAgent") => (
            |b, f| {
                with(b, f, |m: admin::AgentIdRequest, f| {
                    f.text("agent_id", &m.id)
                })
            },
            None,
        ),
        ("herald.admin.v1.Svids", "MintX509SVID") => (
            |b, f| with(b, f, |m: admin::MintX509svidRequest, f| f.put("ttl", m.ttl)),
            Some(|b, f| {
                with(b, f, |m: admin::MintX509svidResponse, f| {
                    if let Some(svid) = m.svid {
                        f.text("spiffe_id", &svid.id);
                        f.put("expires_at", svid.expires_at);
                    }
                })
            }),
        ),
        ("herald.admin.v1.Svids", "MintJWTSVID") => (
            |b, f| {
                with(b, f, |m: admin::MintJwtsvidRequest, f| {
                    f.text("spiffe_id", &m.id);
                    f.put("audience", m.audience);
                    f.put("ttl", m.ttl);
                })
            },
            None,
        ),
        ("herald.admin.v1.LocalAuthority", "PrepareAuthority" | "ActivateAuthority") => (
            |b, f| {
                with(b, f, |m: admin::AuthorityKindRequest, f| {
                    f.text("kind", &m.kind)
                })
            },
            Some(|b, f| {
                with(b, f, |m: admin::AuthorityInfo, f| {
                    f.text("authority_id", &m.id)
                })
            }),
        ),
        ("herald.admin.v1.LocalAuthority", "TaintAuthority" | "RevokeAuthority") => (
            |b, f| {
                with(b, f, |m: admin::AuthorityIdRequest, f| {
                    f.text("kind", &m.kind);
                    f.text("authority_id", &m.id);
                })
            },
            None,
        ),
        // Create and update share their wire shapes, as above.
        (
            "herald.admin.v1.Federation",
            "BatchCreateFederationRelationship" | "BatchUpdateFederationRelationship",
        ) => (
            |b, f| {
                with(
                    b,
                    f,
                    |m: admin::BatchCreateFederationRelationshipRequest, f| {
                        let v = m.federation_relationships.iter().map(relationship);
                        f.put("relationships", v.collect::<Value>());
                    },
                )
            },
            Some(|b, f| {
                with(
                    b,
                    f,
                    |m: admin::BatchCreateFederationRelationshipResponse, f| {
                        relationship_results(&m.results, f)
                    },
                )
            }),
        ),
        // Deleting relationships or federated bundles: the same wire shapes
        // (`repeated string trust_domains = 1`; results of status = 1,
        // trust_domain = 2).
        ("herald.admin.v1.Federation", "BatchDeleteFederationRelationship")
        | ("herald.admin.v1.FederatedBundles", "BatchDeleteFederatedBundle") => (
            |b, f| {
                with(
                    b,
                    f,
                    |m: admin::BatchDeleteFederationRelationshipRequest, f| {
                        f.put("trust_domains", m.trust_domains)
                    },
                )
            },
            Some(|b, f| {
                with(
                    b,
                    f,
                    |m: admin::BatchDeleteFederationRelationshipResponse, f| {
                        let items = m
                            .results
                            .iter()
                            .map(|r| (r.trust_domain.as_str(), r.status.as_ref()));
                        trust_domain_results(items, f)
                    },
                )
            }),
        ),
        // One trust domain (`string trust_domain = 1`).
        ("herald.admin.v1.Federation", "GetFederationRelationship" | "RefreshBundle")
        | ("herald.admin.v1.FederatedBundles", "GetFederatedBundle") => (
            |b, f| {
                with(b, f, |m: admin::GetFederationRelationshipRequest, f| {
                    f.text("trust_domain", &m.trust_domain)
                })
            },
            None,
        ),
        ("herald.admin.v1.FederatedBundles", "BatchSetFederatedBundle") => (
            |b, f| {
                with(b, f, |m: admin::BatchSetFederatedBundleRequest, f| {
                    let tds: Vec<String> = m.bundle.into_iter().map(|b| b.trust_domain).collect();
                    f.put("trust_domains", tds);
                })
            },
            Some(|b, f| {
                with(b, f, |m: admin::BatchSetFederatedBundleResponse, f| {
                    let items = m.results.iter().map(|r| {
                        let td = r.bundle.as_ref().map_or("", |b| b.trust_domain.as_str());
                        (td, r.status.as_ref())
                    });
                    trust_domain_results(items, f)
                })
            }),
        ),
        // Counts, unfiltered lists, the bundle, the authorities: nothing
        // identifies them but their method.
        _ => (|_, _| Ok(()), None),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use serde_json::json;

    use super::*;

    /// The fields `path` records from `request` (and `response`).
    fn fields_of(path: &str, request: &impl prost::Message, response: Option<&[u8]>) -> Value {
        let spec = spec(path);
        let mut f = Fields::default();
        (spec.request)(&request.encode_to_vec(), &mut f).unwrap();
        if let (Some(decode), Some(bytes)) = (spec.response, response) {
            decode(bytes, &mut f).unwrap();
        }
        Value::Object(f.finish().0)
    }

    #[test]
    fn methods_sharing_a_wire_shape_decode_through_one_type() {
        let update = admin::BatchUpdateEntryRequest {
            entries: vec![admin::Entry {
                id: "e1".into(),
                spiffe_id: "spiffe://example.org/w".into(),
                ..Default::default()
            }],
        };
        let v = fields_of("/herald.admin.v1.Entries/BatchUpdateEntry", &update, None);
        assert_eq!(v["entries"][0]["id"], "e1");
        assert_eq!(v["entries"][0]["spiffe_id"], "spiffe://example.org/w");

        let delete = admin::BatchDeleteFederatedBundleRequest {
            trust_domains: vec!["other.org".into()],
        };
        let response = admin::BatchDeleteFederatedBundleResponse {
            results: vec![admin::DeleteFederatedBundleResult {
                status: Some(admin::Status {
                    code: 5,
                    message: "no bundle".into(),
                }),
                trust_domain: "other.org".into(),
            }],
        }
        .encode_to_vec();
        let path = "/herald.admin.v1.FederatedBundles/BatchDeleteFederatedBundle";
        let v = fields_of(path, &delete, Some(&response));
        assert_eq!(v["trust_domains"], json!(["other.org"]));
        assert_eq!(
            v["results"],
            json!([{"trust_domain": "other.org", "status": "NotFound", "message": "no bundle"}])
        );

        let get = admin::GetFederatedBundleRequest {
            trust_domain: "other.org".into(),
        };
        let path = "/herald.admin.v1.FederatedBundles/GetFederatedBundle";
        assert_eq!(fields_of(path, &get, None)["trust_domain"], "other.org");
        assert!(!spec(path).mutating);
    }

    #[test]
    fn a_minted_jwt_and_a_csr_are_never_fields() {
        let path = "/herald.admin.v1.Svids/MintJWTSVID";
        assert!(spec(path).response.is_none());
        let mint = admin::MintX509svidRequest {
            csr: b"-----BEGIN CERTIFICATE REQUEST-----".to_vec(),
            ttl: 60,
        };
        let v = fields_of("/herald.admin.v1.Svids/MintX509SVID", &mint, None);
        assert_eq!(v, json!({"ttl": 60}));
    }

    #[test]
    fn an_unknown_method_has_no_fields_and_is_synced() {
        let s = spec("/herald.admin.v1.Entries/PurgeEverything");
        assert!(s.mutating && s.response.is_none());
        let mut f = Fields::default();
        (s.request)(b"\x0a\x03abc", &mut f).unwrap();
        assert!(f.finish().0.is_empty());
    }
}
