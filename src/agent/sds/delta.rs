//! Incremental xDS (DeltaSecrets) for one stream. SPIRE answers it with
//! Unimplemented; Herald keeps, per stream, the version of every secret
//! the client holds and sends only what differs:
//!
//! - The first request's `initial_resource_versions` say what a client
//!   reconnecting already holds: a secret it holds at the current version
//!   is not sent again, one that is gone is named in `removed_resources`.
//! - `resource_names_subscribe` / `_unsubscribe` change the subscription
//!   on the open stream; `*` (or an empty first subscription) is the
//!   wildcard: every SVID and bundle of the caller.
//! - A secret that disappears (a federated bundle withdrawn from the
//!   caller's entries, SPIRE #1816) is named in `removed_resources`; so is
//!   a name subscribed to that the caller may not have, once, which tells
//!   the client it does not exist.
//! - Each resource carries its version (a hash of its content) and each
//!   response a fresh nonce. A NACK is logged; what it rejected is not sent
//!   again (only changes are), so there is no resend loop. Subscriptions
//!   apply whatever the nonce: in the incremental protocol they are deltas.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};
use tonic::Status;

use super::resources::{secret_type_url, Catalogue};
use super::stream::{check_type_url, log_answer, Due, Protocol, MAX_NAMES};

/// One DeltaSecrets subscription.
#[derive(Debug, Default)]
pub(super) struct Delta {
    started: bool,
    wildcard: bool,
    names: BTreeSet<String>,
    /// What the client holds: a version, or None once told a name does not exist.
    known: BTreeMap<String, Option<String>>,
    node: Option<Node>,
    /// Responses sent; the last one's nonce.
    sent: u64,
}

impl Protocol for Delta {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;

    fn on_request(&mut self, req: DeltaDiscoveryRequest) -> Result<Due, Status> {
        check_type_url(&req.type_url)?;
        if req.node.is_some() {
            self.node = req.node;
        }
        let first = !self.started;
        if first {
            self.started = true;
            // Legacy wildcard: a first request that names nothing.
            self.wildcard = req.resource_names_subscribe.is_empty();
            if req.initial_resource_versions.len() > MAX_NAMES {
                return Err(too_many());
            }
            self.known = req
                .initial_resource_versions
                .into_iter()
                .map(|(name, version)| (name, Some(version)))
                .collect();
        } else {
            log_answer(&req.response_nonce, "", req.error_detail.as_ref());
        }
        let mut changed = first;
        for name in req.resource_names_subscribe {
            changed |= match name.as_str() {
                "*" => !std::mem::replace(&mut self.wildcard, true),
                _ => self.names.insert(name),
            };
        }
        for name in req.resource_names_unsubscribe {
            if name == "*" {
                changed |= std::mem::replace(&mut self.wildcard, false);
                let names = &self.names;
                self.known.retain(|k, _| names.contains(k));
            } else if self.names.remove(&name) {
                changed = true;
                self.known.remove(&name);
            }
        }
        if self.names.len() > MAX_NAMES {
            return Err(too_many());
        }
        if changed {
            tracing::debug!(wildcard = self.wildcard, names = ?self.names, "subscription");
        }
        Ok(if changed { Due::Now } else { Due::Nothing })
    }

    fn respond(&mut self, cat: &Catalogue, _due: Due) -> Option<DeltaDiscoveryResponse> {
        let wildcard = match self.wildcard {
            true => cat.wildcard(),
            false => &[],
        };
        let wanted: BTreeSet<&String> = wildcard.iter().chain(self.names.iter()).collect();
        let mut resources = Vec::new();
        let mut removed = Vec::new();
        for name in &wanted {
            let held = self.known.get(*name);
            match cat.get(name) {
                Some(r) if held.and_then(Option::as_deref) != Some(r.version.as_str()) => {
                    resources.push(Resource {
                        name: (*name).clone(),
                        version: r.version.clone(),
                        resource: Some(r.secret.clone()),
                        ..Resource::default()
                    });
                    self.known.insert((*name).clone(), Some(r.version.clone()));
                }
                Some(_) => {}
                None if held != Some(&None) => {
                    tracing::info!(name = %name, "secret not available to this caller; removed");
                    removed.push((*name).clone());
                    self.known.insert((*name).clone(), None);
                }
                None => {}
            }
        }
        // Held but no longer wanted: only wildcard secrets that are gone
        // (the others left `known` when unsubscribed).
        self.known.retain(|name, version| {
            if wanted.contains(name) {
                return true;
            }
            if version.is_some() {
                tracing::info!(name = %name, "secret withdrawn");
                removed.push(name.clone());
            }
            false
        });
        if resources.is_empty() && removed.is_empty() {
            return None;
        }
        self.sent += 1;
        tracing::debug!(
            resources = resources.len(),
            removed = removed.len(),
            "sending secrets"
        );
        Some(DeltaDiscoveryResponse {
            system_version_info: cat.generation().to_string(),
            resources,
            type_url: secret_type_url(),
            removed_resources: removed,
            nonce: self.sent.to_string(),
            ..DeltaDiscoveryResponse::default()
        })
    }

    fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }

    fn started(&self) -> bool {
        self.started
    }
}

fn too_many() -> Status {
    Status::invalid_argument(format!(
        "at most {MAX_NAMES} resource names per subscription"
    ))
}

#[cfg(test)]
#[path = "delta_tests.rs"]
mod tests;
