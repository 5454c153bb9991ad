//! Translation between store records and admin API messages, and from
//! store errors to gRPC statuses.

use crate::proto::admin;
use crate::store::{AttestedAgent, RegistrationEntry, Selector, StoreError};

/// A store record as the API shows it.
pub(super) fn entry_to_proto(e: &RegistrationEntry) -> admin::Entry {
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
pub(super) fn agent_to_proto(a: &AttestedAgent) -> admin::Agent {
    admin::Agent {
        id: a.spiffe_id.to_string(),
        attestation_type: a.attestation_type.clone(),
        x509svid_serial_number: a.serial.clone(),
        x509svid_expires_at: a.expires_at,
        selectors: a.selectors.iter().map(selector_to_proto).collect(),
        banned: a.banned,
        // Join-token agents cannot re-attest: a token is single-use.
        can_reattest: false,
    }
}

fn selector_to_proto(s: &Selector) -> admin::Selector {
    admin::Selector {
        r#type: s.kind.clone(),
        value: s.value.clone(),
    }
}

/// The per-item form of a status, for batch results.
pub(super) fn item_status(status: &tonic::Status) -> admin::Status {
    admin::Status {
        code: status.code() as i32,
        message: status.message().to_string(),
    }
}

/// The per-item status of a success.
pub(super) fn ok_status() -> admin::Status {
    admin::Status {
        code: tonic::Code::Ok as i32,
        message: String::new(),
    }
}

/// Maps a store error to the status a caller can act on: what they asked
/// for is missing, taken or malformed; anything else is our failure.
pub(super) fn store_status(e: StoreError) -> tonic::Status {
    match &e {
        StoreError::NotFound { .. } => tonic::Status::not_found(e.to_string()),
        StoreError::AlreadyExists { .. } => tonic::Status::already_exists(e.to_string()),
        StoreError::Invalid { .. } => tonic::Status::invalid_argument(e.to_string()),
        StoreError::TokenExpired { .. } => tonic::Status::failed_precondition(e.to_string()),
        _ => {
            tracing::error!(error = %e, "datastore failure in the admin API");
            tonic::Status::internal(format!("datastore failure: {e}"))
        }
    }
}
