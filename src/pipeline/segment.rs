//! Prompted segmentation: every object's prompt through the decoder on one encoded frame, then
//! the masks the request returns, encoded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use opencv::core::Mat;

use super::{Pipeline, PipelineError, blocking};
use crate::engine::{EncodedFrame, FrameOrigin};
use crate::mask::{self, EncodedMask, MaskImage, MaskOptions, PixelBox};
use crate::model::postprocess::{BinaryMask, binary_mask, chosen_tokens};
use crate::model::{DecodedObjects, ImageGeometry, MaskRequest, ObjectPrompt, PromptTokens};
use crate::telemetry::StageTimings;
use crate::telemetry::metrics::ENCODER_RUNS;

/// One object's answer.
#[derive(Debug, Clone)]
pub struct ObjectResult {
    pub object_id: u32,
    pub mask: EncodedMask,
    /// Predicted IoU of the returned mask.
    pub score: f32,
    pub bbox: PixelBox,
    pub area: u64,
    /// With multimask output, the three candidates best first (the first is `mask`).
    pub candidates: Vec<(EncodedMask, f32)>,
    /// The returned mask's 256x256 logits, when asked for (tracking feeds them back).
    pub low_res: Option<Arc<[f32]>>,
}

/// Segment's answer: the image's size, every object's masks and the stages they took.
pub struct SegmentedImage {
    pub geometry: ImageGeometry,
    pub objects: Vec<ObjectResult>,
    pub timings: StageTimings,
}

impl Pipeline {
    /// Segments the prompted objects of one image (Segment): encode, decode, masks. `started`
    /// is when the request arrived; `capture` how long decoding its image took.
    pub async fn segment_image(
        &self,
        rgb: Arc<Mat>,
        capture: Duration,
        started: Instant,
        prompts: &[ObjectPrompt],
        options: MaskOptions,
    ) -> Result<SegmentedImage, PipelineError> {
        let origin = FrameOrigin { grabbed_at: started, ..FrameOrigin::now() };
        let frame = self.encode(rgb, origin, capture).await?;
        metrics::counter!(ENCODER_RUNS, "origin" => "segment").increment(1);
        let ids: Vec<u32> = prompts.iter().map(|p| p.object_id).collect();
        let tokens = prompts.iter().map(|p| PromptTokens::new(p, &frame.geometry)).collect();
        let (objects, after) = self.segment(&frame, ids, tokens, options, false).await?;
        let mut timings = frame.timings;
        timings += after;
        timings.total = started.elapsed();
        Ok(SegmentedImage { geometry: frame.geometry, objects, timings })
    }

    /// Decodes `tokens` (the objects `ids`) on an encoded frame and returns their masks, with
    /// the stages this took (queue, decoder, postprocess, download). `keep_low_res` keeps the
    /// returned masks' low-res logits for tracking.
    pub async fn segment(
        &self,
        frame: &Arc<EncodedFrame>,
        ids: Vec<u32>,
        tokens: Vec<PromptTokens>,
        options: MaskOptions,
        keep_low_res: bool,
    ) -> Result<(Vec<ObjectResult>, StageTimings), PipelineError> {
        if ids.is_empty() {
            return Ok((Vec::new(), StageTimings::default()));
        }
        let geometry = frame.geometry;
        let request = MaskRequest::objects(geometry, options.multimask, keep_low_res);
        let decoded = self.engine.decode(frame.clone(), tokens, request).await?;
        let mut timings = decoded.timings;
        let started = Instant::now();
        let objects = blocking(move || object_results(&decoded, &geometry, &ids, options, keep_low_res)).await?;
        timings.postprocess += started.elapsed();
        Ok((objects, timings))
    }
}

/// Only the returned tokens are upscaled (host data path) or were made (device data path): one
/// per object, three with multimask output.
fn object_results(
    decoded: &DecodedObjects,
    geometry: &ImageGeometry,
    ids: &[u32],
    options: MaskOptions,
    keep_low_res: bool,
) -> Result<Vec<ObjectResult>, PipelineError> {
    ids.iter()
        .enumerate()
        .map(|(i, &object_id)| {
            let iou = decoded.iou.row(i).to_vec();
            let chosen = chosen_tokens(&iou, options.multimask);
            let mut candidates = Vec::with_capacity(chosen.len());
            let mut best = (0, PixelBox::default());
            for (rank, &(token, score)) in chosen.iter().enumerate() {
                let mask = binary_mask(decoded, i, token, geometry)?;
                let (encoded, area_and_box) = encode(&mask, options.format, rank == 0)?;
                if let Some(area_and_box) = area_and_box {
                    best = area_and_box;
                }
                candidates.push((encoded, score));
            }
            let low_res = match keep_low_res {
                true => Some(Arc::<[f32]>::from(decoded.low_res(i, chosen[0].0)?.ok_or(PipelineError::LowResMissing)?)),
                false => None,
            };
            let (mask, score) = candidates[0].clone();
            let (area, bbox) = best;
            let candidates = if options.multimask { candidates } else { Vec::new() };
            Ok(ObjectResult { object_id, mask, score, bbox, area, candidates, low_res })
        })
        .collect()
}

/// The mask in `format`, with its area and box when asked for.
fn encode(
    mask: &BinaryMask<'_>,
    format: mask::MaskFormat,
    with_area: bool,
) -> Result<(EncodedMask, Option<(u64, PixelBox)>), PipelineError> {
    fn run(
        mask: &impl MaskImage,
        format: mask::MaskFormat,
        with_area: bool,
    ) -> Result<(EncodedMask, Option<(u64, PixelBox)>), PipelineError> {
        let area = if with_area { Some(mask::area_and_box(mask)?) } else { None };
        Ok((mask::encode(mask, format)?, area))
    }
    match mask {
        BinaryMask::Owned(m) => run(m, format, with_area),
        BinaryMask::View(m) => run(m, format, with_area),
    }
}
