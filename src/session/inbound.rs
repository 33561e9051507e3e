//! Reads a stream's inbound messages on its own task: prompt updates go to the session in
//! order; client frames go into a one-frame slot where a newer frame replaces an unprocessed
//! one (latest frame wins, the replaced one is counted as dropped).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{Notify, mpsc};
use tonic::Status;

use super::client_frames::Taken;
use crate::proto::{self, stream_request::Msg};

pub enum Inbound {
    Prompts(proto::PromptUpdate, Instant),
    /// A message that cannot be applied; the text names the field.
    Rejected(String),
    /// The transport failed (e.g. a message over the size limit); the stream ends with it.
    Failed(Status),
}

pub struct PendingFrame {
    pub frame: proto::Frame,
    pub received_at: Instant,
}

/// The latest client frame not yet taken by the session, and how many were replaced unseen.
#[derive(Default)]
pub struct FrameSlot {
    state: Mutex<SlotState>,
    pub ready: Notify,
}

#[derive(Default)]
struct SlotState {
    pending: Option<PendingFrame>,
    dropped: u64,
}

impl FrameSlot {
    fn put(&self, frame: PendingFrame) {
        let mut state = self.state.lock().expect("slot lock");
        if state.pending.replace(frame).is_some() {
            state.dropped += 1;
        }
        drop(state);
        self.ready.notify_one();
    }

    /// The pending frame with the count of frames dropped before it, read together so that a
    /// frame replaced after this one is never counted against it.
    pub fn take(&self) -> Option<Taken> {
        let mut state = self.state.lock().expect("slot lock");
        let dropped_before = state.dropped;
        state.pending.take().map(|frame| Taken { frame, dropped_before })
    }

    pub fn is_empty(&self) -> bool {
        self.state.lock().expect("slot lock").pending.is_none()
    }
}

/// Forwards until the client half-closes (the channel then closes) or the session is gone.
pub async fn read(mut stream: tonic::Streaming<proto::StreamRequest>, to_session: mpsc::Sender<Inbound>, frames: Option<Arc<FrameSlot>>) {
    loop {
        let message = match stream.message().await {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(status) => {
                let _ = to_session.send(Inbound::Failed(super::transport_status(status))).await;
                break;
            }
        };
        let forwarded = match (message.msg, &frames) {
            (Some(Msg::Prompts(update)), _) => Inbound::Prompts(update, Instant::now()),
            (Some(Msg::Frame(frame)), Some(slot)) => {
                slot.put(PendingFrame { frame, received_at: Instant::now() });
                continue;
            }
            (Some(Msg::Frame(_)), None) => Inbound::Rejected(
                "frame: this session reads a server-side source; frames are only accepted with start.client_frames".into(),
            ),
            (Some(Msg::Start(_)), _) => Inbound::Rejected("start: the stream has already started".into()),
            (None, _) => Inbound::Rejected("msg: empty StreamRequest".into()),
        };
        if to_session.send(forwarded).await.is_err() {
            break;
        }
    }
    if let Some(slot) = frames {
        // Wakes a client-frames session so it can finish once the last frame is processed.
        slot.ready.notify_one();
    }
}
