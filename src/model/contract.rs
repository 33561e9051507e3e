//! MobileSAM's I/O contract: the shapes the exported graphs take and return, and the pixel
//! statistics SamPredictor normalises with. A leaf that every other model file reads.

/// Side of the square the encoder sees (longest image side is resized to it, then padded).
pub const IMAGE_SIZE: usize = 1024;
/// Shape of one image embedding: channels and the square grid.
pub const EMBEDDING_CHANNELS: usize = 256;
pub const EMBEDDING_GRID: usize = 64;
/// Side of the decoder's low-resolution logits.
pub const LOW_RES: usize = 256;
/// Mask tokens the decoder predicts: token 0 is the single-mask output, 1..3 the candidates.
pub const MASK_TOKENS: usize = 4;

/// SAM's pixel statistics (RGB order), as float32 like the model's registered buffers.
pub const PIXEL_MEAN: [f32; 3] = [123.675, 116.28, 103.53];
pub const PIXEL_STD: [f32; 3] = [58.395, 57.12, 57.375];

/// The exporter's decoder for objects without a mask input (optional: older exports lack it).
pub const SHARED_DECODER: &str = "decoder_shared.onnx";
