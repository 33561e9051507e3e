//! The inference threads. The encoder thread and the decoder thread each own one ONNX graph
//! and drain their own bounded queue with `blocking_recv`, so a prompt update (decoder only)
//! never waits behind a one-second encoder run, and a stream's decode of frame N overlaps the
//! encode of frame N+1. Each job's oneshot reply carries the measured durations; health goes
//! out on a watch channel. Blocking inference never runs on tokio workers.

mod job;

use std::sync::Arc;
use std::time::Instant;

use ndarray::Array4;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};

use crate::model::prompt::PromptTokens;
use crate::model::{ImageEncoder, ImageGeometry, MaskDecoder, ModelError, PreprocessedImage};
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
    Ready { execution_provider: String },
    Failed(String),
}

/// A loaded model, split so that each half can live on its own thread.
pub struct LoadedModel<E, D> {
    pub encoder: E,
    pub decoder: D,
    pub execution_provider: String,
}

#[derive(Clone)]
pub struct Engine {
    encode_jobs: mpsc::Sender<EncodeJob>,
    decode_jobs: mpsc::Sender<DecodeJob>,
    state: watch::Receiver<EngineState>,
    capacity: usize,
}

impl Engine {
    /// Starts the encoder thread, which runs `load`, warms both graphs up, hands the decoder
    /// to its own thread, and then serves encode jobs.
    /// `max_batch`: most queued images encoded in one call (1 = never batch).
    pub fn start<E, D, F>(load: F, queue_capacity: usize, max_batch: usize) -> Self
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
            .spawn(move || run_encoder(load, encode_queue, decode_queue, state_tx, max_batch.max(1)))
            .expect("spawning the encoder thread");
        Self { encode_jobs, decode_jobs, state, capacity: queue_capacity }
    }

    pub fn state(&self) -> watch::Receiver<EngineState> {
        self.state.clone()
    }

    pub fn ensure_ready(&self) -> Result<(), EngineError> {
        match &*self.state.borrow() {
            EngineState::Ready { .. } => Ok(()),
            EngineState::Loading => Err(EngineError::NotReady),
            EngineState::Failed(reason) => Err(EngineError::LoadFailed(reason.clone())),
        }
    }

    /// Waits until the model is loaded and warmed up (or failed to load).
    pub async fn ready(&self) -> Result<String, EngineError> {
        let mut state = self.state.clone();
        let state = state.wait_for(|s| !matches!(s, EngineState::Loading)).await.map_err(|_| EngineError::Stopped)?;
        match &*state {
            EngineState::Ready { execution_provider } => Ok(execution_provider.clone()),
            EngineState::Failed(reason) => Err(EngineError::LoadFailed(reason.clone())),
            EngineState::Loading => unreachable!("waited for a state other than Loading"),
        }
    }

    /// Runs the image encoder.
    pub async fn encode(&self, image: PreprocessedImage) -> Result<Encoded, EngineError> {
        self.ensure_ready()?;
        let (reply, answer) = oneshot::channel();
        let job = EncodeJob { image, reply, span: tracing::Span::current(), enqueued: Instant::now() };
        submit(&self.encode_jobs, job, "encoder", self.capacity)?;
        answer.await.map_err(|_| EngineError::Stopped)?
    }

    /// Runs the prompt encoder + mask decoder for every object on one embedding.
    pub async fn decode(&self, embedding: Arc<ImageEmbedding>, objects: Vec<PromptTokens>) -> Result<Decoded, EngineError> {
        self.ensure_ready()?;
        let (reply, answer) = oneshot::channel();
        let job = DecodeJob { embedding, objects, reply, span: tracing::Span::current(), enqueued: Instant::now() };
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
    max_batch: usize,
) where
    E: ImageEncoder + 'static,
    D: MaskDecoder + 'static,
    F: FnOnce() -> Result<LoadedModel<E, D>, ModelError>,
{
    let loaded = load().and_then(|mut m| warm_up(&mut m.encoder, &mut m.decoder).map(|()| m));
    let LoadedModel { mut encoder, decoder, execution_provider } = match loaded {
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
    tracing::info!(%execution_provider, "model loaded and warmed up");
    state.send_replace(EngineState::Ready { execution_provider });
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
    let started = Instant::now();
    let result = {
        // The run is traced under the first caller's span; the others see the batch size.
        let _span = batch[0].span.enter();
        let images: Vec<&PreprocessedImage> = batch.iter().map(|job| &job.image).collect();
        tracing::info_span!("encoder", batch = batch.len()).in_scope(|| encoder.encode_batch(&images))
    };
    let elapsed = started.elapsed();
    if batch.len() > 1 {
        metrics::counter!(ENCODER_BATCHED_IMAGES).increment(batch.len() as u64);
    }
    match result {
        Ok(embeddings) => {
            for ((job, data), queue) in batch.into_iter().zip(embeddings).zip(queue_waits) {
                let embedding = Arc::new(ImageEmbedding { data, geometry: job.image.geometry });
                let _ = job.reply.send(Ok(Encoded { embedding, queue, encoder: elapsed }));
            }
        }
        Err(e) if batch.len() == 1 => {
            let _ = batch.into_iter().next().expect("one job").reply.send(Err(e.into()));
        }
        Err(e) => {
            let reason = e.to_string();
            for job in batch {
                let _ = job.reply.send(Err(EngineError::Model(ModelError::Batch(reason.clone()))));
            }
        }
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
        let started = Instant::now();
        let result = tracing::info_span!("decoder", objects = job.objects.len())
            .in_scope(|| decoder.decode(job.embedding.data.view(), &job.objects));
        let result = result.map_err(EngineError::from).map(|decoded| Decoded { decoded, queue: queue_wait, decoder: started.elapsed() });
        let _ = job.reply.send(result);
    }
}

/// One encoder and one decoder run so that the first request pays no lazy initialisation.
fn warm_up(encoder: &mut impl ImageEncoder, decoder: &mut impl MaskDecoder) -> Result<(), ModelError> {
    let started = Instant::now();
    let geometry = ImageGeometry::new(crate::model::IMAGE_SIZE, crate::model::IMAGE_SIZE);
    let tensor = Array4::zeros((1, 3, crate::model::IMAGE_SIZE, crate::model::IMAGE_SIZE));
    let embedding = encoder.encode(&PreprocessedImage { tensor, geometry })?;
    let tokens = PromptTokens { coords: vec![[512.0, 512.0], [0.0, 0.0]], labels: vec![1.0, -1.0], mask_input: None };
    decoder.decode(embedding.view(), &[tokens])?;
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "warm-up done");
    Ok(())
}
