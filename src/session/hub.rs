//! Shared sources: one grabber and one encoder pump per running source, fanned out to every
//! session watching it. The pump always encodes the newest grabbed frame (latest frame wins),
//! so each frame is encoded once however many viewers there are; each session then decodes
//! its own prompts on the shared embedding. A source starts with its first viewer and stops
//! after a grace period without any.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use tokio::sync::{broadcast, watch};

use crate::engine::{Engine, ImageEmbedding};
use crate::model::ImageGeometry;
use crate::proto;
use crate::telemetry::StageTimings;
use crate::telemetry::metrics::{ACTIVE_SOURCES, ENCODER_RUNS, FRAMES_DROPPED};
use crate::video::{Grabber, RawFrame, SourceConfig, SourceEvent, SourceSpec, SourceState};

/// How often an idle pump checks whether its grace period is over.
const IDLE_CHECK: Duration = Duration::from_millis(200);

/// Frames of one source in the encoder's hands at once: one encoding, the next one captured,
/// preprocessed and queued behind it, so the encoder never waits for the pump.
const PIPELINE_DEPTH: usize = 2;

/// A frame's shared encoder output and the stage times that produced it.
pub struct EncodedFrame {
    pub seq: u64,
    pub timestamp_us: i64,
    pub geometry: ImageGeometry,
    pub embedding: Arc<ImageEmbedding>,
    /// capture, preprocess, upload, queue and encoder are filled.
    pub timings: StageTimings,
    pub grabbed_at: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("no source named {0:?} (see ListSources)")]
    NotFound(String),
    #[error("cannot start source {name:?}: {reason}")]
    Start { name: String, reason: String },
}

struct Running {
    grabber: Grabber,
    encoded: watch::Receiver<Option<Arc<EncodedFrame>>>,
    /// Viewer id -> its max_fps (0 = as fast as possible).
    viewers: Mutex<HashMap<u64, f32>>,
}

impl Running {
    fn viewer_count(&self) -> usize {
        self.viewers.lock().expect("viewers lock").len()
    }

    /// The pump runs as fast as its most demanding viewer asks (0 = no cap).
    fn fps_cap(&self) -> f32 {
        let viewers = self.viewers.lock().expect("viewers lock");
        if viewers.values().any(|&fps| fps <= 0.0) { 0.0 } else { viewers.values().copied().fold(0.0, f32::max) }
    }
}

struct Entry {
    config: SourceConfig,
    state: watch::Sender<SourceState>,
    running: Mutex<Option<Arc<Running>>>,
}

pub struct SourceHub {
    engine: Engine,
    grace: Duration,
    configured: Vec<Arc<Entry>>,
    /// Client-supplied URIs (already allowed by the operator), shared per URI.
    adhoc: Mutex<HashMap<String, Arc<Entry>>>,
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

fn entry(config: SourceConfig) -> Arc<Entry> {
    Arc::new(Entry { config, state: watch::channel(SourceState::default()).0, running: Mutex::new(None) })
}

impl SourceHub {
    pub fn new(engine: Engine, sources: Vec<SourceConfig>, grace: Duration) -> Self {
        Self {
            engine,
            grace,
            configured: sources.into_iter().map(entry).collect(),
            adhoc: Mutex::new(HashMap::new()),
            next_viewer: AtomicU64::new(1),
        }
    }

    pub fn list(&self) -> Vec<proto::SourceInfo> {
        self.configured
            .iter()
            .map(|e| {
                let state = *e.state.borrow();
                let kind = match e.config.spec {
                    SourceSpec::File { .. } => proto::SourceKind::File,
                    SourceSpec::Camera { .. } => proto::SourceKind::Camera,
                    SourceSpec::Network { .. } => proto::SourceKind::Network,
                    SourceSpec::Gstreamer { .. } => proto::SourceKind::Gstreamer,
                };
                proto::SourceInfo {
                    name: e.config.name.clone(),
                    kind: kind as i32,
                    status: state.status as i32,
                    width: state.width,
                    height: state.height,
                    fps: state.fps,
                }
            })
            .collect()
    }

    /// Joins the configured source `name`, starting it if nobody watches it yet.
    pub fn subscribe(&self, name: &str, max_fps: f32) -> Result<Subscription, HubError> {
        let entry = self.configured.iter().find(|e| e.config.name == name).cloned().ok_or_else(|| HubError::NotFound(name.into()))?;
        self.join(entry, max_fps)
    }

    /// Joins a network URI the operator allowed (checked by the caller).
    pub fn subscribe_uri(&self, uri: &str, max_fps: f32) -> Result<Subscription, HubError> {
        let entry = self
            .adhoc
            .lock()
            .expect("adhoc lock")
            .entry(uri.to_string())
            .or_insert_with(|| {
                entry(SourceConfig {
                    name: format!("uri:{uri}"),
                    spec: SourceSpec::Network { url: uri.into() },
                    reconnect: Default::default(),
                })
            })
            .clone();
        self.join(entry, max_fps)
    }

    fn join(&self, entry: Arc<Entry>, max_fps: f32) -> Result<Subscription, HubError> {
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

    fn start(&self, entry: &Arc<Entry>) -> Result<Arc<Running>, HubError> {
        let grabber = Grabber::spawn(entry.config.clone(), entry.state.clone())
            .map_err(|e| HubError::Start { name: entry.config.name.clone(), reason: e.to_string() })?;
        let (encoded_tx, encoded) = watch::channel(None);
        let raw = grabber.frames.clone();
        let running = Arc::new(Running { grabber, encoded, viewers: Mutex::new(HashMap::new()) });
        let pump = Pump { entry: entry.clone(), running: running.clone(), engine: self.engine.clone(), grace: self.grace };
        metrics::gauge!(ACTIVE_SOURCES).increment(1.0);
        tracing::info!(source = %entry.config.name, spec = %entry.config.spec.describe(), "source started");
        tokio::spawn(pump.run(raw, encoded_tx));
        Ok(running)
    }
}

struct Pump {
    entry: Arc<Entry>,
    running: Arc<Running>,
    engine: Engine,
    grace: Duration,
}

impl Pump {
    /// Encodes the newest frame whenever fewer than `PIPELINE_DEPTH` are in flight, so the next
    /// frame is captured, preprocessed and queued while the current one is in the encoder, and
    /// publishes encoded frames in order. Frames that arrive while the pipeline is full are
    /// skipped (latest frame wins) and counted from the sequence numbers.
    async fn run(self, mut raw: watch::Receiver<Option<Arc<RawFrame>>>, encoded: watch::Sender<Option<Arc<EncodedFrame>>>) {
        let name = self.entry.config.name.clone();
        let mut last_seq = 0u64;
        let mut idle_since: Option<Instant> = None;
        let mut in_flight = FuturesOrdered::new();
        let mut next_start = Instant::now();
        let mut source_open = true;
        loop {
            if self.running.viewer_count() == 0 && in_flight.is_empty() {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.grace && self.stop_if_still_idle() {
                    break;
                }
            } else {
                idle_since = None;
            }
            if !source_open && in_flight.is_empty() {
                break;
            }
            // The fps cap (of the most demanding viewer) paces frame starts.
            let paced = Instant::now() < next_start;
            let room = in_flight.len() < PIPELINE_DEPTH && source_open && !paced;
            tokio::select! {
                biased;
                Some(result) = in_flight.next(), if !in_flight.is_empty() => {
                    match result {
                        Ok(frame) => {
                            metrics::counter!(ENCODER_RUNS, "origin" => name.clone()).increment(1);
                            encoded.send_replace(Some(Arc::new(frame)));
                        }
                        Err(e) => tracing::warn!(source = %name, error = %e, "frame not encoded"),
                    }
                    continue;
                }
                changed = raw.changed(), if room => if changed.is_err() {
                    source_open = false;
                    continue;
                },
                () = tokio::time::sleep_until(next_start.into()), if paced => continue,
                () = tokio::time::sleep(IDLE_CHECK) => continue,
            }
            let Some(frame) = raw.borrow_and_update().clone() else { continue };
            if frame.seq <= last_seq {
                continue;
            }
            if last_seq > 0 && frame.seq > last_seq + 1 {
                metrics::counter!(FRAMES_DROPPED, "source" => name.clone()).increment(frame.seq - last_seq - 1);
            }
            last_seq = frame.seq;
            if self.running.viewer_count() == 0 {
                continue; // nobody to encode for during the grace period
            }
            let cap = self.running.fps_cap();
            next_start = if cap > 0.0 { Instant::now() + Duration::from_secs_f32(1.0 / cap) } else { Instant::now() };
            in_flight.push_back(self.encode(frame));
        }
        self.running.grabber.stop();
        let mut slot = self.entry.running.lock().expect("running lock");
        if slot.as_ref().is_some_and(|r| Arc::ptr_eq(r, &self.running)) {
            *slot = None;
        }
        metrics::gauge!(ACTIVE_SOURCES).decrement(1.0);
        tracing::info!(source = %name, "source stopped");
    }

    /// Under the entry's lock, so that no viewer can join a source that is stopping.
    fn stop_if_still_idle(&self) -> bool {
        let mut slot = self.entry.running.lock().expect("running lock");
        if self.running.viewer_count() > 0 {
            return false;
        }
        *slot = None;
        true
    }

    async fn encode(&self, frame: Arc<RawFrame>) -> Result<EncodedFrame, String> {
        let preparation = self.engine.preparation().map_err(|e| e.to_string())?;
        let pixels = frame.rgb.clone();
        let span = tracing::Span::current();
        let (input, preprocess) = tokio::task::spawn_blocking(move || span.in_scope(|| preparation.prepare(pixels)))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let geometry = input.geometry();
        let encoded = self.engine.encode(input).await.map_err(|e| e.to_string())?;
        let mut timings = StageTimings { capture: frame.capture, preprocess, ..Default::default() };
        encoded.record(&mut timings);
        Ok(EncodedFrame {
            seq: frame.seq,
            timestamp_us: frame.timestamp_us,
            geometry,
            embedding: encoded.embedding,
            timings,
            grabbed_at: frame.grabbed_at,
        })
    }
}
