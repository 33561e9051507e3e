//! The encoder thread: loads the model, warms it up, hands the decoder to its own thread, then
//! encodes what is queued, several callers' images in one batch when the backend batches.
//! The policies around the backend live here, not in it: a batch that runs out of memory is
//! retried image by image, and warm-up finds the largest batch that fits.

use std::time::{Duration, Instant};

use opencv::core::{CV_8UC3, Mat, Scalar};
use tokio::sync::{mpsc, watch};

use super::decoder_thread::{self, decode_all};
use super::job::{DecodeJob, EncodeJob, Encoded};
use super::{EngineError, EngineState, Runtime};
use crate::model::{
    BackendInfo, DataPath, Embedding, EncoderInput, ImageEncoder, ImageGeometry, LOW_RES, LoadedModel, MaskRequest, ModelError,
    Preprocessor, PromptTokens, RgbFrame,
};
use crate::telemetry::StageTimings;
use crate::telemetry::metrics::{ENCODER_BATCHED_IMAGES, JOBS_SKIPPED};

/// Object counts the decoder runs once before serving on a GPU, where each new count allocates
/// and picks kernels on its first call; on the CPU there is nothing to initialise per count.
const GPU_WARM_UP_OBJECT_COUNTS: [usize; 4] = [1, 2, 4, 8];

/// What the encoder thread starts from.
pub(super) struct Startup<F> {
    pub load: F,
    /// The most images per encoder call, resolved against the backend once it is loaded.
    pub max_batch: Box<dyn FnOnce(&BackendInfo) -> usize + Send>,
    pub preprocessor: Preprocessor,
    pub queue: mpsc::Receiver<EncodeJob>,
    pub decode_queue: mpsc::Receiver<DecodeJob>,
    pub state: watch::Sender<EngineState>,
}

pub(super) fn run<F>(startup: Startup<F>)
where
    F: FnOnce() -> Result<LoadedModel, ModelError>,
{
    let Startup { load, max_batch, preprocessor, mut queue, decode_queue, state } = startup;
    let loaded = load().and_then(|mut model| {
        let wanted = max_batch(&model.info);
        let max_batch = warm_up(&mut model, wanted, preprocessor)?;
        Ok((model, max_batch))
    });
    let (LoadedModel { mut encoder, decoder, info }, max_batch) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::error!(error = %e, "model failed to load");
            state.send_replace(EngineState::Failed(std::sync::Arc::new(e)));
            return;
        }
    };
    let spawned = std::thread::Builder::new().name("samstream-decoder".into()).spawn(move || decoder_thread::run(decoder, decode_queue));
    if let Err(e) = spawned {
        let error = ModelError::Backend(format!("spawning the decoder thread: {e}"));
        state.send_replace(EngineState::Failed(std::sync::Arc::new(error)));
        return;
    }
    tracing::info!(
        execution_provider = %info.provider,
        data_path = %info.data_path,
        precision = %info.precision,
        max_batch,
        "model loaded and warmed up"
    );
    state.send_replace(EngineState::Ready(Runtime { backend: info, max_batch }));
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
        if !batch.is_empty() {
            encode_jobs(encoder.as_mut(), batch);
        }
    }
}

/// Encodes one batch of jobs and answers each.
fn encode_jobs(encoder: &mut dyn ImageEncoder, batch: Vec<EncodeJob>) {
    let queue_waits: Vec<Duration> = batch.iter().map(|job| job.enqueued.elapsed()).collect();
    let count = batch.len();
    let mut inputs = Vec::with_capacity(count);
    let mut waiting = Vec::with_capacity(count);
    for job in batch {
        waiting.push((job.reply, job.span));
        inputs.push(job.input);
    }
    let started = Instant::now();
    let results = {
        // The run is traced under the first caller's span; the others see the batch size.
        let _span = waiting[0].1.enter();
        tracing::info_span!("encoder", batch = count).in_scope(|| encode_or_retry(encoder, inputs))
    };
    let elapsed = started.elapsed();
    if count > 1 {
        metrics::counter!(ENCODER_BATCHED_IMAGES).increment(count as u64);
    }
    for (((reply, _), result), waited) in waiting.into_iter().zip(results).zip(queue_waits) {
        let encoded = result.map_err(EngineError::from).map(|(embedding, mut timings)| {
            // Time spent on the other images of a batch (their uploads and preprocessing) was
            // waiting, for this caller.
            timings.queue += waited + elapsed.saturating_sub(timings.staged());
            Encoded { embedding, timings }
        });
        let _ = reply.send(encoded);
    }
}

type EncodeResult = Result<(Embedding, StageTimings), ModelError>;

/// One result per input. A batch that does not fit in memory is retried image by image, so
/// that only the images that do not fit on their own fail.
fn encode_or_retry(encoder: &mut dyn ImageEncoder, inputs: Vec<EncoderInput>) -> Vec<EncodeResult> {
    if inputs.len() == 1 {
        // Handed over whole: a backend may take the only reference to the image's buffer.
        return vec![encode_one(encoder, inputs)];
    }
    match checked(encoder.encode(inputs.clone()), inputs.len()) {
        Ok(encoded) => encoded.into_iter().map(Ok).collect(),
        Err(ModelError::OutOfMemory(reason)) => {
            tracing::warn!(images = inputs.len(), %reason, "batch out of memory; encoding its images one by one");
            inputs.into_iter().map(|input| encode_one(encoder, vec![input])).collect()
        }
        Err(e) => {
            let reason = e.to_string();
            inputs.iter().map(|_| Err(ModelError::Batch(reason.clone()))).collect()
        }
    }
}

fn encode_one(encoder: &mut dyn ImageEncoder, input: Vec<EncoderInput>) -> EncodeResult {
    checked(encoder.encode(input), 1)?.pop().ok_or(ModelError::Shape { name: "image_embeddings", shape: vec![0] })
}

/// A backend must answer every input of a batch.
fn checked(
    result: Result<Vec<(Embedding, StageTimings)>, ModelError>,
    expected: usize,
) -> Result<Vec<(Embedding, StageTimings)>, ModelError> {
    let encoded = result?;
    if encoded.len() != expected {
        return Err(ModelError::Shape { name: "image_embeddings", shape: vec![encoded.len(), expected] });
    }
    Ok(encoded)
}

/// The encoder's input for `rgb` on this data path: preprocessed here on the host data path,
/// the pixels as they are for the backend's preprocessing graph on the device one.
pub(super) fn prepare(
    data_path: DataPath,
    preprocessor: Preprocessor,
    rgb: std::sync::Arc<Mat>,
) -> Result<(EncoderInput, Duration), ModelError> {
    match data_path {
        DataPath::Device => Ok((EncoderInput::Pixels(RgbFrame::new(rgb)?), Duration::ZERO)),
        DataPath::Host | DataPath::Auto => {
            let started = Instant::now();
            let image = preprocessor.run(&rgb)?;
            Ok((EncoderInput::Preprocessed(std::sync::Arc::new(image)), started.elapsed()))
        }
    }
}

/// Runs every batch size the encoder may form and the decoder once per object count it will
/// see, so that no request pays for lazy initialisation (on CUDA, cuDNN's algorithm search
/// for a new input shape). Returns the largest batch that fit in memory.
fn warm_up(model: &mut LoadedModel, max_batch: usize, preprocessor: Preprocessor) -> Result<usize, ModelError> {
    let started = Instant::now();
    let grey = Mat::new_rows_cols_with_default(48, 64, CV_8UC3, Scalar::all(128.0))?;
    let (input, _) = prepare(model.info.data_path, preprocessor, std::sync::Arc::new(grey))?;
    let (embedding, _) = encode_one(model.encoder.as_mut(), vec![input.clone()])?;
    let mut fits = max_batch.max(1);
    for count in 2..=max_batch {
        // Each size as one batch, without the one-by-one retry of serving.
        match checked(model.encoder.encode(vec![input.clone(); count]), count) {
            Ok(_) => {}
            Err(ModelError::OutOfMemory(reason)) => {
                tracing::warn!(batch = count, %reason, "a batch of this size does not fit in memory; batching at most {}", count - 1);
                fits = count - 1;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    let geometry = ImageGeometry::new(64, 48);
    let tokens = PromptTokens { coords: vec![[32.0, 24.0], [0.0, 0.0]], labels: vec![1.0, -1.0], mask_input: None };
    let counts: &[usize] = if model.info.on_gpu() { &GPU_WARM_UP_OBJECT_COUNTS } else { &[1] };
    for &count in counts {
        for multimask in [false, true] {
            let request = MaskRequest::objects(geometry, multimask, true);
            decode_all(model.decoder.as_mut(), &embedding, &vec![tokens.clone(); count], &request)?;
        }
    }
    // A tracked object (with a mask input) may run on another decoder graph than untracked ones.
    let tracked = PromptTokens { mask_input: Some(vec![0.0; LOW_RES * LOW_RES].into()), ..tokens };
    decode_all(model.decoder.as_mut(), &embedding, &[tracked], &MaskRequest::objects(geometry, false, true))?;
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, batch_sizes = fits, "warm-up done");
    Ok(fits)
}
