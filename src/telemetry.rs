//! Logging: tracing to stderr, filtered by `RUST_LOG` (default `info`, ONNX Runtime at warn
//! because ort logs every runtime line at INFO).

use tracing_subscriber::EnvFilter;

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,ort=warn"))
}

pub fn init_logging() {
    let _ = tracing_subscriber::fmt().with_env_filter(filter()).with_writer(std::io::stderr).try_init();
}

/// For tests: output goes through the test harness's capture (shown only for failing tests).
/// A second call (several servers in one test process) keeps the first subscriber.
pub fn init_test_logging() {
    let _ = tracing_subscriber::fmt().with_env_filter(filter()).with_test_writer().try_init();
}

use std::time::Duration;

use crate::proto;

/// Durations of one request's stages, reported as the response's `Timing` and span fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimings {
    /// Image decode or frame grab.
    pub capture: Duration,
    pub preprocess: Duration,
    /// Waiting for the inference thread.
    pub queue: Duration,
    pub encoder: Duration,
    pub decoder: Duration,
    /// Mask upscaling and encoding.
    pub postprocess: Duration,
    pub total: Duration,
}

impl StageTimings {
    pub fn to_proto(&self) -> proto::Timing {
        let us = |d: Duration| d.as_micros() as u64;
        proto::Timing {
            capture_us: us(self.capture),
            preprocess_us: us(self.preprocess),
            queue_us: us(self.queue),
            encoder_us: us(self.encoder),
            decoder_us: us(self.decoder),
            postprocess_us: us(self.postprocess),
            total_us: us(self.total),
        }
    }

    /// Fills the stage fields declared on `span` (see `server::segmenter`).
    pub fn record(&self, span: &tracing::Span) {
        let t = self.to_proto();
        span.record("capture_us", t.capture_us);
        span.record("preprocess_us", t.preprocess_us);
        span.record("queue_us", t.queue_us);
        span.record("encoder_us", t.encoder_us);
        span.record("decoder_us", t.decoder_us);
        span.record("postprocess_us", t.postprocess_us);
        span.record("total_us", t.total_us);
    }
}
