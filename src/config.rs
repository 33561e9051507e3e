//! Server configuration: one struct, passed down whole. Precedence, highest first: command-line
//! flags, `SAMSTREAM_*` environment variables, the TOML file given with `--config` (keys are
//! the long flag names with `_`), built-in defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches};
use serde::{Deserialize, Serialize};

use crate::model::{DataPath, Device, DeviceFallback, EncoderPrecision, GraphOptimization, OrtOptions, ResizeFilter};
use crate::video::ImageLimits;

#[derive(Debug, Clone, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// TOML file with any of the options below; flags and environment variables override it.
    #[arg(long, env = "SAMSTREAM_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Print the effective configuration as TOML (credentials in URIs redacted) and exit.
    #[arg(long)]
    #[serde(skip)]
    pub print_config: bool,

    /// Directory with encoder.onnx, decoder.onnx and manifest.json from models/export.py.
    #[arg(long, env = "SAMSTREAM_MODEL_DIR", default_value = "")]
    pub model_dir: PathBuf,

    /// Address to serve gRPC on; port 0 picks a free port (printed at startup).
    #[arg(long, env = "SAMSTREAM_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// The onnxruntime shared library (the PyPI wheel's onnxruntime/capi/libonnxruntime.so.1.31.1).
    #[arg(long, env = "ORT_DYLIB_PATH", default_value = "")]
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

    /// One ONNX Runtime thread pool shared by the encoder and the decoder (else one each).
    #[arg(long, env = "SAMSTREAM_ORT_SHARED_POOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub ort_shared_pool: bool,

    /// Encoder graph: fp32 (exact) or int8 (`export.py --int8`, dynamically quantised MatMuls;
    /// faster on CPUs, fidelity in BENCHMARKS.md).
    #[arg(long, env = "SAMSTREAM_ENCODER_PRECISION", value_enum, default_value_t = EncoderPrecision::Fp32)]
    pub encoder_precision: EncoderPrecision,

    /// Where resizing/normalisation/padding and mask upscaling run: `device` runs them as
    /// graphs on the execution provider (frames go up as bytes, masks come back as bytes,
    /// embeddings and logits stay in GPU memory); `host` runs them in Rust/OpenCV; `auto` is
    /// `device` on a GPU and `host` on the CPU, where the host stages are faster.
    #[arg(long, env = "SAMSTREAM_DATA_PATH", value_enum, default_value_t = DataPath::Auto)]
    pub data_path: DataPath,

    /// Let CUDA use TF32 for float32 matrix products and convolutions: a faster encoder whose
    /// logits drift from the CPU's (fidelity in BENCHMARKS.md). Off: exact float32 math.
    #[arg(long, env = "SAMSTREAM_TF32", default_value_t = false, action = clap::ArgAction::Set)]
    pub tf32: bool,

    /// Most bytes of memory ONNX Runtime may use for tensors (0 = no limit): each session's
    /// CUDA arena on a GPU (`gpu_mem_limit`), one arena for all sessions on the CPU. A request
    /// that would need more fails with RESOURCE_EXHAUSTED; the server goes on.
    #[arg(long, env = "SAMSTREAM_MEMORY_LIMIT", default_value_t = 0)]
    pub memory_limit: usize,

    /// Resampling of the longest side to 1024 pixels (pillow is exact with SamPredictor).
    #[arg(long, env = "SAMSTREAM_RESIZE", value_enum, default_value_t = ResizeFilter::Pillow)]
    pub resize: ResizeFilter,

    /// Jobs that may wait for the inference thread before requests get RESOURCE_EXHAUSTED.
    #[arg(long, env = "SAMSTREAM_QUEUE_CAPACITY", default_value_t = 16)]
    pub queue_capacity: usize,

    /// Most queued images (from different streams or calls) the encoder runs as one batch;
    /// every size up to it is warmed up before health says SERVING. 0 = auto: 8 on a GPU, 1 on
    /// the CPU provider, where a batch costs as much as its images one by one.
    #[arg(long, env = "SAMSTREAM_ENCODER_MAX_BATCH", default_value_t = 0)]
    pub encoder_max_batch: usize,

    /// Largest gRPC message accepted, in bytes.
    #[arg(long, env = "SAMSTREAM_MAX_MESSAGE_BYTES", default_value_t = 64 << 20)]
    pub max_message_bytes: usize,

    /// Largest image payload (encoded file or raw pixels), in bytes.
    #[arg(long, env = "SAMSTREAM_MAX_IMAGE_BYTES", default_value_t = 48 << 20)]
    pub max_image_bytes: usize,

    /// Largest image accepted, in pixels (width x height).
    #[arg(long, env = "SAMSTREAM_MAX_PIXELS", default_value_t = 4096 * 4096)]
    pub max_pixels: u64,

    /// Most objects in one request.
    #[arg(long, env = "SAMSTREAM_MAX_OBJECTS", default_value_t = 64)]
    pub max_objects: usize,

    /// Most points in one object's prompt.
    #[arg(long, env = "SAMSTREAM_MAX_POINTS", default_value_t = 32)]
    pub max_points_per_object: usize,

    /// Most StreamSegment sessions at once; more get RESOURCE_EXHAUSTED at once.
    #[arg(long, env = "SAMSTREAM_MAX_STREAMS", default_value_t = 64)]
    pub max_streams: usize,

    /// Most Segment calls in flight at once; more get RESOURCE_EXHAUSTED at once.
    #[arg(long, env = "SAMSTREAM_MAX_INFLIGHT", default_value_t = 32)]
    pub max_inflight: usize,

    /// Seconds to let in-flight work finish after SIGTERM/ctrl-c before exiting anyway; the
    /// first quarter (at most 1 s) health already says NOT_SERVING while calls are still served.
    #[arg(long, env = "SAMSTREAM_SHUTDOWN_GRACE_SECS", default_value_t = 5.0)]
    pub shutdown_grace_secs: f64,

    /// TOML file of server-side video sources (files, cameras, network streams, GStreamer).
    #[arg(long, env = "SAMSTREAM_SOURCES")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<PathBuf>,

    /// Glob of client-supplied stream URIs to allow (`rtsp://cams.example/*`); repeatable.
    /// Without one, clients may only name configured sources.
    #[arg(long = "allow-uri", env = "SAMSTREAM_ALLOW_URI", value_delimiter = ',')]
    pub allow_uris: Vec<String>,

    /// Seconds a source keeps grabbing after its last viewer left.
    #[arg(long, env = "SAMSTREAM_SOURCE_GRACE_SECS", default_value_t = 5.0)]
    pub source_grace_secs: f64,

    /// PEM certificate chain for TLS (rustls); with --tls-key.
    #[arg(long, env = "SAMSTREAM_TLS_CERT", requires = "tls_key")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for TLS.
    #[arg(long, env = "SAMSTREAM_TLS_KEY", requires = "tls_cert")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA bundle: clients must present a certificate it signed (mutual TLS).
    #[arg(long, env = "SAMSTREAM_TLS_CLIENT_CA", requires = "tls_cert")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_ca: Option<PathBuf>,

    /// File of bearer tokens, one per line: every RPC but health then needs
    /// `authorization: Bearer <token>`.
    #[arg(long, env = "SAMSTREAM_AUTH_TOKEN_FILE")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token_file: Option<PathBuf>,

    /// Serve Prometheus metrics on http://ADDR/metrics.
    #[arg(long, env = "SAMSTREAM_METRICS_LISTEN")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
}

/// Wraps `ServeConfig` alone, to read it from an argument list (tests, embedding).
#[derive(clap::Parser)]
struct ServeOnly {
    #[command(flatten)]
    serve: ServeConfig,
}

impl ServeConfig {
    /// Parses `args` (program name first) and applies the config file; for tests and embedding.
    pub fn parse_from<I: IntoIterator<Item = T>, T: Into<std::ffi::OsString> + Clone>(args: I) -> anyhow::Result<Self> {
        let matches = ServeOnly::command().try_get_matches_from(args)?;
        ServeOnly::from_arg_matches(&matches)?.serve.resolve(&matches)
    }

    /// Fills every option the user gave neither as a flag nor as an environment variable
    /// from the `--config` file, then checks what is required.
    pub fn resolve(self, matches: &ArgMatches) -> anyhow::Result<Self> {
        let Some(path) = self.config.clone() else { return self.checked() };
        let text = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("reading config {}: {e}", path.display()))?;
        let file: toml::Table = toml::from_str(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?;
        let mut merged = toml::Table::try_from(&self)?;
        for (key, value) in file {
            let known =
                ServeOnly::command().get_arguments().any(|a| a.get_id().as_str() == key && key != "config" && key != "print_config");
            anyhow::ensure!(known, "config {}: unknown option `{key}`", path.display());
            if !matches!(matches.value_source(&key), Some(ValueSource::CommandLine | ValueSource::EnvVariable)) {
                merged.insert(key, value);
            }
        }
        let mut resolved: ServeConfig =
            toml::Value::Table(merged).try_into().map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?;
        resolved.config = Some(path);
        resolved.print_config = self.print_config;
        resolved.checked()
    }

    fn checked(self) -> anyhow::Result<Self> {
        anyhow::ensure!(!self.model_dir.as_os_str().is_empty(), "--model-dir is required (flag, SAMSTREAM_MODEL_DIR or config file)");
        anyhow::ensure!(!self.ort_lib.as_os_str().is_empty(), "--ort-lib is required (flag, ORT_DYLIB_PATH or config file)");
        anyhow::ensure!(
            self.data_path != DataPath::Device || self.resize == ResizeFilter::Pillow,
            "--resize {:?} runs on the host only; use --data-path host (the device graph is Pillow-exact)",
            self.resize
        );
        Ok(self)
    }

    /// The effective configuration as TOML, with passwords in URIs replaced by `***`.
    pub fn to_toml_redacted(&self) -> anyhow::Result<String> {
        let mut shown = self.clone();
        shown.allow_uris = shown.allow_uris.iter().map(|u| redact_userinfo(u)).collect();
        Ok(toml::to_string(&shown)?)
    }

    pub fn image_limits(&self) -> ImageLimits {
        ImageLimits { max_pixels: self.max_pixels, max_bytes: self.max_image_bytes }
    }

    pub fn ort_options(&self) -> OrtOptions {
        OrtOptions {
            library: self.ort_lib.clone(),
            device: self.device,
            device_fallback: self.device_fallback,
            intra_threads: self.intra_threads,
            inter_threads: self.inter_threads,
            optimization: self.graph_optimization,
            cpu_arena: self.cpu_arena,
            encoder_precision: self.encoder_precision,
            spinning: self.ort_spinning,
            shared_thread_pool: self.ort_shared_pool,
            // The OpenCV resize alternatives exist on the host only.
            data_path: if self.resize == ResizeFilter::Pillow { self.data_path } else { DataPath::Host },
            tf32: self.tf32,
            memory_limit: self.memory_limit,
        }
    }

    /// Defaults for everything but the paths; for tests and embedding.
    pub fn new(model_dir: PathBuf, ort_lib: PathBuf) -> Self {
        Self {
            config: None,
            print_config: false,
            model_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ort_lib,
            device: Device::Cpu,
            device_fallback: DeviceFallback::Cpu,
            intra_threads: 0,
            inter_threads: 1,
            graph_optimization: GraphOptimization::All,
            cpu_arena: true,
            encoder_precision: EncoderPrecision::Fp32,
            ort_spinning: false,
            ort_shared_pool: true,
            data_path: DataPath::Auto,
            tf32: false,
            memory_limit: 0,
            resize: ResizeFilter::Pillow,
            queue_capacity: 16,
            encoder_max_batch: 0,
            max_message_bytes: 64 << 20,
            max_image_bytes: 48 << 20,
            max_pixels: 4096 * 4096,
            max_objects: 64,
            max_points_per_object: 32,
            max_streams: 64,
            max_inflight: 32,
            shutdown_grace_secs: 5.0,
            sources: None,
            allow_uris: Vec::new(),
            source_grace_secs: 5.0,
            metrics_listen: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            auth_token_file: None,
        }
    }
}

/// `scheme://user:secret@host/...` -> `scheme://user:***@host/...`.
fn redact_userinfo(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else { return uri.to_string() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..])
        }
        None => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("samstream.toml");
        std::fs::write(&file, "model_dir = \"/models\"\nort_lib = \"/lib/ort.so\"\nmax_objects = 3\nmax_pixels = 1000\nallow_uris = [\"rtsp://cam:pw@cams/*\"]\n").unwrap();
        let path = file.to_str().unwrap();
        let config = ServeConfig::parse_from(["x", "--config", path, "--max-objects", "7", "--model-dir", "/flag"]).unwrap();
        assert_eq!(config.max_objects, 7, "the flag wins over the file");
        assert_eq!(config.max_pixels, 1000, "the file wins over the default");
        assert_eq!(config.queue_capacity, 16, "untouched options keep their default");
        assert_eq!(config.model_dir, PathBuf::from("/flag"));
        let shown = config.to_toml_redacted().unwrap();
        assert!(shown.contains("rtsp://cam:***@cams/*") && !shown.contains("pw@"), "{shown}");

        std::fs::write(&file, "max_objectz = 3\n").unwrap();
        let error = ServeConfig::parse_from(["x", "--config", path]).unwrap_err().to_string();
        assert!(error.contains("unknown option `max_objectz`"), "{error}");
    }

    #[test]
    fn required_paths_must_come_from_somewhere() {
        if std::env::var_os("SAMSTREAM_MODEL_DIR").is_none() {
            let error = ServeConfig::parse_from(["x", "--ort-lib", "/x.so"]).unwrap_err().to_string();
            assert!(error.contains("--model-dir is required"), "{error}");
        }
    }
}
