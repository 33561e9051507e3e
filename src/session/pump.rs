//! A running source's encoder pump: it always encodes the newest grabbed frame (latest frame
//! wins), keeping the next frame captured, preprocessed and queued while the current one is in
//! the encoder, publishes encoded frames in order to the source's viewers, and stops the source
//! after a grace period without viewers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use tokio::sync::watch;

use super::source::{Running, Source};
use crate::engine::{EncodedFrame, EngineError, FrameOrigin};
use crate::pipeline::Pipeline;
use crate::telemetry::metrics::{ACTIVE_SOURCES, ENCODER_RUNS, FRAMES_DROPPED};
use crate::video::RawFrame;

/// How often an idle pump checks whether its grace period is over.
const IDLE_CHECK: Duration = Duration::from_millis(200);

/// Frames of one source in the encoder's hands at once: one encoding, the next one captured,
/// preprocessed and queued behind it, so the encoder never waits for the pump.
const PIPELINE_DEPTH: usize = 2;

pub(super) struct Pump {
    pub source: Arc<Source>,
    pub running: Arc<Running>,
    pub pipeline: Pipeline,
    pub grace: Duration,
}

impl Pump {
    /// Encodes the newest frame whenever fewer than `PIPELINE_DEPTH` are in flight, so the next
    /// frame is captured, preprocessed and queued while the current one is in the encoder, and
    /// publishes encoded frames in order. Frames that arrive while the pipeline is full are
    /// skipped (latest frame wins) and counted from the sequence numbers.
    pub async fn run(self, mut raw: watch::Receiver<Option<Arc<RawFrame>>>, encoded: watch::Sender<Option<Arc<EncodedFrame>>>) {
        let name = self.source.config.name.clone();
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
                            encoded.send_replace(Some(frame));
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
        let mut slot = self.source.running.lock().expect("running lock");
        if slot.as_ref().is_some_and(|r| Arc::ptr_eq(r, &self.running)) {
            *slot = None;
        }
        metrics::gauge!(ACTIVE_SOURCES).decrement(1.0);
        tracing::info!(source = %name, "source stopped");
    }

    /// Under the source's lock, so that no viewer can join a source that is stopping.
    fn stop_if_still_idle(&self) -> bool {
        let mut slot = self.source.running.lock().expect("running lock");
        if self.running.viewer_count() > 0 {
            return false;
        }
        *slot = None;
        true
    }

    async fn encode(&self, frame: Arc<RawFrame>) -> Result<Arc<EncodedFrame>, EngineError> {
        let origin = FrameOrigin { seq: frame.seq, timestamp_us: frame.timestamp_us, grabbed_at: frame.grabbed_at };
        self.pipeline.encode(frame.rgb.clone(), origin, frame.capture).await
    }
}
