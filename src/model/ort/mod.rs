//! MobileSAM in ONNX Runtime (loaded at run time from the onnxruntime wheel): the two exported
//! graphs plus the built pre/postprocessing graphs, each behind an IO binding so that tensors
//! between stages stay in the execution provider's memory.

mod decoded;
mod decoder;
mod device_stages;
mod encoder;
pub mod graphs;
mod memory_limit;
mod options;
mod placement;

use std::path::Path;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use ort::value::DynTensor;

pub use decoded::{BinaryMask, DecodeTimings, DecodedObjects, MaskGroup};
pub use decoder::OrtDecoder;
pub use device_stages::{DevicePostprocess, DevicePreprocess, PickEmbedding, PostprocessOutputs, PreprocessTimes};
pub use encoder::OrtEncoder;
pub use options::{Device, DeviceFallback, EncoderPrecision, GraphKind, GraphOptimization, OrtOptions, Provider};
pub use placement::{HostTensorPool, Placement, PooledTensor};

use super::ModelError;
use super::backend::DataPath;

/// ONNX Runtime allows one environment per process; every model shares it, and the first
/// model's options decide its thread pool.
static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

pub(crate) fn environment(options: &OrtOptions) -> Result<&'static Environment, ModelError> {
    let library = &options.library;
    ENVIRONMENT
        .get_or_init(|| {
            let mut builder = ort::init_from(library).map_err(|e| e.to_string())?.with_name("samstream");
            if options.shared_thread_pool {
                // One pool for both graphs: the encoder and decoder threads take turns on the
                // same cores instead of two pools (one of them spinning) fighting over them.
                let pool = ort::environment::GlobalThreadPoolOptions::default()
                    .with_intra_threads(options.intra_threads_or_cores())
                    .and_then(|p| p.with_inter_threads(options.inter_threads.max(1)))
                    .and_then(|p| p.with_spin_control(options.spinning))
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

/// One image embedding `[1, 256, 64, 64]`, in the memory the encoder wrote it to (the GPU's, on
/// a GPU); shared by every decode on its frame (prompt updates, several viewers).
pub struct Embedding(pub(crate) DynTensor);

pub(crate) fn check_shape(tensor: &DynTensor, name: &'static str, expected: &[usize]) -> Result<(), ModelError> {
    let shape: Vec<usize> = tensor.shape().iter().map(|&d| d as usize).collect();
    if shape != expected {
        return Err(ModelError::Shape { name, shape });
    }
    Ok(())
}

/// Both graphs with their stages; the engine moves each half to its own thread.
pub struct OrtModel {
    pub encoder: OrtEncoder,
    pub decoder: OrtDecoder,
    /// The execution provider that really runs the graphs.
    pub execution_provider: String,
    /// Where pre- and postprocessing run, `auto` resolved.
    pub data_path: DataPath,
    /// The arithmetic the encoder runs with (`fp32 (exact)`, ...).
    pub precision: String,
    /// Whether the graphs run on a GPU (not the CPU provider, nor a fallback to it).
    pub on_gpu: bool,
}

impl OrtModel {
    pub fn load(model_dir: &Path, options: &OrtOptions) -> Result<Self, ModelError> {
        let env = environment(options)?;
        let encoder_file = options.encoder_precision.file_name();
        let (encoder_session, provider) = open(env, options, &model_dir.join(encoder_file), GraphKind::Encoder)?;
        let (decoder_session, _) = open(env, options, &model_dir.join("decoder.onnx"), GraphKind::Decoder)?;
        let placement = Placement::for_provider(&provider)?;
        let data_path = match options.data_path {
            DataPath::Auto if placement.device_is_host() => DataPath::Host,
            DataPath::Auto => DataPath::Device,
            chosen => chosen,
        };
        let device = data_path == DataPath::Device;
        let preprocess = device.then(|| DevicePreprocess::load(options)).transpose()?;
        let postprocess = device.then(|| DevicePostprocess::load(options)).transpose()?;
        let pick = PickEmbedding::load(options)?;
        let encoder = OrtEncoder::new(encoder_session, placement.clone(), preprocess, pick)?;
        let decoder = OrtDecoder::new(decoder_session, placement, postprocess)?;
        tracing::info!(
            provider = %provider.name,
            encoder = encoder_file,
            precision = %options.precision(provider.gpu.is_some()),
            data_path = ?data_path,
            intra_threads = options.intra_threads_or_cores(),
            inter_threads = options.inter_threads,
            optimization = ?options.optimization,
            cpu_arena = options.cpu_arena,
            spinning = options.spinning,
            shared_thread_pool = options.shared_thread_pool,
            "onnxruntime sessions ready"
        );
        let on_gpu = provider.gpu.is_some();
        Ok(Self { encoder, decoder, execution_provider: provider.name, data_path, precision: options.precision(on_gpu), on_gpu })
    }
}

/// A session for a built graph on the provider `options` choose (exact math), and where its
/// tensors live.
pub(crate) fn stage_session(options: &OrtOptions, model: ort::editor::Model) -> Result<(Session, Placement), ModelError> {
    let (builder, provider) = options.session_builder(environment(options)?, GraphKind::Stage)?;
    Ok((model.into_session(&builder)?, Placement::for_provider(&provider)?))
}

fn open(env: &Environment, options: &OrtOptions, path: &Path, kind: GraphKind) -> Result<(Session, Provider), ModelError> {
    if !path.is_file() {
        return Err(ModelError::missing_file(path));
    }
    let (mut builder, provider) = options.session_builder(env, kind)?;
    Ok((builder.commit_from_file(path)?, provider))
}
