//! One image's embedding out of a batched encoder output, as its own device tensor: the
//! decoder takes `[1, 256, 64, 64]`, and each frame's embedding must outlive the batch it came
//! from (prompt updates reuse it). On a GPU this is a device-to-device copy of 4 MB.

use ort::value::TensorElementType::{Float32, Int64};

use super::{Dim, GraphBuilder, Port, attr};
use crate::model::{EMBEDDING_CHANNELS, EMBEDDING_GRID, ModelError};

pub const INPUT_BATCH: &str = "batch";
pub const INPUT_INDEX: &str = "index";
pub const OUTPUT: &str = "embedding";

pub fn build() -> Result<ort::editor::Model, ModelError> {
    let mut g = GraphBuilder::new()?;
    g.op("Gather", &[INPUT_BATCH, INPUT_INDEX], Some(OUTPUT), vec![attr("axis", 0i64)?])?;
    let (c, s) = (Dim::Fixed(EMBEDDING_CHANNELS as i64), Dim::Fixed(EMBEDDING_GRID as i64));
    g.finish(
        &[Port::new(INPUT_BATCH, Float32, &[Dim::Named("batch"), c, s, s]), Port::new(INPUT_INDEX, Int64, &[Dim::Fixed(1)])],
        &[Port::new(OUTPUT, Float32, &[Dim::Fixed(1), c, s, s])],
    )
}
