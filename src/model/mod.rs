//! MobileSAM: SamPredictor's preprocessing, prompt encoding and postprocessing around the two
//! exported ONNX graphs. The engine drives a backend through the traits in `backend`, in the
//! vocabulary defined here; `load` is the one place that picks and builds a backend (ONNX
//! Runtime, in `ort/`), so nothing above this layer names the runtime's types.

mod backend;
pub mod buckets;
mod contract;
pub mod decode_plan;
mod decoded;
mod error;
pub mod everything;
#[cfg(test)]
pub mod fake;
mod geometry;
mod manifest;
pub mod options;
pub mod ort;
pub mod postprocess;
pub mod preprocess;
pub mod priority;
pub mod prompt;
pub mod resample;

use std::path::Path;

pub use backend::{
    BackendInfo, DecodedGroup, Embedding, EncoderInput, HostData, HostSlice, ImageEncoder, LoadedModel, MaskDecoder, MaskGroup, MaskOutput,
    MaskRequest,
};
pub use buckets::{BucketChoice, ShapeBuckets};
pub use contract::{EMBEDDING_CHANNELS, EMBEDDING_GRID, IMAGE_SIZE, LOW_RES, MASK_TOKENS, PIXEL_MEAN, PIXEL_STD, SHARED_DECODER};
pub use decoded::DecodedObjects;
pub use error::ModelError;
pub use everything::criteria::{CandidateFilter, FoundMask};
pub use geometry::ImageGeometry;
pub use manifest::{Manifest, ModelFileInfo};
pub use options::{
    DataPath, Device, DeviceFallback, EncoderPrecision, ExecutionProvider, GraphOptimization, Precision, ResizeFilter, RuntimeOptions,
};
pub use postprocess::BinaryMask;
pub use preprocess::{PreprocessedImage, Preprocessor, RgbFrame};
pub use prompt::{BoxPrompt, ObjectPrompt, OutsideImage, PointPrompt, PromptLabel, PromptTokens};
pub use resample::resize_rgb8;

/// Loads the model in `model_dir` on the backend `options` describe (ONNX Runtime, the one
/// backend there is) and reports what it really runs on.
pub fn load(model_dir: &Path, options: &RuntimeOptions) -> Result<LoadedModel, ModelError> {
    ort::load(model_dir, options)
}

/// Version of the ONNX Runtime library, from its versioned file name
/// (`libonnxruntime.so.1.31.1`); ort's loader refuses a library of another API version.
pub fn onnxruntime_version(library: &Path) -> String {
    let name = library.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    name.split_once(".so.").map_or(name.clone(), |(_, version)| version.to_string())
}
