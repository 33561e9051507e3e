//! The CUDA image's onnxruntime, without Docker: tests/support/check_cuda_image.py builds the
//! venv deploy/docker/Dockerfile.cuda builds (same requirements file; cached under
//! SAMSTREAM_CACHE) and checks that every library the CUDA execution provider needs resolves
//! with the image's LD_LIBRARY_PATH. Dropping the CUDA libraries from that path must fail it.

use std::path::PathBuf;
use std::process::Command;

fn check(extra: &[&str]) -> (bool, String) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let cache = std::env::var_os("SAMSTREAM_CACHE").expect("SAMSTREAM_CACHE is set by scripts/setup.sh (run bash scripts/test.sh)");
    let output = Command::new("python3")
        .arg(root.join("tests/support/check_cuda_image.py"))
        .arg(root.join("deploy/docker/Dockerfile.cuda"))
        .arg(cache)
        .args(extra)
        .output()
        .expect("python3 runs");
    (output.status.success(), format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)))
}

#[test]
fn every_library_the_cuda_provider_needs_resolves_in_the_image() {
    let (ok, report) = check(&[]);
    eprintln!("{report}");
    assert!(ok, "the CUDA image's library closure is broken:\n{report}");
    for library in ["libonnxruntime_providers_cuda.so", "libcudnn.so.9", "libcudnn_cnn.so.9"] {
        assert!(report.contains(library), "{library} was checked:\n{report}");
    }

    let (ok, report) = check(&["--drop-path-entry", "nvidia/cu13"]);
    assert!(!ok, "without the CUDA 13 libraries on the path the check must fail:\n{report}");
    assert!(report.contains("libcublas.so.13 not found"), "{report}");
}
