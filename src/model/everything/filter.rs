//! The masks one decoder call's points yield, filtered in the reference's order
//! (`_process_batch`): predicted IoU (before any upscaling, which it does not depend on, so
//! only the masks that pass are upscaled), stability score on the logits upscaled to the
//! crop, threshold at 0, box. On the host data path these run here, on the decoder's low-res
//! logits; on the device data path the backend ran them and only its survivors' masks came
//! back.

use opencv::core::Mat;
use opencv::prelude::*;

use super::criteria::{CandidateFilter, FoundMask};
use crate::model::backend::MaskGroup;
use crate::model::decoded::DecodedObjects;
use crate::model::postprocess::{BinaryMask, threshold, upscale_logits};
use crate::model::{ImageGeometry, LOW_RES, MASK_TOKENS, ModelError};

/// The multimask tokens, the only ones segment everything uses.
const TOKENS: [usize; 3] = [1, 2, 3];

/// A mask that passed the filters, in its crop's pixels.
pub struct Candidate<'a> {
    /// The point's index among the decoded objects.
    pub point: usize,
    pub token: usize,
    pub iou: f32,
    pub stability: f32,
    /// XYXY in the crop's pixels, last pixel included (the reference's convention); zeros for
    /// an empty mask.
    pub inclusive_box: [u32; 4],
    /// CV_8UC1 at the crop's size, 255 inside.
    pub mask: BinaryMask<'a>,
}

/// Every point's kept candidates, points in order, tokens 1..3 within a point, and how many
/// masks passed the IoU filter.
pub fn candidates<'a>(
    decoded: &'a DecodedObjects,
    crop: &ImageGeometry,
    filter: &CandidateFilter,
) -> Result<(Vec<Candidate<'a>>, usize), ModelError> {
    let mut kept = Vec::new();
    let mut passed_iou = 0;
    let mut groups_counted = Vec::new();
    for point in 0..decoded.len() {
        let object = decoded.object(point);
        match object.group {
            MaskGroup::LowRes(logits) => {
                let logits = logits.values()?;
                for token in TOKENS {
                    let iou = decoded.iou[[point, token]];
                    if !filter.keeps_iou(iou) {
                        continue;
                    }
                    passed_iou += 1;
                    let plane = LOW_RES * LOW_RES;
                    let low_res = &logits[(object.row * MASK_TOKENS + token) * plane..][..plane];
                    let upscaled = upscale_logits(low_res, crop)?;
                    let stability = stability_score(upscaled.data_typed::<f32>()?, filter);
                    if !filter.keeps_stability(stability) {
                        continue;
                    }
                    let mask = threshold(&upscaled)?;
                    kept.push(Candidate {
                        point,
                        token,
                        iou,
                        stability,
                        inclusive_box: inclusive_box(&mask)?,
                        mask: BinaryMask::Owned(mask),
                    });
                }
            }
            MaskGroup::Candidates { found, masks, passed_iou: group_passed } => {
                // Each group's count once, at its first point.
                let group_id = std::ptr::from_ref(object.group) as usize;
                if !groups_counted.contains(&group_id) {
                    groups_counted.push(group_id);
                    passed_iou += group_passed;
                }
                let plane = crop.width * crop.height;
                let masks = masks.values()?;
                for (k, found) in found.iter().enumerate().filter(|(_, f)| f.row == object.row) {
                    let FoundMask { token, iou, stability, inclusive_box, .. } = *found;
                    let bytes = &masks[k * plane..][..plane];
                    let mask = Mat::new_rows_cols_with_data(crop.height as i32, crop.width as i32, bytes)?;
                    kept.push(Candidate { point, token, iou, stability, inclusive_box, mask: BinaryMask::View(mask) });
                }
            }
            MaskGroup::Binary { .. } => {
                return Err(ModelError::Shape { name: "segment everything's decoder output", shape: vec![point] });
            }
        }
    }
    Ok((kept, passed_iou))
}

/// `calculate_stability_score`: logits above `+offset` over logits above `-offset`, counted in
/// integers and divided in float32; NaN when nothing is above `-offset`.
pub fn stability_score(logits: &[f32], filter: &CandidateFilter) -> f32 {
    let (high, low) = filter.stability_levels();
    let (mut inside, mut union) = (0u32, 0u32);
    for &v in logits {
        inside += u32::from(v > high);
        union += u32::from(v > low);
    }
    inside as f32 / union as f32
}

/// `batched_mask_to_box` for one mask (CV_8UC1): the first and last column and row holding a
/// pixel; zeros for an empty mask.
pub fn inclusive_box(mask: &Mat) -> Result<[u32; 4], ModelError> {
    if opencv::core::count_non_zero(mask)? == 0 {
        return Ok([0; 4]);
    }
    let r = opencv::imgproc::bounding_rect(mask)?;
    Ok([r.x as u32, r.y as u32, (r.x + r.width - 1) as u32, (r.y + r.height - 1) as u32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stability_counts_above_both_levels_and_an_empty_union_is_never_kept() {
        let filter = CandidateFilter { pred_iou_thresh: Some(0.5), stability_score_thresh: Some(0.5), stability_score_offset: 1.0 };
        // Above +1: two values; above -1: four (1.0 itself is not above 1.0).
        let score = stability_score(&[2.0, 1.5, 1.0, -0.5, -1.0, -3.0], &filter);
        assert_eq!(score, 0.5);
        assert!(filter.keeps_stability(score), "0.5 >= 0.5");
        let empty = stability_score(&[-2.0, -5.0], &filter);
        assert!(empty.is_nan() && !filter.keeps_stability(empty));
        assert!(!filter.keeps_iou(0.5) && filter.keeps_iou(0.5001), "IoU must be above the threshold");
        let open = CandidateFilter { pred_iou_thresh: None, stability_score_thresh: None, stability_score_offset: 1.0 };
        assert!(open.keeps_iou(-7.0) && open.keeps_stability(f32::NAN), "a threshold of 0 turns a filter off");
    }

    #[test]
    fn boxes_include_their_last_pixel() {
        let mut mask = Mat::new_rows_cols_with_default(5, 6, opencv::core::CV_8UC1, opencv::core::Scalar::all(0.0)).unwrap();
        assert_eq!(inclusive_box(&mask).unwrap(), [0; 4]);
        *mask.at_2d_mut::<u8>(1, 2).unwrap() = 255;
        assert_eq!(inclusive_box(&mask).unwrap(), [2, 1, 2, 1], "one pixel: x0 = x1");
        *mask.at_2d_mut::<u8>(4, 5).unwrap() = 255;
        assert_eq!(inclusive_box(&mask).unwrap(), [2, 1, 5, 4]);
    }
}
