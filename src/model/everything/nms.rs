//! torchvision's `batched_nms` with one category, as segment everything calls it: boxes as
//! float32 XYXY (the masks' inclusive pixel boxes), areas `(x1 - x0) * (y1 - y0)` on those
//! (a one-pixel-wide box has area 0 and its IoU with another such box is NaN, which never
//! suppresses), IoU computed in float32 and compared with the threshold in float64, a box
//! suppressed when its IoU is above the threshold (equal is kept).
//!
//! Ties: boxes are visited by descending score and, among equal scores, by position, which
//! is what torchvision's CPU kernel does (its sort keeps equal scores in order). Its
//! per-category path for more than 1000 boxes keeps the same boxes but re-sorts them with an
//! unstable sort, so the order of equally scored masks there can differ; the set cannot.

/// The indices of the boxes kept, by descending score (ties in input order).
pub fn nms(boxes: &[[f32; 4]], scores: &[f32], iou_threshold: f64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let areas: Vec<f32> = boxes.iter().map(|b| (b[2] - b[0]) * (b[3] - b[1])).collect();
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (rank, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        let b = boxes[i];
        for &j in &order[rank + 1..] {
            if suppressed[j] {
                continue;
            }
            let o = boxes[j];
            let w = (b[2].min(o[2]) - b[0].max(o[0])).max(0.0);
            let h = (b[3].min(o[3]) - b[1].max(o[1])).max(0.0);
            let inter = w * h;
            let iou = inter / (areas[i] + areas[j] - inter);
            if f64::from(iou) > iou_threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// The items at `keep` (indices from `nms`), in that order.
pub fn select<T>(items: Vec<T>, keep: &[usize]) -> Vec<T> {
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    keep.iter().filter_map(|&i| slots[i].take()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_boxes_keep_the_best_and_equal_iou_is_kept() {
        let boxes = [[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 10.0, 7.0]];
        // IoU(0, 1) = 90 / 110 = 0.818; IoU(0, 3) = 0.7 exactly in f32? 70 / 100.
        assert_eq!(nms(&boxes, &[0.9, 0.95, 0.5, 0.8], 0.7), vec![1, 3, 2]);
        assert_eq!(nms(&boxes, &[0.9, 0.1, 0.5, 0.8], 0.7), vec![0, 3, 2], "IoU 0.7 is not above 0.7");
        assert_eq!(nms(&boxes, &[0.9, 0.1, 0.5, 0.8], 0.69), vec![0, 2]);
    }

    #[test]
    fn ties_go_in_input_order_and_zero_area_boxes_never_suppress() {
        let boxes = [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 5.0, 9.0], [5.0, 5.0, 5.0, 9.0]];
        assert_eq!(nms(&boxes, &[1.0, 1.0, 1.0, 1.0], 0.5), vec![0, 2, 3]);
    }
}
