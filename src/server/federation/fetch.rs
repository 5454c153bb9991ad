//! One fetch of a foreign trust domain's bundle from its bundle endpoint
//! (SPIFFE.md §5.4), with either profile (see [`super::endpoint_auth`]).
//! For a self-serving `https_spiffe` endpoint, the roots are the bundle
//! being fetched: the stored one (the operator's bootstrap bundle the first
//! time, then the latest fetched), so the peer can rotate its roots without
//! breaking the relationship.
//!
//! Redirects are followed (at most [`MAX_REDIRECTS`]) only to URLs valid
//! for the profile, with the same checks. The body must be a SPIFFE bundle
//! for the relationship's trust domain with at least one authority. Nothing
//! here writes anything: the caller decides what to keep.

use std::time::Duration;

use tracing::Instrument as _;

use super::endpoint_auth::{client_config, connect, UntrustedCertificate};
use super::web_roots::WebRoots;
use super::{bundle_trust_domain_check, WrongTrustDomain};
use crate::http_get::{self, GetRequest, HttpError};
use crate::server::state::ServerState;
use crate::spiffe::{Bundle, BundleError, SpiffeId, TrustDomain};
use crate::spiffe::{EndpointUrl, UrlError};
use crate::store::{BundleEndpointProfile, FederationRelationship, StoreError};

/// Largest bundle response read. SPIFFE bundles are a few KiB; this
/// leaves room for large key sets.
pub(super) const MAX_BUNDLE_RESPONSE: usize = 4 * 1024 * 1024;

/// Redirect hops followed before giving up.
pub const MAX_REDIRECTS: usize = 3;

/// What one fetch may cost: `[limits] federation_fetch_timeout` and
/// `federation_max_bundle_keys`. The response size is bounded by
/// [`MAX_BUNDLE_RESPONSE`] whatever these say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// The whole exchange: connection, TLS, redirects, every byte of the
    /// body. A peer that trickles its answer runs into this, not into a
    /// per-read timeout it could keep resetting.
    pub timeout: Duration,
    /// Elements of the bundle's `keys`, skipped ones included.
    pub max_keys: usize,
}

impl FetchLimits {
    /// `timeout`, and the default key limit.
    pub fn with_timeout(timeout: Duration) -> FetchLimits {
        FetchLimits {
            timeout,
            max_keys: crate::config::limits::DEFAULT_FEDERATION_MAX_BUNDLE_KEYS,
        }
    }
}

/// Why one fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchFailure {
    /// The relationship's URL breaks the profile rules.
    #[error("bad URL: {0}")]
    BadUrl(#[from] UrlError),
    /// No TCP connection (DNS, refused, no route).
    #[error("unreachable: {0}")]
    Unreachable(#[source] std::io::Error),
    /// The whole exchange took too long.
    #[error("no complete answer within {}s", .0.as_secs_f32())]
    Timeout(Duration),
    /// The client TLS configuration could not be built.
    #[error("TLS setup failed: {0}")]
    TlsSetup(#[source] rustls::Error),
    /// The Web PKI verifier could not be built from the roots.
    #[error("TLS setup failed: {0}")]
    WebVerifier(#[source] rustls::client::VerifierBuilderError),
    /// The URL's host cannot be named in TLS.
    #[error("TLS handshake failed: {host:?} is not a TLS server name: {source}")]
    ServerName {
        /// The host.
        host: String,
        /// Why.
        source: rustls::pki_types::InvalidDnsNameError,
    },
    /// The TLS handshake failed for another reason than the certificate.
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] std::io::Error),
    /// The endpoint's certificate does not validate for the profile.
    #[error("the endpoint's certificate is not trusted: {0}")]
    UntrustedCertificate(#[source] UntrustedCertificate),
    /// `https_spiffe`: the SVID names another identity.
    #[error("the endpoint presented {found}, but the relationship expects {expected}")]
    WrongSpiffeId {
        /// The SPIFFE ID in the endpoint's SVID.
        found: SpiffeId,
        /// The configured endpoint SPIFFE ID.
        expected: SpiffeId,
    },
    /// `https_spiffe`: nothing to authenticate the endpoint with.
    #[error(
        "no bundle of {trust_domain} is stored to authenticate the https_spiffe endpoint; {hint}"
    )]
    NoEndpointBundle {
        /// The endpoint ID's trust domain.
        trust_domain: TrustDomain,
        /// What the operator can do.
        hint: &'static str,
    },
    /// `https_web`: there are no Web PKI roots at all.
    #[error(
        "no Web PKI roots are configured (no system roots found and no federation web_roots_path)"
    )]
    NoWebRoots,
    /// Something other than 200 (after redirects).
    #[error("the endpoint answered HTTP {0}")]
    HttpStatus(u16),
    /// The answer is not usable HTTP/1.x.
    #[error("{0}")]
    Http(#[source] HttpError),
    /// A redirect that cannot be followed.
    #[error("redirect refused: {0}")]
    Redirect(#[source] RedirectError),
    /// The body is not a SPIFFE bundle.
    #[error("the endpoint served a malformed SPIFFE bundle: {0}")]
    MalformedBundle(#[source] BundleError),
    /// The bundle holds more keys than this server accepts from a peer.
    #[error("the endpoint served a bundle over this server's limit (limits.federation_max_bundle_keys): {0}")]
    OverLimit(#[source] BundleError),
    /// The bundle's authorities belong to another trust domain.
    #[error("the endpoint served a bundle of another trust domain: {0}")]
    WrongTrustDomain(#[source] WrongTrustDomain),
    /// A bundle with no key at all would make every SVID of the trust
    /// domain untrusted; it is refused rather than replacing a good one.
    #[error("the endpoint served a bundle with no authorities; it is not used")]
    EmptyBundle,
    /// Looking up the endpoint's trust bundle failed.
    #[error("datastore failure: {0}")]
    Store(#[source] StoreError),
}

/// Why a redirect was not followed.
#[derive(Debug, thiserror::Error)]
pub enum RedirectError {
    /// The chain of redirects is too long.
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooMany,
    /// The `Location` breaks the profile rules.
    #[error("{0}")]
    BadLocation(#[source] UrlError),
}

/// A failed fetch: which relationship, which URL, and why.
#[derive(Debug, thiserror::Error)]
#[error("federation with {trust_domain}: bundle endpoint {url}: {reason}")]
pub struct FetchError {
    /// The foreign trust domain.
    pub trust_domain: TrustDomain,
    /// The URL fetched (the last one, after redirects).
    pub url: String,
    /// What went wrong.
    #[source]
    pub reason: FetchFailure,
}

/// Fetches `rel`'s bundle once, looking up the `https_spiffe` roots in
/// `state`: this server's own bundle if the endpoint ID is in our trust
/// domain, else the stored bundle of the endpoint ID's trust domain.
pub async fn fetch_for_relationship(
    state: &ServerState,
    rel: &FederationRelationship,
    web_roots: &WebRoots,
    limits: FetchLimits,
) -> Result<Bundle, FetchError> {
    let roots = match endpoint_roots(state, rel).await {
        Ok(roots) => roots,
        Err(reason) => {
            return Err(FetchError {
                trust_domain: rel.trust_domain.clone(),
                url: rel.bundle_endpoint_url.clone(),
                reason,
            })
        }
    };
    fetch_bundle(rel, &roots, web_roots, limits).await
}

async fn endpoint_roots(
    state: &ServerState,
    rel: &FederationRelationship,
) -> Result<Vec<Vec<u8>>, FetchFailure> {
    let BundleEndpointProfile::HttpsSpiffe { endpoint_spiffe_id } = &rel.profile else {
        return Ok(Vec::new());
    };
    let td = endpoint_spiffe_id.trust_domain().clone();
    if td == state.trust_domain {
        return Ok(state.authorities().bundle().x509_authorities.clone());
    }
    let self_serving = td == rel.trust_domain;
    let lookup = td.clone();
    match state.with_store(move |s| s.get_bundle(&lookup)).await {
        Ok(Some(bundle)) if !bundle.x509_authorities.is_empty() => Ok(bundle.x509_authorities),
        Ok(_) => Err(FetchFailure::NoEndpointBundle {
            trust_domain: td,
            hint: if self_serving {
                "set it with `herald bundle set`, or give the relationship a trust_domain_bundle"
            } else {
                "federate with that trust domain too, or set its bundle with `herald bundle set`"
            },
        }),
        Err(e) => Err(FetchFailure::Store(e)),
    }
}

/// Fetches `rel`'s bundle once. `spiffe_roots` are the DER roots of the
/// endpoint ID's trust domain (`https_spiffe`); `web_roots` serve
/// `https_web`. The whole exchange, redirects included, is bounded by
/// `limits.timeout`; the bundle by `limits.max_keys`.
pub async fn fetch_bundle(
    rel: &FederationRelationship,
    spiffe_roots: &[Vec<u8>],
    web_roots: &WebRoots,
    limits: FetchLimits,
) -> Result<Bundle, FetchError> {
    let timeout = limits.timeout;
    let span = tracing::info_span!(
        "federation.fetch",
        trust_domain = %rel.trust_domain,
        url = %rel.bundle_endpoint_url
    );
    let mut last_url = rel.bundle_endpoint_url.clone();
    let result = match tokio::time::timeout(
        timeout,
        fetch_inner(rel, spiffe_roots, web_roots, limits.max_keys, &mut last_url)
            .instrument(span.clone()),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(FetchFailure::Timeout(timeout)),
    };
    let _entered = span.enter();
    match result {
        Ok(bundle) => {
            tracing::debug!(
                sequence = bundle.sequence,
                x509_authorities = bundle.x509_authorities.len(),
                jwt_authorities = bundle.jwt_authorities.len(),
                "bundle fetched"
            );
            Ok(bundle)
        }
        Err(reason) => Err(FetchError {
            trust_domain: rel.trust_domain.clone(),
            url: last_url,
            reason,
        }),
    }
}

async fn fetch_inner(
    rel: &FederationRelationship,
    spiffe_roots: &[Vec<u8>],
    web_roots: &WebRoots,
    max_keys: usize,
    last_url: &mut String,
) -> Result<Bundle, FetchFailure> {
    let mut url = EndpointUrl::parse(&rel.bundle_endpoint_url)?;
    let config = client_config(&rel.profile, spiffe_roots, web_roots)?;
    let mut hops = 0;
    let body = loop {
        *last_url = url.to_string();
        let stream = connect(&config, &url).await?;
        let host = url.host_header();
        let request = GetRequest {
            target: url.target(),
            host: &host,
            bearer: None,
            max_body: MAX_BUNDLE_RESPONSE,
        };
        let response = http_get::get(stream, request)
            .await
            .map_err(FetchFailure::Http)?;
        match (response.status, response.location) {
            (200, _) => break response.body,
            (301 | 302 | 303 | 307 | 308, Some(location)) => {
                hops += 1;
                if hops > MAX_REDIRECTS {
                    return Err(FetchFailure::Redirect(RedirectError::TooMany));
                }
                url = url
                    .join(&location)
                    .map_err(|e| FetchFailure::Redirect(RedirectError::BadLocation(e)))?;
                tracing::debug!(to = %url, "following a redirect");
            }
            (status, _) => return Err(FetchFailure::HttpStatus(status)),
        }
    };
    let bundle = Bundle::from_spiffe_json_limited(rel.trust_domain.clone(), &body, max_keys)
        .map_err(|e| match e {
            BundleError::TooManyKeys { .. } | BundleError::TooManyValues { .. } => {
                FetchFailure::OverLimit(e)
            }
            e => FetchFailure::MalformedBundle(e),
        })?;
    drop(body);
    bundle_trust_domain_check(&bundle).map_err(FetchFailure::WrongTrustDomain)?;
    if bundle.x509_authorities.is_empty() && bundle.jwt_authorities.is_empty() {
        return Err(FetchFailure::EmptyBundle);
    }
    Ok(bundle)
}
