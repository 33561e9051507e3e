//! The model layer's failures: loading, running and shaping tensors.

use thiserror::Error;

/// Failures of the model layer: loading, running or shaping tensors.
#[derive(Debug, Error)]
pub enum ModelError {
    #[error("cannot load ONNX Runtime from {path}: {reason}")]
    Runtime { path: String, reason: String },
    // `io` rather than `source`: the message already carries the cause, once.
    #[error("cannot read model file {path}: {io}")]
    Io { path: String, io: std::io::Error },
    #[error("invalid model manifest {path}: {reason}")]
    Manifest { path: String, reason: String },
    #[error("execution provider {provider} is unavailable: {reason}")]
    ProviderUnavailable { provider: String, reason: String },
    /// The backend failed to run a graph; the message names the runtime.
    #[error("{0}")]
    Backend(String),
    /// A run needed more memory than the device (or `--memory-limit`) has free; the request
    /// fails, the server goes on.
    #[error("out of device memory: {0}")]
    OutOfMemory(String),
    #[error("opencv: {0}")]
    OpenCv(#[from] opencv::Error),
    #[error("unexpected tensor shape for {name}: {shape:?}")]
    Shape { name: &'static str, shape: Vec<usize> },
    #[error("unsupported image: {0}")]
    Image(String),
    #[error("batched encoder run failed: {0}")]
    Batch(String),
    #[error("the embedding was made by another backend")]
    ForeignEmbedding,
}

impl ModelError {
    /// A model file that is not there, with the export command that writes it.
    pub fn missing_file(path: &std::path::Path) -> Self {
        use super::options::EncoderPrecision;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let flag = [EncoderPrecision::Int8, EncoderPrecision::Fp16]
            .into_iter()
            .find(|p| p.file_name() == name)
            .and_then(EncoderPrecision::export_flag);
        let hint = match flag {
            Some(flag) => format!("missing; export it with models/export.py {flag}"),
            None => "missing; run models/export.py".to_string(),
        };
        Self::Io { path: path.display().to_string(), io: std::io::Error::new(std::io::ErrorKind::NotFound, hint) }
    }
}
