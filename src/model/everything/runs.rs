//! A mask of the whole image kept as column-major runs, zeros first: what the reference keeps
//! between its steps (uncompressed COCO RLE). Small to hold for every candidate of every crop,
//! direct to send as COCO RLE; decoded back into pixels only where pixels are needed.

use opencv::core::{Mat, ToInputArray};
use opencv::prelude::*;

use super::crops::CropBox;
use crate::model::ModelError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskRuns {
    pub width: usize,
    pub height: usize,
    /// Alternating runs of 0s and 1s over the pixels in column-major order, starting with 0s.
    pub runs: Vec<u32>,
}

/// Builds runs from pixels given in column-major order.
struct RunBuilder {
    runs: Vec<u32>,
    current: bool,
    length: u32,
}

impl RunBuilder {
    fn new() -> Self {
        Self { runs: Vec::new(), current: false, length: 0 }
    }

    fn push(&mut self, on: bool, count: u32) {
        if count == 0 {
            return;
        }
        if on != self.current {
            self.runs.push(self.length);
            self.current = on;
            self.length = 0;
        }
        self.length += count;
    }

    fn finish(mut self) -> Vec<u32> {
        self.runs.push(self.length);
        self.runs
    }
}

impl MaskRuns {
    /// A crop-sized mask (CV_8UC1, non-zero inside) placed at `crop` in a `width` x `height`
    /// image (everything outside the crop is outside the mask).
    pub fn from_crop(mask: &(impl MatTraitConst + ToInputArray), crop: &CropBox, width: usize, height: usize) -> Result<Self, ModelError> {
        let mut transposed = Mat::default();
        opencv::core::transpose(mask, &mut transposed)?;
        let columns = transposed.data_bytes()?;
        let crop_height = crop.height();
        let mut builder = RunBuilder::new();
        for x in 0..width {
            if x < crop.x0 || x >= crop.x1 {
                builder.push(false, height as u32);
                continue;
            }
            builder.push(false, crop.y0 as u32);
            for &v in &columns[(x - crop.x0) * crop_height..][..crop_height] {
                builder.push(v != 0, 1);
            }
            builder.push(false, (height - crop.y1) as u32);
        }
        Ok(Self { width, height, runs: builder.finish() })
    }

    /// A whole-image mask (CV_8UC1, non-zero inside).
    pub fn from_mat(mask: &Mat) -> Result<Self, ModelError> {
        let (width, height) = (mask.cols() as usize, mask.rows() as usize);
        let whole = CropBox { x0: 0, y0: 0, x1: width, y1: height, layer: 0 };
        Self::from_crop(mask, &whole, width, height)
    }

    /// Pixels inside the mask.
    pub fn area(&self) -> u64 {
        self.runs.iter().skip(1).step_by(2).map(|&r| u64::from(r)).sum()
    }

    /// Pixels inside both masks (0 when the images' sizes differ).
    pub fn intersection(&self, other: &MaskRuns) -> u64 {
        if (self.width, self.height) != (other.width, other.height) {
            return 0;
        }
        // Walk both run lists at once, counting where both are inside.
        let (mut a, mut b) = (self.runs.iter().copied().enumerate(), other.runs.iter().copied().enumerate());
        let (mut run_a, mut run_b) = (a.next(), b.next());
        let (mut left_a, mut left_b) = (run_a.map_or(0, |r| r.1), run_b.map_or(0, |r| r.1));
        let mut both = 0u64;
        while let (Some((ia, _)), Some((ib, _))) = (run_a, run_b) {
            let step = left_a.min(left_b);
            if ia % 2 == 1 && ib % 2 == 1 {
                both += u64::from(step);
            }
            left_a -= step;
            left_b -= step;
            if left_a == 0 {
                run_a = a.next();
                left_a = run_a.map_or(0, |r| r.1);
            }
            if left_b == 0 {
                run_b = b.next();
                left_b = run_b.map_or(0, |r| r.1);
            }
        }
        both
    }

    /// Intersection over union of two masks (0 for two empty masks).
    pub fn iou(&self, other: &MaskRuns) -> f64 {
        let inter = self.intersection(other);
        let union = self.area() + other.area() - inter;
        if union == 0 { 0.0 } else { inter as f64 / union as f64 }
    }

    /// The mask as pixels: CV_8UC1, `height` x `width`, 255 inside.
    pub fn to_mat(&self) -> Result<Mat, ModelError> {
        let mut columns = vec![0u8; self.width * self.height];
        let mut at = 0usize;
        for (i, &run) in self.runs.iter().enumerate() {
            if i % 2 == 1 {
                columns[at..at + run as usize].fill(255);
            }
            at += run as usize;
        }
        let transposed = Mat::new_rows_cols_with_data(self.width as i32, self.height as i32, &columns)?;
        let mut mask = Mat::default();
        opencv::core::transpose(&transposed, &mut mask)?;
        Ok(mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(rows: &[&str]) -> Mat {
        let bytes: Vec<u8> = rows.iter().flat_map(|r| r.bytes().map(|b| if b == b'#' { 255 } else { 0 })).collect();
        Mat::new_rows_cols_with_data(rows.len() as i32, rows[0].len() as i32, &bytes).unwrap().try_clone().unwrap()
    }

    #[test]
    fn a_crop_lands_in_place_and_round_trips() {
        let crop_mask = mask(&["#.", "##"]);
        let crop = CropBox { x0: 1, y0: 1, x1: 3, y1: 3, layer: 1 };
        let runs = MaskRuns::from_crop(&crop_mask, &crop, 4, 3).unwrap();
        // Column-major over a 3-row image: column 0 empty, column 1 rows 1-2, column 2 row 2.
        assert_eq!(runs.runs, vec![4, 2, 2, 1, 3]);
        assert_eq!(runs.area(), 3);
        let whole = runs.to_mat().unwrap();
        assert_eq!(MaskRuns::from_mat(&whole).unwrap(), runs);
        assert_eq!(MaskRuns::from_mat(&mask(&["..", ".."])).unwrap().runs, vec![4]);
    }

    #[test]
    fn overlap_is_counted_run_by_run() {
        let a = MaskRuns::from_mat(&mask(&["##.", "#..", "..#"])).unwrap();
        let b = MaskRuns::from_mat(&mask(&["#..", "##.", "..#"])).unwrap();
        assert_eq!((a.area(), b.area(), a.intersection(&b)), (4, 4, 3));
        assert_eq!(a.iou(&b), 3.0 / 5.0);
        assert_eq!(a.iou(&a), 1.0);
        let other_size = MaskRuns::from_mat(&mask(&["##", "#."])).unwrap();
        assert_eq!(a.intersection(&other_size), 0);
    }
}
