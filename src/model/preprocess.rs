//! SamPredictor's image transform: RGB, longest side to 1024, mean/std normalisation,
//! bottom-right zero padding, as a `[1, 3, 1024, 1024]` float32 tensor; or, for a backend that
//! preprocesses on its device, the decoded frame as it is.

use std::sync::Arc;

use ndarray::Array4;
use opencv::core::{Mat, Size};
use opencv::prelude::*;

use super::contract::IMAGE_SIZE;
pub use super::contract::{PIXEL_MEAN, PIXEL_STD};
pub use super::options::ResizeFilter;
use super::{ImageGeometry, ModelError, resample};

/// Frames enter the model as 8-bit, 3-channel RGB.
pub fn check_rgb8(rgb: &Mat) -> Result<(), ModelError> {
    if rgb.typ() != opencv::core::CV_8UC3 {
        return Err(ModelError::Image(format!("expected an 8-bit 3-channel image, got type {}", rgb.typ())));
    }
    Ok(())
}

/// A decoded frame, 8-bit RGB, ready to be uploaded as it is (shared with the source that
/// grabbed it: viewers of one source see the same pixels).
#[derive(Clone)]
pub struct RgbFrame {
    pub pixels: Arc<Mat>,
    pub geometry: ImageGeometry,
}

impl RgbFrame {
    pub fn new(rgb: Arc<Mat>) -> Result<Self, ModelError> {
        check_rgb8(&rgb)?;
        let pixels = if rgb.is_continuous() { rgb } else { Arc::new(rgb.try_clone()?) };
        let geometry = ImageGeometry::new(pixels.cols() as usize, pixels.rows() as usize);
        Ok(Self { pixels, geometry })
    }

    pub fn bytes(&self) -> Result<&[u8], ModelError> {
        Ok(self.pixels.data_bytes()?)
    }
}

/// The encoder's input and the geometry needed to map prompts and masks back.
pub struct PreprocessedImage {
    pub tensor: Array4<f32>,
    pub geometry: ImageGeometry,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Preprocessor {
    pub filter: ResizeFilter,
}

impl Preprocessor {
    pub fn new(filter: ResizeFilter) -> Self {
        Self { filter }
    }

    /// `rgb` is an 8-bit, 3-channel image in RGB order.
    pub fn run(&self, rgb: &Mat) -> Result<PreprocessedImage, ModelError> {
        check_rgb8(rgb)?;
        let geometry = ImageGeometry::new(rgb.cols() as usize, rgb.rows() as usize);
        let resized = self.resize(rgb, &geometry)?;
        let mut tensor = Array4::<f32>::zeros((1, 3, IMAGE_SIZE, IMAGE_SIZE));
        let row_len = geometry.resized_width * 3;
        for (c, mut plane) in tensor.index_axis_mut(ndarray::Axis(0), 0).outer_iter_mut().enumerate() {
            let (mean, std) = (PIXEL_MEAN[c], PIXEL_STD[c]);
            for (y, src_row) in resized.chunks_exact(row_len).enumerate() {
                let mut dst_row = plane.row_mut(y);
                let dst = dst_row.as_slice_mut().expect("standard layout rows are contiguous");
                for (d, px) in dst.iter_mut().zip(src_row.chunks_exact(3)) {
                    *d = (f32::from(px[c]) - mean) / std;
                }
            }
        }
        Ok(PreprocessedImage { tensor, geometry })
    }

    /// Resized RGB bytes, tightly packed, `resized_width x resized_height`.
    fn resize(&self, rgb: &Mat, geometry: &ImageGeometry) -> Result<Vec<u8>, ModelError> {
        let (w, h) = (geometry.resized_width, geometry.resized_height);
        let shrinking = w < geometry.width;
        let interpolation = match self.filter {
            ResizeFilter::Pillow => {
                let contiguous;
                let src = if rgb.is_continuous() {
                    rgb
                } else {
                    contiguous = rgb.try_clone()?;
                    &contiguous
                };
                return Ok(resample::resize_rgb8(src.data_bytes()?, geometry.width, geometry.height, w, h));
            }
            ResizeFilter::OpencvArea if shrinking => opencv::imgproc::INTER_AREA,
            ResizeFilter::OpencvArea | ResizeFilter::OpencvLinear => opencv::imgproc::INTER_LINEAR,
        };
        let mut resized = Mat::default();
        opencv::imgproc::resize(rgb, &mut resized, Size::new(w as i32, h as i32), 0.0, 0.0, interpolation)?;
        Ok(resized.data_bytes()?.to_vec())
    }
}
