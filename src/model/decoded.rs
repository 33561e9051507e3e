//! The decoder's answer for the N objects of one request, assembled from its calls: IoU
//! predictions, and per object the host memory its masks (or low-res logits) are in.

use ndarray::Array2;

use super::backend::{DecodedGroup, MaskGroup};
use super::{LOW_RES, MASK_TOKENS, ModelError};
use crate::telemetry::StageTimings;

pub struct DecodedObjects {
    /// `[N, 4]` predicted IoU of every mask token.
    pub iou: Array2<f32>,
    groups: Vec<MaskGroup>,
    /// Object i's (group, row within the group).
    rows: Vec<(usize, usize)>,
    /// Decoder, postprocessing and download time of all calls.
    pub timings: StageTimings,
}

/// Where one object's data is: its group's masks and its row in them.
pub struct ObjectRows<'a> {
    pub group: &'a MaskGroup,
    pub row: usize,
}

impl DecodedObjects {
    pub fn with_capacity(objects: usize) -> Self {
        Self {
            iou: Array2::zeros((objects, MASK_TOKENS)),
            groups: Vec::new(),
            rows: vec![(0, 0); objects],
            timings: StageTimings::default(),
        }
    }

    pub fn empty() -> Self {
        Self::with_capacity(0)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Records a decoder call's results for the objects at `indices`.
    pub fn push_group(&mut self, indices: &[usize], group: DecodedGroup) {
        let index = self.groups.len();
        for (row, &i) in indices.iter().enumerate() {
            self.iou.row_mut(i).assign(&group.iou.row(row));
            self.rows[i] = (index, row);
        }
        self.timings += group.timings;
        self.groups.push(group.masks);
    }

    pub fn object(&self, i: usize) -> ObjectRows<'_> {
        let (group, row) = self.rows[i];
        ObjectRows { group: &self.groups[group], row }
    }

    /// Object `i`'s 256x256 low-res logits of `token`, where the host has them: always with
    /// host postprocessing, for the returned tokens when the request kept them (tracking).
    pub fn low_res(&self, i: usize, token: usize) -> Result<Option<&[f32]>, ModelError> {
        let ObjectRows { group, row } = self.object(i);
        let plane = LOW_RES * LOW_RES;
        Ok(match group {
            MaskGroup::LowRes(logits) => Some(&logits.values()?[(row * MASK_TOKENS + token) * plane..][..plane]),
            MaskGroup::Binary { tokens, low_res: Some(low_res), .. } => {
                let k = token_position(tokens, token)?;
                Some(&low_res.values()?[(row * tokens.len() + k) * plane..][..plane])
            }
            MaskGroup::Binary { low_res: None, .. } | MaskGroup::Candidates { .. } => None,
        })
    }
}

/// Where `token` is among the tokens a backend made masks of.
pub fn token_position(tokens: &[usize], token: usize) -> Result<usize, ModelError> {
    tokens.iter().position(|&t| t == token).ok_or(ModelError::Shape { name: "mask token", shape: vec![token] })
}
