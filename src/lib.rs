//! Herald: a SPIFFE-compatible certificate authority and workload identity service.
//!
//! The crate is laid out the way a reader who knows SPIFFE expects;
//! `docs/ARCHITECTURE.md` has the module graph and the data path of one SVID.
//!
//! - [`spiffe`]: pure types with no I/O: SPIFFE IDs, trust domains, bundles,
//!   JWT-SVID shapes, bundle endpoint URL rules.
//! - [`ca`]: key pairs, the key manager, certificate templates, X.509 and JWT
//!   signing, CSR checks.
//! - [`registration`]: entries and selectors, the types both roles speak.
//! - [`store`]: the durable state of a server (the `DataStore` trait and its
//!   sled backend).
//! - [`config`]: configuration files, one module per role.
//! - [`tls`]: SPIFFE peer verification and HTTPS serving with limits.
//! - [`node`]: the client side of the node API, shared by the agent and a
//!   downstream server.
//! - [`server`]: the server role (authorities and rotation, node API, admin
//!   API, federation).
//! - [`agent`]: the agent role (workload attestation, SVID cache and
//!   rotation, Workload API).
//! - [`helper`]: `herald helper`, SVIDs as files for programs that cannot
//!   speak the Workload API; [`oidc`]: `herald oidc`, the OIDC discovery
//!   document and JWKS of the JWT authorities. Both are Workload API clients.
//! - [`ops`]: the operations HTTP listener (`/metrics`, `/live`, `/ready`)
//!   that both roles plug into.
//! - [`cli`]: the `herald` command line; [`vet`]: the checks `herald check
//!   --socket` runs over what a live server holds.
//! - [`clock`] is the one source of time; [`errors`] prints error chains;
//!   [`uds`] is the Unix-socket gRPC client; [`runtime_dir`] places and guards
//!   sockets; [`heap`] returns freed memory once a listener is idle; [`backoff`]
//!   spaces retries;
//!   [`proto`] is the generated code; [`request_id`] gives every gRPC call
//!   its id.
//!
//! Dependency direction: `cli` → `server`, `agent` → `node`, `ca`, `store`,
//! `tls` → `registration` → `spiffe`. `server` and `agent` never import
//! each other, and `config` imports neither. `spiffe` depends on nothing of
//! ours.

// Two audited exceptions, `heap::release_free_memory` and
// `heap::tune_allocator` (FFI calls into glibc); everything else is safe Rust.
#![deny(unsafe_code)]
#![deny(missing_docs)]
#![deny(unreachable_pub)]
#![deny(unused_qualifications)]

pub mod agent;
pub mod backoff;
mod body_hook;
pub mod ca;
pub mod cli;
pub mod clock;
pub mod config;
pub mod duration;
pub mod errors;
pub mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
pub mod heap;
pub mod helper;
pub mod http_get;
pub mod k8s_psat;
pub mod node;
pub mod oidc;
pub mod ops;
pub mod peer_budget;
pub mod proto;
pub mod registration;
pub mod request_id;
pub mod runtime_dir;
pub mod server;
pub mod shutdown;
pub mod spiffe;
pub mod store;
#[cfg(test)]
mod testing;
pub mod tls;
pub mod uds;
pub mod vet;
pub mod x509pop;
