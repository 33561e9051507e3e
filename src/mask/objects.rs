//! Decoder outputs to `ObjectMask` messages: choose tokens, upscale, threshold, encode.

use std::sync::Arc;

use ndarray::s;

use super::MaskError;
use crate::model::postprocess::{chosen_tokens, threshold, upscale_logits};
use crate::model::{DecodedObjects, ImageGeometry};
use crate::proto;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskOptions {
    pub format: proto::MaskFormat,
    pub multimask: bool,
}

/// One object's message, plus the returned mask's low-res logits (what tracking feeds back).
pub struct ObjectOutcome {
    pub message: proto::ObjectMask,
    pub low_res: Arc<[f32]>,
}

/// Only the returned tokens are upscaled: one per object, three with multimask output.
pub fn object_masks(
    decoded: &DecodedObjects,
    geometry: &ImageGeometry,
    object_ids: &[u32],
    options: MaskOptions,
) -> Result<Vec<ObjectOutcome>, MaskError> {
    object_ids
        .iter()
        .enumerate()
        .map(|(i, &object_id)| {
            let iou = decoded.iou.row(i).to_vec();
            let mut encoded = Vec::new();
            let mut best = None;
            for (token, score) in chosen_tokens(&iou, options.multimask) {
                let low_res = decoded.low_res.slice(s![i, token, .., ..]);
                let low_res = low_res.as_slice().expect("decoder output is contiguous");
                let binary = threshold(&upscale_logits(low_res, geometry)?)?;
                if best.is_none() {
                    best = Some((super::area_and_box(&binary)?, Arc::<[f32]>::from(low_res)));
                }
                encoded.push(proto::MaskCandidate { mask: Some(super::encode(&binary, options.format)?), score });
            }
            let ((area, bbox), low_res) = best.expect("at least one token is chosen");
            let first = encoded[0].clone();
            let message = proto::ObjectMask {
                object_id,
                mask: first.mask,
                score: first.score,
                bbox: Some(bbox),
                area,
                candidates: if options.multimask { encoded } else { Vec::new() },
            };
            Ok(ObjectOutcome { message, low_res })
        })
        .collect()
}
