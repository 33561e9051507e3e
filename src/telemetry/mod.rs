//! Logging (tracing), Prometheus metrics and the per-request stage timings that feed both.
//! Logs go to stderr, filtered by `RUST_LOG` (default `info`, ONNX Runtime at warn because
//! ort logs every runtime line at INFO).

pub mod metrics;
mod timings;

pub use timings::{STAGE_NAMES, StageTimings, stage_values};
use tracing_subscriber::EnvFilter;

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,ort=warn"))
}

pub fn init_logging() {
    use std::io::IsTerminal;
    // Colours only on a terminal: logs written to files and collectors stay greppable.
    let ansi = std::io::stderr().is_terminal();
    let _ = tracing_subscriber::fmt().with_env_filter(filter()).with_writer(std::io::stderr).with_ansi(ansi).try_init();
}

/// For tests: output goes through the test harness's capture (shown only for failing tests).
/// A second call (several servers in one test process) keeps the first subscriber.
pub fn init_test_logging() {
    let _ = tracing_subscriber::fmt().with_env_filter(filter()).with_test_writer().try_init();
}
