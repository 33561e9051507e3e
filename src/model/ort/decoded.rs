//! The decoder's answer for N objects, whichever data path made it: IoU predictions on the
//! host, and per object either low-res logits the host upscales with OpenCV or the binary
//! masks the postprocessing graph already made.

use std::time::Duration;

use ndarray::Array2;
use opencv::boxed_ref::BoxedRef;
use opencv::core::Mat;
use opencv::prelude::*;
use ort::value::DynTensor;

use super::placement::PooledTensor;
use crate::model::postprocess::{threshold, upscale_logits};
use crate::model::{ImageGeometry, LOW_RES, MASK_TOKENS, ModelError};

/// The masks of one decoder call (objects with equal token counts).
pub enum MaskGroup {
    /// `[n, 4, 256, 256]` f32 logits in host memory.
    LowRes(DynTensor),
    /// `[n, K, H, W]` u8 masks (255 inside) of `tokens`, and with tracking their low-res logits.
    Binary { tokens: &'static [usize], masks: PooledTensor, low_res: Option<PooledTensor> },
}

/// Time the decoder thread spent on a call, by stage.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeTimings {
    pub decoder: Duration,
    /// The postprocessing graph (zero when the host upscales).
    pub postprocess: Duration,
    /// Device to host copies of masks and logits.
    pub download: Duration,
}

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

pub struct DecodedObjects {
    /// `[N, 4]` predicted IoU of every mask token.
    pub iou: Array2<f32>,
    groups: Vec<MaskGroup>,
    /// Object i's (group, row within the group).
    rows: Vec<(usize, usize)>,
    pub timings: DecodeTimings,
}

impl DecodedObjects {
    pub fn empty() -> Self {
        Self::with_capacity(0)
    }

    pub(super) fn with_capacity(objects: usize) -> Self {
        Self {
            iou: Array2::zeros((objects, MASK_TOKENS)),
            groups: Vec::new(),
            rows: vec![(0, 0); objects],
            timings: DecodeTimings::default(),
        }
    }

    /// Records a decoder call's results for the objects at `indices`.
    pub(super) fn push_group(&mut self, indices: &[usize], iou: Array2<f32>, masks: MaskGroup) {
        let group = self.groups.len();
        for (row, &i) in indices.iter().enumerate() {
            self.iou.row_mut(i).assign(&iou.row(row));
            self.rows[i] = (group, row);
        }
        self.groups.push(masks);
    }

    /// Object `i`'s mask for `token` at the original size.
    pub fn mask(&self, i: usize, token: usize, geometry: &ImageGeometry) -> Result<BinaryMask<'_>, ModelError> {
        let (group, row) = self.rows[i];
        match &self.groups[group] {
            MaskGroup::LowRes(_) => {
                let logits = self.low_res(i, token).expect("the host holds low-res logits");
                Ok(BinaryMask::Owned(threshold(&upscale_logits(logits, geometry)?)?))
            }
            MaskGroup::Binary { tokens, masks, .. } => {
                let k = position(tokens, token)?;
                let plane = geometry.width * geometry.height;
                let bytes = &masks.data::<u8>()?[(row * tokens.len() + k) * plane..][..plane];
                Ok(BinaryMask::View(Mat::new_rows_cols_with_data(geometry.height as i32, geometry.width as i32, bytes)?))
            }
        }
    }

    /// Object `i`'s 256x256 low-res logits of `token`, where the host has them: always with host
    /// postprocessing, for the returned tokens when the request kept them (tracking).
    pub fn low_res(&self, i: usize, token: usize) -> Option<&[f32]> {
        let (group, row) = self.rows[i];
        let plane = LOW_RES * LOW_RES;
        match &self.groups[group] {
            MaskGroup::LowRes(tensor) => {
                let data = tensor.try_extract_tensor::<f32>().ok()?.1;
                Some(&data[(row * MASK_TOKENS + token) * plane..][..plane])
            }
            MaskGroup::Binary { tokens, low_res: Some(low_res), .. } => {
                let k = position(tokens, token).ok()?;
                Some(&low_res.data::<f32>().ok()?[(row * tokens.len() + k) * plane..][..plane])
            }
            MaskGroup::Binary { low_res: None, .. } => None,
        }
    }
}

fn position(tokens: &[usize], token: usize) -> Result<usize, ModelError> {
    tokens.iter().position(|&t| t == token).ok_or(ModelError::Shape { name: "mask token", shape: vec![token] })
}
