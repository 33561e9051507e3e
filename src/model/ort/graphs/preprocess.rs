//! SamPredictor's image transform as a graph: RGB bytes in, `[1, 3, 1024, 1024]` float32 out.
//!
//! Pillow's bilinear resize is separable: each output pixel of a pass is a weighted sum of a
//! few input pixels, with the fixed-point weights `resample.rs` computes (22 fraction bits),
//! rounded and clipped to 8 bits after each pass. As dense `[in, out]` weight matrices, a pass is
//! one matrix product. In float64 every product and sum is an integer below 2^53, so the product
//! is exact whatever order the kernel adds in, and `floor((sum + 2^21) / 2^22)` is Pillow's
//! `>> 22`: the graph reproduces Pillow bit for bit, on any execution provider.

use ort::value::TensorElementType::{Float64, Int64, Uint8};

use super::{Dim, GraphBuilder, Port, attr};
use crate::model::ModelError;
use crate::model::preprocess::{PIXEL_MEAN, PIXEL_STD};
use crate::model::resample::{FIXED_POINT_ONE, ROUNDING};

/// ONNX TensorProto data types for Cast.
const ONNX_FLOAT: i64 = 1;
const ONNX_DOUBLE: i64 = 11;

pub const INPUT_IMAGE: &str = "image";
pub const INPUT_HORIZONTAL: &str = "horizontal_weights";
pub const INPUT_VERTICAL: &str = "vertical_weights";
pub const INPUT_PADS: &str = "pads";
pub const OUTPUT: &str = "tensor";

/// Inputs: `image` u8 `[H, W, 3]` (RGB), `horizontal_weights` f64 `[W, w]`, `vertical_weights`
/// f64 `[h, H]`, `pads` i64 `[6]` (bottom/right padding of `[3, h, w]` to 1024).
/// Output: `tensor` f32 `[1, 3, 1024, 1024]`.
pub fn build() -> Result<ort::editor::Model, ModelError> {
    let mut g = GraphBuilder::new()?;
    let rounding = g.constant("rounding", &[], &[f64::from(ROUNDING)])?;
    let scale = g.constant("fixed_point_scale", &[], &[1.0 / f64::from(FIXED_POINT_ONE)])?;
    let zero = g.constant("zero", &[], &[0.0f64])?;
    let max = g.constant("max_level", &[], &[255.0f64])?;
    let mean = g.constant("pixel_mean", &[3, 1, 1], &PIXEL_MEAN)?;
    let std = g.constant("pixel_std", &[3, 1, 1], &PIXEL_STD)?;
    let batch_axis = g.constant("batch_axis", &[1], &[0i64])?;

    // Bytes are transposed before widening: moving 1-byte values is cheaper than 8-byte ones.
    let planar = g.op("Transpose", &[INPUT_IMAGE], None, vec![attr("perm", vec![2i64, 0, 1])?])?;
    let wide = g.op("Cast", &[&planar], None, vec![attr("to", ONNX_DOUBLE)?])?;
    let clip8 = |g: &mut GraphBuilder, sums: String| -> Result<String, ModelError> {
        let rounded = g.op("Add", &[&sums, &rounding], None, vec![])?;
        let scaled = g.op("Mul", &[&rounded, &scale], None, vec![])?;
        let shifted = g.op("Floor", &[&scaled], None, vec![])?;
        let high = g.op("Min", &[&shifted, &max], None, vec![])?;
        g.op("Max", &[&high, &zero], None, vec![])
    };
    // [3, H, W] x [W, w] -> [3, H, w], then [h, H] x [3, H, w] -> [3, h, w]; Pillow's order.
    let horizontal = g.op("MatMul", &[&wide, INPUT_HORIZONTAL], None, vec![])?;
    let horizontal = clip8(&mut g, horizontal)?;
    let vertical = g.op("MatMul", &[INPUT_VERTICAL, &horizontal], None, vec![])?;
    let resized = clip8(&mut g, vertical)?;
    let narrow = g.op("Cast", &[&resized], None, vec![attr("to", ONNX_FLOAT)?])?;
    let centred = g.op("Sub", &[&narrow, &mean], None, vec![])?;
    let normalised = g.op("Div", &[&centred, &std], None, vec![])?;
    let padded = g.op("Pad", &[&normalised, INPUT_PADS], None, vec![attr("mode", "constant".to_string())?])?;
    g.op("Unsqueeze", &[&padded, &batch_axis], Some(OUTPUT), vec![])?;

    let size = crate::model::IMAGE_SIZE as i64;
    g.finish(
        &[
            Port::new(INPUT_IMAGE, Uint8, &[Dim::Named("height"), Dim::Named("width"), Dim::Fixed(3)]),
            Port::new(INPUT_HORIZONTAL, Float64, &[Dim::Named("width"), Dim::Named("resized_width")]),
            Port::new(INPUT_VERTICAL, Float64, &[Dim::Named("resized_height"), Dim::Named("height")]),
            Port::new(INPUT_PADS, Int64, &[Dim::Fixed(6)]),
        ],
        &[Port::new(OUTPUT, ort::value::TensorElementType::Float32, &[Dim::Fixed(1), Dim::Fixed(3), Dim::Fixed(size), Dim::Fixed(size)])],
    )
}
