//! The synchronous model interfaces the engine threads drive; tests can swap backends.

use ndarray::{Array2, Array4, ArrayView4, Axis, s};

use super::prompt::PromptTokens;
use super::{LOW_RES, MASK_TOKENS, ModelError, PreprocessedImage};

/// Decoder outputs for N objects: IoU predictions `[N, 4]` and low-res logits `[N, 4, 256, 256]`.
pub struct DecodedObjects {
    pub iou: Array2<f32>,
    pub low_res: Array4<f32>,
}

impl DecodedObjects {
    pub fn empty() -> Self {
        Self { iou: Array2::zeros((0, MASK_TOKENS)), low_res: Array4::zeros((0, MASK_TOKENS, LOW_RES, LOW_RES)) }
    }
}

pub trait ImageEncoder: Send {
    /// Image embedding `[1, 256, 64, 64]` of a preprocessed image.
    fn encode(&mut self, image: &PreprocessedImage) -> Result<Array4<f32>, ModelError>;

    /// Embeddings of several images; backends that can run them as one batch override this.
    fn encode_batch(&mut self, images: &[&PreprocessedImage]) -> Result<Vec<Array4<f32>>, ModelError> {
        images.iter().map(|image| self.encode(image)).collect()
    }
}

pub trait MaskDecoder: Send {
    /// One decoder call for objects that all have the same number of prompt tokens.
    fn decode_batch(&mut self, embedding: ArrayView4<'_, f32>, objects: &[&PromptTokens]) -> Result<DecodedObjects, ModelError>;

    /// Decodes any set of objects: those with equal token counts share one decoder call, so
    /// batching never adds padding tokens that would change a mask.
    fn decode(&mut self, embedding: ArrayView4<'_, f32>, objects: &[PromptTokens]) -> Result<DecodedObjects, ModelError> {
        if objects.is_empty() {
            return Ok(DecodedObjects::empty());
        }
        if objects.iter().all(|o| o.len() == objects[0].len()) {
            let all: Vec<&PromptTokens> = objects.iter().collect();
            return self.decode_batch(embedding, &all);
        }
        let mut iou = Array2::<f32>::zeros((objects.len(), MASK_TOKENS));
        let mut low_res = Array4::<f32>::zeros((objects.len(), MASK_TOKENS, LOW_RES, LOW_RES));
        let mut lengths: Vec<usize> = objects.iter().map(PromptTokens::len).collect();
        lengths.sort_unstable();
        lengths.dedup();
        for length in lengths {
            let indices: Vec<usize> = (0..objects.len()).filter(|&i| objects[i].len() == length).collect();
            let group: Vec<&PromptTokens> = indices.iter().map(|&i| &objects[i]).collect();
            let decoded = self.decode_batch(embedding, &group)?;
            for (row, &i) in indices.iter().enumerate() {
                iou.row_mut(i).assign(&decoded.iou.row(row));
                low_res.slice_mut(s![i, .., .., ..]).assign(&decoded.low_res.index_axis(Axis(0), row));
            }
        }
        Ok(DecodedObjects { iou, low_res })
    }
}
