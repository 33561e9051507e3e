//! What segment everything keeps of a decoder call: the per-mask filters and a kept mask's
//! description. Plain data, shared by the host's filter (`filter`) and by backends that
//! filter on their device, so the model seam names them without depending on the filter.

/// Segment everything's per-mask filters, in the order the reference applies them, in its
/// arithmetic: scores are float32 and so are the thresholds they are compared with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CandidateFilter {
    /// Keep masks whose predicted IoU is above this; `None` keeps every mask.
    pub pred_iou_thresh: Option<f32>,
    /// Keep masks whose stability score is at least this; `None` keeps every mask.
    pub stability_score_thresh: Option<f32>,
    /// The stability score counts logits above `+offset` and above `-offset`.
    pub stability_score_offset: f64,
}

impl CandidateFilter {
    /// The logit levels the stability score counts above: `0.0 + offset` and `0.0 - offset`,
    /// as float32 (the logits' type).
    pub fn stability_levels(&self) -> (f32, f32) {
        ((0.0 + self.stability_score_offset) as f32, (0.0 - self.stability_score_offset) as f32)
    }

    pub fn keeps_iou(&self, iou: f32) -> bool {
        self.pred_iou_thresh.is_none_or(|t| iou > t)
    }

    /// `inside / union`, NaN for an empty union, which no threshold keeps.
    pub fn keeps_stability(&self, stability: f32) -> bool {
        self.stability_score_thresh.is_none_or(|t| stability >= t)
    }
}

/// A candidate mask the backend kept: the decoder call's row (the point), the token, its
/// scores, and its box in the reference's convention (XYXY, last pixel included; zeros for an
/// empty mask).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FoundMask {
    pub row: usize,
    pub token: usize,
    pub iou: f32,
    pub stability: f32,
    pub inclusive_box: [u32; 4],
}
