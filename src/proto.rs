//! Generated protobuf and gRPC code. Nothing here is edited by hand: the
//! sources are the `.proto` files under `proto/`, compiled by `build.rs`.

/// The SPIFFE Workload API. Its proto has no package, so prost writes it to
/// `_.rs`; the service path stays `/SpiffeWorkloadAPI/<Method>` as clients expect.
#[allow(missing_docs, unreachable_pub, unused_qualifications, clippy::all)]
pub mod workload {
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
}
