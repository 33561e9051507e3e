//! A frame after the encoder: where it came from, its geometry, its embedding (in the backend's
//! memory) and the time every stage took so far. Shared by every decode on it: prompt updates,
//! the viewers of a source, tracking.

use std::sync::Arc;
use std::time::Instant;

use opencv::core::Mat;

use crate::model::{Embedding, ImageGeometry};
use crate::telemetry::StageTimings;
use crate::video::preview::PreviewCache;

/// Where a frame came from.
#[derive(Debug, Clone, Copy)]
pub struct FrameOrigin {
    /// The source's frame number (the client's frame_id for client frames, 0 for Segment).
    pub seq: u64,
    /// Wall-clock time of the frame, microseconds since the Unix epoch (as the source says).
    pub timestamp_us: i64,
    /// When the frame became available: a result's total latency counts from here.
    pub grabbed_at: Instant,
}

impl FrameOrigin {
    /// A single image received now (Segment).
    pub fn now() -> Self {
        Self { seq: 0, timestamp_us: 0, grabbed_at: Instant::now() }
    }
}

pub struct EncodedFrame {
    pub origin: FrameOrigin,
    pub geometry: ImageGeometry,
    /// The decoded 8-bit RGB pixels (segment everything encodes crops of them).
    pub pixels: Arc<Mat>,
    pub embedding: Embedding,
    /// Capture, preprocess, upload, queue and encoder are filled.
    pub timings: StageTimings,
    /// JPEGs of `pixels` for the viewers that ask for them, shared by all of them.
    pub previews: PreviewCache,
}
