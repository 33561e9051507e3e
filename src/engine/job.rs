use std::sync::Arc;
use std::time::{Duration, Instant};

use ndarray::Array4;
use tokio::sync::oneshot;

use super::EngineError;
use crate::model::prompt::PromptTokens;
use crate::model::{DecodedObjects, ImageGeometry, PreprocessedImage};

/// An encoder output, shared by every decode on the same frame (prompt updates, viewers).
pub struct ImageEmbedding {
    pub data: Array4<f32>,
    pub geometry: ImageGeometry,
}

/// The encoder thread's answer.
pub struct Encoded {
    pub embedding: Arc<ImageEmbedding>,
    pub queue: Duration,
    pub encoder: Duration,
}

/// The decoder thread's answer.
pub struct Decoded {
    pub decoded: DecodedObjects,
    pub queue: Duration,
    pub decoder: Duration,
}

pub(super) struct EncodeJob {
    pub image: PreprocessedImage,
    pub reply: oneshot::Sender<Result<Encoded, EngineError>>,
    pub span: tracing::Span,
    pub enqueued: Instant,
}

pub(super) struct DecodeJob {
    pub embedding: Arc<ImageEmbedding>,
    pub objects: Vec<PromptTokens>,
    pub reply: oneshot::Sender<Result<Decoded, EngineError>>,
    pub span: tracing::Span,
    pub enqueued: Instant,
}
