//! The seam between the engine and a model backend: two synchronous halves, each driven by one
//! engine thread, and the device-neutral vocabulary that crosses it. A backend keeps its tensors
//! where it computes (GPU memory on a GPU); what crosses the seam is either opaque (an
//! `Embedding`) or host memory the backend lends (`HostData`), so the engine, the sessions and
//! the transport never name the backend's types, and a test double needs no ONNX Runtime.

use std::any::Any;
use std::sync::Arc;

use ndarray::Array2;

use super::buckets::ShapeBuckets;
use super::everything::criteria::{CandidateFilter, FoundMask};
use super::options::{DataPath, ExecutionProvider, Precision};
use super::preprocess::{PreprocessedImage, RgbFrame};
use super::prompt::PromptTokens;
use super::{ImageGeometry, ModelError};
use crate::telemetry::StageTimings;

/// One image embedding `[1, 256, 64, 64]`, opaque: the backend's own tensor, in the memory its
/// encoder wrote it to. Shared by every decode on its frame (prompt updates, viewers).
pub struct Embedding(Box<dyn Any + Send + Sync>);

impl Embedding {
    pub fn new<T: Any + Send + Sync>(tensor: T) -> Self {
        Self(Box::new(tensor))
    }

    /// The backend's tensor; an embedding made by another backend is refused.
    pub fn downcast_ref<T: Any>(&self) -> Result<&T, ModelError> {
        self.0.downcast_ref().ok_or(ModelError::ForeignEmbedding)
    }
}

/// What the encoder is given for one image. Cloning is cheap (shared buffers), so a batch can
/// be retried image by image.
#[derive(Clone)]
pub enum EncoderInput {
    /// Already resized, normalised and padded on the host (`DataPath::Host`).
    Preprocessed(Arc<PreprocessedImage>),
    /// Decoded pixels for the backend's preprocessing graph (`DataPath::Device`).
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

/// What a decode should leave on the host besides IoU predictions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskRequest {
    /// The image (or crop) the masks are for.
    pub geometry: ImageGeometry,
    pub output: MaskOutput,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaskOutput {
    /// Prompted objects: the masks of the tokens the request returns.
    Objects {
        /// Tokens 1..3 (SamPredictor's multimask candidates) instead of token 0.
        multimask: bool,
        /// The returned tokens' low-res logits too (tracking feeds them back).
        keep_low_res: bool,
    },
    /// Segment everything: every point's candidates (tokens 1..3) that pass the filters.
    Candidates(CandidateFilter),
}

impl MaskRequest {
    pub fn objects(geometry: ImageGeometry, multimask: bool, keep_low_res: bool) -> Self {
        Self { geometry, output: MaskOutput::Objects { multimask, keep_low_res } }
    }

    /// The mask tokens a request returns: token 0 alone (as `predict(multimask_output=False)`),
    /// or the three candidates.
    pub fn tokens(&self) -> &'static [usize] {
        match self.output {
            MaskOutput::Objects { multimask: false, .. } => &[0],
            MaskOutput::Objects { multimask: true, .. } | MaskOutput::Candidates(_) => &[1, 2, 3],
        }
    }

    pub fn keeps_low_res(&self) -> bool {
        matches!(self.output, MaskOutput::Objects { keep_low_res: true, .. })
    }
}

/// Host memory a backend lends to the postprocessing: its own output buffers, not a copy.
pub trait HostSlice<T>: Send + Sync {
    fn values(&self) -> Result<&[T], ModelError>;
}

impl<T: Send + Sync> HostSlice<T> for Vec<T> {
    fn values(&self) -> Result<&[T], ModelError> {
        Ok(self)
    }
}

pub type HostData<T> = Box<dyn HostSlice<T>>;

/// The masks of one decoder call, in host memory.
pub enum MaskGroup {
    /// `[n, 4, 256, 256]` logits of every token; the host upscales what it returns.
    LowRes(HostData<f32>),
    /// `[n, K, H, W]` masks (255 inside) of `tokens`, made by the backend, and with tracking
    /// their `[n, K, 256, 256]` low-res logits.
    Binary { tokens: &'static [usize], masks: HostData<u8>, low_res: Option<HostData<f32>> },
    /// Segment everything's candidates that passed the filters, found by the backend, and
    /// their masks `[found, H, W]` (255 inside), in the order of `found`; `passed_iou` counts
    /// the masks that passed the IoU filter (before the stability filter).
    Candidates { found: Vec<FoundMask>, masks: HostData<u8>, passed_iou: usize },
}

/// One decoder call's answer: `[n, 4]` IoU predictions, the masks, and the stages it took
/// (decoder; postprocess and download when the backend made the masks).
pub struct DecodedGroup {
    pub iou: Array2<f32>,
    pub masks: MaskGroup,
    pub timings: StageTimings,
}

/// The image encoder; the engine's encoder thread owns it.
pub trait ImageEncoder: Send {
    /// Encodes `inputs` in one run (one batch when there are several) and returns one
    /// embedding per input, in order, with the stages each took (upload, preprocessing graph,
    /// encoder; a batch's run counts for every image in it). No retries: an out-of-memory
    /// batch fails as a whole.
    fn encode(&mut self, inputs: Vec<EncoderInput>) -> Result<Vec<(Embedding, StageTimings)>, ModelError>;

    /// The batch sizes this encoder runs at (a batch is padded up to the next), so that the
    /// warm-up runs each of them once.
    fn batch_buckets(&self) -> ShapeBuckets {
        ShapeBuckets::Exact
    }
}

/// SAM's prompt encoder and mask decoder; the engine's decoder thread owns it.
pub trait MaskDecoder: Send {
    /// One decoder call for `objects` that all have the same number of prompt tokens (so
    /// batching never adds padding tokens that would change a mask), then what `request` asks
    /// of the postprocessing.
    fn decode(&mut self, embedding: &Embedding, objects: &[&PromptTokens], request: &MaskRequest) -> Result<DecodedGroup, ModelError>;

    /// Whether this decoder makes the masks itself (device postprocessing): then the memory a
    /// call needs grows with the image and its objects are split over calls.
    fn makes_masks(&self) -> bool;

    /// The object counts this decoder runs at (a call is padded up to the next); a call takes
    /// at most the largest.
    fn object_buckets(&self) -> ShapeBuckets {
        ShapeBuckets::Exact
    }
}

/// What a loaded backend really runs on, for health, GetModelInfo and the engine's policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendInfo {
    pub provider: ExecutionProvider,
    /// Where pre- and postprocessing run, `auto` resolved (`Host` or `Device`).
    pub data_path: DataPath,
    pub precision: Precision,
}

impl BackendInfo {
    pub fn on_gpu(&self) -> bool {
        self.provider.gpu().is_some()
    }
}

/// A loaded model, split so that each half can live on its own thread.
pub struct LoadedModel {
    pub encoder: Box<dyn ImageEncoder>,
    pub decoder: Box<dyn MaskDecoder>,
    pub info: BackendInfo,
    /// How much lower than the decoder's the thread that calls the encoder should run
    /// (`model::priority`); the backend's own encoder threads already do.
    pub encoder_nice: u8,
}
