//! How ONNX Runtime runs the graphs: execution provider, threads, graph optimisation, memory
//! arena and encoder precision. Parsed from flags/TOML, turned into session builders here.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use ort::ep::cuda::ConvAlgorithmSearch;
use ort::ep::{self, ExecutionProvider};
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};

use crate::model::ModelError;
use crate::model::backend::DataPath;

/// `cpu`, `cuda[:N]` or `tensorrt[:N]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    #[default]
    Cpu,
    Cuda(i32),
    TensorRt(i32),
}

impl FromStr for Device {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (kind, id) = match text.split_once(':') {
            Some((kind, id)) => {
                (kind, Some(id.parse::<i32>().ok().filter(|n| *n >= 0).ok_or(format!("device id `{id}` is not a GPU index"))?))
            }
            None => (text, None),
        };
        match (kind.to_ascii_lowercase().as_str(), id) {
            ("cpu", None) => Ok(Device::Cpu),
            ("cuda", id) => Ok(Device::Cuda(id.unwrap_or(0))),
            ("tensorrt", id) => Ok(Device::TensorRt(id.unwrap_or(0))),
            _ => Err(format!("`{text}` is not cpu, cuda[:N] or tensorrt[:N]")),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(id) => write!(f, "cuda:{id}"),
            Device::TensorRt(id) => write!(f, "tensorrt:{id}"),
        }
    }
}

impl serde::Serialize for Device {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Device {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// What to do when the requested GPU provider cannot be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceFallback {
    /// Log a warning and run on the CPU provider.
    #[default]
    Cpu,
    /// Refuse to load the model (health stays NOT_SERVING).
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GraphOptimization {
    Disable,
    Basic,
    Extended,
    #[default]
    All,
}

impl From<GraphOptimization> for GraphOptimizationLevel {
    fn from(level: GraphOptimization) -> Self {
        match level {
            GraphOptimization::Disable => GraphOptimizationLevel::Disable,
            GraphOptimization::Basic => GraphOptimizationLevel::Level1,
            GraphOptimization::Extended => GraphOptimizationLevel::Level2,
            GraphOptimization::All => GraphOptimizationLevel::All,
        }
    }
}

/// Which encoder graph to run: the exact fp32 export, `export.py --int8`'s dynamically
/// quantised one (faster on CPUs) or `export.py --fp16`'s half-precision one (faster on GPUs);
/// the last two are not exact (fidelity in BENCHMARKS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EncoderPrecision {
    #[default]
    Fp32,
    Int8,
    Fp16,
}

impl EncoderPrecision {
    pub fn file_name(self) -> &'static str {
        match self {
            EncoderPrecision::Fp32 => "encoder.onnx",
            EncoderPrecision::Int8 => "encoder_int8.onnx",
            EncoderPrecision::Fp16 => "encoder_fp16.onnx",
        }
    }

    /// The `export.py` flag that writes this precision's file (fp32's is always written).
    pub fn export_flag(self) -> Option<&'static str> {
        match self {
            EncoderPrecision::Fp32 => None,
            EncoderPrecision::Int8 => Some("--int8"),
            EncoderPrecision::Fp16 => Some("--fp16"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct OrtOptions {
    /// `libonnxruntime.so.*` to load (the onnxruntime wheel's `capi/` file).
    pub library: PathBuf,
    pub device: Device,
    pub device_fallback: DeviceFallback,
    /// Threads inside one operator; 0 = one per core.
    pub intra_threads: usize,
    /// Threads running independent operators at once; 1 = sequential execution.
    pub inter_threads: usize,
    pub optimization: GraphOptimization,
    /// ONNX Runtime's CPU memory arena (faster reuse, higher resident memory).
    pub cpu_arena: bool,
    pub encoder_precision: EncoderPrecision,
    /// Whether idle intra-op threads spin for work. Off by default: the encoder's and the
    /// decoder's pools share the cores, and a pool spinning after its run takes them from the
    /// other graph.
    pub spinning: bool,
    /// One process-wide intra-op pool for both graphs instead of one per session.
    pub shared_thread_pool: bool,
    /// Where pre- and postprocessing run.
    pub data_path: DataPath,
    /// Let CUDA use TF32 for float32 matrix products and convolutions (faster, not exact).
    pub tf32: bool,
    /// Most bytes of tensor memory, 0 = no limit: per session on CUDA (`gpu_mem_limit`), one
    /// arena shared by all sessions on the CPU provider. A run needing more fails.
    pub memory_limit: usize,
}

impl Default for OrtOptions {
    fn default() -> Self {
        Self {
            library: PathBuf::new(),
            device: Device::Cpu,
            device_fallback: DeviceFallback::Cpu,
            intra_threads: 0,
            inter_threads: 1,
            optimization: GraphOptimization::All,
            cpu_arena: true,
            encoder_precision: EncoderPrecision::Fp32,
            spinning: false,
            shared_thread_pool: true,
            data_path: DataPath::Auto,
            tf32: false,
            memory_limit: 0,
        }
    }
}

impl OrtOptions {
    /// The arithmetic the encoder runs with, as GetModelInfo and the startup log say it.
    pub fn precision(&self, gpu: bool) -> String {
        match self.encoder_precision {
            EncoderPrecision::Fp32 if gpu && self.tf32 => "fp32 with TF32 (fast, not exact)".into(),
            EncoderPrecision::Fp32 => "fp32 (exact)".into(),
            EncoderPrecision::Int8 => "int8 encoder (dynamic quantisation, not exact)".into(),
            EncoderPrecision::Fp16 => "fp16 encoder (not exact)".into(),
        }
    }

    pub fn intra_threads_or_cores(&self) -> usize {
        match self.intra_threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }

    /// A session builder with threads, optimisation and providers applied for a `kind` of
    /// graph, and the provider that will really run it, so the startup log and GetModelInfo
    /// tell the truth after a fallback.
    pub(super) fn session_builder(
        &self,
        env: &ort::environment::Environment,
        kind: GraphKind,
    ) -> Result<(SessionBuilder, Provider), ModelError> {
        let mut builder = SessionBuilder::new(env)?
            .with_optimization_level(self.optimization.into())?
            .with_intra_threads(self.intra_threads_or_cores())?
            .with_inter_threads(self.inter_threads.max(1))?
            .with_parallel_execution(self.inter_threads > 1)?
            .with_intra_op_spinning(self.spinning)?
            .with_inter_op_spinning(self.spinning)?;
        let tf32 = self.tf32 && kind != GraphKind::Stage;
        let search = if kind == GraphKind::Encoder { ConvAlgorithmSearch::Exhaustive } else { ConvAlgorithmSearch::Heuristic };
        let cuda = |id: i32| {
            let cuda = ep::CUDA::default().with_device_id(id).with_tf32(tf32).with_conv_algorithm_search(search.clone());
            if self.memory_limit > 0 { cuda.with_memory_limit(self.memory_limit) } else { cuda }
        };
        let gpu = match self.device {
            Device::Cpu => None,
            Device::Cuda(id) => Some(register(&mut builder, "CUDAExecutionProvider", cuda(id)).map(|name| (name, id))),
            Device::TensorRt(id) => {
                // TensorRT hands the nodes it cannot take to CUDA, then to the CPU.
                let tensorrt = ep::TensorRT::default()
                    .with_device_id(id)
                    .with_engine_cache(true)
                    .with_engine_cache_path(std::env::temp_dir().display());
                Some(
                    register(&mut builder, "TensorrtExecutionProvider", tensorrt)
                        .and_then(|_| register(&mut builder, "CUDAExecutionProvider", cuda(id)))
                        .map(|_| ("TensorrtExecutionProvider", id)),
                )
            }
        };
        let provider = match gpu {
            None => Provider { name: "CPUExecutionProvider".to_string(), gpu: None },
            Some(Ok((name, id))) => Provider { name: format!("{name} ({})", self.device), gpu: Some(id) },
            Some(Err(reason)) if self.device_fallback == DeviceFallback::Fail => {
                return Err(ModelError::ProviderUnavailable { provider: self.device.to_string(), reason });
            }
            Some(Err(reason)) => {
                tracing::warn!(device = %self.device, %reason, "GPU provider unavailable; falling back to CPUExecutionProvider");
                Provider { name: "CPUExecutionProvider (fallback)".to_string(), gpu: None }
            }
        };
        builder = builder.with_execution_providers([ep::CPU::default().with_arena_allocator(self.cpu_arena).build()])?;
        if self.memory_limit > 0 && provider.gpu.is_none() {
            // The capped arena registered with the environment (see memory_limit.rs).
            builder = builder.with_env_allocators()?;
        }
        Ok((builder, provider))
    }
}

/// Which graph a session runs: decides its math and cuDNN's algorithm search on CUDA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphKind {
    /// TinyViT: float32 (TF32 with `--tf32`); cuDNN benchmarks every algorithm once per input
    /// shape, which is why every batch size is warmed up before serving.
    Encoder,
    /// SAM's prompt encoder and mask decoder: small convolutions over a number of objects that
    /// varies per call, so cuDNN's heuristics pick algorithms without a search per count.
    Decoder,
    /// The built pre/postprocessing graphs: always exact float math (the resampling must stay
    /// bit-exact), heuristic algorithm choice.
    Stage,
}

/// The execution provider a session really got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// As ONNX Runtime names it, with the device (`CUDAExecutionProvider (cuda:0)`).
    pub name: String,
    /// The CUDA device whose memory the graphs use, if any.
    pub gpu: Option<i32>,
}

fn register<E: ExecutionProvider>(builder: &mut SessionBuilder, name: &'static str, provider: E) -> Result<&'static str, String> {
    match E::is_available() {
        Ok(true) => {}
        Ok(false) => {
            return Err(format!("{name} is not in this onnxruntime build (the PyPI `onnxruntime` wheel is CPU-only; use onnxruntime-gpu)"));
        }
        Err(e) => return Err(e.to_string()),
    }
    provider.register(builder).map(|()| name).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_with_optional_ids() {
        assert_eq!("cpu".parse(), Ok(Device::Cpu));
        assert_eq!("cuda".parse(), Ok(Device::Cuda(0)));
        assert_eq!("CUDA:1".parse(), Ok(Device::Cuda(1)));
        assert_eq!("tensorrt:2".parse(), Ok(Device::TensorRt(2)));
        assert!("cpu:1".parse::<Device>().is_err());
        assert!("cuda:-1".parse::<Device>().is_err());
        assert!("rocm".parse::<Device>().is_err());
        assert_eq!(Device::Cuda(3).to_string().parse(), Ok(Device::Cuda(3)));
    }
}
