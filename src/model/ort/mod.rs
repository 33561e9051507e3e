//! MobileSAM in ONNX Runtime (loaded at run time from the onnxruntime wheel): the two exported
//! graphs plus the built pre/postprocessing graphs, each behind an IO binding so that tensors
//! between stages stay in the execution provider's memory. The rest of the crate reaches this
//! backend only through `model::load` and the model layer's traits.

mod candidates;
mod decoder;
mod device_stages;
mod encoder;
mod error;
pub mod graphs;
mod host;
mod memory_limit;
mod options;
mod placement;

use std::path::Path;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use ort::value::{DynTensor, DynTensorValueType};

pub use candidates::DeviceCandidates;
pub use decoder::OrtDecoder;
pub use device_stages::{DevicePostprocess, DevicePreprocess, PickEmbedding, PostprocessOutputs};
pub use encoder::OrtEncoder;
use options::{GraphKind, session_builder};
pub use placement::{HostTensorPool, Placement, PooledTensor};

use crate::model::{BackendInfo, DataPath, ExecutionProvider, LoadedModel, ModelError, Precision, RuntimeOptions, SHARED_DECODER};

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
            if options.memory_limit > 0 {
                memory_limit::register_cpu_arena(&env, options.memory_limit)?;
            }
            Ok(env)
        })
        .as_ref()
        .map_err(|reason| ModelError::Runtime { path: library.display().to_string(), reason: reason.clone() })
}

/// Both graphs with their stages, each half for its own engine thread.
pub fn load(model_dir: &Path, options: &RuntimeOptions) -> Result<LoadedModel, ModelError> {
    let env = environment(options)?;
    let encoder_file = options.encoder_precision.file_name();
    let (encoder_session, provider) = open(env, options, &model_dir.join(encoder_file), GraphKind::Encoder)?;
    let (decoder_session, _) = open(env, options, &model_dir.join("decoder.onnx"), GraphKind::Decoder)?;
    let shared_file = model_dir.join(SHARED_DECODER);
    let shared_session = if shared_file.is_file() {
        Some(open(env, options, &shared_file, GraphKind::Decoder)?.0)
    } else {
        tracing::info!("no {SHARED_DECODER} in the model directory (export.py writes it); every object gets its own copy of the embedding");
        None
    };
    let placement = Placement::for_provider(provider)?;
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
    let encoder = OrtEncoder::new(encoder_session, placement.clone(), preprocess, pick)?;
    let decoder = OrtDecoder::new(decoder_session, shared_session, placement, postprocess)?;
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
        "onnxruntime sessions ready"
    );
    Ok(LoadedModel { encoder: Box::new(encoder), decoder: Box::new(decoder), info })
}

/// A session for a built graph on the provider `options` choose (exact math), and where its
/// tensors live.
pub(crate) fn stage_session(options: &RuntimeOptions, model: ort::editor::Model) -> Result<(Session, Placement), ModelError> {
    let (builder, provider) = session_builder(options, environment(options)?, GraphKind::Stage)?;
    Ok((model.into_session(&builder)?, Placement::for_provider(provider)?))
}

fn open(env: &Environment, options: &RuntimeOptions, path: &Path, kind: GraphKind) -> Result<(Session, ExecutionProvider), ModelError> {
    if !path.is_file() {
        return Err(ModelError::missing_file(path));
    }
    let (mut builder, provider) = session_builder(options, env, kind)?;
    Ok((builder.commit_from_file(path)?, provider))
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
