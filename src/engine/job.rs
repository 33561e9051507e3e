use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::EngineError;
use crate::model::prompt::PromptTokens;
use crate::model::{DecodedObjects, Embedding, EncoderInput, ImageGeometry, MaskRequest};
use crate::telemetry::StageTimings;

/// An encoder output, shared by every decode on the same frame (prompt updates, viewers). On a
/// GPU it stays in device memory.
pub struct ImageEmbedding {
    pub data: Embedding,
    pub geometry: ImageGeometry,
}

/// The encoder thread's answer.
pub struct Encoded {
    pub embedding: Arc<ImageEmbedding>,
    pub queue: Duration,
    /// Host to device copy of the image (zero where the provider works in host memory).
    pub upload: Duration,
    /// The preprocessing graph, with the device data path (host preprocessing is the caller's).
    pub preprocess: Duration,
    pub encoder: Duration,
}

/// The decoder thread's answer: masks (or logits) and the decoder thread's stage times.
pub struct Decoded {
    pub decoded: DecodedObjects,
    pub queue: Duration,
}

pub(super) struct EncodeJob {
    pub input: EncoderInput,
    pub reply: oneshot::Sender<Result<Encoded, EngineError>>,
    pub span: tracing::Span,
    pub enqueued: Instant,
}

pub(super) struct DecodeJob {
    pub embedding: Arc<ImageEmbedding>,
    pub objects: Vec<PromptTokens>,
    pub request: MaskRequest,
    pub reply: oneshot::Sender<Result<Decoded, EngineError>>,
    pub span: tracing::Span,
    pub enqueued: Instant,
}

impl Encoded {
    /// Adds the encoder thread's stages to a request's timings.
    pub fn record(&self, timings: &mut StageTimings) {
        timings.upload += self.upload;
        timings.preprocess += self.preprocess;
        timings.queue += self.queue;
        timings.encoder += self.encoder;
    }
}

impl Decoded {
    /// Adds the decoder thread's stages (device postprocessing and download included).
    pub fn record(&self, timings: &mut StageTimings) {
        let t = self.decoded.timings;
        timings.queue += self.queue;
        timings.decoder += t.decoder;
        timings.postprocess += t.postprocess;
        timings.download += t.download;
    }
}
