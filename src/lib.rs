//! samstream: MobileSAM segmentation of images and live video behind a gRPC API.
//!
//! The data path reads top to bottom: `video` (decode/grab frames) -> `model` (preprocess,
//! encoder, decoder, postprocess; driven by the `engine` thread) -> `mask` (wire encodings)
//! -> `server` (tonic services).

pub mod bench;
pub mod client;
pub mod config;
pub mod engine;
pub mod mask;
pub mod model;
pub mod proto;
pub mod server;
pub mod session;
pub mod soak;
pub mod telemetry;
pub mod video;
