//! Generates the gRPC code from `proto/` with the protoc shipped in protoc-bin-vendored, so
//! no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/txmesh/v1/transactions.proto",
        "proto/txmesh/v1/branches.proto",
        "proto/txmesh/v1/participant.proto",
        "proto/txmesh/raft/v1/raft.proto",
    ];
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_with_config(config, &protos, &["proto"])?;
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
