//! Server configuration: one struct, from flags or `SAMSTREAM_*` environment variables,
//! passed down whole.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use crate::model::{Device, ResizeFilter};
use crate::video::ImageLimits;

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Directory with encoder.onnx, decoder.onnx and manifest.json from models/export.py.
    #[arg(long, env = "SAMSTREAM_MODEL_DIR")]
    pub model_dir: PathBuf,

    /// Address to serve gRPC on; port 0 picks a free port (printed at startup).
    #[arg(long, env = "SAMSTREAM_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// The onnxruntime shared library (the PyPI wheel's onnxruntime/capi/libonnxruntime.so.1.31.1).
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub ort_lib: PathBuf,

    /// Execution provider for both graphs.
    #[arg(long, env = "SAMSTREAM_DEVICE", value_enum, default_value_t = Device::Cpu)]
    pub device: Device,

    /// ONNX Runtime threads per operator; 0 = one per core.
    #[arg(long, env = "SAMSTREAM_INTRA_THREADS", default_value_t = 0)]
    pub intra_threads: usize,

    /// Resampling of the longest side to 1024 pixels (pillow is exact with SamPredictor).
    #[arg(long, env = "SAMSTREAM_RESIZE", value_enum, default_value_t = ResizeFilter::Pillow)]
    pub resize: ResizeFilter,

    /// Jobs that may wait for the inference thread before requests get RESOURCE_EXHAUSTED.
    #[arg(long, env = "SAMSTREAM_QUEUE_CAPACITY", default_value_t = 16)]
    pub queue_capacity: usize,

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
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for TLS.
    #[arg(long, env = "SAMSTREAM_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA bundle: clients must present a certificate it signed (mutual TLS).
    #[arg(long, env = "SAMSTREAM_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// File of bearer tokens, one per line: every RPC but health then needs
    /// `authorization: Bearer <token>`.
    #[arg(long, env = "SAMSTREAM_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,

    /// Serve Prometheus metrics on http://ADDR/metrics.
    #[arg(long, env = "SAMSTREAM_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

impl ServeConfig {
    pub fn image_limits(&self) -> ImageLimits {
        ImageLimits { max_pixels: self.max_pixels, max_bytes: self.max_image_bytes }
    }

    /// Defaults for everything but the paths; for tests and embedding.
    pub fn new(model_dir: PathBuf, ort_lib: PathBuf) -> Self {
        Self {
            model_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ort_lib,
            device: Device::Cpu,
            intra_threads: 0,
            resize: ResizeFilter::Pillow,
            queue_capacity: 16,
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
