//! Shared test set-up: paths prepared by scripts/setup.sh, and a real server on port 0.

#![allow(dead_code)]

pub mod envoy;
pub mod parity;
pub mod process;
pub mod rtsp;
pub mod stream;
pub mod viewer;

use std::path::PathBuf;

use samstream::config::ServeConfig;
use samstream::proto::segmenter_client::SegmenterClient;
use samstream::server::RunningServer;
use tonic::transport::Channel;

fn env_path(name: &str) -> PathBuf {
    let value = std::env::var_os(name).unwrap_or_else(|| panic!("{name} is not set: run the suite with `bash scripts/test.sh`"));
    PathBuf::from(value)
}

pub fn model_dir() -> PathBuf {
    env_path("SAMSTREAM_MODEL_DIR")
}

pub fn ort_lib() -> PathBuf {
    env_path("ORT_DYLIB_PATH")
}

/// The project venv's python (pycocotools, grpcurl, numpy).
pub fn python() -> PathBuf {
    env_path("SAMSTREAM_PYTHON")
}

/// The python with Selenium (the browser viewer's test).
pub fn browser_python() -> PathBuf {
    env_path("SAMSTREAM_BROWSER_PYTHON")
}

pub fn parity_dir() -> PathBuf {
    model_dir().join("parity")
}

pub fn config() -> ServeConfig {
    let mut config = ServeConfig::new(model_dir(), ort_lib());
    // Two test binaries may run side by side on two cores; one ORT thread each keeps them fair.
    config.runtime.intra_threads = 1;
    config.shutdown_grace_secs = 0.4;
    config
}

/// A server on 127.0.0.1:0 that has finished loading its model.
pub async fn start_server(config: ServeConfig) -> RunningServer {
    samstream::telemetry::init_test_logging();
    let server = samstream::server::start(config, std::future::pending()).await.expect("server starts");
    assert!(server.serving().await, "model loads and health turns SERVING");
    server
}

pub async fn client(server: &RunningServer) -> SegmenterClient<Channel> {
    SegmenterClient::connect(format!("http://{}", server.addr)).await.expect("client connects")
}

pub fn png_bytes(name: &str) -> Vec<u8> {
    std::fs::read(parity_dir().join(name)).unwrap_or_else(|e| panic!("reading fixture {name}: {e}"))
}

/// One mask in all three encodings, as the server or `samstream::mask` produced them.
pub struct EncodedMask {
    pub rle: samstream::proto::CocoRle,
    pub png: Vec<u8>,
    pub polygons: samstream::proto::Polygons,
    pub area: u64,
    pub bbox: samstream::proto::Box,
}

/// Runs tests/support/check_masks.py (pycocotools) on the encodings; returns its JSON report.
/// `truth` is the mask as raw row-major bytes when the test knows it.
pub fn check_with_pycocotools(mask: &EncodedMask, truth: Option<&[u8]>, min_polygon_iou: f64) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mask.png"), &mask.png).unwrap();
    let b = mask.bbox;
    let mut spec = serde_json::json!({
        "rle": {"size": mask.rle.size, "counts": mask.rle.counts},
        "png": dir.path().join("mask.png"),
        "polygons": mask.polygons.polygons.iter().map(|p| p.xy.clone()).collect::<Vec<_>>(),
        "area": mask.area,
        "bbox": [b.x0, b.y0, b.x1, b.y1],
        "min_polygon_iou": min_polygon_iou,
    });
    if let Some(truth) = truth {
        std::fs::write(dir.path().join("truth.bin"), truth).unwrap();
        spec["truth"] = serde_json::json!(dir.path().join("truth.bin"));
    }
    std::fs::write(dir.path().join("spec.json"), spec.to_string()).unwrap();
    let output = std::process::Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/check_masks.py"))
        .arg(dir.path().join("spec.json"))
        .output()
        .expect("python runs");
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if output.status.success() { Ok(report) } else { Err(report) }
}
