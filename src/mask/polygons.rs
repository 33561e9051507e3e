use opencv::core::{Point, Vector};

use super::{MaskError, MaskImage};
use crate::proto;

/// Outer contours (OpenCV `findContours`, external only, simple chain approximation).
pub fn outer_polygons(mask: &impl MaskImage) -> Result<proto::Polygons, MaskError> {
    let mut contours = Vector::<Vector<Point>>::new();
    opencv::imgproc::find_contours(
        mask,
        &mut contours,
        opencv::imgproc::RETR_EXTERNAL,
        opencv::imgproc::CHAIN_APPROX_SIMPLE,
        Point::new(0, 0),
    )?;
    let polygons =
        contours.iter().map(|contour| proto::Polygon { xy: contour.iter().flat_map(|p| [p.x as f32, p.y as f32]).collect() }).collect();
    Ok(proto::Polygons { polygons })
}
