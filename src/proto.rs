//! Generated protobuf and gRPC code. Nothing here is edited by hand: the
//! sources are the `.proto` files under `proto/`, compiled by `build.rs`.

/// The SPIFFE Workload API. Its proto has no package, so prost writes it to
/// `_.rs`; the service path stays `/SpiffeWorkloadAPI/<Method>` as clients expect.
#[allow(missing_docs, unreachable_pub, unused_qualifications, clippy::all)]
pub mod workload {
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
}

/// The node API between agents and their server.
#[allow(missing_docs, unreachable_pub, unused_qualifications, clippy::all)]
pub mod node {
    include!(concat!(env!("OUT_DIR"), "/herald.node.v1.rs"));
}

/// Largest admin API message either way, for both the server and its
/// clients. Batch calls carry whole imports (a 100,000-entry batch is about
/// 15 MiB), and only administrators can reach the socket, so the limit is far
/// above gRPC's 4 MiB default.
pub const ADMIN_MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Largest node API message either way, for the server and every node.
/// Sync snapshots are chunked well below it.
pub const NODE_MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// The admin API on the server's admin socket.
#[allow(missing_docs, unreachable_pub, unused_qualifications, clippy::all)]
pub mod admin {
    include!(concat!(env!("OUT_DIR"), "/herald.admin.v1.rs"));
}
