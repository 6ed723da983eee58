//! Compiles demo/proto with the protoc shipped by `protoc-bin-vendored`, so no system protoc is needed,
//! and writes the file descriptor set that the reflection service serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build reads PROTOC from the environment; a build script is a single thread, so setting it is sound.
    std::env::set_var("PROTOC", protoc);

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = ["proto/hello.proto", "proto/echo.proto", "proto/user.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }

    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("demo_descriptor.bin"))
        .type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
        .type_attribute(".", "#[serde(default)]")
        .field_attribute(
            ".echo.EchoRequest.payload",
            "#[serde(with = \"crate::json_bytes\", skip_serializing_if = \"Vec::is_empty\")]",
        )
        .field_attribute(
            ".echo.EchoResponse.payload",
            "#[serde(with = \"crate::json_bytes\", skip_serializing_if = \"Vec::is_empty\")]",
        )
        .compile_protos(&protos, &["proto"])?;

    // The grpc-gateway API: plain prost types (its well-known types have no serde impls), with
    // the google/api protos proxy-config ships.
    println!("cargo:rerun-if-changed=proto/library.proto");
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("library_descriptor.bin"))
        .compile_protos(&["proto/library.proto"], &["proto", "../proxy-config/proto"])?;
    Ok(())
}
