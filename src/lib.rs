//! samstream: MobileSAM segmentation of images and live video behind a gRPC API.
//!
//! The data path reads top to bottom: `video` (decode/grab frames) -> `engine` (the inference
//! threads driving a `model` backend: preprocess, encoder, decoder, postprocess) -> `mask`
//! (encodings), tied together by the `pipeline` façade; `session` runs live streams on it and
//! `server` is the gRPC transport over both. The tools beside the server, `client`, `loadgen`
//! (`samstream bench`) and `soak`, are gRPC clients of it; `cli` is the command line of all.

pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod engine;
pub mod flags;
pub mod loadgen;
pub mod mask;
pub mod model;
pub mod pipeline;
pub mod proto;
pub mod server;
pub mod session;
pub mod soak;
pub mod telemetry;
pub mod video;
