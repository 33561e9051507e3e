//! One live session. It processes the newest frame whenever it is free (older frames are
//! dropped and counted), applies prompt updates at once by re-decoding the last processed
//! frame's cached embedding, and ends as soon as the client goes away. Frames come from a
//! `Feed`: a shared server-side source, or the frames the client pushes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, watch};
use tracing::Instrument;

use super::auto_ids::AutoIds;
use super::client_frames::{self, Encoded, InFlight};
use super::frame_slot::FrameSlot;
use super::heartbeat::Heartbeat;
use super::hub::Subscription;
use super::io::{AutoOutcome, EventKind, FrameOutcome, PromptUpdate, SessionError, SessionEvent, SessionInput, SessionOutput};
use super::prompts::PromptState;
use crate::engine::{EncodedFrame, EngineError};
use crate::mask::MaskOptions;
use crate::model::everything::EverythingOptions;
use crate::model::prompt::check_inside;
use crate::pipeline::{Pipeline, PipelineError};
use crate::telemetry::StageTimings;
use crate::telemetry::metrics::{ACTIVE_STREAMS, STREAM_RESULTS};
use crate::video::{ImageLimits, SourceEventKind, SourceStatus};

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
}

/// The live automatic mode.
#[derive(Debug, Clone, Copy)]
pub struct AutoMode {
    pub options: EverythingOptions,
    /// Every how many processed frames (1 = each).
    pub every: u64,
}

pub enum SessionSource {
    Shared(Subscription),
    /// Frames the client pushes; the transport puts them into this slot.
    ClientFrames(Arc<FrameSlot>),
}

/// Where a session's outputs go; a slow reader blocks the session here.
pub type Outbound = mpsc::Sender<Result<SessionOutput, SessionError>>;

/// Counts the session in the active-streams gauge for exactly as long as it lives.
struct ActiveStream;

impl ActiveStream {
    fn new() -> Self {
        metrics::gauge!(ACTIVE_STREAMS).increment(1.0);
        Self
    }
}

impl Drop for ActiveStream {
    fn drop(&mut self) {
        metrics::gauge!(ACTIVE_STREAMS).decrement(1.0);
    }
}

/// Runs the session to its end; spawn it. `inputs` closes when the client half-closes.
pub async fn run_session(
    pipeline: Pipeline,
    source: SessionSource,
    config: SessionConfig,
    inputs: mpsc::Receiver<SessionInput>,
    tx: Outbound,
) {
    let _active = ActiveStream::new();
    let label = match &source {
        SessionSource::Shared(sub) => sub.name.clone(),
        SessionSource::ClientFrames(_) => "client_frames".to_string(),
    };
    let span = tracing::info_span!("stream", source = %label);
    let feed = match source {
        SessionSource::Shared(sub) => {
            let interval = (config.max_fps > 0.0).then(|| Duration::from_secs_f32(1.0 / config.max_fps));
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
        SessionSource::ClientFrames(slot) => Feed::Client(ClientFeed {
            slot,
            encoding: InFlight::default(),
            pipeline: pipeline.clone(),
            limits: config.image_limits,
            queue_full_drops: 0,
            dropped: 0,
        }),
    };
    let heartbeat = Heartbeat::new(config.heartbeat);
    let mut session = Session {
        pipeline,
        config,
        tx,
        label,
        prompts: PromptState::default(),
        last_frame: None,
        auto_ids: AutoIds::default(),
        frames_seen: 0,
        heartbeat,
    };
    async move {
        let result = session.run(feed, inputs).await;
        if let Err(Stop::Fail(error)) = result {
            let _ = session.tx.send(Err(error)).await;
        }
        tracing::debug!("stream ended");
    }
    .instrument(span)
    .await;
}

struct Session {
    pipeline: Pipeline,
    config: SessionConfig,
    tx: Outbound,
    label: String,
    prompts: PromptState,
    /// The newest processed frame: prompt updates re-decode its cached embedding.
    last_frame: Option<Arc<EncodedFrame>>,
    /// The automatic mode's ids, with tracking.
    auto_ids: AutoIds,
    /// Frames processed (prompt updates aside), for the automatic mode's cadence.
    frames_seen: u64,
    heartbeat: Heartbeat,
}

/// Why a session stops early.
enum Stop {
    /// The client is gone; nothing more can be sent.
    ClientGone,
    /// End the stream with this error.
    Fail(SessionError),
}

impl From<PipelineError> for Stop {
    fn from(e: PipelineError) -> Self {
        Stop::Fail(e.into())
    }
}

/// What a feed produced.
enum Next {
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

enum Feed {
    Shared(SharedFeed),
    Client(ClientFeed),
}

struct SharedFeed {
    sub: Subscription,
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

struct ClientFeed {
    slot: Arc<FrameSlot>,
    encoding: InFlight,
    pipeline: Pipeline,
    limits: ImageLimits,
    /// Client frames dropped because the encoder's queue was full.
    queue_full_drops: u64,
    dropped: u64,
}

impl Feed {
    /// The next thing to answer. Cancel-safe: every await is on a channel, a timer or a task.
    async fn next(&mut self) -> Result<Next, Stop> {
        match self {
            Feed::Shared(feed) => Ok(feed.next().await),
            Feed::Client(feed) => feed.next().await,
        }
    }

    /// After a frame was answered: a capped viewer waits before taking the next one.
    fn answered(&mut self) {
        if let Feed::Shared(SharedFeed { interval: Some(interval), next_allowed, .. }) = self {
            *next_allowed = Instant::now() + *interval;
        }
    }

    fn frames_dropped(&self) -> u64 {
        match self {
            Feed::Shared(feed) => feed.dropped,
            Feed::Client(feed) => feed.dropped,
        }
    }

    /// A client-frames session is done once the client half-closed and every frame it sent
    /// is answered; a shared source's session lives until the source ends or the client goes.
    fn done(&self, inputs_open: bool) -> bool {
        match self {
            Feed::Shared(_) => false,
            Feed::Client(feed) => !inputs_open && feed.slot.is_empty() && feed.encoding.0.is_none(),
        }
    }

    fn client_half_closed(&self) {
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
    async fn next(&mut self) -> Result<Next, Stop> {
        tokio::select! {
            done = async { self.encoding.0.as_mut().expect("guarded by is_some").await }, if self.encoding.0.is_some() => {
                self.encoding.0 = None;
                let (outcome, dropped_before) = done.map_err(|e| Stop::from(PipelineError::Worker(e.to_string())))??;
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
            () = self.slot.ready.notified(), if self.encoding.0.is_none() => {
                self.start_next();
                Ok(Next::Idle)
            }
        }
    }

    fn start_next(&mut self) {
        self.encoding.0 = self.slot.take().map(|taken| client_frames::spawn_encode(self.pipeline.clone(), self.limits, taken));
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

impl Session {
    async fn run(&mut self, mut feed: Feed, mut inputs: mpsc::Receiver<SessionInput>) -> Result<(), Stop> {
        match &feed {
            Feed::Shared(shared) => {
                let name = shared.sub.name.clone();
                let replica = self.config.replica.as_ref().map(|r| format!(" on replica {r}")).unwrap_or_default();
                self.event(EventKind::Started, format!("source {name}{replica}")).await?;
                if shared.sub.state.borrow().status == SourceStatus::Connected {
                    self.event(EventKind::SourceConnected, format!("source {name} is connected")).await?;
                }
            }
            Feed::Client(_) => self.event(EventKind::Started, "client frames").await?,
        }
        let mut inputs_open = true;
        let mut closing = self.config.closing.clone();
        loop {
            tokio::select! {
                biased;
                () = self.tx.closed() => return Err(Stop::ClientGone),
                () = closed(&mut closing) => return self.shut_down().await,
                input = inputs.recv(), if inputs_open => match input {
                    Some(input) => self.on_input(input, feed.frames_dropped()).await?,
                    None => {
                        // Half-closed: a source keeps streaming; client frames finish what was sent.
                        inputs_open = false;
                        feed.client_half_closed();
                    }
                },
                next = feed.next() => match next? {
                    Next::Frame(frame) => {
                        self.process(frame, None, feed.frames_dropped()).await?;
                        feed.answered();
                    }
                    Next::Event(event) => self.send(SessionOutput::Event(event)).await?,
                    Next::Rejected(reason) => self.event(EventKind::Rejected, reason).await?,
                    Next::Ended(last) => {
                        for event in last {
                            self.send(SessionOutput::Event(event)).await?;
                        }
                        return Ok(());
                    }
                    Next::Moved(reason) => {
                        self.event(EventKind::SourceMoved, reason.clone()).await?;
                        return Err(Stop::Fail(SessionError::Moved(reason)));
                    }
                    Next::Idle => {}
                },
                () = self.heartbeat.due() => {
                    self.event(EventKind::Heartbeat, "nothing else to send").await?;
                }
            }
            if feed.done(inputs_open) {
                return Ok(());
            }
        }
    }

    async fn send(&self, output: SessionOutput) -> Result<(), Stop> {
        // A slow reader blocks the session here: frames pile up nowhere, they are skipped.
        self.tx.send(Ok(output)).await.map_err(|_| Stop::ClientGone)?;
        self.heartbeat.sent();
        Ok(())
    }

    async fn event(&self, kind: EventKind, message: impl Into<String>) -> Result<(), Stop> {
        self.send(SessionOutput::Event(SessionEvent { kind, message: message.into() })).await
    }

    async fn shut_down(&self) -> Result<(), Stop> {
        self.event(EventKind::ShuttingDown, "the server is shutting down").await?;
        Err(Stop::Fail(SessionError::ShuttingDown))
    }

    /// `frames_dropped`: the feed's count now, for a result a prompt update makes.
    async fn on_input(&mut self, input: SessionInput, frames_dropped: u64) -> Result<(), Stop> {
        match input {
            SessionInput::Prompts(update, received_at) => self.update_prompts(update, received_at, frames_dropped).await,
            SessionInput::Rejected(reason) => self.event(EventKind::Rejected, reason).await,
            // The transport ends the stream with the reason.
            SessionInput::Abort => Err(Stop::ClientGone),
        }
    }

    async fn update_prompts(&mut self, update: PromptUpdate, received_at: Instant, frames_dropped: u64) -> Result<(), Stop> {
        if let Some(frame) = &self.last_frame
            && let Err(e) = check_inside("prompts.upsert", &update.upsert, frame.geometry.width, frame.geometry.height)
        {
            return self.event(EventKind::Rejected, e.to_string()).await;
        }
        let count = self.prompts.count_after(&update);
        if count > self.config.max_objects {
            let reason = format!("prompts.upsert: {count} objects exceed the limit of {}", self.config.max_objects);
            return self.event(EventKind::Rejected, reason).await;
        }
        self.prompts.apply(update);
        self.event(EventKind::PromptsApplied, format!("revision {}, {} objects", self.prompts.revision(), self.prompts.len())).await?;
        match self.last_frame.clone() {
            Some(frame) => self.process(frame, Some(received_at), frames_dropped).await,
            None => Ok(()),
        }
    }

    /// Decodes every object on `frame` and sends the result. `update` is set when a prompt
    /// update re-decodes an already processed frame: its cached embedding is reused.
    async fn process(&mut self, frame: Arc<EncodedFrame>, update: Option<Instant>, frames_dropped: u64) -> Result<(), Stop> {
        let span = crate::stage_span!("frame", frame_id = frame.origin.seq, objects = self.prompts.len());
        let geometry = frame.geometry;
        let (ids, tokens) = self.prompts.tokens(&geometry, self.config.track, update.is_some());
        let mut timings = if update.is_some() { StageTimings::default() } else { frame.timings };
        let segmented =
            self.pipeline.segment(&frame, ids, tokens, self.config.mask_options, self.config.track).instrument(span.clone()).await;
        let mut objects = match segmented {
            Ok((objects, after)) => {
                timings += after;
                objects
            }
            Err(PipelineError::Engine(EngineError::QueueFull(..))) => {
                tracing::warn!(source = %self.label, "decoder queue full; frame skipped");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        self.prompts.record(&mut objects, geometry);
        let auto = if update.is_none() { self.segment_everything(&frame).instrument(span.clone()).await? } else { None };
        timings.total = update.unwrap_or(frame.origin.grabbed_at).elapsed();
        timings.report(&span, "stream");
        let outcome = FrameOutcome {
            frame_id: frame.origin.seq,
            timestamp_us: frame.origin.timestamp_us,
            width: geometry.width as u32,
            height: geometry.height as u32,
            objects,
            timings,
            prompt_revision: self.prompts.revision(),
            frames_dropped,
            auto,
        };
        self.last_frame = Some(frame);
        metrics::counter!(STREAM_RESULTS).increment(1);
        self.send(SessionOutput::Result(Box::new(outcome))).await
    }
}

impl Session {
    /// The automatic mode on a newly processed frame, when its cadence says so; after the
    /// prompted objects, which it leaves as they are.
    async fn segment_everything(&mut self, frame: &Arc<EncodedFrame>) -> Result<Option<AutoOutcome>, Stop> {
        let Some(mode) = self.config.auto else { return Ok(None) };
        self.frames_seen += 1;
        if !(self.frames_seen - 1).is_multiple_of(mode.every.max(1)) {
            return Ok(None);
        }
        let everything = match self.pipeline.segment_everything_frame(frame, mode.options, self.config.mask_options.format).await {
            Ok(everything) => everything,
            Err(PipelineError::Engine(EngineError::QueueFull(..))) => {
                tracing::warn!(source = %self.label, "decoder queue full; automatic mode skipped this frame");
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        everything.timings.report(&tracing::Span::current(), "stream_auto");
        let (ids, removed) = if self.config.track {
            let runs: Vec<_> = everything.masks.iter().map(|m| &m.runs).collect();
            let assigned = self.auto_ids.assign(&runs);
            (assigned.ids, assigned.removed)
        } else {
            (vec![0; everything.masks.len()], Vec::new())
        };
        Ok(Some(AutoOutcome { masks: everything.masks.into_iter().zip(ids).collect(), removed, timings: everything.timings }))
    }
}

/// Resolves once the server begins shutting down.
async fn closed(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|&c| c).await;
}
