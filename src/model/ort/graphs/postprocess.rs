//! SamPredictor's `postprocess_masks` and threshold as a graph, for all objects of a decoder
//! call at once: the chosen tokens' 256x256 logits are upscaled bilinearly to 1024 (PyTorch's
//! `align_corners=False` is ONNX's `pytorch_half_pixel`), cropped to the resized image,
//! resized to the original size and thresholded at 0. Only the bytes of the masks leave the
//! device (plus, for tracking, the chosen low-res logits).

use ort::value::TensorElementType::{Float32, Int64, Uint8};

use super::{Dim, GraphBuilder, Port, attr};
use crate::model::{IMAGE_SIZE, LOW_RES, MASK_TOKENS, ModelError};

pub const INPUT_LOW_RES: &str = "low_res_masks";
pub const INPUT_TOKENS: &str = "tokens";
pub const INPUT_RESIZED: &str = "resized_size";
pub const INPUT_ORIGINAL: &str = "original_size";
/// `[1]`: how many leading objects of `low_res_masks` are real (the rest pad a fixed shape).
pub const INPUT_OBJECTS: &str = "objects";
/// `[N, K, H, W]` u8, 255 inside.
pub const OUTPUT_MASKS: &str = "masks";
/// `[N, K, 256, 256]` f32, the chosen tokens' low-res logits (what tracking feeds back).
pub const OUTPUT_LOW_RES: &str = "chosen_low_res";
/// `[N, K, H, W]` f32 full-resolution logits (SamPredictor's `return_logits=True`).
pub const OUTPUT_LOGITS: &str = "logits";

/// Inputs: `low_res_masks` f32 `[P, 4, 256, 256]`, `objects` i64 `[1]` (N <= P real ones),
/// `tokens` i64 `[K]`, `resized_size` i64 `[2]` (height, width inside the padded 1024 square),
/// `original_size` i64 `[2]`.
pub fn build() -> Result<ort::editor::Model, ModelError> {
    let mut g = GraphBuilder::new()?;
    let side = IMAGE_SIZE as i64;
    let padded_side = g.constant("padded_side", &[2], &[side, side])?;
    let first_two = (g.constant("zero_start", &[1], &[0i64])?, g.constant("two_end", &[1], &[2i64])?);
    let spatial_axes = g.constant("spatial_axes", &[2], &[2i64, 3])?;
    let origin = g.constant("origin", &[2], &[0i64, 0])?;
    let threshold = g.constant("threshold", &[], &[0.0f32])?;
    let inside = g.constant("inside", &[], &[255u8])?;
    let outside = g.constant("outside", &[], &[0u8])?;

    let first_axis = g.constant("first_axis", &[1], &[0i64])?;
    let real = g.op("Slice", &[INPUT_LOW_RES, &first_two.0, INPUT_OBJECTS, &first_axis], None, vec![])?;
    let chosen = g.op("Gather", &[&real, INPUT_TOKENS], Some(OUTPUT_LOW_RES), vec![attr("axis", 1i64)?])?;
    let shape = g.op("Shape", &[&chosen], None, vec![])?;
    let objects_tokens = g.op("Slice", &[&shape, &first_two.0, &first_two.1], None, vec![])?;
    let bilinear = || -> Result<Vec<ort::operator::Attribute>, ModelError> {
        Ok(vec![attr("mode", "linear".to_string())?, attr("coordinate_transformation_mode", "pytorch_half_pixel".to_string())?])
    };
    let padded_size = g.op("Concat", &[&objects_tokens, &padded_side], None, vec![attr("axis", 0i64)?])?;
    let padded = g.op("Resize", &[&chosen, "", "", &padded_size], None, bilinear()?)?;
    let cropped = g.op("Slice", &[&padded, &origin, INPUT_RESIZED, &spatial_axes], None, vec![])?;
    let original_size = g.op("Concat", &[&objects_tokens, INPUT_ORIGINAL], None, vec![attr("axis", 0i64)?])?;
    let logits = g.op("Resize", &[&cropped, "", "", &original_size], Some(OUTPUT_LOGITS), bilinear()?)?;
    let above = g.op("Greater", &[&logits, &threshold], None, vec![])?;
    g.op("Where", &[&above, &inside, &outside], Some(OUTPUT_MASKS), vec![])?;

    let (n, k, h, w) = (Dim::Named("objects"), Dim::Named("tokens"), Dim::Named("height"), Dim::Named("width"));
    let low_res = LOW_RES as i64;
    g.finish(
        &[
            Port::new(
                INPUT_LOW_RES,
                Float32,
                &[Dim::Named("padded"), Dim::Fixed(MASK_TOKENS as i64), Dim::Fixed(low_res), Dim::Fixed(low_res)],
            ),
            Port::new(INPUT_OBJECTS, Int64, &[Dim::Fixed(1)]),
            Port::new(INPUT_TOKENS, Int64, &[k]),
            Port::new(INPUT_RESIZED, Int64, &[Dim::Fixed(2)]),
            Port::new(INPUT_ORIGINAL, Int64, &[Dim::Fixed(2)]),
        ],
        &[
            Port::new(OUTPUT_MASKS, Uint8, &[n, k, h, w]),
            Port::new(OUTPUT_LOW_RES, Float32, &[n, k, Dim::Fixed(low_res), Dim::Fixed(low_res)]),
            Port::new(OUTPUT_LOGITS, Float32, &[n, k, h, w]),
        ],
    )
}
