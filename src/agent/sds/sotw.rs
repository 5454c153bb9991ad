//! State-of-the-world xDS (StreamSecrets, FetchSecrets) for one stream:
//! what the client subscribed to, what was last sent, and the ACK/NACK
//! bookkeeping of the xDS protocol.
//!
//! - Every response carries a `version_info` (a hash of what it holds, so
//!   equal content has an equal version) and a fresh `nonce`.
//! - A request whose nonce is not the last one sent is stale and ignored
//!   (the client will send a current one); a request without a nonce is a
//!   new subscription.
//! - A NACK (a request with `error_detail`) is logged and answered with
//!   nothing: the same secrets are not sent again, only new ones when the
//!   cache changes, so a client that rejects them cannot start a loop.
//! - Empty `resource_names`, or `*` among them, is a wildcard: every SVID
//!   and bundle of the caller (see `resources`), plus any names listed.
//! - Names the caller may not have are left out of the response rather
//!   than failing the stream (SPIRE fails it): so a federated bundle
//!   withdrawn while subscribed to simply disappears from the next
//!   response, and the stream goes on.

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use tonic::Status;

use super::resources::{secret_type_url, short_hash, Catalogue};
use super::stream::{check_type_url, log_answer, Due, Protocol, MAX_NAMES};

/// One StreamSecrets subscription.
#[derive(Debug, Default)]
pub(super) struct Sotw {
    started: bool,
    wildcard: bool,
    names: BTreeSet<String>,
    node: Option<Node>,
    type_url: String,
    /// Responses sent; the last one's nonce.
    sent: u64,
    last_version: Option<String>,
}

/// The subscription a request's `resource_names` describe.
fn subscription(names: Vec<String>) -> (bool, BTreeSet<String>) {
    let wildcard = names.is_empty() || names.iter().any(|n| n == "*");
    (wildcard, names.into_iter().filter(|n| n != "*").collect())
}

// === impl Sotw ===

impl Sotw {
    /// The names subscribed to explicitly that `cat` does not hold.
    pub(super) fn missing(&self, cat: &Catalogue) -> Vec<String> {
        self.names
            .iter()
            .filter(|n| cat.get(n).is_none())
            .cloned()
            .collect()
    }

    fn nonce(&self) -> String {
        self.sent.to_string()
    }
}

impl Protocol for Sotw {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;

    fn on_request(&mut self, req: DiscoveryRequest) -> Result<Due, Status> {
        check_type_url(&req.type_url)?;
        if req.resource_names.len() > MAX_NAMES {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_NAMES} resource names per subscription"
            )));
        }
        if !self.started {
            self.started = true;
            self.node = req.node;
            self.type_url = match req.type_url.is_empty() {
                true => secret_type_url(),
                false => req.type_url,
            };
            (self.wildcard, self.names) = subscription(req.resource_names);
            tracing::debug!(wildcard = self.wildcard, names = ?self.names, "subscribed");
            return Ok(Due::Now);
        }
        if !req.response_nonce.is_empty() && req.response_nonce != self.nonce() {
            tracing::debug!(nonce = %req.response_nonce, "request with a stale nonce ignored");
            return Ok(Due::Nothing);
        }
        if req.node.is_some() {
            self.node = req.node;
        }
        log_answer(
            &req.response_nonce,
            &req.version_info,
            req.error_detail.as_ref(),
        );
        let (wildcard, names) = subscription(req.resource_names);
        if wildcard == self.wildcard && names == self.names {
            return Ok(Due::Nothing);
        }
        (self.wildcard, self.names) = (wildcard, names);
        tracing::debug!(wildcard = self.wildcard, names = ?self.names, "subscription changed");
        Ok(Due::Now)
    }

    fn respond(&mut self, cat: &Catalogue, due: Due) -> Option<DiscoveryResponse> {
        if due == Due::Now {
            let missing = self.missing(cat);
            if !missing.is_empty() {
                tracing::info!(?missing, "secrets not available to this caller; left out");
            }
        }
        let wildcard = match self.wildcard {
            true => cat.wildcard(),
            false => &[],
        };
        let mut seen = BTreeSet::new();
        let mut parts: Vec<&[u8]> = Vec::new();
        let mut resources = Vec::new();
        for name in wildcard.iter().chain(self.names.iter()) {
            if !seen.insert(name.as_str()) {
                continue;
            }
            if let Some(r) = cat.get(name) {
                parts.push(name.as_bytes());
                parts.push(r.version.as_bytes());
                resources.push(r.secret.clone());
            }
        }
        let version = short_hash(&parts);
        if due == Due::IfChanged && self.last_version.as_ref() == Some(&version) {
            return None;
        }
        self.sent += 1;
        self.last_version = Some(version.clone());
        tracing::debug!(%version, resources = resources.len(), "sending secrets");
        Some(DiscoveryResponse {
            version_info: version,
            resources,
            type_url: self.type_url.clone(),
            nonce: self.nonce(),
            ..DiscoveryResponse::default()
        })
    }

    fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }

    fn started(&self) -> bool {
        self.started
    }
}

#[cfg(test)]
#[path = "sotw_tests.rs"]
mod tests;
