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
use crate::video::{Grabber, SourceConfig, SourceEvent, SourceSpec, SourceState, redact_userinfo, without_userinfo};

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
    /// Some(reason) once the source moved to another replica (`SourceHub::evict`).
    pub moved: watch::Receiver<Option<String>>,
    running: Arc<Running>,
    viewer: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.running.viewers.lock().expect("viewers lock").remove(&self.viewer);
    }
}

fn source(config: SourceConfig, key: String) -> Arc<Source> {
    Arc::new(Source { config, key, state: watch::channel(SourceState::default()).0, running: Mutex::new(None) })
}

impl SourceHub {
    pub fn new(pipeline: Pipeline, sources: Vec<SourceConfig>, grace: Duration) -> Self {
        Self {
            pipeline,
            grace,
            configured: sources.into_iter().map(|config| source(config.clone(), config.name)).collect(),
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

    /// The affinity keys of the sources running now (configured and client URIs).
    pub fn running_keys(&self) -> Vec<String> {
        let adhoc = self.adhoc.lock().expect("adhoc lock").values().cloned().collect::<Vec<_>>();
        self.configured
            .iter()
            .chain(adhoc.iter())
            .filter(|s| s.running.lock().expect("running lock").is_some())
            .map(|s| s.key.clone())
            .collect()
    }

    /// Stops the running source with affinity key `key` at once, ending its viewers' streams
    /// with `reason` (another replica serves it now); returns how many viewers were told. A
    /// viewer that comes back here later starts it afresh.
    pub fn evict(&self, key: &str, reason: &str) -> usize {
        let adhoc = self.adhoc.lock().expect("adhoc lock").values().cloned().collect::<Vec<_>>();
        let Some(entry) = self.configured.iter().chain(adhoc.iter()).find(|s| s.key == key).cloned() else { return 0 };
        let Some(running) = entry.running.lock().expect("running lock").take() else { return 0 };
        running.moved.send_replace(Some(reason.to_string()));
        running.grabber.stop();
        tracing::warn!(source = %entry.config.name, %reason, "source handed over");
        running.viewer_count()
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
                // The name appears in logs and metrics labels: no credentials.
                let config = SourceConfig {
                    name: format!("uri:{}", redact_userinfo(uri)),
                    spec: SourceSpec::for_uri(uri),
                    reconnect: Default::default(),
                };
                source(config, without_userinfo(uri))
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
            moved: running.moved.subscribe(),
            running,
            viewer,
        })
    }

    fn start(&self, entry: &Arc<Source>) -> Result<Arc<Running>, HubError> {
        let grabber = Grabber::spawn(entry.config.clone(), entry.state.clone())
            .map_err(|e| HubError::Start { name: entry.config.name.clone(), reason: e.to_string() })?;
        let (encoded_tx, encoded) = watch::channel(None);
        let raw = grabber.frames.clone();
        let running = Arc::new(Running { grabber, encoded, viewers: Mutex::new(HashMap::new()), moved: watch::channel(None).0 });
        let pump = Pump { source: entry.clone(), running: running.clone(), pipeline: self.pipeline.clone(), grace: self.grace };
        metrics::gauge!(ACTIVE_SOURCES).increment(1.0);
        tracing::info!(source = %entry.config.name, spec = %entry.config.spec.describe(), "source started");
        tokio::spawn(pump.run(raw, encoded_tx));
        Ok(running)
    }
}
