//! Server configuration: one struct, passed down whole. Precedence, highest first: command-line
//! flags, `SAMSTREAM_*` environment variables, the TOML file given with `--config` (keys are
//! the long flag names with `_`), built-in defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches};
use serde::{Deserialize, Serialize};

use crate::cluster::ClusterOptions;
use crate::engine::EngineOptions;
use crate::flags::{clap_defaults, path_or_unset};
use crate::model::RuntimeOptions;
use crate::model::prompt::PromptLimits;
use crate::video::ImageLimits;

/// `samstream serve`'s options, in groups. Keys stay flat: a group's fields are flags, variables
/// and TOML keys of their own, and each default is written once, in its `#[arg]` attribute.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
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
    #[arg(long, env = "SAMSTREAM_MODEL_DIR", default_value = "", value_parser = path_or_unset)]
    pub model_dir: PathBuf,

    /// Address to serve gRPC on; port 0 picks a free port (printed at startup).
    #[arg(long, env = "SAMSTREAM_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    #[command(flatten)]
    #[serde(flatten)]
    pub runtime: RuntimeOptions,

    #[command(flatten)]
    #[serde(flatten)]
    pub engine: EngineOptions,

    #[command(flatten)]
    #[serde(flatten)]
    pub limits: Limits,

    #[command(flatten)]
    #[serde(flatten)]
    pub video: VideoOptions,

    #[command(flatten)]
    #[serde(flatten)]
    pub tls: TlsOptions,

    #[command(flatten)]
    #[serde(flatten)]
    pub cluster: ClusterOptions,

    #[command(flatten)]
    #[serde(flatten)]
    pub browser: BrowserOptions,

    /// Seconds of silence after which a stream gets a HEARTBEAT event, so that proxies (whose
    /// idle timeouts cut silent streams, HTTP/2 pings or not) keep it open; 0 = never.
    #[arg(long, env = "SAMSTREAM_STREAM_HEARTBEAT_SECS", default_value_t = 10.0)]
    pub stream_heartbeat_secs: f64,

    /// Seconds to let in-flight work finish after SIGTERM/ctrl-c before exiting anyway; the
    /// first quarter (at most 1 s) health already says NOT_SERVING while calls are still served.
    #[arg(long, env = "SAMSTREAM_SHUTDOWN_GRACE_SECS", default_value_t = 5.0)]
    pub shutdown_grace_secs: f64,

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

/// What one request or stream may ask for, and how many may run at once.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct Limits {
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

    /// Most live sessions (StreamSegment and OpenSession) at once; more get RESOURCE_EXHAUSTED
    /// at once.
    #[arg(long, env = "SAMSTREAM_MAX_STREAMS", default_value_t = 64)]
    pub max_streams: usize,

    /// Most Segment and SegmentEverything calls in flight at once; more get RESOURCE_EXHAUSTED
    /// at once.
    #[arg(long, env = "SAMSTREAM_MAX_INFLIGHT", default_value_t = 32)]
    pub max_inflight: usize,

    /// Most point prompts one SegmentEverything call may run (all crops together; the
    /// decoder's work grows with them). Beyond it the call is refused before any work.
    #[arg(long, env = "SAMSTREAM_MAX_EVERYTHING_PROMPTS", default_value_t = 16384)]
    pub max_everything_prompts: usize,
}

impl Limits {
    pub fn image_limits(&self) -> ImageLimits {
        ImageLimits { max_pixels: self.max_pixels, max_bytes: self.max_image_bytes }
    }

    pub fn prompt_limits(&self) -> PromptLimits {
        PromptLimits { max_objects: self.max_objects, max_points_per_object: self.max_points_per_object }
    }
}

/// Server-side video sources and client-supplied stream URIs.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct VideoOptions {
    /// TOML file of server-side video sources (files, cameras, network streams, GStreamer).
    #[arg(long, env = "SAMSTREAM_SOURCES")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<PathBuf>,

    /// Glob of client-supplied stream URIs to allow (`rtsp://cams.example/*`); repeatable.
    /// Without one, clients may only name configured sources.
    #[arg(long = "allow-uri", env = "SAMSTREAM_ALLOW_URI", value_delimiter = ',')]
    #[serde(default)]
    pub allow_uris: Vec<String>,

    /// Seconds a source keeps grabbing after its last viewer left.
    #[arg(long, env = "SAMSTREAM_SOURCE_GRACE_SECS", default_value_t = 5.0)]
    pub source_grace_secs: f64,
}

/// TLS (rustls), and mutual TLS with a client CA.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct TlsOptions {
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
}

/// Browsers: the viewer page, and which other sites' pages may call over gRPC-Web (always
/// served on the gRPC port, beside native gRPC).
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct BrowserOptions {
    /// Serve the browser viewer at http(s)://LISTEN/ (the gRPC port): pick a source, click to
    /// segment, watch the latency.
    #[arg(long, env = "SAMSTREAM_VIEWER")]
    #[serde(default)]
    pub viewer: bool,

    /// An origin (scheme://host[:port]) whose pages may call this server over gRPC-Web (CORS);
    /// repeat or separate with commas. None by default: only pages this server serves (the
    /// viewer) may.
    #[arg(long = "cors-origin", env = "SAMSTREAM_CORS_ORIGINS", value_delimiter = ',')]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cors_origins: Vec<String>,
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
        anyhow::ensure!(!self.runtime.ort_lib.as_os_str().is_empty(), "--ort-lib is required (flag, ORT_DYLIB_PATH or config file)");
        self.runtime.check().map_err(anyhow::Error::msg)?;
        self.cluster.check().map_err(anyhow::Error::msg)?;
        for origin in &self.browser.cors_origins {
            let well_formed = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.ends_with('/')
                && http::HeaderValue::from_str(origin).is_ok();
            anyhow::ensure!(well_formed, "--cors-origin {origin:?}: expected scheme://host[:port], as a browser sends it in Origin");
        }
        anyhow::ensure!(
            self.stream_heartbeat_secs.is_finite() && self.stream_heartbeat_secs >= 0.0,
            "--stream-heartbeat-secs must be >= 0, got {}",
            self.stream_heartbeat_secs
        );
        Ok(self)
    }

    /// The effective configuration as TOML, with passwords in URIs replaced by `***`.
    pub fn to_toml_redacted(&self) -> anyhow::Result<String> {
        let mut shown = self.clone();
        shown.video.allow_uris = shown.video.allow_uris.iter().map(|u| crate::video::redact_userinfo(u)).collect();
        Ok(toml::to_string(&shown)?)
    }

    /// Defaults for everything but the paths, listening on a free port; for tests and embedding.
    pub fn new(model_dir: PathBuf, ort_lib: PathBuf) -> Self {
        let mut config: Self = clap_defaults();
        config.model_dir = model_dir;
        config.runtime.ort_lib = ort_lib;
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config
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
        assert_eq!(config.limits.max_objects, 7, "the flag wins over the file");
        assert_eq!(config.limits.max_pixels, 1000, "the file wins over the default");
        assert_eq!(config.engine.queue_capacity, 16, "untouched options keep their default");
        assert_eq!(config.model_dir, PathBuf::from("/flag"));
        let shown = config.to_toml_redacted().unwrap();
        assert!(shown.contains("rtsp://cam:***@cams/*") && !shown.contains("pw@"), "{shown}");

        std::fs::write(&file, "max_objectz = 3\n").unwrap();
        let error = ServeConfig::parse_from(["x", "--config", path]).unwrap_err().to_string();
        assert!(error.contains("unknown option `max_objectz`"), "{error}");
    }

    #[test]
    fn required_paths_must_come_from_somewhere() {
        // From the defaults alone, not the environment (the set-up exports both paths).
        let no_model = ServeConfig::new(PathBuf::new(), PathBuf::from("/x.so")).checked().unwrap_err().to_string();
        assert!(no_model.contains("--model-dir is required"), "{no_model}");
        let no_ort = ServeConfig::new(PathBuf::from("/models"), PathBuf::new()).checked().unwrap_err().to_string();
        assert!(no_ort.contains("--ort-lib is required"), "{no_ort}");
        assert!(ServeConfig::new(PathBuf::from("/models"), PathBuf::from("/x.so")).checked().is_ok());
    }
}
