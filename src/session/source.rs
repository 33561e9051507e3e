//! A source the hub knows, and its running half: the grabber, the channel encoded frames are
//! published on, and the viewers with their frame-rate caps. Shared by the hub (which starts
//! sources and adds viewers) and the pump (which encodes and stops them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::engine::EncodedFrame;
use crate::video::{Grabber, SourceConfig, SourceState};

pub(super) struct Running {
    pub grabber: Grabber,
    pub encoded: watch::Receiver<Option<Arc<EncodedFrame>>>,
    /// Viewer id -> its max_fps (0 = as fast as possible).
    pub viewers: Mutex<HashMap<u64, f32>>,
    /// Set when another replica now owns the source: its viewers' streams end with the reason.
    pub moved: watch::Sender<Option<String>>,
}

impl Running {
    pub fn viewer_count(&self) -> usize {
        self.viewers.lock().expect("viewers lock").len()
    }

    /// The pump runs as fast as its most demanding viewer asks (0 = no cap).
    pub fn fps_cap(&self) -> f32 {
        let viewers = self.viewers.lock().expect("viewers lock");
        if viewers.values().any(|&fps| fps <= 0.0) { 0.0 } else { viewers.values().copied().fold(0.0, f32::max) }
    }
}

/// A source the hub knows, running or not.
pub(super) struct Source {
    pub config: SourceConfig,
    /// What a consistent-hash proxy routes its streams by: the configured name, or the URI
    /// without credentials (the `x-samstream-source` header's value).
    pub key: String,
    pub state: watch::Sender<SourceState>,
    pub running: Mutex<Option<Arc<Running>>>,
}
