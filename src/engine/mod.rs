//! The inference threads. The encoder thread and the decoder thread each own one ONNX graph
//! and drain their own bounded queue with `blocking_recv`, so a prompt update (decoder only)
//! never waits behind a one-second encoder run, and a stream's decode of frame N overlaps the
//! encode of frame N+1. Each job's oneshot reply carries the measured durations; health goes
//! out on a watch channel. Blocking inference never runs on tokio workers.

mod job;

use std::sync::Arc;
use std::time::Instant;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};

use crate::model::prompt::PromptTokens;
use crate::model::{DataPath, EncoderInput, FramePreparation, ImageEncoder, MaskDecoder, MaskRequest, ModelError, Preprocessor};
use crate::telemetry::metrics::{ENCODER_BATCHED_IMAGES, JOBS_SKIPPED};

use job::{DecodeJob, EncodeJob};
pub use job::{Decoded, Encoded, ImageEmbedding};

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("the model is not ready yet")]
    NotReady,
    #[error("the inference engine has stopped")]
    Stopped,
    #[error("the model failed to load: {0}")]
    LoadFailed(String),
    #[error("the {0} queue is full ({1} jobs waiting)")]
    QueueFull(&'static str, usize),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// What the engine is doing, published for health checks and GetModelInfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineState {
    Loading,
    Ready(Runtime),
    Failed(String),
}

/// What a loaded model runs on and how, for health, GetModelInfo and the callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    /// The execution provider that really runs the graphs.
    pub execution_provider: String,
    /// Where pre- and postprocessing run (`Host` or `Device`).
    pub data_path: DataPath,
    /// The encoder's arithmetic (`fp32 (exact)`, ...).
    pub precision: String,
    /// Most queued images encoded in one call (1 = never batch); every size up to it is warmed up.
    pub max_batch: usize,
}

/// A loaded model, split so that each half can live on its own thread.
pub struct LoadedModel<E, D> {
    pub encoder: E,
    pub decoder: D,
    pub runtime: Runtime,
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
    /// Starts the encoder thread, which runs `load`, warms both graphs up, hands the decoder
    /// to its own thread, and then serves encode jobs. `preprocessor`: how callers preprocess
    /// on the host when the model's data path is `Host`.
    pub fn start<E, D, F>(load: F, queue_capacity: usize, preprocessor: Preprocessor) -> Self
    where
        E: ImageEncoder + 'static,
        D: MaskDecoder + 'static,
        F: FnOnce() -> Result<LoadedModel<E, D>, ModelError> + Send + 'static,
    {
        let (encode_jobs, encode_queue) = mpsc::channel(queue_capacity);
        let (decode_jobs, decode_queue) = mpsc::channel(queue_capacity);
        let (state_tx, state) = watch::channel(EngineState::Loading);
        std::thread::Builder::new()
            .name("samstream-encoder".into())
            .spawn(move || run_encoder(load, encode_queue, decode_queue, state_tx))
            .expect("spawning the encoder thread");
        Self { encode_jobs, decode_jobs, state, capacity: queue_capacity, preprocessor }
    }

    pub fn state(&self) -> watch::Receiver<EngineState> {
        self.state.clone()
    }

    pub fn ensure_ready(&self) -> Result<(), EngineError> {
        self.preparation().map(|_| ())
    }

    /// How a caller turns a decoded frame into an encoder input: preprocessed on the host, or
    /// handed over as bytes for the device's preprocessing graph.
    pub fn preparation(&self) -> Result<FramePreparation, EngineError> {
        match &*self.state.borrow() {
            EngineState::Ready(Runtime { data_path: DataPath::Device, .. }) => Ok(FramePreparation::Device),
            EngineState::Ready(_) => Ok(FramePreparation::Host(self.preprocessor)),
            EngineState::Loading => Err(EngineError::NotReady),
            EngineState::Failed(reason) => Err(EngineError::LoadFailed(reason.clone())),
        }
    }

    /// Waits until the model is loaded and warmed up (or failed to load).
    pub async fn ready(&self) -> Result<Runtime, EngineError> {
        let mut state = self.state.clone();
        let state = state.wait_for(|s| !matches!(s, EngineState::Loading)).await.map_err(|_| EngineError::Stopped)?;
        match &*state {
            EngineState::Ready(runtime) => Ok(runtime.clone()),
            EngineState::Failed(reason) => Err(EngineError::LoadFailed(reason.clone())),
            EngineState::Loading => unreachable!("waited for a state other than Loading"),
        }
    }

    /// Runs the image encoder (after the preprocessing graph, for raw frames).
    pub async fn encode(&self, input: EncoderInput) -> Result<Encoded, EngineError> {
        self.ensure_ready()?;
        let (reply, answer) = oneshot::channel();
        let job = EncodeJob { input, reply, span: tracing::Span::current(), enqueued: Instant::now() };
        submit(&self.encode_jobs, job, "encoder", self.capacity)?;
        answer.await.map_err(|_| EngineError::Stopped)?
    }

    /// Runs the prompt encoder + mask decoder for every object on one embedding, then what
    /// `request` asks of the postprocessing (on the device with the device data path).
    pub async fn decode(
        &self,
        embedding: Arc<ImageEmbedding>,
        objects: Vec<PromptTokens>,
        request: MaskRequest,
    ) -> Result<Decoded, EngineError> {
        self.ensure_ready()?;
        let (reply, answer) = oneshot::channel();
        let job = DecodeJob { embedding, objects, request, reply, span: tracing::Span::current(), enqueued: Instant::now() };
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

fn run_encoder<E, D, F>(
    load: F,
    mut queue: mpsc::Receiver<EncodeJob>,
    decode_queue: mpsc::Receiver<DecodeJob>,
    state: watch::Sender<EngineState>,
) where
    E: ImageEncoder + 'static,
    D: MaskDecoder + 'static,
    F: FnOnce() -> Result<LoadedModel<E, D>, ModelError>,
{
    let loaded = load().and_then(|mut m| {
        m.runtime.max_batch = warm_up(&mut m.encoder, &mut m.decoder, m.runtime.max_batch)?;
        Ok(m)
    });
    let LoadedModel { mut encoder, decoder, runtime } = match loaded {
        Ok(model) => model,
        Err(e) => {
            tracing::error!(error = %e, "model failed to load");
            state.send_replace(EngineState::Failed(e.to_string()));
            return;
        }
    };
    let spawned = std::thread::Builder::new().name("samstream-decoder".into()).spawn(move || run_decoder(decoder, decode_queue));
    if let Err(e) = spawned {
        state.send_replace(EngineState::Failed(format!("spawning the decoder thread: {e}")));
        return;
    }
    tracing::info!(
        execution_provider = %runtime.execution_provider,
        data_path = ?runtime.data_path,
        precision = %runtime.precision,
        max_batch = runtime.max_batch,
        "model loaded and warmed up"
    );
    let max_batch = runtime.max_batch.max(1);
    state.send_replace(EngineState::Ready(runtime));
    while let Some(first) = queue.blocking_recv() {
        // Whatever else is already waiting joins the batch (several streams' frames in one
        // encoder call), up to max_batch; a caller that went away (deadline, cancelled RPC,
        // closed stream) gets no work done.
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        batch.retain(|job| {
            let gone = job.reply.is_closed();
            if gone {
                metrics::counter!(JOBS_SKIPPED, "stage" => "encoder").increment(1);
            }
            !gone
        });
        if batch.is_empty() {
            continue;
        }
        encode_batch(&mut encoder, batch);
    }
}

fn encode_batch(encoder: &mut impl ImageEncoder, batch: Vec<EncodeJob>) {
    let queue_waits: Vec<_> = batch.iter().map(|job| job.enqueued.elapsed()).collect();
    let count = batch.len();
    let mut inputs = Vec::with_capacity(count);
    let mut waiting = Vec::with_capacity(count);
    for job in batch {
        waiting.push((job.reply, job.span, job.input.geometry()));
        inputs.push(job.input);
    }
    let started = Instant::now();
    let result = {
        // The run is traced under the first caller's span; the others see the batch size.
        let _span = waiting[0].1.enter();
        tracing::info_span!("encoder", batch = count).in_scope(|| encoder.encode_batch(inputs))
    };
    let elapsed = started.elapsed();
    if count > 1 {
        metrics::counter!(ENCODER_BATCHED_IMAGES).increment(count as u64);
    }
    for (((reply, _, geometry), image), waited) in waiting.into_iter().zip(result).zip(queue_waits) {
        let encoded = image.map_err(EngineError::from).map(|image| {
            // Time spent on the other images of a batch (their uploads and preprocessing) was
            // waiting, for this caller.
            let own = image.upload + image.preprocess + image.encoder;
            let queue = waited + elapsed.saturating_sub(own);
            let embedding = Arc::new(ImageEmbedding { data: image.embedding, geometry });
            Encoded { embedding, queue, upload: image.upload, preprocess: image.preprocess, encoder: image.encoder }
        });
        let _ = reply.send(encoded);
    }
}

fn run_decoder<D: MaskDecoder>(mut decoder: D, mut queue: mpsc::Receiver<DecodeJob>) {
    while let Some(job) = queue.blocking_recv() {
        if job.reply.is_closed() {
            metrics::counter!(JOBS_SKIPPED, "stage" => "decoder").increment(1);
            continue;
        }
        let queue_wait = job.enqueued.elapsed();
        let _span = job.span.enter();
        let result = tracing::info_span!("decoder", objects = job.objects.len())
            .in_scope(|| decoder.decode(&job.embedding.data, &job.objects, job.request));
        let result = result.map_err(EngineError::from).map(|decoded| Decoded { decoded, queue: queue_wait });
        let _ = job.reply.send(result);
    }
}

/// Every batch size the encoder may form and the decoder run once, so that no request pays for
/// lazy initialisation (on CUDA, cuDNN searches algorithms for every new input shape). Returns
/// the largest batch that fit in memory.
fn warm_up(encoder: &mut impl ImageEncoder, decoder: &mut impl MaskDecoder, max_batch: usize) -> Result<usize, ModelError> {
    let started = Instant::now();
    let (embedding, max_batch) = encoder.warm_up(max_batch)?;
    decoder.warm_up(&embedding)?;
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, batch_sizes = max_batch, "warm-up done");
    Ok(max_batch)
}
