//! The inference threads. The encoder thread and the decoder thread each own one half of the
//! model backend and drain their own bounded queue with `blocking_recv`, so a prompt update
//! (decoder only) never waits behind a one-second encoder run, and a stream's decode of frame
//! N overlaps the encode of frame N+1. Each job's oneshot reply carries the measured stage
//! times; health goes out on a watch channel. Blocking inference never runs on tokio workers.
//!
//! The threads are not joined: they end when every `Engine` handle is gone (their queues
//! close), and the server ends the process with `_exit` without waiting for them, because a
//! thread may be inside the backend's native code whose globals must not be torn down under it.

mod decoder_thread;
mod encoder_thread;
mod frame;
mod job;
mod options;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Instant;

use opencv::core::Mat;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};

pub use encoder_thread::ModelLoader;
pub use frame::{EncodedFrame, FrameOrigin};
use job::{DecodeJob, EncodeJob};
pub use options::EngineOptions;

use crate::model::{BackendInfo, DecodedObjects, MaskRequest, ModelError, Preprocessor, PromptTokens};
use crate::telemetry::StageTimings;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("the model is not ready yet")]
    NotReady,
    #[error("the inference engine has stopped")]
    Stopped,
    #[error("the model failed to load: {0}")]
    LoadFailed(Arc<ModelError>),
    #[error("the {0} queue is full ({1} jobs waiting)")]
    QueueFull(&'static str, usize),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// What the engine is doing, published for health checks and GetModelInfo.
#[derive(Debug, Clone)]
pub enum EngineState {
    Loading,
    Ready(Runtime),
    Failed(Arc<ModelError>),
}

/// What a loaded model runs on and how, for health, GetModelInfo and the callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Runtime {
    pub backend: BackendInfo,
    /// Most queued images encoded in one call (1 = never batch); every batch shape up to it is
    /// warmed up.
    pub max_batch: usize,
}

#[derive(Clone)]
pub struct Engine {
    encode_jobs: mpsc::Sender<EncodeJob>,
    decode_jobs: mpsc::Sender<DecodeJob>,
    state: watch::Receiver<EngineState>,
    capacity: usize,
    /// Host preprocessing, for the host data path.
    preprocessor: Preprocessor,
}

impl Engine {
    /// Starts the encoder thread, which loads the model, warms both halves up, hands the
    /// decoder to its own thread, and then serves encode jobs.
    pub fn start(load: ModelLoader, options: &EngineOptions, preprocessor: Preprocessor) -> Self {
        let capacity = options.queue_capacity.max(1);
        let (encode_jobs, queue) = mpsc::channel(capacity);
        let (decode_jobs, decode_queue) = mpsc::channel(capacity);
        let (state_tx, state) = watch::channel(EngineState::Loading);
        let options = options.clone();
        let startup = encoder_thread::Startup {
            load,
            max_batch: Box::new(move |backend| options.max_batch(backend)),
            preprocessor,
            queue,
            decode_queue,
            state: state_tx,
        };
        std::thread::Builder::new()
            .name("samstream-encoder".into())
            .spawn(move || encoder_thread::run(startup))
            .expect("spawning the encoder thread");
        Self { encode_jobs, decode_jobs, state, capacity, preprocessor }
    }

    pub fn state(&self) -> watch::Receiver<EngineState> {
        self.state.clone()
    }

    /// The loaded model's runtime, or why there is none yet.
    pub fn runtime(&self) -> Result<Runtime, EngineError> {
        match &*self.state.borrow() {
            EngineState::Ready(runtime) => Ok(*runtime),
            EngineState::Loading => Err(EngineError::NotReady),
            EngineState::Failed(e) => Err(EngineError::LoadFailed(e.clone())),
        }
    }

    pub fn ensure_ready(&self) -> Result<(), EngineError> {
        self.runtime().map(|_| ())
    }

    /// Waits until the model is loaded and warmed up (or failed to load).
    pub async fn ready(&self) -> Result<Runtime, EngineError> {
        let mut state = self.state.clone();
        let state = state.wait_for(|s| !matches!(s, EngineState::Loading)).await.map_err(|_| EngineError::Stopped)?;
        match &*state {
            EngineState::Ready(runtime) => Ok(*runtime),
            EngineState::Failed(e) => Err(EngineError::LoadFailed(e.clone())),
            EngineState::Loading => unreachable!("waited for a state other than Loading"),
        }
    }

    /// The one way from a decoded 8-bit RGB frame to its embedding: preprocessing (on the
    /// blocking pool on the host data path; by the backend's graph on the device one), the
    /// encoder queue, the encoder. `timings` comes in with the capture stage and goes out with
    /// every stage up to the encoder filled.
    pub async fn encode_frame(
        &self,
        rgb: Arc<Mat>,
        origin: FrameOrigin,
        mut timings: StageTimings,
    ) -> Result<Arc<EncodedFrame>, EngineError> {
        let data_path = self.runtime()?.backend.data_path;
        let preprocessor = self.preprocessor;
        let span = tracing::Span::current();
        let pixels = rgb.clone();
        let (input, preprocess) =
            tokio::task::spawn_blocking(move || span.in_scope(|| encoder_thread::prepare(data_path, preprocessor, rgb)))
                .await
                .map_err(|e| ModelError::Image(format!("preprocessing task failed: {e}")))??;
        timings.preprocess += preprocess;
        let geometry = input.geometry();
        let (reply, answer) = oneshot::channel();
        let job = EncodeJob { input, reply, span: tracing::Span::current(), enqueued: Instant::now() };
        submit(&self.encode_jobs, job, "encoder", self.capacity)?;
        let encoded = answer.await.map_err(|_| EngineError::Stopped)??;
        timings += encoded.timings;
        Ok(Arc::new(EncodedFrame { origin, geometry, pixels, embedding: encoded.embedding, timings, previews: Default::default() }))
    }

    /// Runs the prompt encoder + mask decoder for every object on one encoded frame, then what
    /// `request` asks of the postprocessing (on the device with the device data path).
    pub async fn decode(
        &self,
        frame: Arc<EncodedFrame>,
        objects: Vec<PromptTokens>,
        request: MaskRequest,
    ) -> Result<DecodedObjects, EngineError> {
        self.ensure_ready()?;
        let (reply, answer) = oneshot::channel();
        let job = DecodeJob { frame, objects, request, reply, span: tracing::Span::current(), enqueued: Instant::now() };
        submit(&self.decode_jobs, job, "decoder", self.capacity)?;
        answer.await.map_err(|_| EngineError::Stopped)?
    }
}

fn submit<T>(queue: &mpsc::Sender<T>, job: T, name: &'static str, capacity: usize) -> Result<(), EngineError> {
    queue.try_send(job).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => EngineError::QueueFull(name, capacity),
        mpsc::error::TrySendError::Closed(_) => EngineError::Stopped,
    })
}
