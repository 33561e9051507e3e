//! Outer contours of a mask, for clients that draw or store polygons.

use opencv::core::{Point, Vector};

use super::{MaskError, MaskImage};

/// Outer contours (OpenCV `findContours`, external only, simple chain approximation), each as
/// `x0, y0, x1, y1, ...`.
pub fn outer_polygons(mask: &impl MaskImage) -> Result<Vec<Vec<f32>>, MaskError> {
    let mut contours = Vector::<Vector<Point>>::new();
    opencv::imgproc::find_contours(
        mask,
        &mut contours,
        opencv::imgproc::RETR_EXTERNAL,
        opencv::imgproc::CHAIN_APPROX_SIMPLE,
        Point::new(0, 0),
    )?;
    Ok(contours.iter().map(|contour| contour.iter().flat_map(|p| [p.x as f32, p.y as f32]).collect()).collect())
}
