//! Herald: a SPIFFE-compatible certificate authority and workload identity service.
//!
//! The crate is laid out the way a reader who knows SPIFFE expects (see
//! `shared/design/ARCHITECTURE.md`):
//!
//! - [`spiffe`]: pure types with no I/O: SPIFFE IDs, trust domains, bundles, JWT-SVID shapes.
//! - [`ca`]: key pairs, the key manager, certificate templates, X.509 and JWT signing.
//! - [`store`]: the durable state of a server (the `DataStore` trait and its sled backend).
//! - [`server`]: the server role; for now its authority set, loaded from a data directory.
//! - [`cli`]: the `herald` command line.
//!
//! Dependency direction: `cli` → `ca`, `store` → `spiffe`. `spiffe` depends on nothing of ours.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(unreachable_pub)]
#![deny(unused_qualifications)]

pub mod agent;
pub mod ca;
pub mod cli;
pub mod clock;
pub mod config;
pub mod duration;
pub mod errors;
pub mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
pub mod node;
pub mod proto;
pub mod registration;
pub mod server;
pub mod shutdown;
pub mod spiffe;
pub mod store;
pub mod tls;
pub mod uds;
