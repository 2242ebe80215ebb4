//! Compiles `proto/oaas/*.proto` with the protoc shipped by `protoc-bin-vendored`, so no
//! system-installed protoc is needed.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["common", "package", "deployment", "crm_info"]
        .map(|name| PathBuf::from(format!("proto/oaas/{name}.proto")));
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // Ordered maps encode the same way every time, so a message's bytes can be hashed.
    config.btree_map(["."]);
    // Services (clients and servers, which need tonic) only with the `grpc` feature: the pure
    // core crate uses the messages alone.
    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();
    tonic_prost_build::configure()
        .build_client(grpc)
        .build_server(grpc)
        .compile_with_config(
            config,
            &protos,
            &[PathBuf::from("proto"), protoc_bin_vendored::include_path()?],
        )?;
    Ok(())
}
