//! Streaming sessions: shared server-side sources (`hub`), a session's prompts and tracking,
//! and the session loop that turns frames and prompt updates into `FrameResult`s.

mod client_frames;
pub mod hub;
mod inbound;
mod prompts;
mod stream;
pub mod tracking;

pub use hub::{EncodedFrame, HubError, SourceHub, Subscription};
pub use stream::{SessionConfig, SessionSource, run_session};

/// tonic reports an oversized inbound message as OUT_OF_RANGE; our contract says
/// RESOURCE_EXHAUSTED for size limits.
pub fn transport_status(status: tonic::Status) -> tonic::Status {
    if status.code() == tonic::Code::OutOfRange && status.message().contains("message length too large") {
        tonic::Status::resource_exhausted(format!("request message too large (--max-message-bytes): {}", status.message()))
    } else {
        status
    }
}
