//! The inference thread: it alone owns the model, drains a bounded queue with `blocking_recv`,
//! and answers each job through a oneshot carrying the measured stage durations. Health goes
//! out on a watch channel. Blocking inference therefore never runs on tokio workers.

mod job;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ndarray::Array4;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use crate::model::prompt::PromptTokens;
use crate::model::{DecodedObjects, ImageGeometry, MaskModel, ModelError, PreprocessedImage};

use job::Job;
pub use job::{EmbeddingSource, ImageEmbedding, Inference};

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("the model is not ready yet")]
    NotReady,
    #[error("the inference engine has stopped")]
    Stopped,
    #[error("the model failed to load: {0}")]
    LoadFailed(String),
    #[error("the inference queue is full ({0} jobs waiting)")]
    QueueFull(usize),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// What the engine thread is doing, published for health checks and GetModelInfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineState {
    Loading,
    Ready { execution_provider: String },
    Failed(String),
}

#[derive(Clone)]
pub struct Engine {
    jobs: mpsc::Sender<Job>,
    state: watch::Receiver<EngineState>,
    capacity: usize,
}

impl Engine {
    /// Starts the inference thread; `load` runs on it, then a warm-up, then jobs.
    pub fn start<M, F>(load: F, queue_capacity: usize) -> Self
    where
        M: MaskModel + 'static,
        F: FnOnce() -> Result<M, ModelError> + Send + 'static,
    {
        let (jobs, queue) = mpsc::channel(queue_capacity);
        let (state_tx, state) = watch::channel(EngineState::Loading);
        std::thread::Builder::new()
            .name("samstream-inference".into())
            .spawn(move || run(load, queue, state_tx))
            .expect("spawning the inference thread");
        Self { jobs, state, capacity: queue_capacity }
    }

    pub fn state(&self) -> watch::Receiver<EngineState> {
        self.state.clone()
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

    pub fn ensure_ready(&self) -> Result<(), EngineError> {
        match &*self.state.borrow() {
            EngineState::Ready { .. } => Ok(()),
            EngineState::Loading => Err(EngineError::NotReady),
            EngineState::Failed(reason) => Err(EngineError::LoadFailed(reason.clone())),
        }
    }

    /// Encodes the image (or reuses a cached embedding) and decodes every object's prompt.
    pub async fn infer(&self, source: EmbeddingSource, objects: Vec<PromptTokens>) -> Result<Inference, EngineError> {
        self.ensure_ready()?;
        let (reply, answer) = oneshot::channel();
        let job = Job { source, objects, reply, span: tracing::Span::current(), enqueued: Instant::now() };
        self.jobs.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => EngineError::QueueFull(self.capacity),
            mpsc::error::TrySendError::Closed(_) => EngineError::Stopped,
        })?;
        answer.instrument(tracing::debug_span!("await_inference")).await.map_err(|_| EngineError::Stopped)?
    }
}

fn run<M, F>(load: F, mut queue: mpsc::Receiver<Job>, state: watch::Sender<EngineState>)
where
    M: MaskModel,
    F: FnOnce() -> Result<M, ModelError>,
{
    let mut model = match load().and_then(|mut m| warm_up(&mut m).map(|()| m)) {
        Ok(model) => model,
        Err(e) => {
            tracing::error!(error = %e, "model failed to load");
            state.send_replace(EngineState::Failed(e.to_string()));
            return;
        }
    };
    let execution_provider = model.execution_provider().to_string();
    tracing::info!(%execution_provider, "model loaded and warmed up");
    state.send_replace(EngineState::Ready { execution_provider });
    while let Some(job) = queue.blocking_recv() {
        // A caller that went away (cancelled RPC, closed stream) gets no work done for it.
        if job.reply.is_closed() {
            continue;
        }
        let queued = job.enqueued.elapsed();
        let _span = job.span.enter();
        let result = process(&mut model, job.source, &job.objects, queued);
        let _ = job.reply.send(result);
    }
}

/// One encoder and one decoder run so that the first request pays no lazy initialisation.
fn warm_up<M: MaskModel>(model: &mut M) -> Result<(), ModelError> {
    let started = Instant::now();
    let geometry = ImageGeometry::new(crate::model::IMAGE_SIZE, crate::model::IMAGE_SIZE);
    let tensor = Array4::zeros((1, 3, crate::model::IMAGE_SIZE, crate::model::IMAGE_SIZE));
    let embedding = model.encode(&PreprocessedImage { tensor, geometry })?;
    let tokens = PromptTokens { coords: vec![[512.0, 512.0], [0.0, 0.0]], labels: vec![1.0, -1.0], mask_input: None };
    model.decode(embedding.view(), &[tokens])?;
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "warm-up done");
    Ok(())
}

fn process<M: MaskModel>(
    model: &mut M,
    source: EmbeddingSource,
    objects: &[PromptTokens],
    queued: Duration,
) -> Result<Inference, EngineError> {
    let (embedding, encoder) = match source {
        EmbeddingSource::Image(image) => {
            let started = Instant::now();
            let data = tracing::info_span!("encoder").in_scope(|| model.encode(&image))?;
            (Arc::new(ImageEmbedding { data, geometry: image.geometry }), started.elapsed())
        }
        EmbeddingSource::Cached(embedding) => (embedding, Duration::ZERO),
    };
    let started = Instant::now();
    let decoded = if objects.is_empty() {
        DecodedObjects { iou: ndarray::Array2::zeros((0, 4)), low_res: Array4::zeros((0, 4, 256, 256)) }
    } else {
        tracing::info_span!("decoder", objects = objects.len()).in_scope(|| model.decode(embedding.data.view(), objects))?
    };
    Ok(Inference { embedding, decoded, queue: queued, encoder, decoder: started.elapsed() })
}
