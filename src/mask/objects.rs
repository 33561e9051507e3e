//! Decoder outputs to `ObjectMask` messages: order the returned tokens, take their binary masks
//! (upscaled here, or already made on the device), and encode them.

use std::sync::Arc;

use super::{MaskError, MaskImage};
use crate::model::postprocess::chosen_tokens;
use crate::model::{BinaryMask, DecodedObjects, ImageGeometry};
use crate::proto;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskOptions {
    pub format: proto::MaskFormat,
    pub multimask: bool,
}

/// One object's message, plus (when asked for) the returned mask's low-res logits, which
/// tracking feeds back on the next frame.
pub struct ObjectOutcome {
    pub message: proto::ObjectMask,
    pub low_res: Option<Arc<[f32]>>,
}

struct Encoded {
    mask: proto::Mask,
    area: u64,
    bbox: proto::Box,
}

fn encode_one(mask: &impl MaskImage, format: proto::MaskFormat, with_area: bool) -> Result<Encoded, MaskError> {
    let (area, bbox) = if with_area { super::area_and_box(mask)? } else { (0, proto::Box::default()) };
    Ok(Encoded { mask: super::encode(mask, format)?, area, bbox })
}

/// Only the returned tokens are upscaled (host data path) or were made (device data path): one
/// per object, three with multimask output.
pub fn object_masks(
    decoded: &DecodedObjects,
    geometry: &ImageGeometry,
    object_ids: &[u32],
    options: MaskOptions,
    keep_low_res: bool,
) -> Result<Vec<ObjectOutcome>, MaskError> {
    object_ids
        .iter()
        .enumerate()
        .map(|(i, &object_id)| {
            let iou = decoded.iou.row(i).to_vec();
            let chosen = chosen_tokens(&iou, options.multimask);
            let mut candidates = Vec::with_capacity(chosen.len());
            let mut best = None;
            for (rank, &(token, score)) in chosen.iter().enumerate() {
                let encoded = match decoded.mask(i, token, geometry)? {
                    BinaryMask::Owned(mask) => encode_one(&mask, options.format, rank == 0)?,
                    BinaryMask::View(mask) => encode_one(&mask, options.format, rank == 0)?,
                };
                if rank == 0 {
                    best = Some((encoded.area, encoded.bbox));
                }
                candidates.push(proto::MaskCandidate { mask: Some(encoded.mask), score });
            }
            let (area, bbox) = best.expect("at least one token is chosen");
            let low_res = if keep_low_res {
                let logits = decoded.low_res(i, chosen[0].0).ok_or(MaskError::LowResMissing)?;
                Some(Arc::<[f32]>::from(logits))
            } else {
                None
            };
            let first = candidates[0].clone();
            let message = proto::ObjectMask {
                object_id,
                mask: first.mask,
                score: first.score,
                bbox: Some(bbox),
                area,
                candidates: if options.multimask { candidates } else { Vec::new() },
            };
            Ok(ObjectOutcome { message, low_res })
        })
        .collect()
}
