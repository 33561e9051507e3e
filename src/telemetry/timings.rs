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
            upload_us = tracing::field::Empty,
            queue_us = tracing::field::Empty,
            encoder_us = tracing::field::Empty,
            decoder_us = tracing::field::Empty,
            postprocess_us = tracing::field::Empty,
            download_us = tracing::field::Empty,
            nms_us = tracing::field::Empty,
            preview_us = tracing::field::Empty,
            total_us = tracing::field::Empty,
        )
    };
}

use super::metrics::STAGE_DURATION;
use crate::proto;

/// Stage names in pipeline order, as spans, histograms and the tools name them.
pub const STAGE_NAMES: [&str; 11] =
    ["capture", "preprocess", "upload", "queue", "encoder", "decoder", "postprocess", "download", "nms", "preview", "total"];

/// A `Timing` message's stages in `STAGE_NAMES` order, in microseconds.
pub fn stage_values(t: &proto::Timing) -> [u64; 11] {
    [
        t.capture_us,
        t.preprocess_us,
        t.upload_us,
        t.queue_us,
        t.encoder_us,
        t.decoder_us,
        t.postprocess_us,
        t.download_us,
        t.nms_us,
        t.preview_us,
        t.total_us,
    ]
}

/// Durations of one request's stages, reported as the response's `Timing` and span fields.
/// The stages do not overlap: their sum is at most `total`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimings {
    /// Image decode or frame grab.
    pub capture: Duration,
    /// Resize, normalise, pad: on the host, or the preprocessing graph on the device.
    pub preprocess: Duration,
    /// Host to device copy of the frame (on the CPU provider, the copy into ONNX Runtime's input).
    pub upload: Duration,
    /// Waiting for the inference threads.
    pub queue: Duration,
    pub encoder: Duration,
    pub decoder: Duration,
    /// Mask upscaling and threshold (host or device) and wire encoding (host).
    pub postprocess: Duration,
    /// Device to host copy of the masks (zero when the provider works in host memory).
    pub download: Duration,
    /// Segment everything's duplicate removal across crops and small-region pass.
    pub nms: Duration,
    /// The JPEG of the frame for viewers (streams that ask for previews).
    pub preview: Duration,
    pub total: Duration,
}

/// Stage by stage: the stages of one part of the work added to another's (a decoder call's
/// to a request's, a batch's encoder run to each image's).
impl std::ops::AddAssign for StageTimings {
    fn add_assign(&mut self, other: Self) {
        self.capture += other.capture;
        self.preprocess += other.preprocess;
        self.upload += other.upload;
        self.queue += other.queue;
        self.encoder += other.encoder;
        self.decoder += other.decoder;
        self.postprocess += other.postprocess;
        self.download += other.download;
        self.nms += other.nms;
        self.preview += other.preview;
        self.total += other.total;
    }
}

impl StageTimings {
    /// Time accounted for by the stages (everything but `total`).
    pub fn staged(&self) -> Duration {
        self.capture
            + self.preprocess
            + self.upload
            + self.queue
            + self.encoder
            + self.decoder
            + self.postprocess
            + self.download
            + self.nms
            + self.preview
    }

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
            upload_us: us(self.upload),
            download_us: us(self.download),
            nms_us: us(self.nms),
            preview_us: us(self.preview),
        }
    }

    /// Fills the span's stage fields (see `stage_span!`) and observes the stage histograms.
    pub fn report(&self, span: &tracing::Span, rpc: &'static str) {
        self.record(span);
        for (stage, us) in STAGE_NAMES.into_iter().zip(stage_values(&self.to_proto())) {
            metrics::histogram!(STAGE_DURATION, "stage" => stage, "rpc" => rpc).record(us as f64 / 1e6);
        }
    }

    fn record(&self, span: &tracing::Span) {
        let t = self.to_proto();
        span.record("capture_us", t.capture_us);
        span.record("preprocess_us", t.preprocess_us);
        span.record("upload_us", t.upload_us);
        span.record("queue_us", t.queue_us);
        span.record("encoder_us", t.encoder_us);
        span.record("decoder_us", t.decoder_us);
        span.record("postprocess_us", t.postprocess_us);
        span.record("download_us", t.download_us);
        span.record("nms_us", t.nms_us);
        span.record("preview_us", t.preview_us);
        span.record("total_us", t.total_us);
    }
}
