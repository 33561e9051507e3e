//! Shared sources: one grabber and one encoder pump (`pump.rs`) per running source, fanned out
//! to every session watching it, so each frame is encoded once however many viewers there are;
//! each session then decodes its own prompts on the shared embedding. A source starts with its
//! first viewer and stops after a grace period without any.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use super::pump::Pump;
use super::source::{Running, Source};
use crate::engine::EncodedFrame;
use crate::pipeline::Pipeline;
use crate::telemetry::metrics::ACTIVE_SOURCES;
use crate::video::{Grabber, SourceConfig, SourceEvent, SourceSpec, SourceState};

/// What ListSources reports of a configured source.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    pub name: String,
    pub spec: SourceSpec,
    pub state: SourceState,
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("no source named {0:?} (see ListSources)")]
    NotFound(String),
    #[error("cannot start source {name:?}: {reason}")]
    Start { name: String, reason: String },
}

pub struct SourceHub {
    pipeline: Pipeline,
    grace: Duration,
    configured: Vec<Arc<Source>>,
    /// Client-supplied URIs (already allowed by the operator), shared per URI.
    adhoc: Mutex<HashMap<String, Arc<Source>>>,
    next_viewer: AtomicU64,
}

/// A session's view of a running source; dropping it removes the viewer.
pub struct Subscription {
    pub name: String,
    pub frames: watch::Receiver<Option<Arc<EncodedFrame>>>,
    pub events: broadcast::Receiver<SourceEvent>,
    pub state: watch::Receiver<SourceState>,
    running: Arc<Running>,
    viewer: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.running.viewers.lock().expect("viewers lock").remove(&self.viewer);
    }
}

fn source(config: SourceConfig) -> Arc<Source> {
    Arc::new(Source { config, state: watch::channel(SourceState::default()).0, running: Mutex::new(None) })
}

impl SourceHub {
    pub fn new(pipeline: Pipeline, sources: Vec<SourceConfig>, grace: Duration) -> Self {
        Self {
            pipeline,
            grace,
            configured: sources.into_iter().map(source).collect(),
            adhoc: Mutex::new(HashMap::new()),
            next_viewer: AtomicU64::new(1),
        }
    }

    pub fn list(&self) -> Vec<SourceInfo> {
        self.configured
            .iter()
            .map(|s| SourceInfo { name: s.config.name.clone(), spec: s.config.spec.clone(), state: *s.state.borrow() })
            .collect()
    }

    /// Joins the configured source `name`, starting it if nobody watches it yet.
    pub fn subscribe(&self, name: &str, max_fps: f32) -> Result<Subscription, HubError> {
        let source = self.configured.iter().find(|s| s.config.name == name).cloned().ok_or_else(|| HubError::NotFound(name.into()))?;
        self.join(source, max_fps)
    }

    /// Joins a network URI the operator allowed (checked by the caller); viewers of the same URI
    /// share it.
    pub fn subscribe_uri(&self, uri: &str, max_fps: f32) -> Result<Subscription, HubError> {
        let source = self
            .adhoc
            .lock()
            .expect("adhoc lock")
            .entry(uri.to_string())
            .or_insert_with(|| {
                source(SourceConfig {
                    name: format!("uri:{uri}"),
                    spec: SourceSpec::Network { url: uri.into() },
                    reconnect: Default::default(),
                })
            })
            .clone();
        self.join(source, max_fps)
    }

    fn join(&self, entry: Arc<Source>, max_fps: f32) -> Result<Subscription, HubError> {
        let viewer = self.next_viewer.fetch_add(1, Ordering::Relaxed);
        let mut slot = entry.running.lock().expect("running lock");
        let running = match slot.as_ref() {
            Some(running) => running.clone(),
            None => {
                let running = self.start(&entry)?;
                *slot = Some(running.clone());
                running
            }
        };
        // Registered under the entry's lock, so a pump deciding to stop sees this viewer.
        running.viewers.lock().expect("viewers lock").insert(viewer, max_fps);
        Ok(Subscription {
            name: entry.config.name.clone(),
            frames: running.encoded.clone(),
            events: running.grabber.events.subscribe(),
            state: entry.state.subscribe(),
            running,
            viewer,
        })
    }

    fn start(&self, entry: &Arc<Source>) -> Result<Arc<Running>, HubError> {
        let grabber = Grabber::spawn(entry.config.clone(), entry.state.clone())
            .map_err(|e| HubError::Start { name: entry.config.name.clone(), reason: e.to_string() })?;
        let (encoded_tx, encoded) = watch::channel(None);
        let raw = grabber.frames.clone();
        let running = Arc::new(Running { grabber, encoded, viewers: Mutex::new(HashMap::new()) });
        let pump = Pump { source: entry.clone(), running: running.clone(), pipeline: self.pipeline.clone(), grace: self.grace };
        metrics::gauge!(ACTIVE_SOURCES).increment(1.0);
        tracing::info!(source = %entry.config.name, spec = %entry.config.spec.describe(), "source started");
        tokio::spawn(pump.run(raw, encoded_tx));
        Ok(running)
    }
}
