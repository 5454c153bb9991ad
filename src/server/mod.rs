//! The server role: the CA of one trust domain, wired to its datastore.

pub mod admin_api;
pub mod audit;
pub mod authorities;
pub mod authorized;
pub mod ca_manager;
pub mod cluster;
pub mod dashboard;
pub mod federation;
pub mod generation_cache;
pub mod k8s_psat;
pub mod memory;
pub mod metrics;
pub mod node_aliases;
pub mod node_api;
pub mod pruner;
pub mod rotation;
pub mod run;
pub mod server_id;
pub mod server_svid;
pub mod state;
pub mod validate;

/// What every gRPC method of the server's services returns.
pub(crate) type Rpc<T> = Result<tonic::Response<T>, tonic::Status>;
