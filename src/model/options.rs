//! How the model runs, in the model layer's own words: execution provider and fallback,
//! threads, graph optimisation, memory, encoder precision, resampling and where pre- and
//! postprocessing run. The flags are declared here once, with their defaults; `model/ort/`
//! turns them into sessions, and what really runs is reported back as `BackendInfo`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::buckets::{BucketChoice, ShapeBuckets};
use crate::flags::{clap_defaults, path_or_unset};

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

impl Serialize for Device {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// What to do when the requested GPU provider cannot be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceFallback {
    /// Log a warning and run on the CPU provider.
    #[default]
    Cpu,
    /// Refuse to load the model (health stays NOT_SERVING).
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GraphOptimization {
    Disable,
    Basic,
    Extended,
    #[default]
    All,
}

/// Which encoder graph to run: the exact fp32 export, `export.py --int8`'s dynamically
/// quantised one (faster on CPUs) or `export.py --fp16`'s half-precision one (faster on GPUs);
/// the last two are not exact (fidelity in BENCHMARKS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize, Serialize)]
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

/// How the longest side is brought to 1024 pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeFilter {
    /// Pillow's antialiased bilinear filter, bit-exact with SamPredictor.
    #[default]
    Pillow,
    /// OpenCV INTER_AREA when shrinking, INTER_LINEAR when enlarging (close, not exact).
    OpencvArea,
    /// OpenCV INTER_LINEAR in both directions: aliases when shrinking; fails the parity test.
    OpencvLinear,
}

/// Where resizing, normalisation, padding and mask upscaling run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DataPath {
    /// `device` on a GPU provider, `host` on the CPU provider (where the Rust/OpenCV stages are faster).
    #[default]
    Auto,
    /// Rust (Pillow-exact) preprocessing and OpenCV postprocessing on the host.
    Host,
    /// The preprocessing and postprocessing graphs on the execution provider: frames go up as
    /// bytes, masks come back as bytes, everything between stays in its memory.
    Device,
}

impl fmt::Display for DataPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataPath::Auto => "auto",
            DataPath::Host => "host",
            DataPath::Device => "device",
        })
    }
}

/// The model's runtime options (`samstream serve` flags, `SAMSTREAM_*` variables, TOML keys).
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct RuntimeOptions {
    /// The onnxruntime shared library (the PyPI wheel's onnxruntime/capi/libonnxruntime.so.1.31.1).
    #[arg(long, env = "ORT_DYLIB_PATH", default_value = "", value_parser = path_or_unset)]
    pub ort_lib: PathBuf,

    /// Execution provider for both graphs: cpu, cuda[:N] or tensorrt[:N] (TensorRT falls back
    /// to CUDA, then CPU, node by node).
    #[arg(long, env = "SAMSTREAM_DEVICE", default_value_t = Device::Cpu)]
    pub device: Device,

    /// When the GPU provider cannot be registered: run on the CPU (with a warning) or fail.
    #[arg(long, env = "SAMSTREAM_DEVICE_FALLBACK", value_enum, default_value_t = DeviceFallback::Cpu)]
    pub device_fallback: DeviceFallback,

    /// ONNX Runtime threads per operator; 0 = one per core.
    #[arg(long, env = "SAMSTREAM_INTRA_THREADS", default_value_t = 0)]
    pub intra_threads: usize,

    /// ONNX Runtime threads running independent operators at once; 1 = sequential.
    #[arg(long, env = "SAMSTREAM_INTER_THREADS", default_value_t = 1)]
    pub inter_threads: usize,

    /// ONNX Runtime graph optimisation level.
    #[arg(long, env = "SAMSTREAM_GRAPH_OPTIMIZATION", value_enum, default_value_t = GraphOptimization::All)]
    pub graph_optimization: GraphOptimization,

    /// ONNX Runtime's CPU memory arena: faster buffer reuse, more resident memory.
    #[arg(long, env = "SAMSTREAM_CPU_ARENA", default_value_t = true, action = clap::ArgAction::Set)]
    pub cpu_arena: bool,

    /// Let idle ONNX Runtime threads spin for work (lower latency when one graph runs
    /// back to back; steals cores from the other graph's pool otherwise).
    #[arg(long, env = "SAMSTREAM_ORT_SPINNING", default_value_t = false, action = clap::ArgAction::Set)]
    pub ort_spinning: bool,

    /// One ONNX Runtime thread pool shared by the encoder and the decoder (else one each, and
    /// the encoder's runs at --encoder-nice).
    #[arg(long, env = "SAMSTREAM_ORT_SHARED_POOL", default_value_t = false, action = clap::ArgAction::Set)]
    pub ort_shared_pool: bool,

    /// How much lower the encoder's threads run than the rest (Linux nice, 0-19): a prompt
    /// update's decoder then takes the cores from an encoder that is busy with the next frame
    /// instead of sharing them. 0 = the same priority. With a shared pool only the encoder's
    /// own thread is lowered.
    #[arg(long, env = "SAMSTREAM_ENCODER_NICE", default_value_t = 19, value_parser = clap::value_parser!(u8).range(0..=19))]
    pub encoder_nice: u8,

    /// Encoder graph: fp32 (exact), int8 (`export.py --int8`, dynamically quantised MatMuls;
    /// faster on CPUs) or fp16 (`export.py --fp16`, for GPUs); fidelity in BENCHMARKS.md.
    #[arg(long, env = "SAMSTREAM_ENCODER_PRECISION", value_enum, default_value_t = EncoderPrecision::Fp32)]
    pub encoder_precision: EncoderPrecision,

    /// Where resizing/normalisation/padding and mask upscaling run: `device` runs them as
    /// graphs on the execution provider (frames go up as bytes, masks come back as bytes,
    /// embeddings and logits stay in GPU memory); `host` runs them in Rust/OpenCV; `auto` is
    /// `device` on a GPU (the host one if the device one fails its warm-up) and `host` on the
    /// CPU, where the host stages are faster.
    #[arg(long, env = "SAMSTREAM_DATA_PATH", value_enum, default_value_t = DataPath::Auto)]
    pub data_path: DataPath,

    /// Let CUDA use TF32 for float32 matrix products and convolutions: a faster encoder whose
    /// logits drift from the CPU's (fidelity in BENCHMARKS.md). Off: exact float32 math.
    #[arg(long, env = "SAMSTREAM_TF32", default_value_t = false, action = clap::ArgAction::Set)]
    pub tf32: bool,

    /// Most bytes of device memory ONNX Runtime may use for tensors, all sessions together
    /// (0 = no limit): one arena shared by every session, on the GPU or on the CPU provider. A
    /// request that would need more fails with RESOURCE_EXHAUSTED; the server goes on.
    #[arg(long, env = "SAMSTREAM_MEMORY_LIMIT", default_value_t = 0)]
    pub memory_limit: usize,

    /// Images per encoder call are padded up to one of these batch sizes, each run by its own
    /// session (cuDNN keeps a convolution's plan for its last input shape only): `auto` is
    /// 1,2,4,8 on a GPU and exact sizes on the CPU; `exact`; or sizes such as `1,2,4,8`.
    #[arg(long, env = "SAMSTREAM_ENCODER_BATCH_BUCKETS", default_value = "auto")]
    pub encoder_batch_buckets: BucketChoice,

    /// Objects per decoder call are padded up to one of these counts, each run by its own
    /// session, and a call takes at most the largest: `auto` is 1,2,4,...,64 on a GPU and
    /// exact counts on the CPU; `exact`; or counts such as `1,4,16,64`.
    #[arg(long, env = "SAMSTREAM_DECODER_OBJECT_BUCKETS", default_value = "auto")]
    pub decoder_object_buckets: BucketChoice,

    /// Resampling of the longest side to 1024 pixels (pillow is exact with SamPredictor; the
    /// OpenCV filters run on the host data path only).
    #[arg(long, env = "SAMSTREAM_RESIZE", value_enum, default_value_t = ResizeFilter::Pillow)]
    pub resize: ResizeFilter,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        clap_defaults()
    }
}

/// Largest bucket of `auto` on a GPU, and `--encoder-max-batch` auto there: eight 1024x1024
/// images per encoder call.
pub const GPU_ENCODER_BATCH: usize = 8;
/// Largest bucket of `auto` on a GPU: segment everything's default points per batch.
const GPU_DECODER_OBJECTS: usize = 64;

impl RuntimeOptions {
    pub fn encoder_buckets(&self, on_gpu: bool) -> ShapeBuckets {
        self.encoder_batch_buckets.resolve(on_gpu, GPU_ENCODER_BATCH)
    }

    pub fn decoder_buckets(&self, on_gpu: bool) -> ShapeBuckets {
        self.decoder_object_buckets.resolve(on_gpu, GPU_DECODER_OBJECTS)
    }

    pub fn intra_threads_or_cores(&self) -> usize {
        match self.intra_threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }

    /// The data path to ask the backend for: the OpenCV resize alternatives exist on the host only.
    pub fn requested_data_path(&self) -> DataPath {
        if self.resize == ResizeFilter::Pillow { self.data_path } else { DataPath::Host }
    }

    /// Refuses combinations that cannot run.
    pub fn check(&self) -> Result<(), String> {
        if self.data_path == DataPath::Device && self.resize != ResizeFilter::Pillow {
            return Err(format!(
                "--resize {:?} runs on the host only; use --data-path host (the device graph is Pillow-exact)",
                self.resize
            ));
        }
        Ok(())
    }
}

/// The execution provider that really runs the graphs (after any fallback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionProvider {
    Cpu,
    /// A GPU provider was asked for and could not be registered.
    CpuFallback,
    Cuda(i32),
    /// TensorRT, with CUDA then the CPU for the nodes it does not take.
    TensorRt(i32),
}

impl ExecutionProvider {
    /// The CUDA device whose memory the graphs use, if any.
    pub fn gpu(self) -> Option<i32> {
        match self {
            ExecutionProvider::Cpu | ExecutionProvider::CpuFallback => None,
            ExecutionProvider::Cuda(id) | ExecutionProvider::TensorRt(id) => Some(id),
        }
    }
}

/// As ONNX Runtime names it, with the device (`CUDAExecutionProvider (cuda:0)`).
impl fmt::Display for ExecutionProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecutionProvider::Cpu => f.write_str("CPUExecutionProvider"),
            ExecutionProvider::CpuFallback => f.write_str("CPUExecutionProvider (fallback)"),
            ExecutionProvider::Cuda(id) => write!(f, "CUDAExecutionProvider (cuda:{id})"),
            ExecutionProvider::TensorRt(id) => write!(f, "TensorrtExecutionProvider (tensorrt:{id})"),
        }
    }
}

/// The arithmetic the encoder really runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Fp32,
    Fp32Tf32,
    Int8,
    Fp16,
}

impl Precision {
    pub fn of(options: &RuntimeOptions, on_gpu: bool) -> Self {
        match options.encoder_precision {
            EncoderPrecision::Fp32 if on_gpu && options.tf32 => Precision::Fp32Tf32,
            EncoderPrecision::Fp32 => Precision::Fp32,
            EncoderPrecision::Int8 => Precision::Int8,
            EncoderPrecision::Fp16 => Precision::Fp16,
        }
    }
}

/// As GetModelInfo and the startup log say it.
impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32 (exact)",
            Precision::Fp32Tf32 => "fp32 with TF32 (fast, not exact)",
            Precision::Int8 => "int8 encoder (dynamic quantisation, not exact)",
            Precision::Fp16 => "fp16 encoder (not exact)",
        })
    }
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

    #[test]
    fn defaults_come_from_the_attributes() {
        let options = RuntimeOptions::default();
        assert_eq!((options.intra_threads, options.inter_threads), (0, 1));
        assert!(options.cpu_arena && !options.ort_shared_pool && !options.ort_spinning && !options.tf32);
        assert_eq!(options.encoder_nice, 19);
        assert_eq!(
            (options.data_path, options.encoder_precision, options.resize),
            (DataPath::Auto, EncoderPrecision::Fp32, ResizeFilter::Pillow)
        );
    }
}
