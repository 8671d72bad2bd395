//! Generates the gRPC code and the reflection descriptor set from
//! `proto/occoder/v1/*.proto`. The files are parsed with protox (pure Rust),
//! so no system `protoc` is needed.

use std::path::PathBuf;

const PROTO_ROOT: &str = "proto";
const PROTO_FILES: &[&str] = &["occoder/v1/occoder.proto", "occoder/v1/bulk.proto", "occoder/v1/auth.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    // The reflection service needs the imported files too (the well-known
    // types), so that tools such as grpcurl can resolve every message.
    let mut compiler = protox::Compiler::new([PROTO_ROOT])?;
    compiler.include_source_info(true).include_imports(true).open_files(PROTO_FILES)?;
    std::fs::write(out_dir.join("occoder_descriptor.bin"), compiler.encode_file_descriptor_set())?;

    // prost-build maps the well-known types to prost-types and generates
    // code only for the other packages.
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
