//! The admin API, served on the server's admin Unix socket: registration
//! entries, agents and join tokens, the trust bundle, and SVIDs minted for
//! operators. Its shapes follow SPIRE's server API (`shared/spec/SPIFFE.md`
//! §8); the contract is `proto/herald/admin/v1/admin.proto`.
//!
//! This layer validates and translates; it holds no CA or storage logic.
//! Every RPC runs in a `tracing` span named after it, carrying the entry,
//! agent or SPIFFE ID it is about. Store calls go through
//! [`ServerState::with_store`] so that fsyncs never stall the async workers.
//! Every refusal is a gRPC status whose message starts with the field at
//! fault (`spiffe_id: …`, `page_size: …`).

mod agents;
mod authorities;
mod bundles;
mod caller;
pub(crate) mod convert;
mod entries;
pub(crate) mod inventory;
mod svids;

use std::sync::Arc;

pub(crate) use self::caller::{AllowedCallers, CallerCheckLayer};

use tonic::service::Routes;

use super::state::ServerState;
use crate::proto::admin::agents_server::AgentsServer;
use crate::proto::admin::bundles_server::BundlesServer;
use crate::proto::admin::entries_server::EntriesServer;
use crate::proto::admin::local_authority_server::LocalAuthorityServer;
use crate::proto::admin::svids_server::SvidsServer;
use crate::store::{PageRequest, MAX_PAGE_SIZE};

use crate::proto::ADMIN_MAX_MESSAGE_SIZE as MAX_MESSAGE_SIZE;

/// The admin services (Entries, Agents, Bundles, Svids, LocalAuthority), ready to be
/// served on the admin socket with `Server::builder().add_routes(..)`.
pub fn admin_routes(state: Arc<ServerState>) -> Routes {
    Routes::new(
        EntriesServer::new(entries::EntriesApi::new(state.clone()))
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE),
    )
    .add_service(AgentsServer::new(agents::AgentsApi::new(state.clone())))
    .add_service(BundlesServer::new(bundles::BundlesApi::new(state.clone())))
    .add_service(SvidsServer::new(svids::SvidsApi::new(state.clone())))
    .add_service(LocalAuthorityServer::new(authorities::AuthoritiesApi::new(
        state,
    )))
}

/// A list request's paging, checked: 0 is the default (500), at most
/// [`MAX_PAGE_SIZE`].
fn page_request(page_size: i32, page_token: &str) -> Result<PageRequest, tonic::Status> {
    let size = usize::try_from(page_size)
        .ok()
        .filter(|n| *n <= MAX_PAGE_SIZE)
        .ok_or_else(|| {
            tonic::Status::invalid_argument(format!(
                "page_size: {page_size} is out of range; use 0 (the default, 500) to {MAX_PAGE_SIZE}"
            ))
        })?;
    Ok(PageRequest {
        size,
        token: (!page_token.is_empty()).then(|| page_token.to_string()),
    })
}

/// A TTL from a request in seconds: 0 picks `default`, negative is refused.
fn ttl_or_default(field: &str, ttl: i32, default: i64) -> Result<i64, tonic::Status> {
    match ttl {
        0 => Ok(default),
        t if t < 0 => Err(tonic::Status::invalid_argument(format!(
            "{field}: {t} is negative; use a number of seconds, or 0 for the server default"
        ))),
        t => Ok(i64::from(t)),
    }
}
