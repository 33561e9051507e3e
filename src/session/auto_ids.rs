//! Ids for the live automatic mode's masks: a mask takes the id of the previous segmented
//! frame's mask it overlaps most (mask IoU at least `MATCH_IOU`; best pairs first, each id
//! once), a mask that matches none gets a new id, and the ids left unmatched are reported as
//! removed. Identical frames keep every id.

use crate::model::everything::runs::MaskRuns;

/// Mask IoU from which two masks of consecutive segmented frames are one object.
pub const MATCH_IOU: f64 = 0.5;

#[derive(Default)]
pub struct AutoIds {
    next: u32,
    previous: Vec<(u32, MaskRuns)>,
}

/// One frame's ids: one per mask, in the masks' order, and the ids that are gone.
#[derive(Debug, PartialEq, Eq)]
pub struct Assigned {
    pub ids: Vec<u32>,
    pub removed: Vec<u32>,
}

impl AutoIds {
    pub fn assign(&mut self, masks: &[&MaskRuns]) -> Assigned {
        let mut pairs = Vec::new();
        for (i, mask) in masks.iter().enumerate() {
            for (p, (_, previous)) in self.previous.iter().enumerate() {
                let iou = mask.iou(previous);
                if iou >= MATCH_IOU {
                    pairs.push((iou, i, p));
                }
            }
        }
        // Best pairs first; ties in the masks' then the previous masks' order.
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut ids = vec![None; masks.len()];
        let mut taken = vec![false; self.previous.len()];
        for (_, i, p) in pairs {
            if ids[i].is_none() && !taken[p] {
                ids[i] = Some(self.previous[p].0);
                taken[p] = true;
            }
        }
        let ids: Vec<u32> = ids
            .into_iter()
            .map(|id| {
                id.unwrap_or_else(|| {
                    self.next += 1;
                    self.next
                })
            })
            .collect();
        let removed = self.previous.iter().zip(&taken).filter(|(_, t)| !**t).map(|((id, _), _)| *id).collect();
        self.previous = ids.iter().copied().zip(masks.iter().map(|m| (*m).clone())).collect();
        Assigned { ids, removed }
    }
}

#[cfg(test)]
mod tests {
    use opencv::core::Mat;
    use opencv::prelude::*;

    use super::*;

    fn runs(rows: &[&str]) -> MaskRuns {
        let bytes: Vec<u8> = rows.iter().flat_map(|r| r.bytes().map(|b| if b == b'#' { 255 } else { 0 })).collect();
        let mat = Mat::new_rows_cols_with_data(rows.len() as i32, rows[0].len() as i32, &bytes).unwrap().try_clone().unwrap();
        MaskRuns::from_mat(&mat).unwrap()
    }

    #[test]
    fn objects_keep_their_ids_new_ones_get_new_ids_and_vanished_ones_are_removed() {
        let left = runs(&["##....", "##....", "......"]);
        let right = runs(&["....##", "....##", "......"]);
        let moved_left = runs(&["###...", "##....", "......"]);
        let bottom = runs(&["......", "......", "######"]);
        let mut ids = AutoIds::default();
        assert_eq!(ids.assign(&[&left, &right]), Assigned { ids: vec![1, 2], removed: vec![] });
        assert_eq!(ids.assign(&[&right, &left]), Assigned { ids: vec![2, 1], removed: vec![] }, "identical masks keep their ids");
        assert_eq!(ids.assign(&[&moved_left, &bottom, &right]), Assigned { ids: vec![1, 3, 2], removed: vec![] });
        assert_eq!(ids.assign(&[&bottom]), Assigned { ids: vec![3], removed: vec![1, 2] });
        assert_eq!(ids.assign(&[]), Assigned { ids: vec![], removed: vec![3] });
        assert_eq!(ids.assign(&[&left]), Assigned { ids: vec![4], removed: vec![] }, "ids are never reused");
    }
}
