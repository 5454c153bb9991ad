//! Translation between store records and admin API messages, and from
//! store errors to gRPC statuses, for every admin service (federation's
//! included).

use crate::proto::admin;
use crate::proto::admin::federation_relationship::BundleEndpointProfile as ProtoProfile;
use crate::registration::{RegistrationEntry, Selector};
use crate::server::federation::RefreshStatus;
use crate::spiffe::Bundle;
use crate::store::{AttestedAgent, BundleEndpointProfile, FederationRelationship, StoreError};

/// A store record as the API shows it.
pub(crate) fn entry_to_proto(e: &RegistrationEntry) -> admin::Entry {
    admin::Entry {
        id: e.id.clone(),
        spiffe_id: e.spiffe_id.to_string(),
        parent_id: e.parent_id.to_string(),
        selectors: e.selectors.iter().map(selector_to_proto).collect(),
        // Validated to at most one year on the way in, so these fit; a
        // record written otherwise shows as the largest value, not a panic.
        x509_svid_ttl: i32::try_from(e.x509_svid_ttl).unwrap_or(i32::MAX),
        jwt_svid_ttl: i32::try_from(e.jwt_svid_ttl).unwrap_or(i32::MAX),
        federates_with: e.federates_with.iter().map(|t| t.to_string()).collect(),
        admin: e.admin,
        downstream: e.downstream,
        expires_at: e.expires_at.unwrap_or(0),
        dns_names: e.dns_names.clone(),
        revision_number: i64::try_from(e.revision).unwrap_or(i64::MAX),
        hint: e.hint.clone(),
        created_at: e.created_at,
    }
}

/// An attested agent as the API shows it.
pub(crate) fn agent_to_proto(a: &AttestedAgent) -> admin::Agent {
    admin::Agent {
        id: a.spiffe_id.to_string(),
        attestation_type: a.attestation_type.clone(),
        x509svid_serial_number: a.serial.clone(),
        x509svid_expires_at: a.expires_at,
        selectors: a.selectors.iter().map(selector_to_proto).collect(),
        banned: a.banned,
        // Join-token agents cannot re-attest (a token is single-use);
        // x509pop and k8s_psat agents can, with a fresh proof or token.
        can_reattest: matches!(
            a.attestation_type.as_str(),
            crate::x509pop::ATTESTATION_TYPE | crate::k8s_psat::ATTESTATION_TYPE
        ),
        // What only the running server knows (AgentsApi fills it in).
        connected: false,
        acked_bundle_sequence: 0,
        last_seen_at: a.updated_at,
    }
}

fn selector_to_proto(s: &Selector) -> admin::Selector {
    admin::Selector {
        r#type: s.kind().to_string(),
        value: s.value().to_string(),
    }
}

/// The per-item form of a status, for batch results.
pub(crate) fn item_status(status: &tonic::Status) -> admin::Status {
    admin::Status {
        code: status.code() as i32,
        message: status.message().to_string(),
    }
}

/// The per-item status of a success.
pub(crate) fn ok_status() -> admin::Status {
    admin::Status {
        code: tonic::Code::Ok as i32,
        message: String::new(),
    }
}

/// Maps a store error to the status a caller can act on: what they asked
/// for is missing, taken or malformed; anything else is our failure.
pub(crate) fn store_status(e: StoreError) -> tonic::Status {
    match &e {
        StoreError::NotFound { .. } => tonic::Status::not_found(e.to_string()),
        StoreError::AlreadyExists { .. } => tonic::Status::already_exists(e.to_string()),
        StoreError::Invalid { .. } | StoreError::Registration(_) => {
            tonic::Status::invalid_argument(e.to_string())
        }
        StoreError::TokenExpired { .. } | StoreError::AgentBanned { .. } => {
            tonic::Status::failed_precondition(e.to_string())
        }
        StoreError::Conflict { .. } => tonic::Status::aborted(e.to_string()),
        _ => {
            tracing::error!(error = %e, "datastore failure in the admin API");
            tonic::Status::internal(format!("datastore failure: {e}"))
        }
    }
}

/// Like [`store_status`], with the caller's own status for `NotFound`
/// (which names what the caller asked for).
pub(crate) fn store_status_or(
    e: StoreError,
    not_found: impl FnOnce() -> tonic::Status,
) -> tonic::Status {
    match e {
        StoreError::NotFound { .. } => not_found(),
        e => store_status(e),
    }
}

/// A bundle as the API shows it. Encoding fails only on a stored bundle
/// that is somehow broken; that is our failure, said as such.
pub(crate) fn bundle_to_proto(b: &Bundle) -> Result<admin::Bundle, tonic::Status> {
    let spiffe_json = b.to_spiffe_json().map_err(|e| {
        tracing::error!(trust_domain = %b.trust_domain, error = %e, "cannot encode a stored bundle");
        tonic::Status::internal(format!("cannot encode the bundle of {}: {e}", b.trust_domain))
    })?;
    Ok(admin::Bundle {
        trust_domain: b.trust_domain.to_string(),
        spiffe_json,
        sequence_number: b.sequence,
    })
}

/// A federation relationship as the API shows it, with how its refreshes
/// have gone and the sequence of its stored bundle (0: none). The bundle
/// itself is not echoed: it has its own service.
pub(crate) fn relationship_to_proto(
    rel: &FederationRelationship,
    status: RefreshStatus,
    bundle_sequence: u64,
) -> admin::FederationRelationship {
    admin::FederationRelationship {
        trust_domain: rel.trust_domain.to_string(),
        bundle_endpoint_url: rel.bundle_endpoint_url.clone(),
        bundle_endpoint_profile: Some(match &rel.profile {
            BundleEndpointProfile::HttpsWeb => ProtoProfile::HttpsWeb(admin::HttpsWebProfile {}),
            BundleEndpointProfile::HttpsSpiffe { endpoint_spiffe_id } => {
                ProtoProfile::HttpsSpiffe(admin::HttpsspiffeProfile {
                    endpoint_spiffe_id: endpoint_spiffe_id.to_string(),
                })
            }
        }),
        trust_domain_bundle: String::new(),
        refresh_status: Some(admin::FederationRefreshStatus {
            last_attempt_at: status.last_attempt_at.unwrap_or(0),
            last_success_at: status.last_success_at.unwrap_or(0),
            last_error: status.last_error.unwrap_or_default(),
            consecutive_failures: status.consecutive_failures,
            next_refresh_at: status.next_refresh_at.unwrap_or(0),
            bundle_sequence,
        }),
    }
}
