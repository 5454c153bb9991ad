//! The agent role: attests itself to the server, attests local workloads,
//! holds their SVIDs (in memory, and saved in its data directory for a
//! restart), rotates them, and serves the Workload API and Envoy SDS.

pub mod attestor;
pub mod cache;
pub mod h2_authority;
pub mod jwt_source;
pub mod manager;
pub mod metrics;
pub mod persist;
pub mod rebootstrap;
pub mod run;
pub mod sds;
pub mod workload_api;
