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
    Ort(ort::Error),
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
}

impl ModelError {
    /// A model file that is not there, with the export command that writes it.
    pub fn missing_file(path: &std::path::Path) -> Self {
        use super::EncoderPrecision;
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

impl From<ort::Error> for ModelError {
    fn from(e: ort::Error) -> Self {
        if is_out_of_memory(&e.to_string()) { Self::OutOfMemory(e.to_string()) } else { Self::Ort(e) }
    }
}

impl From<ort::Error<ort::session::builder::SessionBuilder>> for ModelError {
    fn from(e: ort::Error<ort::session::builder::SessionBuilder>) -> Self {
        let e: ort::Error = e.into();
        e.into()
    }
}

/// How ONNX Runtime reports running out of memory: its arenas (`--memory-limit`, CUDA's
/// `gpu_mem_limit`, a full device), CUDA, cuBLAS and cuDNN allocation failures, and the host.
fn is_out_of_memory(message: &str) -> bool {
    const MARKERS: [&str; 6] = [
        "Failed to allocate memory",
        "is smaller than requested bytes",
        "out of memory",
        "ALLOC_FAILED",
        "cudaErrorMemoryAllocation",
        "bad_alloc",
    ];
    MARKERS.iter().any(|marker| message.contains(marker))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_failures_are_out_of_memory_and_other_errors_are_not() {
        for message in [
            "Non-zero status code returned while running Conv node. Status Message: Failed to allocate memory for requested buffer of size 268435456",
            "BFCArena::AllocateRawInternal Available memory of 10485760 is smaller than requested bytes of 268435456",
            "CUDA failure 2: out of memory ; GPU=0",
            "CUBLAS failure 3: CUBLAS_STATUS_ALLOC_FAILED",
            "std::bad_alloc",
        ] {
            assert!(matches!(ModelError::from(ort::Error::new(message)), ModelError::OutOfMemory(_)), "{message}");
        }
        let other = ModelError::from(ort::Error::new("Got invalid dimensions for input: image"));
        assert!(matches!(other, ModelError::Ort(_)), "{other}");
    }
}
