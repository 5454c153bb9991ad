//! `herald oidc`: an OpenID Connect discovery provider for the trust
//! domain's JWT-SVIDs, so that a cloud provider or any OIDC-aware service
//! can verify them. It serves `/.well-known/openid-configuration` and
//! `/keys` (the JWKS of the JWT authorities only).
//!
//! It is a separate command, not part of the server, as SPIRE's
//! oidc-discovery-provider is: it faces the internet (or a cloud's
//! fetcher) while the server does not need to, and it follows the bundle
//! through the agent's `FetchJWTBundles` stream (push), so a prepared key
//! is published before it signs and an old one stays until it leaves the
//! bundle: rotations need nothing from the operator.

use std::sync::Arc;

use hyper::body::Bytes;
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::backoff::{pause_after, Backoff};
use crate::proto::workload::{self, spiffe_workload_api_client::SpiffeWorkloadApiClient};
use crate::spiffe::TrustDomain;
use crate::uds::{connect_unix, workload_request, StreamError};

pub mod serve;

/// Why following the agent's JWT bundles failed for now.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The stream could not be opened or broke.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The update had no bundle for the trust domain served.
    #[error("the agent sent no JWT bundle for {0}")]
    NoBundle(String),
    /// The bundle is not a JWKS document.
    #[error("the JWT bundle is not a JWKS document")]
    BadBundle(#[source] serde_json::Error),
}

/// The discovery document for `issuer` (an https URL without a trailing
/// slash), in the shape SPIRE's provider publishes.
pub fn discovery_document(issuer: &str) -> Bytes {
    let doc = serde_json::json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/keys"),
        "authorization_endpoint": "",
        "response_types_supported": ["id_token"],
        "subject_types_supported": [],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "ES384", "PS256"],
    });
    Bytes::from(doc.to_string())
}

/// The JWKS served at `/keys`: the bundle's JWT keys with `use` set to
/// `sig`. A SPIFFE bundle says `jwt-svid` there, which OIDC clients do not
/// know, and some (PyJWT's JWKS client among them) skip such keys.
pub fn oidc_jwks(bundle_jwks: &[u8]) -> Result<Bytes, OidcError> {
    let mut doc: serde_json::Value =
        serde_json::from_slice(bundle_jwks).map_err(OidcError::BadBundle)?;
    if let Some(keys) = doc.get_mut("keys").and_then(|k| k.as_array_mut()) {
        for key in keys.iter_mut().filter_map(|k| k.as_object_mut()) {
            key.insert("use".into(), "sig".into());
        }
    }
    Ok(Bytes::from(doc.to_string()))
}

/// Follows the agent's JWT bundles for `td` forever, publishing each new
/// JWKS on `jwks` (which keeps the last one while the agent is away).
pub async fn follow_bundles(
    socket: std::path::PathBuf,
    td: TrustDomain,
    jwks: Arc<watch::Sender<Option<Bytes>>>,
) {
    let mut backoff = Backoff::new();
    loop {
        let outcome = session(&socket, &td, &jwks, &mut backoff)
            .instrument(tracing::info_span!("jwt_bundles", trust_domain = %td.name()))
            .await;
        pause_after(&mut backoff, outcome, "JWT bundles: serving the last keys").await;
    }
}

async fn session(
    socket: &std::path::Path,
    td: &TrustDomain,
    jwks: &watch::Sender<Option<Bytes>>,
    backoff: &mut Backoff,
) -> Result<(), OidcError> {
    let channel = connect_unix(socket).await.map_err(StreamError::Connect)?;
    let mut stream = SpiffeWorkloadApiClient::new(channel)
        .fetch_jwt_bundles(workload_request(workload::JwtBundlesRequest {}))
        .await
        .map_err(StreamError::Status)?
        .into_inner();
    let key = td.id_string();
    while let Some(msg) = stream.message().await.map_err(StreamError::Status)? {
        let bundle = msg
            .bundles
            .get(&key)
            .ok_or_else(|| OidcError::NoBundle(td.name().to_string()))?;
        let doc = oidc_jwks(bundle)?;
        backoff.reset();
        jwks.send_if_modified(|current| {
            if current.as_ref() == Some(&doc) {
                return false;
            }
            tracing::info!("JWKS updated");
            *current = Some(doc);
            true
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_marked_for_signatures() {
        let jwks = oidc_jwks(br#"{"keys":[{"kty":"EC","kid":"a","use":"jwt-svid"}]}"#).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&jwks).unwrap();
        assert_eq!(v["keys"][0]["use"], "sig");
        assert_eq!(v["keys"][0]["kid"], "a");
        let d: serde_json::Value =
            serde_json::from_slice(&discovery_document("https://oidc.example.org")).unwrap();
        assert_eq!(d["jwks_uri"], "https://oidc.example.org/keys");
    }
}
