//! What a session is started with, as the transport resolved it from the stream's first message
//! and the server's configuration.

use std::time::Duration;

use tokio::sync::watch;

use crate::mask::MaskOptions;
use crate::model::everything::EverythingOptions;
use crate::video::ImageLimits;
use crate::video::preview::PreviewSpec;

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub mask_options: MaskOptions,
    pub track: bool,
    /// Segment everything on the stream's frames too.
    pub auto: Option<AutoMode>,
    pub max_fps: f32,
    /// Most objects the session may hold at once.
    pub max_objects: usize,
    pub image_limits: ImageLimits,
    /// Turns true when the server starts shutting down.
    pub closing: watch::Receiver<bool>,
    /// This replica as the proxy knows it, named in the STARTED event (None: a single server).
    pub replica: Option<String>,
    /// Send a heartbeat event when nothing else went out for this long (None: never).
    pub heartbeat: Option<Duration>,
    /// JPEGs of the frames results belong to.
    pub preview: Option<PreviewRequest>,
}

/// Previews of the session's frames.
#[derive(Debug, Clone, Copy)]
pub struct PreviewRequest {
    pub spec: PreviewSpec,
    /// Every how many results (1 = each).
    pub every: u64,
}

/// The live automatic mode.
#[derive(Debug, Clone, Copy)]
pub struct AutoMode {
    pub options: EverythingOptions,
    /// Every how many processed frames (1 = each).
    pub every: u64,
}
