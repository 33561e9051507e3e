//! The encoder half of a client-frames session, on a task of its own: while the session
//! decodes and sends frame N, frame N+1 is decoded, preprocessed and in (or queued for) the
//! encoder.

use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use tracing::Instrument;

use super::hub::EncodedFrame;
use super::inbound::PendingFrame;
use crate::engine::{Engine, EngineError};
use crate::telemetry::StageTimings;
use crate::telemetry::metrics::ENCODER_RUNS;
use crate::video::{ImageLimits, decode_image};

/// A client frame through the encoder, or why not.
pub enum ClientFrame {
    Encoded(Arc<EncodedFrame>),
    /// The image could not be decoded or preprocessed; the text names the field.
    Rejected {
        frame_id: u64,
        reason: String,
    },
    /// The encoder's queue was full: the frame is dropped, like one the client sent too early.
    QueueFull,
}

/// A frame taken from the slot, with the number of frames dropped before it.
pub struct Taken {
    pub frame: PendingFrame,
    pub dropped_before: u64,
}

/// A frame's encoding task and, once done, the number of frames dropped before it.
pub type Encoding = tokio::task::JoinHandle<Result<(ClientFrame, u64), EngineError>>;

/// The frame being encoded, if any; aborted when the session ends.
#[derive(Default)]
pub struct InFlight(pub Option<Encoding>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// Starts capturing and encoding `taken` on its own task.
pub fn spawn_encode(engine: Engine, limits: ImageLimits, taken: Taken) -> Encoding {
    let dropped_before = taken.dropped_before;
    tokio::spawn(encode(engine, limits, taken.frame).map(move |outcome| outcome.map(|o| (o, dropped_before))).in_current_span())
}

async fn encode(engine: Engine, limits: ImageLimits, pending: PendingFrame) -> Result<ClientFrame, EngineError> {
    let PendingFrame { frame, received_at } = pending;
    let preparation = engine.preparation()?;
    let image = frame.image;
    let prepared = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let rgb = decode_image(image.as_ref(), &limits).map_err(|e| e.to_string())?;
        let capture = started.elapsed();
        let (input, preprocess) = preparation.prepare(Arc::new(rgb)).map_err(|e| e.to_string())?;
        Ok::<_, String>((input, capture, preprocess))
    })
    .await
    .map_err(|e| EngineError::Model(crate::model::ModelError::Image(format!("frame task failed: {e}"))))?;
    let (input, capture, preprocess) = match prepared {
        Ok(prepared) => prepared,
        Err(reason) => return Ok(ClientFrame::Rejected { frame_id: frame.frame_id, reason }),
    };
    let geometry = input.geometry();
    let encoded = match engine.encode(input).await {
        Ok(encoded) => encoded,
        Err(EngineError::QueueFull(..)) => return Ok(ClientFrame::QueueFull),
        Err(e) => return Err(e),
    };
    metrics::counter!(ENCODER_RUNS, "origin" => "client_frames").increment(1);
    let mut timings = StageTimings { capture, preprocess, ..Default::default() };
    encoded.record(&mut timings);
    Ok(ClientFrame::Encoded(Arc::new(EncodedFrame {
        seq: frame.frame_id,
        timestamp_us: frame.timestamp_us,
        geometry,
        embedding: encoded.embedding,
        timings,
        grabbed_at: received_at,
    })))
}
