//! What travels on the engine's queues: the work, the caller's span, when it was queued, and
//! the oneshot the answer goes back on.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::EngineError;
use super::frame::EncodedFrame;
use crate::model::{DecodedObjects, Embedding, EncoderInput, MaskRequest, PromptTokens};
use crate::telemetry::StageTimings;

/// The encoder thread's answer: the embedding and the stages it took there (queue included).
pub(super) struct Encoded {
    pub embedding: Embedding,
    pub timings: StageTimings,
}

pub(super) struct EncodeJob {
    pub input: EncoderInput,
    pub reply: oneshot::Sender<Result<Encoded, EngineError>>,
    pub span: tracing::Span,
    pub enqueued: Instant,
}

pub(super) struct DecodeJob {
    pub frame: Arc<EncodedFrame>,
    pub objects: Vec<PromptTokens>,
    pub request: MaskRequest,
    pub reply: oneshot::Sender<Result<DecodedObjects, EngineError>>,
    pub span: tracing::Span,
    pub enqueued: Instant,
}
