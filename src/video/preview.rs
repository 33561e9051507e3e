//! Preview frames: a JPEG of the frame a result belongs to, for viewers that do not read the
//! source themselves. A frame keeps its previews by size (`PreviewCache`), so every viewer of a
//! shared source that asks for the same size gets the one encoding.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opencv::core::{Mat, Size, Vector};
use opencv::prelude::*;

/// Allowed longest sides, in pixels.
pub const MAX_SIDE_RANGE: std::ops::RangeInclusive<u32> = 16..=4096;
pub const DEFAULT_MAX_SIDE: u32 = 640;
pub const DEFAULT_QUALITY: u32 = 80;

/// The size and quality of a preview.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PreviewSpec {
    /// Longest side; a smaller frame is not enlarged.
    pub max_side: u32,
    /// JPEG quality, 1..=100.
    pub quality: u32,
}

pub struct Preview {
    /// Reference-counted: every viewer's message shares it.
    pub jpeg: bytes::Bytes,
    pub width: u32,
    pub height: u32,
}

/// One spec's preview of a frame, filled by the first viewer that asks for it.
type Slot = Arc<tokio::sync::OnceCell<Arc<Preview>>>;

/// The previews of one frame, encoded at most once per spec however many viewers ask.
#[derive(Default)]
pub struct PreviewCache {
    encoded: Mutex<Vec<(PreviewSpec, Slot)>>,
}

impl PreviewCache {
    /// The frame's preview for `spec`, encoded on the blocking pool by the first viewer that
    /// asks (the others wait for it); with the time this caller spent on it.
    pub async fn get(&self, rgb: &Arc<Mat>, spec: PreviewSpec) -> Result<(Arc<Preview>, Duration), opencv::Error> {
        let started = Instant::now();
        let cell = {
            let mut encoded = self.encoded.lock().expect("preview cache lock poisoned");
            match encoded.iter().find(|(s, _)| *s == spec) {
                Some((_, cell)) => cell.clone(),
                None => {
                    let cell = Arc::new(tokio::sync::OnceCell::new());
                    encoded.push((spec, cell.clone()));
                    cell
                }
            }
        };
        let preview = cell
            .get_or_try_init(|| {
                let rgb = rgb.clone();
                async move {
                    tokio::task::spawn_blocking(move || encode(&rgb, spec))
                        .await
                        .map_err(|e| opencv::Error::new(opencv::core::StsError, format!("preview task failed: {e}")))?
                        .map(Arc::new)
                }
            })
            .await?;
        Ok((preview.clone(), started.elapsed()))
    }
}

/// A JPEG of an 8-bit RGB frame, scaled down (area interpolation) so that its longest side is
/// at most `spec.max_side`.
pub fn encode(rgb: &Mat, spec: PreviewSpec) -> Result<Preview, opencv::Error> {
    let (width, height) = (rgb.cols() as u32, rgb.rows() as u32);
    let (out_width, out_height) = scaled(width, height, spec.max_side);
    let mut bgr = Mat::default();
    opencv::imgproc::cvt_color_def(rgb, &mut bgr, opencv::imgproc::COLOR_RGB2BGR)?;
    let scaled = if (out_width, out_height) == (width, height) {
        bgr
    } else {
        let mut small = Mat::default();
        let size = Size::new(out_width as i32, out_height as i32);
        opencv::imgproc::resize(&bgr, &mut small, size, 0.0, 0.0, opencv::imgproc::INTER_AREA)?;
        small
    };
    let params = Vector::from_slice(&[opencv::imgcodecs::IMWRITE_JPEG_QUALITY, spec.quality as i32]);
    let mut jpeg = Vector::<u8>::new();
    opencv::imgcodecs::imencode(".jpg", &scaled, &mut jpeg, &params)?;
    Ok(Preview { jpeg: jpeg.to_vec().into(), width: out_width, height: out_height })
}

/// The size of a `width x height` frame with its longest side at most `max_side`.
fn scaled(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let longest = width.max(height);
    if longest <= max_side {
        return (width, height);
    }
    let scale = f64::from(max_side) / f64::from(longest);
    let side = |v: u32| ((f64::from(v) * scale).round() as u32).max(1);
    (side(width), side(height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_side_is_bounded_and_small_frames_are_kept() {
        assert_eq!(scaled(1280, 720, 640), (640, 360));
        assert_eq!(scaled(720, 1280, 640), (360, 640));
        assert_eq!(scaled(320, 240, 640), (320, 240));
        assert_eq!(scaled(4000, 1, 16), (16, 1));
    }

    #[tokio::test]
    async fn a_frame_is_encoded_once_per_spec() {
        let rgb = Arc::new(Mat::new_rows_cols_with_default(720, 1280, opencv::core::CV_8UC3, (10, 200, 30, 0).into()).unwrap());
        let cache = PreviewCache::default();
        let spec = PreviewSpec { max_side: 640, quality: 80 };
        let (first, _) = cache.get(&rgb, spec).await.unwrap();
        let (second, _) = cache.get(&rgb, spec).await.unwrap();
        assert!(Arc::ptr_eq(&first, &second), "the second viewer re-encoded the frame");
        assert_eq!((first.width, first.height), (640, 360));
        assert_eq!(&first.jpeg[..2], &[0xFF, 0xD8], "not a JPEG");
        let (other, _) = cache.get(&rgb, PreviewSpec { max_side: 320, quality: 80 }).await.unwrap();
        assert_eq!((other.width, other.height), (320, 180));
        let decoded = opencv::imgcodecs::imdecode(&Vector::from_slice(&first.jpeg), opencv::imgcodecs::IMREAD_COLOR).unwrap();
        let bgr = *decoded.at_2d::<opencv::core::Vec3b>(100, 100).unwrap();
        assert!((i32::from(bgr[2]) - 10).abs() < 8 && (i32::from(bgr[1]) - 200).abs() < 8, "colours swapped: {bgr:?}");
    }
}
