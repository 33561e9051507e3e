//! Across crops (`generate`'s end): masks uncropped, duplicates removed by NMS preferring masks
//! of smaller crops, then small disconnected regions and holes (`postprocess_small_regions`).

use super::EverythingOptions;
use super::batch::Kept;
use super::crops::CropBox;
use super::filter::inclusive_box;
use super::nms::{nms, select};
use super::regions::{Regions, remove_small_regions};
use super::runs::MaskRuns;
use crate::model::ModelError;

/// A mask of the answer, in image pixels.
pub struct MergedMask {
    pub runs: MaskRuns,
    /// XYXY, last pixel included; zeros for an empty mask.
    pub inclusive_box: [u32; 4],
    pub iou: f32,
    pub stability: f32,
    /// The grid point that produced it.
    pub point: [f64; 2],
    pub crop: CropBox,
}

/// The crops' kept masks (`kept_per_crop[i]` from `crops[i]`) as the answer's masks, in the
/// reference's order.
pub fn merge(kept_per_crop: Vec<Vec<Kept>>, crops: &[CropBox], options: &EverythingOptions) -> Result<Vec<MergedMask>, ModelError> {
    let mut masks: Vec<MergedMask> =
        kept_per_crop.into_iter().zip(crops).flat_map(|(kept, crop)| kept.into_iter().map(|k| uncrop(k, crop))).collect();
    if crops.len() > 1 {
        let boxes: Vec<[f32; 4]> = masks.iter().map(|m| m.inclusive_box.map(|v| v as f32)).collect();
        let scores: Vec<f32> = masks.iter().map(|m| 1.0 / m.crop.area() as f32).collect();
        let keep = nms(&boxes, &scores, options.crop_nms_thresh);
        masks = select(masks, &keep);
    }
    if options.min_mask_region_area > 0 && !masks.is_empty() {
        masks = remove_small_regions_of(masks, options)?;
    }
    Ok(masks)
}

fn uncrop(k: Kept, crop: &CropBox) -> MergedMask {
    let (dx, dy) = (crop.x0 as u32, crop.y0 as u32);
    let b = k.crop_box;
    MergedMask {
        runs: k.runs,
        inclusive_box: [b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy],
        iou: k.iou,
        stability: k.stability,
        point: [k.point[0] + crop.x0 as f64, k.point[1] + crop.y0 as f64],
        crop: *crop,
    }
}

/// Small regions and holes removed from every mask; a changed mask scores 0 and loses to an
/// unchanged one in the NMS that follows, and only changed masks are re-encoded, as in the
/// reference.
fn remove_small_regions_of(mut masks: Vec<MergedMask>, options: &EverythingOptions) -> Result<Vec<MergedMask>, ModelError> {
    let mut cleaned = Vec::with_capacity(masks.len());
    let mut scores = Vec::with_capacity(masks.len());
    for m in &masks {
        let pixels = m.runs.to_mat()?;
        let (pixels, holes) = remove_small_regions(&pixels, options.min_mask_region_area, Regions::Holes)?;
        let (pixels, islands) = remove_small_regions(&pixels, options.min_mask_region_area, Regions::Islands)?;
        scores.push(if holes || islands { 0.0 } else { 1.0 });
        cleaned.push(pixels);
    }
    let boxes = cleaned.iter().map(|p| inclusive_box(p).map(|b| b.map(|v| v as f32))).collect::<Result<Vec<_>, _>>()?;
    let keep = nms(&boxes, &scores, options.box_nms_thresh.max(options.crop_nms_thresh));
    for &i in &keep {
        if scores[i] == 0.0 {
            masks[i].runs = MaskRuns::from_mat(&cleaned[i])?;
            masks[i].inclusive_box = inclusive_box(&cleaned[i])?;
        }
    }
    Ok(select(masks, &keep))
}
