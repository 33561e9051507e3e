//! Capture: turning what clients send and what sources produce into RGB frames.

pub mod allowlist;
pub mod config;
mod grabber;
mod image;
mod pacing;
pub mod preview;
pub mod rtsp;
mod uri;

pub use allowlist::UriAllowlist;
pub use config::{Backoff, SourceConfig, SourceSpec, load_sources};
pub use grabber::{Grabber, RawFrame, SourceEvent, SourceEventKind, SourceState, SourceStatus};
pub use image::{ImageError, ImageLimits, ImagePayload, PixelFormat, decode_image};
pub use rtsp::RtspTransport;
pub use uri::{redact_userinfo, without_userinfo};
