//! The encoder half of a client-frames session, on a task of its own: while the session
//! decodes and sends frame N, frame N+1 is decoded, preprocessed and in (or queued for) the
//! encoder.

use std::sync::Arc;

use futures_util::FutureExt;
use tracing::Instrument;

use super::frame_slot::Taken;
use crate::engine::{EncodedFrame, EngineError, FrameOrigin};
use crate::model::ModelError;
use crate::pipeline::{Pipeline, PipelineError, decode_image};
use crate::telemetry::metrics::ENCODER_RUNS;
use crate::video::ImageLimits;

/// A client frame through the encoder, or why not.
pub enum Encoded {
    Frame(Arc<EncodedFrame>),
    /// The image could not be decoded or preprocessed; the text names the field.
    Rejected {
        frame_id: u64,
        reason: String,
    },
    /// The encoder's queue was full: the frame is dropped, like one the client sent too early.
    QueueFull,
}

/// A frame's encoding task and, once done, the number of frames dropped before it.
type Encoding = tokio::task::JoinHandle<Result<(Encoded, u64), PipelineError>>;

/// The frame being encoded, if any; aborted when the session ends.
#[derive(Default)]
pub struct InFlight {
    task: Option<Encoding>,
}

impl InFlight {
    pub fn is_busy(&self) -> bool {
        self.task.is_some()
    }

    /// Starts capturing and encoding `taken` on its own task (a frame in flight is aborted).
    pub fn start(&mut self, pipeline: Pipeline, limits: ImageLimits, taken: Taken) {
        let dropped_before = taken.dropped_before;
        let task = tokio::spawn(encode(pipeline, limits, taken).map(move |outcome| outcome.map(|o| (o, dropped_before))).in_current_span());
        if let Some(replaced) = self.task.replace(task) {
            replaced.abort();
        }
    }

    /// The frame in flight, once encoded, with the frames dropped before it; pending while
    /// none is in flight. Cancel-safe: the task stays until it has answered.
    pub async fn finished(&mut self) -> Result<(Encoded, u64), PipelineError> {
        let Some(task) = self.task.as_mut() else { return std::future::pending().await };
        let answer = task.await;
        self.task = None;
        answer.map_err(|e| PipelineError::Worker(e.to_string()))?
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

async fn encode(pipeline: Pipeline, limits: ImageLimits, taken: Taken) -> Result<Encoded, PipelineError> {
    let frame = taken.frame;
    let image = frame.image;
    let (rgb, capture) = match decode_image(image, limits).await {
        Ok(decoded) => decoded,
        Err(PipelineError::Image(e)) => return Ok(Encoded::Rejected { frame_id: frame.frame_id, reason: e.to_string() }),
        Err(e) => return Err(e),
    };
    let origin = FrameOrigin { seq: frame.frame_id, timestamp_us: frame.timestamp_us, grabbed_at: frame.received_at };
    match pipeline.encode(Arc::new(rgb), origin, capture).await {
        Ok(encoded) => {
            metrics::counter!(ENCODER_RUNS, "origin" => "client_frames").increment(1);
            Ok(Encoded::Frame(encoded))
        }
        Err(EngineError::QueueFull(..)) => Ok(Encoded::QueueFull),
        Err(EngineError::Model(e @ (ModelError::Image(_) | ModelError::OpenCv(_)))) => {
            Ok(Encoded::Rejected { frame_id: frame.frame_id, reason: format!("image: {e}") })
        }
        Err(e) => Err(e.into()),
    }
}
