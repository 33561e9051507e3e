//! Compiles the wire contract and writes the descriptor set that server reflection serves.

use std::path::PathBuf;

const PROTOS: &[&str] = &["proto/samstream/v1/samstream.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A vendored protoc keeps the build free of a system protobuf-compiler package.
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // Preview JPEGs are shared by every viewer of a frame: reference-counted, not copied.
        .bytes(".samstream.v1.PreviewFrame.jpeg")
        .file_descriptor_set_path(out_dir.join("samstream_descriptor.bin"))
        .compile_protos(PROTOS, &["proto"])?;
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
