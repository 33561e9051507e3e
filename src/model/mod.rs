//! MobileSAM: SamPredictor's preprocessing, prompt encoding and postprocessing around the two
//! ONNX graphs exported by `models/export.py`, on the host (Rust/OpenCV) or as graphs on the
//! execution provider (`ort/graphs/`). The transport never touches this module's backend
//! directly; it goes through the engine thread.

mod backend;
mod error;
mod geometry;
mod manifest;
pub mod ort;
pub mod postprocess;
pub mod preprocess;
pub mod prompt;
pub mod resample;

pub use backend::{DataPath, EncodedImage, EncoderInput, FramePreparation, ImageEncoder, MaskDecoder, MaskRequest, RgbFrame};
pub use error::ModelError;
pub use geometry::ImageGeometry;
pub use manifest::{Manifest, ModelFileInfo};
pub use ort::{
    BinaryMask, DecodeTimings, DecodedObjects, Device, DeviceFallback, Embedding, EncoderPrecision, GraphOptimization, OrtDecoder,
    OrtEncoder, OrtModel, OrtOptions,
};
pub use preprocess::{PreprocessedImage, Preprocessor, ResizeFilter};
pub use prompt::{BoxPrompt, ObjectPrompt, PointPrompt, PromptLabel};
pub use resample::resize_rgb8;

/// Side of the square the encoder sees (longest image side is resized to it, then padded).
pub const IMAGE_SIZE: usize = 1024;
/// Shape of one image embedding: channels and the square grid.
pub const EMBEDDING_CHANNELS: usize = 256;
pub const EMBEDDING_GRID: usize = 64;
/// Side of the decoder's low-resolution logits.
pub const LOW_RES: usize = 256;
/// Mask tokens the decoder predicts: token 0 is the single-mask output, 1..3 the candidates.
pub const MASK_TOKENS: usize = 4;

/// Version of the ONNX Runtime library, from its versioned file name
/// (`libonnxruntime.so.1.31.1`); ort's loader refuses a library of another API version.
pub fn onnxruntime_version(library: &std::path::Path) -> String {
    let name = library.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    name.split_once(".so.").map_or(name.clone(), |(_, version)| version.to_string())
}
