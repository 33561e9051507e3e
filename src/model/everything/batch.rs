//! Within one crop: a decoder call's points kept as the reference's `_process_batch` keeps
//! them (the filters, then no mask cut by a crop edge inside the image), held as runs over the
//! image, and the crop's duplicates removed by box NMS on its own boxes (`_process_crop`).

use super::criteria::CandidateFilter;
use super::crops::CropBox;
use super::filter::candidates;
use super::nms::{nms, select};
use super::runs::MaskRuns;
use crate::model::{BinaryMask, DecodedObjects, ImageGeometry, ModelError};

/// A mask of one crop that passed the filters, before NMS: in the crop's frame except `runs`.
pub struct Kept {
    pub runs: MaskRuns,
    /// XYXY, last pixel included, in the crop's pixels.
    pub crop_box: [u32; 4],
    pub iou: f32,
    pub stability: f32,
    /// The grid point in the crop's pixels.
    pub point: [f64; 2],
}

/// What the filters let through of one batch.
pub struct BatchKept {
    pub kept: Vec<Kept>,
    /// Masks (three per point) whose predicted IoU passed.
    pub passed_iou: usize,
    /// Of those, masks whose stability passed too.
    pub passed_stability: usize,
}

/// The candidates of one decoder call (`points` in the crop's pixels, `geometry` the crop's)
/// that pass `filter` and are not cut by an edge of `crop` inside the `width` x `height` image.
pub fn keep_batch(
    decoded: &DecodedObjects,
    points: &[[f64; 2]],
    geometry: &ImageGeometry,
    filter: &CandidateFilter,
    crop: &CropBox,
    (width, height): (usize, usize),
) -> Result<BatchKept, ModelError> {
    let (found, passed_iou) = candidates(decoded, geometry, filter)?;
    let passed_stability = found.len();
    let mut kept = Vec::new();
    for candidate in found {
        if near_crop_edge(&candidate.inclusive_box, crop, width, height) {
            continue;
        }
        let runs = match &candidate.mask {
            BinaryMask::Owned(m) => MaskRuns::from_crop(m, crop, width, height)?,
            BinaryMask::View(m) => MaskRuns::from_crop(m, crop, width, height)?,
        };
        kept.push(Kept {
            runs,
            crop_box: candidate.inclusive_box,
            iou: candidate.iou,
            stability: candidate.stability,
            point: points[candidate.point],
        });
    }
    Ok(BatchKept { kept, passed_iou, passed_stability })
}

/// The crop's duplicates removed: NMS on its own boxes, scored by predicted IoU.
pub fn dedupe_crop(kept: Vec<Kept>, box_nms_thresh: f64) -> Vec<Kept> {
    let boxes: Vec<[f32; 4]> = kept.iter().map(|k| k.crop_box.map(|v| v as f32)).collect();
    let scores: Vec<f32> = kept.iter().map(|k| k.iou).collect();
    let keep = nms(&boxes, &scores, box_nms_thresh);
    select(kept, &keep)
}

/// `is_box_near_crop_edge`: the box (uncropped) lies within 20 px of a crop edge that is not an
/// image edge.
fn near_crop_edge(crop_box: &[u32; 4], crop: &CropBox, width: usize, height: usize) -> bool {
    const TOLERANCE: f32 = 20.0;
    let uncropped =
        [crop_box[0] + crop.x0 as u32, crop_box[1] + crop.y0 as u32, crop_box[2] + crop.x0 as u32, crop_box[3] + crop.y0 as u32];
    let crop_edges = [crop.x0, crop.y0, crop.x1, crop.y1];
    let image_edges = [0, 0, width, height];
    (0..4).any(|i| {
        let b = uncropped[i] as f32;
        let near_crop = (b - crop_edges[i] as f32).abs() <= TOLERANCE;
        let near_image = (b - image_edges[i] as f32).abs() <= TOLERANCE;
        near_crop && !near_image
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_crop_edges_inside_the_image_cut_a_mask() {
        let image = (1000, 800);
        let inner = CropBox { x0: 400, y0: 300, x1: 900, y1: 700, layer: 1 };
        assert!(near_crop_edge(&[5, 100, 50, 200], &inner, image.0, image.1), "touches the crop's left edge, inside the image");
        assert!(!near_crop_edge(&[100, 100, 200, 200], &inner, image.0, image.1), "well inside the crop");
        let whole = CropBox { x0: 0, y0: 0, x1: 1000, y1: 800, layer: 0 };
        assert!(!near_crop_edge(&[0, 0, 999, 799], &whole, image.0, image.1), "the image's own edges never cut");
    }
}
