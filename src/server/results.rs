//! Decoder outputs to `ObjectMask` messages: choose tokens, upscale, threshold, encode.

use ndarray::s;

use super::status::ApiError;
use super::validate::MaskOptions;
use crate::mask;
use crate::model::postprocess::{chosen_tokens, threshold, upscale_logits};
use crate::model::{DecodedObjects, ImageGeometry};
use crate::proto;

/// Only the returned tokens are upscaled: one per object, three with multimask output.
pub fn object_masks(
    decoded: &DecodedObjects,
    geometry: &ImageGeometry,
    object_ids: &[u32],
    options: MaskOptions,
) -> Result<Vec<proto::ObjectMask>, ApiError> {
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
                    best = Some(mask::area_and_box(&binary)?);
                }
                encoded.push(proto::MaskCandidate { mask: Some(mask::encode(&binary, options.format)?), score });
            }
            let (area, bbox) = best.expect("at least one token is chosen");
            let first = encoded[0].clone();
            Ok(proto::ObjectMask {
                object_id,
                mask: first.mask,
                score: first.score,
                bbox: Some(bbox),
                area,
                candidates: if options.multimask { encoded } else { Vec::new() },
            })
        })
        .collect()
}
