//! SamPredictor's postprocessing: which mask tokens a request returns, and their binary masks
//! at the original size. On the host that is `postprocess_masks` (bilinear upscale of the
//! 256x256 logits to 1024, crop of the padding, bilinear resize to the original size) and the
//! threshold at 0, with OpenCV; on the device data path the backend already made the masks and
//! they are viewed where they lie.

use opencv::boxed_ref::BoxedRef;
use opencv::core::{CMP_GT, Mat, Rect, Scalar, Size};
use opencv::prelude::*;

use super::backend::MaskGroup;
use super::decoded::{DecodedObjects, token_position};
use super::{IMAGE_SIZE, ImageGeometry, LOW_RES, MASK_TOKENS, ModelError};

/// A binary mask at the original size, CV_8UC1, 255 inside: made here by OpenCV, or a view of
/// the bytes the device sent back.
pub enum BinaryMask<'a> {
    Owned(Mat),
    View(BoxedRef<'a, Mat>),
}

impl BinaryMask<'_> {
    /// Row-major bytes, 255 inside.
    pub fn bytes(&self) -> Result<&[u8], ModelError> {
        Ok(match self {
            BinaryMask::Owned(mask) => mask.data_bytes()?,
            BinaryMask::View(mask) => mask.data_bytes()?,
        })
    }
}

/// Object `i`'s mask for `token` at the original size.
pub fn binary_mask<'a>(
    decoded: &'a DecodedObjects,
    i: usize,
    token: usize,
    geometry: &ImageGeometry,
) -> Result<BinaryMask<'a>, ModelError> {
    let object = decoded.object(i);
    match object.group {
        MaskGroup::LowRes(logits) => {
            let plane = LOW_RES * LOW_RES;
            let low_res = &logits.values()?[(object.row * MASK_TOKENS + token) * plane..][..plane];
            Ok(BinaryMask::Owned(threshold(&upscale_logits(low_res, geometry)?)?))
        }
        MaskGroup::Binary { tokens, masks, .. } => {
            let k = token_position(tokens, token)?;
            let plane = geometry.width * geometry.height;
            let bytes = &masks.values()?[(object.row * tokens.len() + k) * plane..][..plane];
            Ok(BinaryMask::View(Mat::new_rows_cols_with_data(geometry.height as i32, geometry.width as i32, bytes)?))
        }
        // Segment everything's candidates are read through `everything::filter`.
        MaskGroup::Candidates { .. } => Err(ModelError::Shape { name: "mask of a prompted object", shape: vec![i, token] }),
    }
}

/// Full-resolution logits (CV_32FC1, original height x width) of one 256x256 low-res mask.
pub fn upscale_logits(low_res: &[f32], geometry: &ImageGeometry) -> Result<Mat, ModelError> {
    if low_res.len() != LOW_RES * LOW_RES {
        return Err(ModelError::Shape { name: "low_res_masks", shape: vec![low_res.len()] });
    }
    let low_res = Mat::new_rows_cols_with_data(LOW_RES as i32, LOW_RES as i32, low_res)?;
    let mut padded = Mat::default();
    let side = IMAGE_SIZE as i32;
    opencv::imgproc::resize(&low_res, &mut padded, Size::new(side, side), 0.0, 0.0, opencv::imgproc::INTER_LINEAR)?;
    let unpadded = Mat::roi(&padded, Rect::new(0, 0, geometry.resized_width as i32, geometry.resized_height as i32))?;
    let mut logits = Mat::default();
    let size = Size::new(geometry.width as i32, geometry.height as i32);
    opencv::imgproc::resize(&unpadded, &mut logits, size, 0.0, 0.0, opencv::imgproc::INTER_LINEAR)?;
    Ok(logits)
}

/// Binary mask (CV_8UC1, 255 where the logit is above SAM's threshold of 0).
pub fn threshold(logits: &Mat) -> Result<Mat, ModelError> {
    let mut mask = Mat::default();
    opencv::core::compare(logits, &Scalar::all(0.0), &mut mask, CMP_GT)?;
    Ok(mask)
}

/// The mask tokens a request returns with their predicted IoU, best first:
/// token 0 alone for single-mask output (as SamPredictor), else tokens 1..3 by score.
pub fn chosen_tokens(iou: &[f32], multimask: bool) -> Vec<(usize, f32)> {
    if !multimask {
        return vec![(0, iou[0])];
    }
    let mut candidates: Vec<(usize, f32)> = iou.iter().copied().enumerate().skip(1).collect();
    candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_mask_is_token_zero_whatever_the_scores() {
        assert_eq!(chosen_tokens(&[0.1, 0.9, 0.8, 0.7], false), vec![(0, 0.1)]);
    }

    #[test]
    fn multimask_returns_tokens_one_to_three_best_first() {
        assert_eq!(chosen_tokens(&[0.99, 0.2, 0.9, 0.5], true), vec![(2, 0.9), (3, 0.5), (1, 0.2)]);
    }

    #[test]
    fn upscaled_logits_have_the_original_size() {
        let geometry = ImageGeometry::new(640, 480);
        let low_res = vec![1.0f32; LOW_RES * LOW_RES];
        let logits = upscale_logits(&low_res, &geometry).unwrap();
        assert_eq!((logits.cols(), logits.rows()), (640, 480));
        let mask = threshold(&logits).unwrap();
        assert_eq!(opencv::core::count_non_zero(&mask).unwrap(), 640 * 480);
    }
}
