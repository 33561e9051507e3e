//! PNG masks, for clients that want an image.

use opencv::core::Vector;

use super::{MaskError, MaskImage};

/// 8-bit grayscale PNG of the mask as it is (255 inside).
pub fn encode_png(mask: &impl MaskImage) -> Result<Vec<u8>, MaskError> {
    let mut bytes = Vector::<u8>::new();
    // Level 1: masks are mostly flat regions that compress well even at the fastest level.
    let params = Vector::from_slice(&[opencv::imgcodecs::IMWRITE_PNG_COMPRESSION, 1]);
    opencv::imgcodecs::imencode(".png", mask, &mut bytes, &params)?;
    Ok(bytes.as_slice().to_vec())
}
