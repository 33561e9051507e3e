//! Live sessions in domain terms: shared server-side sources (`hub`, with one encoder `pump`
//! per running source), the latest-frame slot for frames clients push, a session's prompts and
//! tracking, and the session loop (`runner`) that takes frames from its `feed`, turns them and
//! prompt updates into results (`process`) and sends them with its events. The transport
//! adapts gRPC streams to `io`'s inputs and outputs.

mod auto_ids;
mod client_frames;
mod config;
mod feed;
mod frame_slot;
mod heartbeat;
pub mod hub;
mod io;
mod process;
mod prompts;
mod pump;
mod registry;
mod runner;
mod source;
pub mod tracking;

pub use config::{AutoMode, PreviewRequest, SessionConfig};
pub use frame_slot::FrameSlot;
pub use hub::{HubError, SourceHub, SourceInfo, Subscription};
pub use io::{
    Applied, AutoOutcome, ClientFrame, EventKind, FrameOutcome, PromptUpdate, SessionError, SessionEvent, SessionInput, SessionOutput,
};
pub use registry::{Registration, SessionRegistry, Steering};
pub use runner::{Outbound, SessionSource, run_session};
