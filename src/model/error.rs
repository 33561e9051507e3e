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
    #[error("onnxruntime: {0}")]
    Ort(#[from] ort::Error),
    #[error("opencv: {0}")]
    OpenCv(#[from] opencv::Error),
    #[error("unexpected tensor shape for {name}: {shape:?}")]
    Shape { name: &'static str, shape: Vec<usize> },
    #[error("unsupported image: {0}")]
    Image(String),
    #[error("batched encoder run failed: {0}")]
    Batch(String),
}

impl From<ort::Error<ort::session::builder::SessionBuilder>> for ModelError {
    fn from(e: ort::Error<ort::session::builder::SessionBuilder>) -> Self {
        Self::Ort(e.into())
    }
}
