//! Segment everything (`SamAutomaticMaskGenerator` of mobile_sam), the steps that are the
//! model's: where to look (`crops`), which decoded masks to keep (`filter`), a decoder call's
//! and a crop's masks (`batch`), duplicates (`nms`), the crops' masks as one answer (`merge`,
//! with small regions from `regions`) and how masks are held in between (`runs`). The
//! pipeline only drives them: crops to the encoder, batches of points to the decoder.

pub mod batch;
pub mod criteria;
pub mod crops;
pub mod filter;
pub mod merge;
pub mod nms;
pub mod regions;
pub mod runs;

use criteria::CandidateFilter;

/// The generator's parameters, every one resolved (the reference's defaults where a request
/// leaves one out).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EverythingOptions {
    pub points_per_side: usize,
    pub points_per_batch: usize,
    pub pred_iou_thresh: f64,
    pub stability_score_thresh: f64,
    pub stability_score_offset: f64,
    pub box_nms_thresh: f64,
    pub crop_n_layers: usize,
    pub crop_nms_thresh: f64,
    pub crop_overlap_ratio: f64,
    pub crop_n_points_downscale_factor: usize,
    pub min_mask_region_area: usize,
}

impl Default for EverythingOptions {
    /// `SamAutomaticMaskGenerator`'s defaults.
    fn default() -> Self {
        Self {
            points_per_side: 32,
            points_per_batch: 64,
            pred_iou_thresh: 0.88,
            stability_score_thresh: 0.95,
            stability_score_offset: 1.0,
            box_nms_thresh: 0.7,
            crop_n_layers: 0,
            crop_nms_thresh: 0.7,
            crop_overlap_ratio: 512.0 / 1500.0,
            crop_n_points_downscale_factor: 1,
            min_mask_region_area: 0,
        }
    }
}

impl EverythingOptions {
    /// The per-mask filters: a threshold of 0 turns its filter off, as in the reference.
    pub fn filter(&self) -> CandidateFilter {
        CandidateFilter {
            pred_iou_thresh: (self.pred_iou_thresh > 0.0).then_some(self.pred_iou_thresh as f32),
            stability_score_thresh: (self.stability_score_thresh > 0.0).then_some(self.stability_score_thresh as f32),
            stability_score_offset: self.stability_score_offset,
        }
    }

    /// The crops of an image of this size.
    pub fn crops(&self, width: usize, height: usize) -> Vec<crops::CropBox> {
        crops::crop_boxes(width, height, self.crop_n_layers, self.crop_overlap_ratio)
    }

    /// Point prompts in all: the decoder's work, for limits and progress.
    pub fn prompts(&self, width: usize, height: usize) -> usize {
        self.crops(width, height)
            .iter()
            .map(|crop| crops::points_per_side(self.points_per_side, crop.layer, self.crop_n_points_downscale_factor).pow(2))
            .sum()
    }
}
