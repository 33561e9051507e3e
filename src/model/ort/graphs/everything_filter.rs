//! Segment everything's per-mask steps as two graphs over a decoder call's low-res logits
//! `[N, 4, 256, 256]`, for the candidates picked by flat index (`object * 4 + token`): both
//! upscale the picked logits like `postprocess` (bilinear to 1024, crop, bilinear to the crop's
//! size). `scores` then counts the logits above the stability score's two levels, so only two
//! numbers per candidate leave the device; `masks` thresholds the survivors at 0 and finds
//! their boxes (first and last row and column holding a pixel), so only survivors' masks come
//! back.

use ort::value::TensorElementType::{Float32, Int64, Uint8};

use super::{Dim, GraphBuilder, Port, attr};
use crate::model::{IMAGE_SIZE, LOW_RES, MASK_TOKENS, ModelError};

pub const INPUT_LOW_RES: &str = "low_res_masks";
pub const INPUT_PICKED: &str = "picked";
pub const INPUT_RESIZED: &str = "resized_size";
pub const INPUT_ORIGINAL: &str = "original_size";
/// scores: `[2]` f32, the stability score's levels (`+offset`, `-offset`).
pub const INPUT_LEVELS: &str = "levels";
/// scores: `[M]` f32 counts of logits above `levels[0]` and above `levels[1]` (exact: every
/// partial sum is an integer below 2^24).
pub const OUTPUT_INSIDE: &str = "inside";
pub const OUTPUT_UNION: &str = "union";
/// masks: `[M, H, W]` u8, 255 inside.
pub const OUTPUT_MASKS: &str = "masks";
/// masks: `[M, 4]` i64 XYXY, last pixel included; for an empty mask x1 < x0.
pub const OUTPUT_BOXES: &str = "boxes";

/// Adds the picked candidates' logits at the crop's size, `[M, 1, H, W]`; returns its name.
fn upscaled(g: &mut GraphBuilder) -> Result<String, ModelError> {
    let side = IMAGE_SIZE as i64;
    let low_res = LOW_RES as i64;
    let planes = g.constant("planes_shape", &[4], &[-1i64, 1, low_res, low_res])?;
    let padded_side = g.constant("padded_side", &[2], &[side, side])?;
    let first_two = (g.constant("zero_start", &[1], &[0i64])?, g.constant("two_end", &[1], &[2i64])?);
    let spatial_axes = g.constant("spatial_axes", &[2], &[2i64, 3])?;
    let origin = g.constant("origin", &[2], &[0i64, 0])?;
    let bilinear = || -> Result<Vec<ort::operator::Attribute>, ModelError> {
        Ok(vec![attr("mode", "linear".to_string())?, attr("coordinate_transformation_mode", "pytorch_half_pixel".to_string())?])
    };
    let planes = g.op("Reshape", &[INPUT_LOW_RES, &planes], None, vec![])?;
    let picked = g.op("Gather", &[&planes, INPUT_PICKED], None, vec![attr("axis", 0i64)?])?;
    let shape = g.op("Shape", &[&picked], None, vec![])?;
    let leading = g.op("Slice", &[&shape, &first_two.0, &first_two.1], None, vec![])?;
    let padded_size = g.op("Concat", &[&leading, &padded_side], None, vec![attr("axis", 0i64)?])?;
    let padded = g.op("Resize", &[&picked, "", "", &padded_size], None, bilinear()?)?;
    let cropped = g.op("Slice", &[&padded, &origin, INPUT_RESIZED, &spatial_axes], None, vec![])?;
    let original_size = g.op("Concat", &[&leading, INPUT_ORIGINAL], None, vec![attr("axis", 0i64)?])?;
    g.op("Resize", &[&cropped, "", "", &original_size], None, bilinear()?)
}

fn common_inputs() -> Vec<Port> {
    let low_res = LOW_RES as i64;
    vec![
        Port::new(
            INPUT_LOW_RES,
            Float32,
            &[Dim::Named("objects"), Dim::Fixed(MASK_TOKENS as i64), Dim::Fixed(low_res), Dim::Fixed(low_res)],
        ),
        Port::new(INPUT_PICKED, Int64, &[Dim::Named("picked")]),
        Port::new(INPUT_RESIZED, Int64, &[Dim::Fixed(2)]),
        Port::new(INPUT_ORIGINAL, Int64, &[Dim::Fixed(2)]),
    ]
}

/// Stability counts: `inside` and `union` per picked candidate.
pub fn build_scores() -> Result<ort::editor::Model, ModelError> {
    let mut g = GraphBuilder::new()?;
    let logits = upscaled(&mut g)?;
    let high_index = g.constant("high_index", &[], &[0i64])?;
    let low_index = g.constant("low_index", &[], &[1i64])?;
    let pixel_axes = g.constant("pixel_axes", &[3], &[1i64, 2, 3])?;
    let count_above = |g: &mut GraphBuilder, index: &str, output: &str| -> Result<String, ModelError> {
        let level = g.op("Gather", &[INPUT_LEVELS, index], None, vec![attr("axis", 0i64)?])?;
        let above = g.op("Greater", &[&logits, &level], None, vec![])?;
        let ones = g.op("Cast", &[&above], None, vec![attr("to", 1i64)?])?;
        g.op("ReduceSum", &[&ones, &pixel_axes], Some(output), vec![attr("keepdims", 0i64)?])
    };
    count_above(&mut g, &high_index, OUTPUT_INSIDE)?;
    count_above(&mut g, &low_index, OUTPUT_UNION)?;
    let mut inputs = common_inputs();
    inputs.push(Port::new(INPUT_LEVELS, Float32, &[Dim::Fixed(2)]));
    g.finish(
        &inputs,
        &[Port::new(OUTPUT_INSIDE, Float32, &[Dim::Named("picked")]), Port::new(OUTPUT_UNION, Float32, &[Dim::Named("picked")])],
    )
}

/// Masks and boxes of the picked candidates.
pub fn build_masks() -> Result<ort::editor::Model, ModelError> {
    let mut g = GraphBuilder::new()?;
    let logits = upscaled(&mut g)?;
    let threshold = g.constant("threshold", &[], &[0.0f32])?;
    let inside = g.constant("inside", &[], &[255u8])?;
    let outside = g.constant("outside", &[], &[0u8])?;
    let channel_axis = g.constant("channel_axis", &[1], &[1i64])?;
    let above = g.op("Greater", &[&logits, &threshold], None, vec![])?;
    let masks = g.op("Where", &[&above, &inside, &outside], None, vec![])?;
    g.op("Squeeze", &[&masks, &channel_axis], Some(OUTPUT_MASKS), vec![])?;

    // Rows (and columns) holding a pixel: their largest logit is above 0.
    let shape = g.op("Shape", &[&logits], None, vec![])?;
    let zero = g.constant("zero", &[], &[0i64])?;
    let one = g.constant("one", &[], &[1i64])?;
    let minus_one = g.constant("minus_one", &[], &[-1i64])?;
    let (height_index, width_index) = (g.constant("height_index", &[], &[2i64])?, g.constant("width_index", &[], &[3i64])?);
    let last_axis = g.constant("last_axis", &[1], &[-1i64])?;
    let extent = |g: &mut GraphBuilder, reduce_axis: i64, size_index: &str| -> Result<(String, String), ModelError> {
        let axis = g.constant(&format!("reduce_axis_{reduce_axis}"), &[1], &[reduce_axis])?;
        let max = g.op("ReduceMax", &[&logits, &axis], None, vec![attr("keepdims", 0i64)?])?;
        let holds = g.op("Greater", &[&max, &threshold], None, vec![])?;
        let size = g.op("Gather", &[&shape, size_index], None, vec![attr("axis", 0i64)?])?;
        let ramp = g.op("Range", &[&zero, &size, &one], None, vec![])?;
        let first = g.op("Where", &[&holds, &ramp, &size], None, vec![])?;
        let last = g.op("Where", &[&holds, &ramp, &minus_one], None, vec![])?;
        let first = g.op("ReduceMin", &[&first, &last_axis], None, vec![attr("keepdims", 0i64)?])?;
        let last = g.op("ReduceMax", &[&last, &last_axis], None, vec![attr("keepdims", 0i64)?])?;
        Ok((first, last))
    };
    // Reducing the columns leaves one value per row, and the other way round.
    let (top, bottom) = extent(&mut g, 3, &height_index)?;
    let (left, right) = extent(&mut g, 2, &width_index)?;
    g.op("Concat", &[&left, &top, &right, &bottom], Some(OUTPUT_BOXES), vec![attr("axis", 1i64)?])?;
    let (m, h, w) = (Dim::Named("picked"), Dim::Named("height"), Dim::Named("width"));
    g.finish(&common_inputs(), &[Port::new(OUTPUT_MASKS, Uint8, &[m, h, w]), Port::new(OUTPUT_BOXES, Int64, &[m, Dim::Fixed(4)])])
}
