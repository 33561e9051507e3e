//! ONNX Runtime's errors in the model layer's terms: allocation failures become
//! `OutOfMemory` (RESOURCE_EXHAUSTED for the caller), everything else a backend failure.

use crate::model::ModelError;

impl From<ort::Error> for ModelError {
    fn from(e: ort::Error) -> Self {
        let message = e.to_string();
        if is_out_of_memory(&message) { Self::OutOfMemory(message) } else { Self::Backend(format!("onnxruntime: {message}")) }
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
        assert!(matches!(other, ModelError::Backend(_)), "{other}");
    }
}
