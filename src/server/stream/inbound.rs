//! Reads a stream's inbound messages on its own task: prompt updates go to the session in
//! order, validated; client frames go into the session's latest-frame slot; anything that
//! cannot be applied becomes a rejection the session reports.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use super::super::convert;
use super::super::status::transport_status;
use super::super::validate::{self, PromptLimits};
use crate::proto::{self, stream_request::Msg};
use crate::session::{ClientFrame, FrameSlot, SessionInput};

/// Forwards until the client half-closes (the session's inputs then close) or the session is
/// gone. When the transport fails (e.g. a message over the size limit) the status goes to
/// `failure` and the session is told to stop: the stream ends with that status.
pub async fn read(
    mut stream: tonic::Streaming<proto::StreamRequest>,
    to_session: mpsc::Sender<SessionInput>,
    frames: Option<Arc<FrameSlot>>,
    limits: PromptLimits,
    failure: oneshot::Sender<Status>,
) {
    loop {
        let message = match stream.message().await {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(status) => {
                let _ = failure.send(transport_status(status));
                let _ = to_session.send(SessionInput::Abort).await;
                break;
            }
        };
        let input = match (message.msg, &frames) {
            (Some(Msg::Prompts(update)), _) => match validate::prompt_update(update, &limits) {
                Ok(update) => SessionInput::Prompts { update, received_at: Instant::now(), reply: None },
                Err(e) => SessionInput::Rejected(e.to_string()),
            },
            (Some(Msg::Frame(frame)), Some(slot)) => {
                slot.put(ClientFrame {
                    image: convert::image_payload(frame.image),
                    frame_id: frame.frame_id,
                    timestamp_us: frame.timestamp_us,
                    received_at: Instant::now(),
                });
                continue;
            }
            (Some(Msg::Frame(_)), None) => SessionInput::Rejected(
                "frame: this session reads a server-side source; frames are only accepted with start.client_frames".into(),
            ),
            (Some(Msg::Start(_)), _) => SessionInput::Rejected("start: the stream has already started".into()),
            (None, _) => SessionInput::Rejected("msg: empty StreamRequest".into()),
        };
        if to_session.send(input).await.is_err() {
            break;
        }
    }
    if let Some(slot) = frames {
        // Wakes a client-frames session so it can finish once the last frame is answered.
        slot.wake();
    }
}
