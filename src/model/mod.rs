//! MobileSAM: SamPredictor's preprocessing, prompt encoding and postprocessing around the two
//! ONNX graphs exported by `models/export.py`. The transport never touches this module's
//! backend directly; it goes through the engine thread.

mod backend;
mod error;
mod geometry;
mod manifest;
mod ort_backend;
pub mod postprocess;
pub mod preprocess;
pub mod prompt;
mod resample;

pub use backend::{DecodedObjects, MaskModel};
pub use error::ModelError;
pub use geometry::ImageGeometry;
pub use manifest::{Manifest, ModelFileInfo};
pub use ort_backend::{Device, OrtModel, OrtOptions};
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

/// Version of the loaded ONNX Runtime library, from its build string.
pub fn onnxruntime_version() -> String {
    let info = ort::info();
    info.split(',')
        .find_map(|part| part.trim().strip_prefix("ORT Build Info: git-branch=rel-"))
        .unwrap_or(info)
        .to_string()
}
