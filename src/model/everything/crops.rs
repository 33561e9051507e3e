//! Where segment everything looks: the crop boxes (the whole image, then 2^i x 2^i overlapping
//! crops per layer i) and each layer's grid of point prompts, in the reference's arithmetic
//! (`generate_crop_boxes`, `build_all_layer_point_grids` in mobile_sam/utils/amg.py).

/// A crop of the image, XYXY in pixels, right and bottom exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
    /// 0 for the whole image, i for the 2^i x 2^i crops of layer i.
    pub layer: usize,
}

impl CropBox {
    pub fn width(&self) -> usize {
        self.x1 - self.x0
    }

    pub fn height(&self) -> usize {
        self.y1 - self.y0
    }

    pub fn area(&self) -> usize {
        self.width() * self.height()
    }
}

/// The crops for an image `width` x `height`: the whole image first, then per layer the
/// crops in the reference's order (x outer, y inner).
pub fn crop_boxes(width: usize, height: usize, layers: usize, overlap_ratio: f64) -> Vec<CropBox> {
    let mut boxes = vec![CropBox { x0: 0, y0: 0, x1: width, y1: height, layer: 0 }];
    let short_side = width.min(height) as f64;
    for layer in 1..=layers {
        let per_side = 1usize << layer;
        // Python's int() truncates toward zero, as `as usize` does on these positive values.
        let overlap = (overlap_ratio * short_side * (2.0 / per_side as f64)) as usize;
        let crop_len = |side: usize| ((overlap * (per_side - 1) + side) as f64 / per_side as f64).ceil() as usize;
        let (crop_w, crop_h) = (crop_len(width), crop_len(height));
        let x0s: Vec<usize> = (0..per_side).map(|i| (crop_w.saturating_sub(overlap)) * i).collect();
        let y0s: Vec<usize> = (0..per_side).map(|i| (crop_h.saturating_sub(overlap)) * i).collect();
        for &x0 in &x0s {
            for &y0 in &y0s {
                boxes.push(CropBox { x0, y0, x1: (x0 + crop_w).min(width), y1: (y0 + crop_h).min(height), layer });
            }
        }
    }
    boxes
}

/// `build_point_grid(n)`: cell centres of an n x n grid over [0, 1]^2, rows (y) outer, as
/// numpy's linspace computes them.
pub fn point_grid(per_side: usize) -> Vec<[f64; 2]> {
    let offset = 1.0 / (2 * per_side) as f64;
    let steps = linspace(offset, 1.0 - offset, per_side);
    steps.iter().flat_map(|&y| steps.iter().map(move |&x| [x, y])).collect()
}

/// The points per side of layer `layer`: `int(n / factor^layer)`.
pub fn points_per_side(per_side: usize, layer: usize, downscale_factor: usize) -> usize {
    (per_side as f64 / (downscale_factor as f64).powi(layer as i32)) as usize
}

/// numpy.linspace(start, stop, num) with its endpoint: `start + i * step`, the last exactly `stop`.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    match num {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let step = (stop - start) / (num - 1) as f64;
            let mut values: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
            values[num - 1] = stop;
            values
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xyxy(boxes: &[CropBox]) -> Vec<[usize; 4]> {
        boxes.iter().map(|b| [b.x0, b.y0, b.x1, b.y1]).collect()
    }

    #[test]
    fn crop_boxes_match_the_reference_vectors() {
        let ratio = 512.0 / 1500.0;
        let boxes = crop_boxes(1920, 1080, 1, ratio);
        assert_eq!(
            xyxy(&boxes),
            vec![[0, 0, 1920, 1080], [0, 0, 1144, 724], [0, 356, 1144, 1080], [776, 0, 1920, 724], [776, 356, 1920, 1080]]
        );
        assert_eq!(
            xyxy(&crop_boxes(1024, 768, 1, ratio)[1..]),
            vec![[0, 0, 643, 515], [0, 253, 643, 768], [381, 0, 1024, 515], [381, 253, 1024, 768]]
        );
        assert_eq!(
            xyxy(&crop_boxes(640, 480, 1, ratio)[1..]),
            vec![[0, 0, 402, 322], [0, 159, 402, 480], [239, 0, 640, 322], [239, 159, 640, 480]]
        );
        let layer2: Vec<CropBox> = crop_boxes(1920, 1080, 2, ratio).into_iter().filter(|b| b.layer == 2).collect();
        assert_eq!(layer2.len(), 16);
        assert_eq!(xyxy(&layer2[..3]), vec![[0, 0, 618, 408], [0, 224, 618, 632], [0, 448, 618, 856]]);
        assert_eq!(xyxy(&layer2[15..]), vec![[1302, 672, 1920, 1080]]);
        assert_eq!([0, 1, 2, 3].map(|l| crop_boxes(64, 48, l, ratio).len()), [1, 5, 21, 85]);
    }

    #[test]
    fn grids_are_cell_centres_rows_outer() {
        let grid = point_grid(32);
        assert_eq!(grid.len(), 1024);
        assert_eq!(grid[0], [0.015625, 0.015625]);
        assert_eq!(grid[1], [0.046875, 0.015625]);
        assert_eq!(grid[32], [0.015625, 0.046875]);
        assert_eq!(grid[1023], [0.984375, 0.984375]);
        assert_eq!([0, 1, 2].map(|l| points_per_side(32, l, 2)), [32, 16, 8]);
        assert_eq!(point_grid(1), vec![[0.5, 0.5]]);
    }
}
