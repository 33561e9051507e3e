//! What flows into and out of a session, in domain terms: the transport turns a client's
//! messages into `SessionInput`s and `SessionOutput`s into messages.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::model::ObjectPrompt;
use crate::pipeline::{AutoMask, ObjectResult, PipelineError};
use crate::telemetry::StageTimings;
use crate::video::ImagePayload;
use crate::video::preview::Preview;

/// A prompt update whose prompts are already well-formed (checked against the image later).
#[derive(Debug, Clone, Default)]
pub struct PromptUpdate {
    pub upsert: Vec<ObjectPrompt>,
    pub remove: Vec<u32>,
    pub clear: bool,
    pub revision: u64,
}

/// A frame the client pushed (client-frames sessions).
pub struct ClientFrame {
    pub image: Option<ImagePayload>,
    pub frame_id: u64,
    pub timestamp_us: i64,
    pub received_at: Instant,
}

pub enum SessionInput {
    /// `reply`, when set, hears whether the update was applied (after PROMPTS_APPLIED is sent).
    Prompts { update: PromptUpdate, received_at: Instant, reply: Option<oneshot::Sender<Result<Applied, String>>> },
    /// A message that cannot be applied; the text names the field. The session goes on.
    Rejected(String),
    /// The client's stream broke; the session ends and the transport reports why.
    Abort,
}

/// A prompt update the session applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub revision: u64,
    pub objects: usize,
}

pub enum SessionOutput {
    /// Boxed: a frame's outcome is far larger than an event.
    Result(Box<FrameOutcome>),
    Event(SessionEvent),
}

/// One processed frame's answer.
pub struct FrameOutcome {
    pub frame_id: u64,
    pub timestamp_us: i64,
    pub width: u32,
    pub height: u32,
    pub objects: Vec<ObjectResult>,
    pub timings: StageTimings,
    /// The revision of the last prompt update this result reflects.
    pub prompt_revision: u64,
    /// Frames skipped since the stream started (latest frame wins).
    pub frames_dropped: u64,
    /// The automatic mode's answer, on the frames it segmented.
    pub auto: Option<AutoOutcome>,
    /// The frame's JPEG, when the session asked for previews and this result is on their cadence.
    pub preview: Option<Arc<Preview>>,
}

/// Segment everything on a stream's frame.
pub struct AutoOutcome {
    /// Every mask with its id (0 without tracking).
    pub masks: Vec<(AutoMask, u32)>,
    /// With tracking: ids of the previous segmented frame's masks that are gone.
    pub removed: Vec<u32>,
    pub timings: StageTimings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Started,
    SourceConnected,
    SourceLost,
    SourceReconnecting,
    SourceEnded,
    PromptsApplied,
    Rejected,
    ShuttingDown,
    FramesSkipped,
    /// Another replica serves the source now; the stream ends (UNAVAILABLE) right after.
    SourceMoved,
    /// Nothing else was sent for a while: keeps proxies from cutting an idle stream.
    Heartbeat,
}

#[derive(Debug, Clone)]
pub struct SessionEvent {
    pub kind: EventKind,
    pub message: String,
}

/// Why a session ended early; the transport turns it into the stream's final status.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("the server is shutting down; reconnect to another instance")]
    ShuttingDown,
    /// Reconnect (through the proxy) to follow the source.
    #[error("{0}")]
    Moved(String),
}
