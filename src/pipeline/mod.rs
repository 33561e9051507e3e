//! The pipeline façade between the transport and the engine: pixels -> embedding -> decoded
//! objects -> masks, in domain types. Handlers validate, call one method here and turn the
//! answer into messages; sessions call the same methods per frame.

mod everything;
mod segment;

use std::sync::Arc;
use std::time::Duration;

use opencv::core::Mat;
use thiserror::Error;

pub use everything::{AutoMask, CropReport, Everything};
pub use segment::{ObjectResult, SegmentedImage};

use crate::engine::{EncodedFrame, Engine, EngineError, FrameOrigin};
use crate::mask::MaskError;
use crate::model::ModelError;
use crate::telemetry::StageTimings;
use crate::video::{ImageError, ImageLimits, ImagePayload};

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("mask encoding: {0}")]
    Mask(#[from] MaskError),
    /// The caller's image (a request's, a client frame's) cannot be used.
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("a worker task failed: {0}")]
    Worker(String),
    #[error("the decoder kept no low-res logits to track the object with")]
    LowResMissing,
    #[error("preview frame: {0}")]
    Preview(String),
}

#[derive(Clone)]
pub struct Pipeline {
    engine: Engine,
}

impl Pipeline {
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A decoded 8-bit RGB frame through preprocessing and the encoder (see
    /// `Engine::encode_frame`); `capture` is how long decoding or grabbing it took.
    pub async fn encode(&self, rgb: Arc<Mat>, origin: FrameOrigin, capture: Duration) -> Result<Arc<EncodedFrame>, EngineError> {
        self.engine.encode_frame(rgb, origin, StageTimings { capture, ..Default::default() }).await
    }
}

/// A caller's image as 8-bit RGB, decoded on the blocking pool, and how long that took (the
/// capture stage).
pub async fn decode_image(image: Option<ImagePayload>, limits: ImageLimits) -> Result<(Mat, Duration), PipelineError> {
    let span = tracing::debug_span!("capture");
    blocking(move || {
        let _span = span.enter();
        let started = std::time::Instant::now();
        Ok(crate::video::decode_image(image.as_ref(), &limits).map(|rgb| (rgb, started.elapsed()))?)
    })
    .await
}

/// CPU-bound work (mask upscaling and encoding) on the blocking pool, in the caller's span.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, PipelineError> + Send + 'static,
) -> Result<T, PipelineError> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work)).await.map_err(|e| PipelineError::Worker(e.to_string()))?
}
