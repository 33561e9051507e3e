use std::sync::Arc;
use std::time::{Duration, Instant};

use ndarray::Array4;
use tokio::sync::oneshot;

use super::EngineError;
use crate::model::prompt::PromptTokens;
use crate::model::{DecodedObjects, ImageGeometry, PreprocessedImage};

/// An encoder output kept for later decoder-only runs (prompt updates on the same frame).
pub struct ImageEmbedding {
    pub data: Array4<f32>,
    pub geometry: ImageGeometry,
}

pub enum EmbeddingSource {
    Image(PreprocessedImage),
    Cached(Arc<ImageEmbedding>),
}

/// The engine's answer: the (possibly reused) embedding, decoder outputs and stage durations.
pub struct Inference {
    pub embedding: Arc<ImageEmbedding>,
    pub decoded: DecodedObjects,
    pub queue: Duration,
    /// Zero when a cached embedding was reused.
    pub encoder: Duration,
    pub decoder: Duration,
}

pub(super) struct Job {
    pub source: EmbeddingSource,
    pub objects: Vec<PromptTokens>,
    pub reply: oneshot::Sender<Result<Inference, EngineError>>,
    pub span: tracing::Span,
    pub enqueued: Instant,
}
