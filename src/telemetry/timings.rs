//! One timing struct per request or frame, reported three ways: the `Timing` message, span
//! fields and the stage histograms.

use std::time::Duration;

/// An INFO span named `$name` with the given fields plus an empty field per stage, which
/// `StageTimings::report` fills once the request or frame is done.
#[macro_export]
macro_rules! stage_span {
    ($name:literal, $($fields:tt)*) => {
        tracing::info_span!(
            $name,
            $($fields)*,
            capture_us = tracing::field::Empty,
            preprocess_us = tracing::field::Empty,
            queue_us = tracing::field::Empty,
            encoder_us = tracing::field::Empty,
            decoder_us = tracing::field::Empty,
            postprocess_us = tracing::field::Empty,
            total_us = tracing::field::Empty,
        )
    };
}

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

    /// Fills the span's stage fields (see `stage_span!`) and observes the stage histograms.
    pub fn report(&self, span: &tracing::Span, rpc: &'static str) {
        self.record(span);
        super::metrics::observe_stages(self, rpc);
    }

    fn record(&self, span: &tracing::Span) {
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
