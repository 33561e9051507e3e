//! MobileSAM in ONNX Runtime (loaded at run time from the onnxruntime wheel): the two exported
//! graphs plus the built pre/postprocessing graphs, each behind an IO binding so that tensors
//! between stages stay in the execution provider's memory. The rest of the crate reaches this
//! backend only through `model::load` and the model layer's traits.

mod decoder;
mod device_stages;
mod encoder;
mod error;
mod everything_filter;
pub mod graphs;
mod host;
mod memory_limit;
mod options;
mod placement;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use ort::value::{DynTensor, DynTensorValueType};

pub use decoder::OrtDecoder;
pub use device_stages::{DevicePostprocess, DevicePreprocess, PickEmbedding, PostprocessOutputs};
use encoder::OpenSession;
pub use encoder::OrtEncoder;
pub use everything_filter::DeviceCandidates;
pub use host::HostTensor;
use options::{GraphKind, session_builder};
pub use placement::{HostTensorPool, Placement, PooledTensor, Upload, UploadWait};

use crate::model::{BackendInfo, DataPath, LoadedModel, ModelError, Precision, RuntimeOptions, SHARED_DECODER};
use crate::telemetry::metrics::{PADDED_SLOTS, SHAPE_RUNS};

/// ONNX Runtime allows one environment per process; every model shares it, and the first
/// model's options decide its thread pool.
static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

pub(crate) fn environment(options: &RuntimeOptions) -> Result<&'static Environment, ModelError> {
    let library = &options.ort_lib;
    ENVIRONMENT
        .get_or_init(|| {
            let mut builder = ort::init_from(library).map_err(|e| e.to_string())?.with_name("samstream");
            if options.ort_shared_pool {
                // One pool for both graphs: the encoder and decoder threads take turns on the
                // same cores instead of two pools (one of them spinning) fighting over them.
                let pool = ort::environment::GlobalThreadPoolOptions::default()
                    .with_intra_threads(options.intra_threads_or_cores())
                    .and_then(|p| p.with_inter_threads(options.inter_threads.max(1)))
                    .and_then(|p| p.with_spin_control(options.ort_spinning))
                    .map_err(|e| e.to_string())?;
                builder = builder.with_global_thread_pool(pool);
            }
            let env = builder.build().map_err(|e| e.to_string())?;
            memory_limit::register_device_arena(&env, options)?;
            Ok(env)
        })
        .as_ref()
        .map_err(|reason| ModelError::Runtime { path: library.display().to_string(), reason: reason.clone() })
}

/// Both graphs with their stages, each half for its own engine thread.
pub fn load(model_dir: &Path, options: &RuntimeOptions) -> Result<LoadedModel, ModelError> {
    let env = environment(options)?;
    let encoder_file = options.encoder_precision.file_name();
    let encoder_path = model_dir.join(encoder_file);
    let decoder_path = model_dir.join("decoder.onnx");
    let shared_path = model_dir.join(SHARED_DECODER);
    for required in [&encoder_path, &decoder_path] {
        if !required.is_file() {
            return Err(ModelError::missing_file(required));
        }
    }
    // Which provider the sessions really get (after a fallback), before opening any.
    let (_, provider) = session_builder(options, env, GraphKind::Encoder)?;
    let placement = Placement::for_provider(provider)?;
    let on_gpu = provider.gpu().is_some();
    let open_encoder = opener(env, options, encoder_path, GraphKind::Encoder);
    let open_decoder = opener(env, options, decoder_path, GraphKind::Decoder);
    let open_shared = if shared_path.is_file() {
        Some(opener(env, options, shared_path, GraphKind::Decoder))
    } else {
        tracing::info!("no {SHARED_DECODER} in the model directory (export.py writes it); every object gets its own copy of the embedding");
        None
    };
    let data_path = match options.requested_data_path() {
        DataPath::Auto if placement.device_is_host() => DataPath::Host,
        DataPath::Auto => DataPath::Device,
        chosen => chosen,
    };
    let device = data_path == DataPath::Device;
    let preprocess = device.then(|| DevicePreprocess::load(options)).transpose()?;
    let postprocess =
        device.then(|| Ok::<_, ModelError>((DevicePostprocess::load(options)?, DeviceCandidates::load(options)?))).transpose()?;
    let pick = PickEmbedding::load(options)?;
    let encoder_buckets = options.encoder_buckets(on_gpu);
    let decoder_buckets = options.decoder_buckets(on_gpu);
    let encoder = OrtEncoder::new(open_encoder, encoder_buckets.clone(), placement.clone(), preprocess, pick)?;
    let decoder = OrtDecoder::new(open_decoder, open_shared, decoder_buckets.clone(), placement, postprocess)?;
    let info = BackendInfo { provider, data_path, precision: Precision::of(options, provider.gpu().is_some()) };
    tracing::info!(
        provider = %info.provider,
        encoder = encoder_file,
        precision = %info.precision,
        data_path = %info.data_path,
        intra_threads = options.intra_threads_or_cores(),
        inter_threads = options.inter_threads,
        optimization = ?options.graph_optimization,
        cpu_arena = options.cpu_arena,
        spinning = options.ort_spinning,
        shared_thread_pool = options.ort_shared_pool,
        encoder_nice = options.encoder_nice,
        encoder_batch_shapes = ?encoder_buckets,
        decoder_object_shapes = ?decoder_buckets,
        "onnxruntime sessions ready"
    );
    Ok(LoadedModel { encoder: Box::new(encoder), decoder: Box::new(decoder), info, encoder_nice: options.encoder_nice })
}

/// A session for a built graph on the provider `options` choose (exact math), and where its
/// tensors live.
pub fn stage_session(options: &RuntimeOptions, model: ort::editor::Model) -> Result<(Session, Placement), ModelError> {
    let (builder, provider) = session_builder(options, environment(options)?, GraphKind::Stage)?;
    Ok((model.into_session(&builder)?, Placement::for_provider(provider)?))
}

/// Opens sessions of the graph in `path` (one per shape, with fixed shapes).
fn opener(env: &'static Environment, options: &RuntimeOptions, path: PathBuf, kind: GraphKind) -> OpenSession {
    let options = options.clone();
    Box::new(move || {
        let (mut builder, _) = session_builder(&options, env, kind)?;
        Ok(builder.commit_from_file(&path)?)
    })
}

/// Counts one run of `graph` at `shape` and the padding slots it carried for `real` items.
pub(crate) fn count_shape_run(graph: &'static str, shape: usize, real: usize) {
    metrics::counter!(SHAPE_RUNS, "graph" => graph, "shape" => shape.to_string()).increment(1);
    metrics::counter!(PADDED_SLOTS, "graph" => graph, "shape" => shape.to_string()).increment(shape.saturating_sub(real) as u64);
}

/// Takes a named output of the last run as a tensor.
pub(crate) fn take_output(outputs: &mut ort::session::SessionOutputs<'_>, name: &'static str) -> Result<DynTensor, ModelError> {
    let value = outputs.remove(name).ok_or(ModelError::Shape { name, shape: Vec::new() })?;
    Ok(value.downcast::<DynTensorValueType>()?)
}

pub(crate) fn check_shape(tensor: &DynTensor, name: &'static str, expected: &[usize]) -> Result<(), ModelError> {
    let shape: Vec<usize> = tensor.shape().iter().map(|&d| d as usize).collect();
    if shape != expected {
        return Err(ModelError::Shape { name, shape });
    }
    Ok(())
}
