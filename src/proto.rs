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

/// The admin API on the server's admin socket.
#[allow(missing_docs, unreachable_pub, unused_qualifications, clippy::all)]
pub mod admin {
    include!(concat!(env!("OUT_DIR"), "/herald.admin.v1.rs"));
}
