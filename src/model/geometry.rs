//! Where an original image lies in the encoder's padded 1024x1024 input.

use super::contract::IMAGE_SIZE;

/// How an original image maps into the encoder's padded 1024x1024 input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageGeometry {
    pub width: usize,
    pub height: usize,
    /// Size after resizing the longest side to 1024, before bottom-right padding.
    pub resized_width: usize,
    pub resized_height: usize,
}

impl ImageGeometry {
    /// `ResizeLongestSide.get_preprocess_shape`, in the same float64 arithmetic.
    pub fn new(width: usize, height: usize) -> Self {
        let scale = IMAGE_SIZE as f64 / width.max(height) as f64;
        let resized = |side: usize| ((side as f64 * scale) + 0.5) as usize;
        Self { width, height, resized_width: resized(width), resized_height: resized(height) }
    }

    /// `ResizeLongestSide.apply_coords`: original pixels to the encoder's input frame.
    pub fn to_input(&self, x: f32, y: f32) -> [f32; 2] {
        self.to_input_f64(f64::from(x), f64::from(y))
    }

    /// The same for coordinates computed in float64 (segment everything's grid points).
    pub fn to_input_f64(&self, x: f64, y: f64) -> [f32; 2] {
        let sx = self.resized_width as f64 / self.width as f64;
        let sy = self.resized_height as f64 / self.height as f64;
        [(x * sx) as f32, (y * sy) as f32]
    }

    pub fn pixels(&self) -> usize {
        self.width * self.height
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_side_becomes_1024_with_python_rounding() {
        let g = ImageGeometry::new(1920, 1080);
        assert_eq!((g.resized_width, g.resized_height), (1024, 576));
        let g = ImageGeometry::new(333, 500);
        // 333 * 1024 / 500 = 681.984 -> 682
        assert_eq!((g.resized_width, g.resized_height), (682, 1024));
        let g = ImageGeometry::new(320, 240);
        assert_eq!((g.resized_width, g.resized_height), (1024, 768));
    }

    #[test]
    fn coordinates_scale_per_axis() {
        let g = ImageGeometry::new(1920, 1080);
        let [x, y] = g.to_input(960.0, 540.0);
        assert_eq!((x, y), (512.0, 288.0));
    }
}
