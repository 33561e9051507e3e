//! Wire encodings of binary masks (CV_8UC1, non-zero inside): COCO RLE, PNG, polygons, plus
//! the box and area every `ObjectMask` carries.

mod objects;
mod png;
mod polygons;
mod rle;

use opencv::core::ToInputArray;
use opencv::prelude::*;
use thiserror::Error;

use crate::proto;

pub use objects::{MaskOptions, ObjectOutcome, object_masks};
pub use png::encode_png;
pub use polygons::outer_polygons;
pub use rle::{coco_counts_string, column_major_runs, encode_coco_rle};

#[derive(Debug, Error)]
pub enum MaskError {
    #[error("opencv: {0}")]
    OpenCv(#[from] opencv::Error),
    #[error("mask must be CV_8UC1, got type {0}")]
    Type(i32),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error("the decoder kept no low-res logits to track the object with")]
    LowResMissing,
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

/// The mask in the requested wire format.
pub fn encode(mask: &impl MaskImage, format: proto::MaskFormat) -> Result<proto::Mask, MaskError> {
    check_type(mask)?;
    use proto::mask::Data;
    let data = match format {
        proto::MaskFormat::Unspecified | proto::MaskFormat::CocoRle => Data::CocoRle(encode_coco_rle(mask)?),
        proto::MaskFormat::Png => Data::Png(encode_png(mask)?),
        proto::MaskFormat::Polygons => Data::Polygons(outer_polygons(mask)?),
    };
    Ok(proto::Mask { width: mask.cols() as u32, height: mask.rows() as u32, data: Some(data) })
}

/// Pixel count and tight box (x1, y1 exclusive; all zero for an empty mask).
pub fn area_and_box(mask: &impl MaskImage) -> Result<(u64, proto::Box), MaskError> {
    check_type(mask)?;
    let area = opencv::core::count_non_zero(mask)? as u64;
    if area == 0 {
        return Ok((0, proto::Box::default()));
    }
    let rect = opencv::imgproc::bounding_rect(mask)?;
    let bbox = proto::Box { x0: rect.x as f32, y0: rect.y as f32, x1: (rect.x + rect.width) as f32, y1: (rect.y + rect.height) as f32 };
    Ok((area, bbox))
}
