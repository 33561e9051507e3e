//! One `StreamSegment` session. It processes the newest frame whenever it is free (older
//! frames are dropped and counted), applies prompt updates at once by re-decoding the last
//! processed frame's cached embedding, and ends as soon as the client goes away.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, watch};
use tonic::Status;
use tracing::Instrument;

use super::client_frames::{self, ClientFrame};
use super::hub::{EncodedFrame, Subscription};
use super::inbound::{self, FrameSlot, Inbound};
use super::prompts::{PromptState, Update};
use crate::engine::{Engine, EngineError};
use crate::mask::{MaskOptions, object_masks};
use crate::model::{DecodedObjects, MaskRequest};
use crate::proto::{self, stream_response::Msg};
use crate::server::ApiError;
use crate::server::validate::{self, PromptLimits};
use crate::telemetry::StageTimings;
use crate::telemetry::metrics::{ACTIVE_STREAMS, STREAM_RESULTS};
use crate::video::{ImageLimits, SourceEventKind};

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub mask_options: MaskOptions,
    pub track: bool,
    pub max_fps: f32,
    pub prompt_limits: PromptLimits,
    pub image_limits: ImageLimits,
    /// Turns true when the server starts shutting down.
    pub closing: watch::Receiver<bool>,
}

pub enum SessionSource {
    Shared(Subscription),
    ClientFrames,
}

type Outbound = mpsc::Sender<Result<proto::StreamResponse, Status>>;

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

/// Runs the session to its end; spawn it.
pub async fn run_session(
    engine: Engine,
    source: SessionSource,
    config: SessionConfig,
    inbound: tonic::Streaming<proto::StreamRequest>,
    tx: Outbound,
) {
    let _active = ActiveStream::new();
    let (to_session, from_inbound) = mpsc::channel(16);
    let label = match &source {
        SessionSource::Shared(sub) => sub.name.clone(),
        SessionSource::ClientFrames => "client_frames".to_string(),
    };
    let span = tracing::info_span!("stream", source = %label);
    let mut session = Session {
        engine,
        config,
        tx,
        label,
        prompts: PromptState::default(),
        last_frame: None,
        first_seq: None,
        frames_processed: 0,
        frames_dropped: 0,
        queue_full_drops: 0,
    };
    let reader = match source {
        SessionSource::Shared(sub) => {
            let reader = tokio::spawn(inbound::read(inbound, to_session, None).instrument(span.clone()));
            session.run_shared(sub, from_inbound).instrument(span).await;
            reader
        }
        SessionSource::ClientFrames => {
            let slot = Arc::new(FrameSlot::default());
            let reader = tokio::spawn(inbound::read(inbound, to_session, Some(slot.clone())).instrument(span.clone()));
            session.run_client_frames(slot, from_inbound).instrument(span).await;
            reader
        }
    };
    // Dropping the request stream completes the call even if the client never half-closes.
    reader.abort();
    tracing::debug!("stream ended");
}

struct Session {
    engine: Engine,
    config: SessionConfig,
    tx: Outbound,
    label: String,
    prompts: PromptState,
    /// The newest processed frame: prompt updates re-decode its cached embedding.
    last_frame: Option<Arc<EncodedFrame>>,
    first_seq: Option<u64>,
    frames_processed: u64,
    frames_dropped: u64,
    /// Client frames dropped because the encoder's queue was full.
    queue_full_drops: u64,
}

/// Why a session stops early.
enum Stop {
    /// The client is gone; nothing more can be sent.
    ClientGone,
    /// End the stream with this status.
    Fail(Status),
}

impl From<EngineError> for Stop {
    fn from(e: EngineError) -> Self {
        Stop::Fail(ApiError::from(e).into())
    }
}

fn event_kind(kind: SourceEventKind) -> proto::EventKind {
    match kind {
        SourceEventKind::Connected => proto::EventKind::SourceConnected,
        SourceEventKind::Lost => proto::EventKind::SourceLost,
        SourceEventKind::Reconnecting => proto::EventKind::SourceReconnecting,
        SourceEventKind::Ended => proto::EventKind::SourceEnded,
        SourceEventKind::FramesSkipped => proto::EventKind::FramesSkipped,
    }
}

impl Session {
    async fn send(&self, msg: Msg) -> Result<(), Stop> {
        // A slow reader blocks the session here: frames pile up nowhere, they are skipped.
        self.tx.send(Ok(proto::StreamResponse { msg: Some(msg) })).await.map_err(|_| Stop::ClientGone)
    }

    async fn event(&self, kind: proto::EventKind, message: impl Into<String>) -> Result<(), Stop> {
        self.send(Msg::Event(proto::StreamEvent { kind: kind as i32, message: message.into() })).await
    }

    async fn finish(&self, result: Result<(), Stop>) {
        if let Err(Stop::Fail(status)) = result {
            let _ = self.tx.send(Err(status)).await;
        }
    }

    /// Resolves once the server begins shutting down.
    async fn closing(closing: &mut watch::Receiver<bool>) {
        let _ = closing.wait_for(|&c| c).await;
    }

    async fn shut_down(&self) -> Result<(), Stop> {
        self.event(proto::EventKind::ShuttingDown, "the server is shutting down").await?;
        Err(Stop::Fail(Status::unavailable("the server is shutting down; reconnect to another instance")))
    }

    async fn run_shared(&mut self, mut sub: Subscription, mut inbound: mpsc::Receiver<Inbound>) {
        let result = self.shared_loop(&mut sub, &mut inbound).await;
        self.finish(result).await;
    }

    async fn shared_loop(&mut self, sub: &mut Subscription, inbound: &mut mpsc::Receiver<Inbound>) -> Result<(), Stop> {
        self.event(proto::EventKind::Started, format!("source {}", sub.name)).await?;
        if sub.state.borrow().status == proto::SourceStatus::Connected {
            self.event(proto::EventKind::SourceConnected, format!("source {} is connected", sub.name)).await?;
        }
        let frame_interval = (self.config.max_fps > 0.0).then(|| Duration::from_secs_f32(1.0 / self.config.max_fps));
        let mut next_allowed = Instant::now();
        let (mut inbound_open, mut events_open) = (true, true);
        let mut closing = self.config.closing.clone();
        loop {
            let throttled = Instant::now() < next_allowed;
            tokio::select! {
                biased;
                () = self.tx.closed() => return Err(Stop::ClientGone),
                () = Self::closing(&mut closing) => return self.shut_down().await,
                message = inbound.recv(), if inbound_open => match message {
                    Some(message) => self.on_inbound(message).await?,
                    None => inbound_open = false, // half-closed: keep streaming the source
                },
                event = sub.events.recv(), if events_open => match event {
                    Ok(e) => self.event(event_kind(e.kind), e.message).await?,
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => events_open = false,
                },
                () = tokio::time::sleep_until(next_allowed.into()), if throttled => {}
                changed = sub.frames.changed(), if !throttled => {
                    if changed.is_err() {
                        // The source ended: pass on its last events, then close the stream.
                        while let Ok(e) = sub.events.try_recv() {
                            self.event(event_kind(e.kind), e.message).await?;
                        }
                        return Ok(());
                    }
                    let Some(frame) = sub.frames.borrow_and_update().clone() else { continue };
                    let first = *self.first_seq.get_or_insert(frame.seq);
                    self.frames_processed += 1;
                    self.frames_dropped = (frame.seq - first + 1).saturating_sub(self.frames_processed);
                    self.process(frame, None).await?;
                    if let Some(interval) = frame_interval {
                        next_allowed = Instant::now() + interval;
                    }
                }
            }
        }
    }

    async fn run_client_frames(&mut self, slot: Arc<FrameSlot>, mut inbound: mpsc::Receiver<Inbound>) {
        let result = self.client_frames_loop(&slot, &mut inbound).await;
        self.finish(result).await;
    }

    /// Frames are pipelined: while one is decoded and sent, the next one (the newest the client
    /// sent) is decoded, preprocessed and encoded on its own task.
    async fn client_frames_loop(&mut self, slot: &FrameSlot, inbound: &mut mpsc::Receiver<Inbound>) -> Result<(), Stop> {
        self.event(proto::EventKind::Started, "client frames").await?;
        let mut inbound_open = true;
        let mut closing = self.config.closing.clone();
        // Dropped with the loop: a frame still in the encoder when the session ends is abandoned.
        let mut encoding = client_frames::InFlight::default();
        let start =
            |slot: &FrameSlot, engine: &Engine, limits| slot.take().map(|taken| client_frames::spawn_encode(engine.clone(), limits, taken));
        loop {
            tokio::select! {
                biased;
                () = self.tx.closed() => return Err(Stop::ClientGone),
                () = Self::closing(&mut closing) => return self.shut_down().await,
                message = inbound.recv(), if inbound_open => match message {
                    Some(message) => self.on_inbound(message).await?,
                    None => inbound_open = false,
                },
                done = async { encoding.0.as_mut().expect("guarded").await }, if encoding.0.is_some() => {
                    let (outcome, dropped_before) = done.map_err(|e| Stop::Fail(Status::internal(e.to_string())))??;
                    if matches!(outcome, ClientFrame::QueueFull) {
                        self.queue_full_drops += 1;
                    }
                    // The next frame goes to the encoder before this one is decoded.
                    encoding.0 = start(slot, &self.engine, self.config.image_limits);
                    self.frames_dropped = dropped_before + self.queue_full_drops;
                    match outcome {
                        ClientFrame::Encoded(frame) => self.process(frame, None).await?,
                        ClientFrame::Rejected { frame_id, reason } => {
                            self.event(proto::EventKind::Rejected, format!("frame.{reason} (frame_id {frame_id})")).await?
                        }
                        ClientFrame::QueueFull => {}
                    }
                }
                () = slot.ready.notified(), if encoding.0.is_none() => encoding.0 = start(slot, &self.engine, self.config.image_limits),
            }
            if !inbound_open && slot.is_empty() && encoding.0.is_none() {
                return Ok(()); // the client half-closed and every frame it sent is answered
            }
        }
    }

    async fn on_inbound(&mut self, message: Inbound) -> Result<(), Stop> {
        match message {
            Inbound::Prompts(update, received_at) => self.update_prompts(update, received_at).await,
            Inbound::Rejected(reason) => self.event(proto::EventKind::Rejected, reason).await,
            Inbound::Failed(status) => Err(Stop::Fail(status)),
        }
    }

    async fn update_prompts(&mut self, update: proto::PromptUpdate, received_at: Instant) -> Result<(), Stop> {
        let limits = self.config.prompt_limits;
        let checked = validate::object_prompts("prompts.upsert", &update.upsert, &limits).and_then(|upsert| {
            if let Some(frame) = &self.last_frame {
                validate::prompts_inside("prompts.upsert", &upsert, frame.geometry.width, frame.geometry.height)?;
            }
            Ok(upsert)
        });
        let upsert = match checked {
            Ok(upsert) => upsert,
            Err(e) => return self.event(proto::EventKind::Rejected, e.to_string()).await,
        };
        let update = Update { upsert, remove: update.remove, clear: update.clear, revision: update.revision };
        let count = self.prompts.count_after(&update);
        if count > limits.max_objects {
            let reason = format!("prompts.upsert: {count} objects exceed the limit of {}", limits.max_objects);
            return self.event(proto::EventKind::Rejected, reason).await;
        }
        self.prompts.apply(update);
        self.event(proto::EventKind::PromptsApplied, format!("revision {}, {} objects", self.prompts.revision(), self.prompts.len()))
            .await?;
        match self.last_frame.clone() {
            Some(frame) => self.process(frame, Some(received_at)).await,
            None => Ok(()),
        }
    }

    /// Decodes every object on `frame` and sends the result. `update` is set when a prompt
    /// update re-decodes an already processed frame: its cached embedding is reused.
    async fn process(&mut self, frame: Arc<EncodedFrame>, update: Option<Instant>) -> Result<(), Stop> {
        let span = crate::stage_span!("frame", frame_id = frame.seq, objects = self.prompts.len());
        let geometry = frame.geometry;
        let (ids, tokens) = self.prompts.tokens(&geometry, self.config.track, update.is_some());
        let mut timings = if update.is_some() { StageTimings::default() } else { frame.timings };
        let decoded = if ids.is_empty() {
            DecodedObjects::empty()
        } else {
            let request = MaskRequest { geometry, multimask: self.config.mask_options.multimask, keep_low_res: self.config.track };
            match self.engine.decode(frame.embedding.clone(), tokens, request).instrument(span.clone()).await {
                Ok(decoded) => {
                    decoded.record(&mut timings);
                    decoded.decoded
                }
                Err(EngineError::QueueFull(..)) => {
                    tracing::warn!(source = %self.label, "decoder queue full; frame skipped");
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        };
        let started = Instant::now();
        let (options, track) = (self.config.mask_options, self.config.track);
        let ids_for_masks = ids.clone();
        let outcomes = tokio::task::spawn_blocking(move || object_masks(&decoded, &geometry, &ids_for_masks, options, track))
            .await
            .map_err(|e| Stop::Fail(Status::internal(e.to_string())))?;
        let mut outcomes = outcomes.map_err(|e| Stop::Fail(ApiError::from(e).into()))?;
        timings.postprocess += started.elapsed();
        self.prompts.record(&ids, &mut outcomes, geometry);
        timings.total = update.unwrap_or(frame.grabbed_at).elapsed();
        timings.report(&span, "stream");
        let result = proto::FrameResult {
            frame_id: frame.seq,
            timestamp_us: frame.timestamp_us,
            width: geometry.width as u32,
            height: geometry.height as u32,
            objects: outcomes.into_iter().map(|o| o.message).collect(),
            timing: Some(timings.to_proto()),
            prompt_revision: self.prompts.revision(),
            frames_dropped: self.frames_dropped,
        };
        self.last_frame = Some(frame);
        metrics::counter!(STREAM_RESULTS).increment(1);
        self.send(Msg::Result(result)).await
    }
}
