//! Where a session's frames come from and how many it skipped: a shared server-side source
//! (throttled to the viewer's max_fps, its events passed on, its hand-over to another replica)
//! or the frames the client pushes (pipelined: the next one is encoded while this one is
//! decoded and sent).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use super::client_frames::{Encoded, InFlight};
use super::frame_slot::FrameSlot;
use super::hub::Subscription;
use super::io::{EventKind, SessionEvent};
use crate::engine::EncodedFrame;
use crate::pipeline::{Pipeline, PipelineError};
use crate::video::{ImageLimits, SourceEventKind};

/// What a feed produced.
pub enum Next {
    Frame(Arc<EncodedFrame>),
    Event(SessionEvent),
    /// A client frame that could not be used; the text names the field.
    Rejected(String),
    /// The source ended; its last events are passed on, then the stream closes.
    Ended(Vec<SessionEvent>),
    /// Another replica owns the source now; the stream ends with this reason.
    Moved(String),
    /// Nothing to answer (a throttle ran out, a lagging event stream, an encode started).
    Idle,
}

pub enum Feed {
    Shared(SharedFeed),
    Client(ClientFeed),
}

pub struct SharedFeed {
    pub sub: Subscription,
    /// False once the source's hand-over channel closed (the source stopped here).
    moved_open: bool,
    /// The viewer's max_fps as the least time between two processed frames.
    interval: Option<Duration>,
    next_allowed: Instant,
    events_open: bool,
    first_seq: Option<u64>,
    processed: u64,
    dropped: u64,
}

pub struct ClientFeed {
    slot: Arc<FrameSlot>,
    encoding: InFlight,
    pipeline: Pipeline,
    limits: ImageLimits,
    /// Client frames dropped because the encoder's queue was full.
    queue_full_drops: u64,
    dropped: u64,
}

impl Feed {
    /// A viewer of `sub`, taking at most `max_fps` frames a second (0: every frame).
    pub fn shared(sub: Subscription, max_fps: f32) -> Self {
        let interval = (max_fps > 0.0).then(|| Duration::from_secs_f32(1.0 / max_fps));
        Feed::Shared(SharedFeed {
            sub,
            interval,
            next_allowed: Instant::now(),
            events_open: true,
            moved_open: true,
            first_seq: None,
            processed: 0,
            dropped: 0,
        })
    }

    /// The frames the transport puts into `slot`.
    pub fn client(slot: Arc<FrameSlot>, pipeline: Pipeline, limits: ImageLimits) -> Self {
        Feed::Client(ClientFeed { slot, encoding: InFlight::default(), pipeline, limits, queue_full_drops: 0, dropped: 0 })
    }

    /// The next thing to answer. Cancel-safe: every await is on a channel, a timer or a task.
    pub async fn next(&mut self) -> Result<Next, PipelineError> {
        match self {
            Feed::Shared(feed) => Ok(feed.next().await),
            Feed::Client(feed) => feed.next().await,
        }
    }

    /// After a frame was answered: a capped viewer waits before taking the next one.
    pub fn answered(&mut self) {
        if let Feed::Shared(SharedFeed { interval: Some(interval), next_allowed, .. }) = self {
            *next_allowed = Instant::now() + *interval;
        }
    }

    pub fn frames_dropped(&self) -> u64 {
        match self {
            Feed::Shared(feed) => feed.dropped,
            Feed::Client(feed) => feed.dropped,
        }
    }

    /// A client-frames session is done once the client half-closed and every frame it sent
    /// is answered; a shared source's session lives until the source ends or the client goes.
    pub fn done(&self, inputs_open: bool) -> bool {
        match self {
            Feed::Shared(_) => false,
            Feed::Client(feed) => !inputs_open && feed.slot.is_empty() && !feed.encoding.is_busy(),
        }
    }

    pub fn client_half_closed(&self) {
        if let Feed::Client(feed) = self {
            feed.slot.wake();
        }
    }
}

impl SharedFeed {
    async fn next(&mut self) -> Next {
        let throttled = Instant::now() < self.next_allowed;
        tokio::select! {
            biased;
            changed = self.sub.moved.changed(), if self.moved_open => {
                if changed.is_err() {
                    self.moved_open = false;
                    return Next::Idle;
                }
                match self.sub.moved.borrow_and_update().clone() {
                    Some(reason) => Next::Moved(reason),
                    None => Next::Idle,
                }
            }
            event = self.sub.events.recv(), if self.events_open => match event {
                Ok(e) => Next::Event(source_event(e.kind, e.message)),
                Err(broadcast::error::RecvError::Lagged(_)) => Next::Idle,
                Err(broadcast::error::RecvError::Closed) => {
                    self.events_open = false;
                    Next::Idle
                }
            },
            () = tokio::time::sleep_until(self.next_allowed.into()), if throttled => Next::Idle,
            changed = self.sub.frames.changed(), if !throttled => {
                if changed.is_err() {
                    let mut last = Vec::new();
                    while let Ok(e) = self.sub.events.try_recv() {
                        last.push(source_event(e.kind, e.message));
                    }
                    return Next::Ended(last);
                }
                let Some(frame) = self.sub.frames.borrow_and_update().clone() else { return Next::Idle };
                let first = *self.first_seq.get_or_insert(frame.origin.seq);
                self.processed += 1;
                self.dropped = (frame.origin.seq - first + 1).saturating_sub(self.processed);
                Next::Frame(frame)
            }
        }
    }
}

impl ClientFeed {
    /// Frames are pipelined: when one comes out of the encoder, the next one (the newest the
    /// client sent) goes in before this one is decoded and sent.
    async fn next(&mut self) -> Result<Next, PipelineError> {
        tokio::select! {
            done = self.encoding.finished(), if self.encoding.is_busy() => {
                let (outcome, dropped_before) = done?;
                if matches!(outcome, Encoded::QueueFull) {
                    self.queue_full_drops += 1;
                }
                self.start_next();
                self.dropped = dropped_before + self.queue_full_drops;
                Ok(match outcome {
                    Encoded::Frame(frame) => Next::Frame(frame),
                    Encoded::Rejected { frame_id, reason } => Next::Rejected(format!("frame.{reason} (frame_id {frame_id})")),
                    Encoded::QueueFull => Next::Idle,
                })
            }
            () = self.slot.ready.notified(), if !self.encoding.is_busy() => {
                self.start_next();
                Ok(Next::Idle)
            }
        }
    }

    fn start_next(&mut self) {
        if let Some(taken) = self.slot.take() {
            self.encoding.start(self.pipeline.clone(), self.limits, taken);
        }
    }
}

fn source_event(kind: SourceEventKind, message: String) -> SessionEvent {
    let kind = match kind {
        SourceEventKind::Connected => EventKind::SourceConnected,
        SourceEventKind::Lost => EventKind::SourceLost,
        SourceEventKind::Reconnecting => EventKind::SourceReconnecting,
        SourceEventKind::Ended => EventKind::SourceEnded,
        SourceEventKind::FramesSkipped => EventKind::FramesSkipped,
    };
    SessionEvent { kind, message }
}
