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
use crate::model::priority::lower_this_thread;
use crate::model::{
    BackendInfo, DataPath, Embedding, EncoderInput, ImageEncoder, ImageGeometry, LOW_RES, LoadedModel, MaskDecoder, MaskRequest,
    ModelError, Preprocessor, PromptTokens, RgbFrame,
};
use crate::telemetry::StageTimings;
use crate::telemetry::metrics::{ENCODER_BATCHED_IMAGES, JOBS_SKIPPED};

/// What the encoder thread starts from.
pub(super) struct Startup {
    pub load: ModelLoader,
    /// The most images per encoder call, resolved against the backend once it is loaded.
    pub max_batch: Box<dyn Fn(&BackendInfo) -> usize + Send>,
    pub preprocessor: Preprocessor,
    pub queue: mpsc::Receiver<EncodeJob>,
    pub decode_queue: mpsc::Receiver<DecodeJob>,
    pub state: watch::Sender<EngineState>,
}

pub(super) fn run(startup: Startup) {
    let Startup { load, max_batch, preprocessor, mut queue, decode_queue, state } = startup;
    let ModelLoader { first, host_fallback } = load;
    let warmed_up = |load: Box<LoadFn>| -> Result<(LoadedModel, usize), (ModelError, Option<DataPath>)> {
        let mut model = load().map_err(|e| (e, None))?;
        let wanted = max_batch(&model.info);
        match warm_up(&mut model, wanted, preprocessor) {
            Ok(max_batch) => Ok((model, max_batch)),
            Err(e) => Err((e, Some(model.info.data_path))),
        }
    };
    let loaded = warmed_up(first).or_else(|(e, data_path)| match (data_path, host_fallback) {
        // The device data path's graphs can fail where the encoder and decoder alone run (one
        // ONNX Runtime release refused a copy its own CUDA provider asked for): serving on the
        // host data path beats not serving.
        (Some(DataPath::Device), Some(fallback)) => {
            tracing::warn!(error = %e, "the device data path failed its warm-up; loading the model again on the host data path");
            warmed_up(fallback).map_err(|(e, _)| e)
        }
        _ => Err(e),
    });
    let (LoadedModel { mut encoder, decoder, info, encoder_nice }, max_batch) = match loaded {
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
    // Only now: the decoder thread, spawned from this one, keeps the normal priority.
    if let Err(e) = lower_this_thread(encoder_nice) {
        tracing::warn!(error = %e, encoder_nice, "could not lower the encoder thread's priority");
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

type LoadFn = dyn FnOnce() -> Result<LoadedModel, ModelError> + Send;

/// How the encoder thread gets its model: `first`, and, when that model's device data path
/// fails its warm-up, `host_fallback` (the same model on the host data path), if any.
pub struct ModelLoader {
    first: Box<LoadFn>,
    host_fallback: Option<Box<LoadFn>>,
}

impl ModelLoader {
    pub fn new(load: impl FnOnce() -> Result<LoadedModel, ModelError> + Send + 'static) -> Self {
        Self { first: Box::new(load), host_fallback: None }
    }

    /// For `--data-path auto`: the model to load instead when the device data path fails.
    pub fn with_host_fallback(self, load: impl FnOnce() -> Result<LoadedModel, ModelError> + Send + 'static) -> Self {
        Self { host_fallback: Some(Box::new(load)), ..self }
    }
}

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

/// A real frame size for the warm-up, so that the first 720p frame pays no first-time costs
/// (page-locked staging buffers, arena growth, that size's resampling constants on the device).
const WARM_UP_FRAME: (usize, usize) = (1280, 720);

/// Runs every batch shape the encoder may use and every object count shape of the decoder, so
/// that no request pays for lazy initialisation (sessions created per shape, and on CUDA the
/// cuDNN plans of each). Returns the largest batch that fit in memory.
fn warm_up(model: &mut LoadedModel, max_batch: usize, preprocessor: Preprocessor) -> Result<usize, ModelError> {
    let started = Instant::now();
    let (width, height) = WARM_UP_FRAME;
    let grey = Mat::new_rows_cols_with_default(height as i32, width as i32, CV_8UC3, Scalar::all(128.0))?;
    let (input, _) = prepare(model.info.data_path, preprocessor, std::sync::Arc::new(grey))?;
    let (embedding, _) = encode_one(model.encoder.as_mut(), vec![input.clone()])?;
    let fits = warm_up_batches(model.encoder.as_mut(), &input, max_batch)?;
    warm_up_decoder(model.decoder.as_mut(), &embedding)?;
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, batch_sizes = fits, "warm-up done");
    Ok(fits)
}

/// One batch per shape up to `max_batch`, each as one call, without the one-by-one retry of
/// serving; the largest batch that fit.
fn warm_up_batches(encoder: &mut dyn ImageEncoder, input: &EncoderInput, max_batch: usize) -> Result<usize, ModelError> {
    let mut fits = 1;
    for (shape, count) in encoder.batch_buckets().up_to(max_batch) {
        if count == 1 {
            continue; // the first run
        }
        match checked(encoder.encode(vec![input.clone(); count]), count) {
            Ok(_) => fits = count,
            Err(ModelError::OutOfMemory(reason)) => {
                tracing::warn!(batch = count, shape, %reason, "a batch of this size does not fit in memory; batching at most {fits}");
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(fits)
}

/// Every object count shape with untracked and tracked objects (they may run on different
/// decoder graphs), and the multimask outputs once; at the warm-up frame size.
fn warm_up_decoder(decoder: &mut dyn MaskDecoder, embedding: &Embedding) -> Result<(), ModelError> {
    let geometry = ImageGeometry::new(WARM_UP_FRAME.0, WARM_UP_FRAME.1);
    let centre = [geometry.width as f32 / 2.0, geometry.height as f32 / 2.0];
    let untracked = PromptTokens { coords: vec![centre, [0.0, 0.0]], labels: vec![1.0, -1.0], mask_input: None };
    let tracked = PromptTokens { mask_input: Some(vec![0.0; LOW_RES * LOW_RES].into()), ..untracked.clone() };
    let buckets = decoder.object_buckets();
    let counts: Vec<usize> = match buckets.largest() {
        Some(most) => buckets.up_to(most).into_iter().map(|(_, count)| count).collect(),
        None => vec![1],
    };
    let single = MaskRequest::objects(geometry, false, true);
    for count in counts {
        for object in [&untracked, &tracked] {
            decode_all(decoder, embedding, &vec![object.clone(); count], &single)?;
        }
    }
    decode_all(decoder, embedding, &[untracked], &MaskRequest::objects(geometry, true, true))?;
    Ok(())
}
