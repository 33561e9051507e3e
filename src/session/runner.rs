//! One live session. It processes the newest frame whenever it is free (older frames are
//! dropped and counted, see `feed`), applies prompt updates at once by re-decoding the last
//! processed frame (`process`), sends results and events in order, and ends as soon as the
//! client goes away.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use super::config::SessionConfig;
use super::feed::{Feed, Next};
use super::frame_slot::FrameSlot;
use super::heartbeat::Heartbeat;
use super::hub::Subscription;
use super::io::{Applied, EventKind, PromptUpdate, SessionError, SessionEvent, SessionInput, SessionOutput};
use super::process::FrameProcessor;
use crate::engine::EncodedFrame;
use crate::pipeline::{Pipeline, PipelineError};
use crate::telemetry::metrics::{ACTIVE_STREAMS, STREAM_RESULTS};
use crate::video::SourceStatus;

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
    let (label, feed) = match source {
        SessionSource::Shared(sub) => (sub.name.clone(), Feed::shared(sub, config.max_fps)),
        SessionSource::ClientFrames(slot) => ("client_frames".to_string(), Feed::client(slot, pipeline.clone(), config.image_limits)),
    };
    let span = tracing::info_span!("stream", source = %label);
    let mut session = Session {
        heartbeat: Heartbeat::new(config.heartbeat),
        closing: config.closing.clone(),
        replica: config.replica.clone(),
        processor: FrameProcessor::new(pipeline, config, label),
        tx,
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
    processor: FrameProcessor,
    tx: Outbound,
    /// Turns true when the server starts shutting down.
    closing: watch::Receiver<bool>,
    /// This replica as the proxy knows it, named in the STARTED event.
    replica: Option<String>,
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

impl Session {
    async fn run(&mut self, mut feed: Feed, mut inputs: mpsc::Receiver<SessionInput>) -> Result<(), Stop> {
        match &feed {
            Feed::Shared(shared) => {
                let name = shared.sub.name.clone();
                let replica = self.replica.as_ref().map(|r| format!(" on replica {r}")).unwrap_or_default();
                self.event(EventKind::Started, format!("source {name}{replica}")).await?;
                if shared.sub.state.borrow().status == SourceStatus::Connected {
                    self.event(EventKind::SourceConnected, format!("source {name} is connected")).await?;
                }
            }
            Feed::Client(_) => self.event(EventKind::Started, "client frames").await?,
        }
        let mut inputs_open = true;
        let mut closing = self.closing.clone();
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
            SessionInput::Prompts { update, received_at, reply } => {
                let applied = self.update_prompts(update, received_at, frames_dropped).await?;
                if let Some(reply) = reply {
                    // The caller may have given up (deadline); the session goes on either way.
                    let _ = reply.send(applied);
                }
                Ok(())
            }
            SessionInput::Rejected(reason) => self.event(EventKind::Rejected, reason).await,
            // The transport ends the stream with the reason.
            SessionInput::Abort => Err(Stop::ClientGone),
        }
    }

    /// Applies the update and re-decodes the last frame with it; the inner result says whether
    /// it was applied (or why not, naming the field), for whoever sent it.
    async fn update_prompts(
        &mut self,
        update: PromptUpdate,
        received_at: Instant,
        frames_dropped: u64,
    ) -> Result<Result<Applied, String>, Stop> {
        if let Err(reason) = self.processor.apply(update) {
            self.event(EventKind::Rejected, reason.clone()).await?;
            return Ok(Err(reason));
        }
        let prompts = self.processor.prompts();
        let applied = Applied { revision: prompts.revision(), objects: prompts.len() };
        self.event(EventKind::PromptsApplied, format!("revision {}, {} objects", applied.revision, applied.objects)).await?;
        if let Some(frame) = self.processor.last_frame() {
            self.process(frame, Some(received_at), frames_dropped).await?;
        }
        Ok(Ok(applied))
    }

    /// Decodes every object on `frame` and sends the result (see `FrameProcessor::process`).
    async fn process(&mut self, frame: Arc<EncodedFrame>, update: Option<Instant>, frames_dropped: u64) -> Result<(), Stop> {
        let Some(outcome) = self.processor.process(frame, update, frames_dropped).await? else { return Ok(()) };
        metrics::counter!(STREAM_RESULTS).increment(1);
        self.send(SessionOutput::Result(Box::new(outcome))).await
    }
}

/// Resolves once the server begins shutting down.
async fn closed(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|&c| c).await;
}
