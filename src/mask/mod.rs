//! Encodings of binary masks (CV_8UC1, non-zero inside) as clients receive them: COCO RLE,
//! PNG or outer polygons, plus the box and area every returned mask carries. Domain types
//! only; the transport turns them into messages.

mod png;
mod polygons;
mod rle;

use opencv::core::ToInputArray;
use opencv::prelude::*;
use thiserror::Error;

pub use png::encode_png;
pub use polygons::outer_polygons;
pub use rle::{CocoRle, coco_counts_string, column_major_runs, encode_coco_rle};

#[derive(Debug, Error)]
pub enum MaskError {
    #[error("opencv: {0}")]
    OpenCv(#[from] opencv::Error),
    #[error("mask must be CV_8UC1, got type {0}")]
    Type(i32),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
}

/// How masks are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaskFormat {
    #[default]
    CocoRle,
    Png,
    Polygons,
}

/// What a request asks of its masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MaskOptions {
    pub format: MaskFormat,
    /// The three candidates (tokens 1..3), best first, instead of the single-mask output.
    pub multimask: bool,
}

/// One mask in the requested encoding.
#[derive(Debug, Clone, PartialEq)]
pub enum MaskData {
    CocoRle(CocoRle),
    /// 8-bit grayscale PNG, 255 inside.
    Png(Vec<u8>),
    /// Outer contours, each `x0, y0, x1, y1, ...`.
    Polygons(Vec<Vec<f32>>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct EncodedMask {
    pub width: u32,
    pub height: u32,
    pub data: MaskData,
}

/// A mask's tight box in pixels, x1 and y1 exclusive; all zero for an empty mask.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PixelBox {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

/// A binary mask image: an OpenCV `Mat`, or a `Mat` view of bytes the device sent back.
pub trait MaskImage: MatTraitConst + ToInputArray {}

impl<T: MatTraitConst + ToInputArray> MaskImage for T {}

fn check_type(mask: &impl MaskImage) -> Result<(), MaskError> {
    if mask.typ() != opencv::core::CV_8UC1 {
        return Err(MaskError::Type(mask.typ()));
    }
    Ok(())
}

/// The mask in the requested format.
pub fn encode(mask: &impl MaskImage, format: MaskFormat) -> Result<EncodedMask, MaskError> {
    check_type(mask)?;
    let data = match format {
        MaskFormat::CocoRle => MaskData::CocoRle(encode_coco_rle(mask)?),
        MaskFormat::Png => MaskData::Png(encode_png(mask)?),
        MaskFormat::Polygons => MaskData::Polygons(outer_polygons(mask)?),
    };
    Ok(EncodedMask { width: mask.cols() as u32, height: mask.rows() as u32, data })
}

/// Pixel count and tight box (x1, y1 exclusive; all zero for an empty mask).
pub fn area_and_box(mask: &impl MaskImage) -> Result<(u64, PixelBox), MaskError> {
    check_type(mask)?;
    let area = opencv::core::count_non_zero(mask)? as u64;
    if area == 0 {
        return Ok((0, PixelBox::default()));
    }
    let rect = opencv::imgproc::bounding_rect(mask)?;
    let bbox = PixelBox { x0: rect.x as f32, y0: rect.y as f32, x1: (rect.x + rect.width) as f32, y1: (rect.y + rect.height) as f32 };
    Ok((area, bbox))
}
