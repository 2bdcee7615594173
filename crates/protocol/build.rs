//! Generates the gRPC code from `proto/` with a vendored `protoc`, so a fresh
//! clone builds with nothing installed by hand.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        // Record data and ids travel as `bytes::Bytes`: decoding slices the
        // request buffer instead of copying it.
        .bytes(".")
        .compile_with_config(
            config,
            &["proto/coordinator.proto", "proto/broker.proto"],
            &["proto"],
        )?;
    Ok(())
}
