//! One thread per running source: it opens the OpenCV `VideoCapture`, reads frames at the
//! source's own pace into a latest-frame slot (a watch channel: a new frame replaces an
//! unread one, so nothing queues), reports its lifecycle as events, and reconnects live
//! sources with capped exponential backoff.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use opencv::core::{Mat, Vector};
use opencv::prelude::*;
use opencv::videoio::{self, VideoCapture};
use tokio::sync::{broadcast, watch};

use super::config::{SourceConfig, SourceSpec};
use super::pacing::FileClock;

/// Where a source is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceStatus {
    Idle,
    Connecting,
    Connected,
    Reconnecting,
    Ended,
    Failed,
}

/// Network reads and opens give up after this long, so a dead peer never hangs the grabber.
const NETWORK_TIMEOUT_MS: i32 = 5_000;
/// Files report no usable rate sometimes; they are then paced at this many frames per second.
const DEFAULT_FILE_FPS: f64 = 25.0;

/// A grabbed frame, converted to RGB.
pub struct RawFrame {
    /// Increases by one per grabbed frame over the source's whole run, across reconnects.
    pub seq: u64,
    /// Wall-clock grab time, microseconds since the Unix epoch.
    pub timestamp_us: i64,
    /// Shared with everything that reads the frame (host preprocessing, the upload to a GPU).
    pub rgb: std::sync::Arc<Mat>,
    /// When the frame became available; a result's total latency counts from here.
    pub grabbed_at: Instant,
    /// Time spent decoding and converting the frame.
    pub capture: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceEventKind {
    Connected,
    Lost,
    Reconnecting,
    Ended,
    /// Corrupt or missing data: some frames could not be read; the source goes on.
    FramesSkipped,
}

#[derive(Debug, Clone)]
pub struct SourceEvent {
    pub kind: SourceEventKind,
    pub message: String,
}

/// What ListSources reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceState {
    pub status: SourceStatus,
    pub width: u32,
    pub height: u32,
    pub fps: f32,
}

impl Default for SourceState {
    fn default() -> Self {
        Self { status: SourceStatus::Idle, width: 0, height: 0, fps: 0.0 }
    }
}

pub struct Grabber {
    pub frames: watch::Receiver<Option<Arc<RawFrame>>>,
    pub events: broadcast::Sender<SourceEvent>,
    stop: Arc<AtomicBool>,
}

impl Grabber {
    pub fn spawn(config: SourceConfig, state: watch::Sender<SourceState>) -> std::io::Result<Self> {
        let (frames_tx, frames) = watch::channel(None);
        let (events, _) = broadcast::channel(64);
        let stop = Arc::new(AtomicBool::new(false));
        let capture = CaptureLoop { config, frames: frames_tx, events: events.clone(), state, stop: stop.clone(), seq: 0 };
        std::thread::Builder::new().name(format!("grab-{}", capture.config.name)).spawn(move || capture.run())?;
        Ok(Self { frames, events, stop })
    }

    /// Asks the thread to stop; it exits after its current read.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for Grabber {
    fn drop(&mut self) {
        self.stop();
    }
}

struct CaptureLoop {
    config: SourceConfig,
    frames: watch::Sender<Option<Arc<RawFrame>>>,
    events: broadcast::Sender<SourceEvent>,
    state: watch::Sender<SourceState>,
    stop: Arc<AtomicBool>,
    seq: u64,
}

enum StreamEnd {
    Stopped,
    Ended(String),
    Lost(String),
}

impl CaptureLoop {
    fn emit(&self, kind: SourceEventKind, message: String) {
        tracing::info!(source = %self.config.name, ?kind, %message, "source event");
        let _ = self.events.send(SourceEvent { kind, message });
    }

    fn set_status(&self, status: SourceStatus) {
        self.state.send_modify(|s| s.status = status);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sleeps in short steps so that a stop request is honoured quickly.
    fn sleep(&self, duration: Duration) {
        let until = Instant::now() + duration;
        while !self.stopped() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }

    fn run(mut self) {
        let mut attempt = 0u32;
        while !self.stopped() {
            self.set_status(if attempt == 0 { SourceStatus::Connecting } else { SourceStatus::Reconnecting });
            let outcome = match open(&self.config.spec) {
                Ok(capture) => {
                    attempt = 0;
                    self.stream(capture)
                }
                Err(reason) if !self.config.spec.is_live() => StreamEnd::Ended(format!("cannot open: {reason}")),
                Err(reason) => StreamEnd::Lost(format!("cannot open: {reason}")),
            };
            match outcome {
                StreamEnd::Stopped => break,
                StreamEnd::Ended(message) => {
                    self.set_status(SourceStatus::Ended);
                    self.emit(SourceEventKind::Ended, message);
                    return;
                }
                StreamEnd::Lost(message) => {
                    if attempt == 0 {
                        self.emit(SourceEventKind::Lost, message.clone());
                    }
                    attempt += 1;
                    let backoff = self.config.reconnect;
                    if backoff.max_attempts > 0 && attempt > backoff.max_attempts {
                        self.set_status(SourceStatus::Failed);
                        self.emit(SourceEventKind::Ended, format!("gave up after {} reconnect attempts: {message}", backoff.max_attempts));
                        return;
                    }
                    let delay = backoff.delay(attempt);
                    self.set_status(SourceStatus::Reconnecting);
                    metrics::counter!(crate::telemetry::metrics::SOURCE_RECONNECTS, "source" => self.config.name.clone()).increment(1);
                    self.emit(SourceEventKind::Reconnecting, format!("attempt {attempt} in {} ms ({message})", delay.as_millis()));
                    self.sleep(delay);
                }
            }
        }
        self.set_status(SourceStatus::Idle);
    }

    /// Reads until the source ends, is lost, or the grabber is stopped.
    fn stream(&mut self, mut capture: VideoCapture) -> StreamEnd {
        let width = capture.get(videoio::CAP_PROP_FRAME_WIDTH).unwrap_or(0.0) as u32;
        let height = capture.get(videoio::CAP_PROP_FRAME_HEIGHT).unwrap_or(0.0) as u32;
        let reported_fps = capture.get(videoio::CAP_PROP_FPS).unwrap_or(0.0);
        let fps = if reported_fps > 0.0 && reported_fps < 1000.0 { reported_fps } else { 0.0 };
        self.state.send_replace(SourceState { status: SourceStatus::Connected, width, height, fps: fps as f32 });
        self.emit(SourceEventKind::Connected, format!("{} ({width}x{height} at {fps:.1} fps)", self.config.spec.describe()));

        // Files are played at their own timestamps, as if live; live sources pace themselves.
        let looping = matches!(self.config.spec, SourceSpec::File { looping: true, .. });
        let fallback = Duration::from_secs_f64(1.0 / if fps > 0.0 { fps } else { DEFAULT_FILE_FPS });
        let mut clock = (!self.config.spec.is_live()).then(|| FileClock::new(fallback));
        let mut bgr = Mat::default();
        while !self.stopped() {
            // grab() waits for the next frame of a live source; only retrieve() and the colour
            // conversion are the capture stage's own cost.
            let mut grabbed = capture.grab().unwrap_or(false);
            if grabbed && let Some(clock) = clock.as_mut() {
                let position = capture.get(videoio::CAP_PROP_POS_MSEC).unwrap_or(-1.0);
                let (wait, missing) = clock.frame(position, Instant::now());
                if missing > 0 {
                    let at = position / 1000.0;
                    self.emit(
                        SourceEventKind::FramesSkipped,
                        format!("{missing} unreadable frame(s) skipped before {at:.2} s (corrupt or missing data)"),
                    );
                }
                self.sleep(wait);
            }
            let grabbed_at = Instant::now();
            grabbed = grabbed && capture.retrieve(&mut bgr, 0).unwrap_or(false) && !bgr.empty();
            if !grabbed {
                if looping && rewind(&mut capture, &self.config.spec) {
                    if let Some(clock) = clock.as_mut() {
                        clock.restart();
                    }
                    continue;
                }
                return if self.config.spec.is_live() {
                    StreamEnd::Lost("the stream stopped delivering frames".into())
                } else {
                    StreamEnd::Ended("end of file".into())
                };
            }
            let mut rgb = Mat::default();
            let code = if bgr.channels() == 1 { opencv::imgproc::COLOR_GRAY2RGB } else { opencv::imgproc::COLOR_BGR2RGB };
            if let Err(e) = opencv::imgproc::cvt_color_def(&bgr, &mut rgb, code) {
                tracing::warn!(source = %self.config.name, error = %e, "skipping a frame that cannot be converted");
                continue;
            }
            self.seq += 1;
            let frame = RawFrame {
                seq: self.seq,
                timestamp_us: unix_micros(),
                rgb: std::sync::Arc::new(rgb),
                grabbed_at,
                capture: grabbed_at.elapsed(),
            };
            self.frames.send_replace(Some(Arc::new(frame)));
        }
        StreamEnd::Stopped
    }
}

fn rewind(capture: &mut VideoCapture, spec: &SourceSpec) -> bool {
    if capture.set(videoio::CAP_PROP_POS_FRAMES, 0.0).unwrap_or(false) {
        return true;
    }
    match open(spec) {
        Ok(reopened) => {
            *capture = reopened;
            true
        }
        Err(_) => false,
    }
}

fn open(spec: &SourceSpec) -> Result<VideoCapture, String> {
    let capture = match spec {
        SourceSpec::File { path, .. } => VideoCapture::from_file(path.as_os_str(), videoio::CAP_ANY),
        SourceSpec::Network { url } => {
            let params = Vector::from_slice(&[
                videoio::CAP_PROP_OPEN_TIMEOUT_MSEC,
                NETWORK_TIMEOUT_MS,
                videoio::CAP_PROP_READ_TIMEOUT_MSEC,
                NETWORK_TIMEOUT_MS,
            ]);
            VideoCapture::from_file_with_params(url, videoio::CAP_FFMPEG, &params)
        }
        SourceSpec::Camera { device } => match device.parse::<i32>() {
            Ok(index) => VideoCapture::new(index, videoio::CAP_ANY),
            Err(_) => VideoCapture::from_file(device, videoio::CAP_V4L2),
        },
        SourceSpec::Rtsp { url, transport, latency_ms } => {
            VideoCapture::from_file(&super::rtsp::pipeline(url, *transport, *latency_ms)?, videoio::CAP_GSTREAMER)
        }
        SourceSpec::Gstreamer { pipeline } => VideoCapture::from_file(pipeline, videoio::CAP_GSTREAMER),
    }
    .map_err(|e| e.message)?;
    if capture.is_opened().unwrap_or(false) { Ok(capture) } else { Err(format!("OpenCV could not open {}", spec.describe())) }
}

fn unix_micros() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}
