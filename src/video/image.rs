//! Images clients send (encoded bytes or raw pixels) to 8-bit RGB `Mat`s, within size limits.
//! Errors name the field of the wire's `Image` message they concern.

use opencv::core::{Mat, Vector};
use opencv::prelude::*;
use thiserror::Error;

/// An image as a client sent it.
#[derive(Debug, Clone, PartialEq)]
pub enum ImagePayload {
    /// JPEG, PNG, BMP or WebP.
    Encoded(Vec<u8>),
    /// Rows top to bottom, tightly packed.
    Raw { width: u32, height: u32, format: PixelFormat, data: Vec<u8> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    Unspecified,
    Rgb8,
    Bgr8,
    Gray8,
    /// A value this server does not know.
    Unknown(i32),
}

#[derive(Debug, Clone, Copy)]
pub struct ImageLimits {
    pub max_pixels: u64,
    pub max_bytes: usize,
}

/// Each variant names the offending field of the `Image` message.
#[derive(Debug, Error)]
pub enum ImageError {
    #[error("image: required")]
    Missing,
    #[error("{field}: {bytes} bytes exceed the limit of {limit}")]
    TooManyBytes { field: &'static str, bytes: usize, limit: usize },
    #[error("{field}: {width}x{height} = {pixels} pixels exceed the limit of {limit}")]
    TooManyPixels { field: &'static str, width: u64, height: u64, pixels: u64, limit: u64 },
    #[error("image.encoded: not a decodable JPEG, PNG, BMP or WebP image ({0})")]
    Undecodable(String),
    #[error("image.raw.{field}: {reason}")]
    InvalidRaw { field: &'static str, reason: String },
    #[error("opencv: {0}")]
    OpenCv(#[from] opencv::Error),
}

pub fn decode_image(image: Option<&ImagePayload>, limits: &ImageLimits) -> Result<Mat, ImageError> {
    match image {
        None => Err(ImageError::Missing),
        Some(ImagePayload::Encoded(bytes)) => decode_encoded(bytes, limits),
        Some(ImagePayload::Raw { width, height, format, data }) => decode_raw(*width, *height, *format, data, limits),
    }
}

fn check_pixels(field: &'static str, width: u64, height: u64, limits: &ImageLimits) -> Result<(), ImageError> {
    let pixels = width * height;
    if pixels > limits.max_pixels {
        return Err(ImageError::TooManyPixels { field, width, height, pixels, limit: limits.max_pixels });
    }
    Ok(())
}

fn decode_encoded(bytes: &[u8], limits: &ImageLimits) -> Result<Mat, ImageError> {
    const FIELD: &str = "image.encoded";
    if bytes.is_empty() {
        return Err(ImageError::Undecodable("empty".into()));
    }
    if bytes.len() > limits.max_bytes {
        return Err(ImageError::TooManyBytes { field: FIELD, bytes: bytes.len(), limit: limits.max_bytes });
    }
    // The header's dimensions are checked before decoding, so a small file that declares a
    // huge image never gets its pixels allocated.
    if let Ok(size) = imagesize::blob_size(bytes) {
        check_pixels(FIELD, size.width as u64, size.height as u64, limits)?;
    }
    let buffer = Vector::<u8>::from_slice(bytes);
    let bgr = opencv::imgcodecs::imdecode(&buffer, opencv::imgcodecs::IMREAD_COLOR).map_err(|e| ImageError::Undecodable(e.message))?;
    if bgr.empty() {
        return Err(ImageError::Undecodable("OpenCV could not decode it".into()));
    }
    check_pixels(FIELD, bgr.cols() as u64, bgr.rows() as u64, limits)?;
    let mut rgb = Mat::default();
    opencv::imgproc::cvt_color_def(&bgr, &mut rgb, opencv::imgproc::COLOR_BGR2RGB)?;
    Ok(rgb)
}

fn decode_raw(width: u32, height: u32, format: PixelFormat, data: &[u8], limits: &ImageLimits) -> Result<Mat, ImageError> {
    let invalid = |field, reason: String| ImageError::InvalidRaw { field, reason };
    if width == 0 {
        return Err(invalid("width", "must be positive".into()));
    }
    if height == 0 {
        return Err(invalid("height", "must be positive".into()));
    }
    if data.len() > limits.max_bytes {
        return Err(ImageError::TooManyBytes { field: "image.raw.data", bytes: data.len(), limit: limits.max_bytes });
    }
    check_pixels("image.raw", u64::from(width), u64::from(height), limits)?;
    let (channels, conversion) = match format {
        PixelFormat::Rgb8 => (3, None),
        PixelFormat::Bgr8 => (3, Some(opencv::imgproc::COLOR_BGR2RGB)),
        PixelFormat::Gray8 => (1, Some(opencv::imgproc::COLOR_GRAY2RGB)),
        PixelFormat::Unspecified => return Err(invalid("format", "must be RGB8, BGR8 or GRAY8".into())),
        PixelFormat::Unknown(value) => return Err(invalid("format", format!("unknown pixel format {value}"))),
    };
    let expected = u64::from(width) * u64::from(height) * channels;
    if data.len() as u64 != expected {
        return Err(invalid("data", format!("{} bytes, but {width}x{height} with {channels} channel(s) needs {expected}", data.len())));
    }
    let (rows, cols) = (height as i32, width as i32);
    let flat = Mat::new_rows_cols_with_data(rows, cols * channels as i32, data)?;
    let pixels = flat.reshape(channels as i32, rows)?;
    let mut rgb = Mat::default();
    match conversion {
        Some(code) => opencv::imgproc::cvt_color_def(&pixels, &mut rgb, code)?,
        None => pixels.copy_to(&mut rgb)?,
    }
    Ok(rgb)
}
