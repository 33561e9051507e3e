//! `remove_small_regions` (mobile_sam/utils/amg.py): fill holes, or drop islands, smaller than
//! an area, with OpenCV's connected components (8-connectivity), as the reference does.

use opencv::core::{CV_8UC1, CV_32S, Mat, Scalar};
use opencv::prelude::*;

use crate::model::ModelError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Regions {
    /// Background regions inside the mask.
    Holes,
    /// Separate pieces of the mask.
    Islands,
}

/// The mask (CV_8UC1, non-zero inside) with regions below `min_area` removed, and whether
/// anything changed.
pub fn remove_small_regions(mask: &Mat, min_area: usize, mode: Regions) -> Result<(Mat, bool), ModelError> {
    // Holes are the regions of the inverted mask.
    let mut working = Mat::default();
    let select = if mode == Regions::Holes { opencv::core::CMP_EQ } else { opencv::core::CMP_NE };
    opencv::core::compare(mask, &Scalar::all(0.0), &mut working, select)?;
    let (mut labels, mut stats, mut centroids) = (Mat::default(), Mat::default(), Mat::default());
    let count = opencv::imgproc::connected_components_with_stats(&working, &mut labels, &mut stats, &mut centroids, 8, CV_32S)? as usize;
    // Row 0 of the stats is the background label.
    let sizes: Vec<usize> = (1..count)
        .map(|label| stats.at_2d::<i32>(label as i32, opencv::imgproc::CC_STAT_AREA).map(|&a| a as usize))
        .collect::<Result<_, _>>()?;
    let small: Vec<usize> = sizes.iter().enumerate().filter(|&(_, &size)| size < min_area).map(|(i, _)| i + 1).collect();
    if small.is_empty() {
        return Ok((mask.clone(), false));
    }
    let mut keep_label = vec![false; count];
    match mode {
        // The mask's own pixels (label 0 of the inverse) plus the small holes.
        Regions::Holes => {
            keep_label[0] = true;
            for &label in &small {
                keep_label[label] = true;
            }
        }
        // Every island but the small ones; if all are small, the largest alone.
        Regions::Islands => {
            for (label, keep) in keep_label.iter_mut().enumerate().skip(1) {
                *keep = !small.contains(&label);
            }
            if !keep_label.iter().any(|&k| k) {
                let largest = sizes.iter().enumerate().max_by_key(|&(i, &size)| (size, std::cmp::Reverse(i))).map_or(1, |(i, _)| i + 1);
                keep_label[largest] = true;
            }
        }
    }
    let mut out = Mat::new_rows_cols_with_default(mask.rows(), mask.cols(), CV_8UC1, Scalar::all(0.0))?;
    let labels = labels.data_typed::<i32>()?;
    for (o, &label) in out.data_bytes_mut()?.iter_mut().zip(labels) {
        if keep_label[label as usize] {
            *o = 255;
        }
    }
    Ok((out, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(rows: &[&str]) -> Mat {
        let bytes: Vec<u8> = rows.iter().flat_map(|r| r.bytes().map(|b| if b == b'#' { 255 } else { 0 })).collect();
        Mat::new_rows_cols_with_data(rows.len() as i32, rows[0].len() as i32, &bytes).unwrap().try_clone().unwrap()
    }

    fn text(m: &Mat) -> Vec<String> {
        let cols = m.cols() as usize;
        m.data_bytes().unwrap().chunks(cols).map(|r| r.iter().map(|&v| if v != 0 { '#' } else { '.' }).collect()).collect()
    }

    #[test]
    fn small_holes_are_filled_and_small_islands_dropped() {
        let m = mask(&["######..", "#.####..", "######.#", "........"]);
        let (filled, changed) = remove_small_regions(&m, 2, Regions::Holes).unwrap();
        assert!(changed);
        assert_eq!(text(&filled), vec!["######..", "######..", "######.#", "........"]);
        let (dropped, changed) = remove_small_regions(&m, 2, Regions::Islands).unwrap();
        assert!(changed);
        assert_eq!(text(&dropped), vec!["######..", "#.####..", "######..", "........"]);
        let (same, changed) = remove_small_regions(&m, 1, Regions::Islands).unwrap();
        assert!(!changed);
        assert_eq!(text(&same), text(&m));
    }

    #[test]
    fn when_every_island_is_small_the_largest_stays() {
        let m = mask(&["##...#", "......", "#....."]);
        let (kept, changed) = remove_small_regions(&m, 10, Regions::Islands).unwrap();
        assert!(changed);
        assert_eq!(text(&kept), vec!["##....", "......", "......"]);
    }
}
