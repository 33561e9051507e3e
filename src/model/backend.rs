//! The synchronous model interfaces the engine threads drive, and what flows through them.
//! Tensors between the stages are ONNX Runtime values in the execution provider's memory, so
//! the same interfaces serve the CPU provider and a GPU without copies in between.

use std::sync::Arc;
use std::time::{Duration, Instant};

use opencv::core::Mat;
use opencv::prelude::*;

use super::ort::{DecodedObjects, Embedding};
use super::prompt::PromptTokens;
use super::{ImageGeometry, ModelError, PreprocessedImage, Preprocessor};

/// Where resizing, normalisation, padding and mask upscaling run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DataPath {
    /// `device` on a GPU provider, `host` on the CPU provider (where the Rust/OpenCV stages are faster).
    #[default]
    Auto,
    /// Rust (Pillow-exact) preprocessing and OpenCV postprocessing on the host.
    Host,
    /// The preprocessing and postprocessing graphs on the execution provider: frames go up as
    /// bytes, masks come back as bytes, everything between stays in its memory.
    Device,
}

/// A decoded frame, 8-bit RGB, ready to be uploaded as it is (shared with the source that
/// grabbed it: viewers of one source see the same pixels).
pub struct RgbFrame {
    pub pixels: Arc<Mat>,
    pub geometry: ImageGeometry,
}

impl RgbFrame {
    pub fn new(rgb: Arc<Mat>) -> Result<Self, ModelError> {
        if rgb.typ() != opencv::core::CV_8UC3 {
            return Err(ModelError::Image(format!("expected an 8-bit 3-channel image, got type {}", rgb.typ())));
        }
        let pixels = if rgb.is_continuous() { rgb } else { Arc::new(rgb.try_clone()?) };
        let geometry = ImageGeometry::new(pixels.cols() as usize, pixels.rows() as usize);
        Ok(Self { pixels, geometry })
    }

    pub fn bytes(&self) -> Result<&[u8], ModelError> {
        Ok(self.pixels.data_bytes()?)
    }
}

/// What the encoder thread is given for one image.
pub enum EncoderInput {
    /// Already resized, normalised and padded on the host (`DataPath::Host`).
    Preprocessed(PreprocessedImage),
    /// Decoded pixels for the preprocessing graph (`DataPath::Device`).
    Pixels(RgbFrame),
}

impl EncoderInput {
    pub fn geometry(&self) -> ImageGeometry {
        match self {
            EncoderInput::Preprocessed(image) => image.geometry,
            EncoderInput::Pixels(frame) => frame.geometry,
        }
    }
}

/// How callers turn a decoded frame into the encoder's input, once the data path is known.
#[derive(Debug, Clone, Copy)]
pub enum FramePreparation {
    /// Resize/normalise/pad here (on a blocking thread), so the encoder thread only encodes.
    Host(Preprocessor),
    /// Hand the bytes over; the encoder thread uploads them and runs the preprocessing graph.
    Device,
}

impl FramePreparation {
    /// The encoder's input and the host preprocessing time it took.
    pub fn prepare(&self, rgb: Arc<Mat>) -> Result<(EncoderInput, Duration), ModelError> {
        match self {
            FramePreparation::Host(preprocessor) => {
                let started = Instant::now();
                let image = preprocessor.run(&rgb)?;
                Ok((EncoderInput::Preprocessed(image), started.elapsed()))
            }
            FramePreparation::Device => Ok((EncoderInput::Pixels(RgbFrame::new(rgb)?), Duration::ZERO)),
        }
    }
}

/// One image's encoder output and the stages that produced it on the encoder thread.
pub struct EncodedImage {
    pub embedding: Embedding,
    /// Host to device copy of the image (zero where device memory is host memory).
    pub upload: Duration,
    /// The preprocessing graph (zero when the host preprocessed the image).
    pub preprocess: Duration,
    /// The encoder run, shared by every image of a batch.
    pub encoder: Duration,
}

/// What a decode should leave on the host besides IoU predictions.
#[derive(Debug, Clone, Copy)]
pub struct MaskRequest {
    pub geometry: ImageGeometry,
    /// Tokens 1..3 (SamPredictor's multimask candidates) instead of token 0.
    pub multimask: bool,
    /// The returned tokens' low-res logits too (tracking feeds them back).
    pub keep_low_res: bool,
}

impl MaskRequest {
    /// The mask tokens a request returns: token 0 alone (as `predict(multimask_output=False)`),
    /// or the three candidates.
    pub fn tokens(&self) -> &'static [usize] {
        if self.multimask { &[1, 2, 3] } else { &[0] }
    }
}

pub trait ImageEncoder: Send {
    /// One embedding (or error) per input, in order; backends may run them as one batch.
    fn encode_batch(&mut self, inputs: Vec<EncoderInput>) -> Vec<Result<EncodedImage, ModelError>>;

    /// Runs every batch size up to `max_batch` once, so that no request pays for first-run
    /// initialisation (on CUDA: cuDNN's algorithm search for each new input shape). Returns an
    /// embedding for the decoder's warm-up and the largest batch that fit in memory.
    fn warm_up(&mut self, max_batch: usize) -> Result<(Embedding, usize), ModelError>;
}

pub trait MaskDecoder: Send {
    /// Prompt encoder + mask decoder for every object on one embedding, then what `request`
    /// asks for: objects with equal token counts share one decoder call, so batching never
    /// adds padding tokens that would change a mask.
    fn decode(&mut self, embedding: &Embedding, objects: &[PromptTokens], request: MaskRequest) -> Result<DecodedObjects, ModelError>;

    /// Runs the decoder (and device postprocessing) once per object count it will batch.
    fn warm_up(&mut self, embedding: &Embedding) -> Result<(), ModelError>;
}
