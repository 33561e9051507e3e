//! The one place where errors of every layer become gRPC statuses.

use thiserror::Error;
use tonic::Status;

use crate::engine::EngineError;
use crate::mask::MaskError;
use crate::model::{ModelError, OutsideImage};
use crate::pipeline::PipelineError;
use crate::session::{HubError, SessionError};
use crate::video::ImageError;

#[derive(Debug, Error)]
pub enum ApiError {
    /// A request field is wrong; `field` is its path, e.g. `objects[1].points[0].x`.
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// A session could not apply a message; its text already names the field.
    #[error("{0}")]
    Rejected(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    ResourceExhausted(String),
    /// A concurrency limit is reached; the client should retry after the hinted delay.
    #[error("{what} limit of {limit} reached; retry in about {retry_after_ms} ms")]
    Overloaded { what: &'static str, limit: usize, retry_after_ms: u64 },
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument { field: field.into(), reason: reason.into() }
    }
}

impl From<ImageError> for ApiError {
    fn from(e: ImageError) -> Self {
        match e {
            ImageError::Missing => Self::invalid("image", "required"),
            ImageError::Undecodable(detail) => {
                Self::invalid("image.encoded", format!("not a decodable JPEG, PNG, BMP or WebP image ({detail})"))
            }
            ImageError::InvalidRaw { field, reason } => Self::invalid(format!("image.raw.{field}"), reason),
            ImageError::TooManyBytes { .. } | ImageError::TooManyPixels { .. } => Self::ResourceExhausted(e.to_string()),
            ImageError::OpenCv(e) => Self::Internal(format!("image conversion failed: {e}")),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotReady | EngineError::Stopped | EngineError::LoadFailed(_) => Self::Unavailable(e.to_string()),
            EngineError::QueueFull(..) => Self::ResourceExhausted(format!("{e}; retry later")),
            EngineError::Model(e) => e.into(),
        }
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> Self {
        match e {
            HubError::NotFound(_) => Self::NotFound(format!("start.source_name: {e}")),
            HubError::Start { .. } => Self::Unavailable(e.to_string()),
        }
    }
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::OutOfMemory(_) => {
                Self::ResourceExhausted(format!("{e}; retry with fewer objects, a smaller image or later, when other work has finished"))
            }
            e => Self::Internal(format!("model: {e}")),
        }
    }
}

impl From<OutsideImage> for ApiError {
    fn from(e: OutsideImage) -> Self {
        Self::InvalidArgument { field: e.field, reason: e.reason }
    }
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Engine(e) => e.into(),
            PipelineError::Model(e) => e.into(),
            PipelineError::Mask(e) => e.into(),
            PipelineError::Image(e) => e.into(),
            PipelineError::Worker(_) | PipelineError::LowResMissing | PipelineError::Preview(_) => Self::Internal(e.to_string()),
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Pipeline(e) => e.into(),
            SessionError::ShuttingDown | SessionError::Moved(_) => Self::Unavailable(e.to_string()),
        }
    }
}

impl From<MaskError> for ApiError {
    fn from(e: MaskError) -> Self {
        Self::Internal(format!("mask encoding: {e}"))
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        let message = e.to_string();
        match e {
            ApiError::InvalidArgument { .. } | ApiError::Rejected(_) => Status::invalid_argument(message),
            ApiError::NotFound(_) => Status::not_found(message),
            ApiError::PermissionDenied(_) => Status::permission_denied(message),
            ApiError::ResourceExhausted(_) => Status::resource_exhausted(message),
            ApiError::Overloaded { what, retry_after_ms, .. } => {
                metrics::counter!(crate::telemetry::metrics::REQUESTS_REFUSED, "limit" => what).increment(1);
                let mut status = Status::resource_exhausted(message);
                status.metadata_mut().insert("retry-after-ms", retry_after_ms.into());
                status
            }
            ApiError::Unavailable(_) => Status::unavailable(message),
            ApiError::Internal(_) => {
                tracing::error!(error = %message, "internal error");
                Status::internal(message)
            }
        }
    }
}

/// tonic reports a message over `--max-message-bytes` as OUT_OF_RANGE; the gRPC convention (and
/// our contract) for a size limit is RESOURCE_EXHAUSTED, with the flag that sets the limit
/// named. Unary calls are rewritten on the way out by a layer (`layers.rs`), streams here.
pub fn transport_status(status: Status) -> Status {
    if status.code() == tonic::Code::OutOfRange && status.message().contains(TOO_LARGE) {
        Status::resource_exhausted(format!("{OVERSIZED_PREFIX}: {}", status.message()))
    } else {
        status
    }
}

/// How tonic words a message over the size limit.
pub(super) const TOO_LARGE: &str = "decoded message length too large";
/// How a rewritten status names the limit.
pub(super) const OVERSIZED_PREFIX: &str = "request message too large (--max-message-bytes)";
