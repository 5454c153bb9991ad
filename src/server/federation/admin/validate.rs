//! What a relationship from a request must be: a foreign trust domain, a
//! bundle endpoint URL by the profile rules, a profile, and for
//! `https_spiffe` a way to authenticate the endpoint.

use tonic::Status;

use super::parse_trust_domain;
use crate::proto::admin;
use crate::proto::admin::federation_relationship::BundleEndpointProfile as ProtoProfile;
use crate::server::admin_api::convert::store_status;
use crate::server::federation::{bundle_trust_domain_check, EndpointUrl};
use crate::spiffe::{Bundle, SpiffeId, TrustDomain};
use crate::store::{BundleEndpointProfile, DataStore, FederationRelationship};

/// A relationship from a request, checked, with the bundle it carried.
pub(super) struct Validated {
    pub(super) rel: FederationRelationship,
    pub(super) bundle: Option<Bundle>,
}

/// Checks every field of a relationship from a request.
pub(super) fn validate(
    own: &TrustDomain,
    p: &admin::FederationRelationship,
) -> Result<Validated, Status> {
    let td = parse_trust_domain("trust_domain", &p.trust_domain)?;
    if &td == own {
        return Err(Status::invalid_argument(format!(
            "trust_domain: {td} is this server's own trust domain; federate with other trust domains"
        )));
    }
    EndpointUrl::parse(&p.bundle_endpoint_url)
        .map_err(|e| Status::invalid_argument(format!("bundle_endpoint_url: {e}")))?;
    let profile = match &p.bundle_endpoint_profile {
        None => {
            return Err(Status::invalid_argument(
                "bundle_endpoint_profile: required: https_web or https_spiffe",
            ))
        }
        Some(ProtoProfile::HttpsWeb(_)) => BundleEndpointProfile::HttpsWeb,
        Some(ProtoProfile::HttpsSpiffe(s)) => {
            if s.endpoint_spiffe_id.is_empty() {
                return Err(Status::invalid_argument(
                    "https_spiffe.endpoint_spiffe_id: required for the https_spiffe profile",
                ));
            }
            let id = SpiffeId::parse(&s.endpoint_spiffe_id).map_err(|e| {
                Status::invalid_argument(format!(
                    "https_spiffe.endpoint_spiffe_id: {:?}: {e}",
                    s.endpoint_spiffe_id
                ))
            })?;
            if id.is_trust_domain_id() {
                return Err(Status::invalid_argument(format!(
                    "https_spiffe.endpoint_spiffe_id: {id} has no path; name the endpoint's workload (e.g. {id}/herald/server)"
                )));
            }
            BundleEndpointProfile::HttpsSpiffe {
                endpoint_spiffe_id: id,
            }
        }
    };
    let bundle = match p.trust_domain_bundle.trim() {
        "" => None,
        json => {
            let bundle = Bundle::from_spiffe_json(td.clone(), json.as_bytes()).map_err(|e| {
                Status::invalid_argument(format!("trust_domain_bundle: not a SPIFFE bundle: {e}"))
            })?;
            bundle_trust_domain_check(&bundle)
                .map_err(|e| Status::invalid_argument(format!("trust_domain_bundle: {e}")))?;
            Some(bundle)
        }
    };
    Ok(Validated {
        rel: FederationRelationship {
            trust_domain: td,
            bundle_endpoint_url: p.bundle_endpoint_url.clone(),
            profile,
        },
        bundle,
    })
}

/// `https_spiffe` needs roots to authenticate the endpoint: for a
/// self-serving endpoint, a bundle given now or already stored; otherwise
/// the stored bundle of the endpoint ID's trust domain (or our own).
pub(super) fn check_endpoint_trust(
    s: &dyn DataStore,
    own: &TrustDomain,
    v: &Validated,
) -> Result<(), Status> {
    let BundleEndpointProfile::HttpsSpiffe { endpoint_spiffe_id } = &v.rel.profile else {
        return Ok(());
    };
    let etd = endpoint_spiffe_id.trust_domain();
    if etd == own {
        return Ok(());
    }
    let stored = s.get_bundle(etd).map_err(store_status)?.is_some();
    if etd == &v.rel.trust_domain {
        if v.bundle.is_none() && !stored {
            return Err(Status::invalid_argument(format!(
                "trust_domain_bundle: required: no bundle of {etd} is stored, and the https_spiffe endpoint can only be authenticated with one the first time"
            )));
        }
    } else if !stored {
        return Err(Status::failed_precondition(format!(
            "https_spiffe.endpoint_spiffe_id: no bundle of {etd} is stored to authenticate the endpoint; federate with {etd} or set its bundle first"
        )));
    }
    Ok(())
}
