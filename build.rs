//! Generates the gRPC code for Herald's protos with a pure-Rust toolchain:
//! `protox` parses the .proto files (no `protoc` binary needed on a fresh
//! machine) and `tonic-prost-build` emits messages, clients and servers.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/spiffe/workload/workload.proto",
        "proto/herald/node/v1/node.proto",
        "proto/herald/admin/v1/admin.proto",
        "proto/herald/admin/v1/federation.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
