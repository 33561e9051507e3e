//! The gRPC side of sessions. A StreamStart (StreamSegment's first message, or OpenSession's
//! request) is validated into a session's source and configuration; the client's later
//! messages (`inbound`) and UpdateSession calls by the session's id become session inputs, the
//! session's outputs become messages (`outbound`), and the stream ends with the status of
//! whatever ended it.

mod inbound;
mod outbound;
mod steer;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tonic::Status;
use tracing::Instrument;

pub use outbound::ResponseStream;

use super::limit::Limit;
use super::status::{ApiError, transport_status};
use super::validate::{self, PromptLimits};
use crate::cluster::{AFFINITY_HEADER, start_key};
use crate::pipeline::Pipeline;
use crate::proto;
use crate::session::{
    AutoMode, FrameSlot, HubError, Registration, SessionConfig, SessionInput, SessionRegistry, SessionSource, SourceHub, run_session,
};
use crate::telemetry::metrics::AFFINITY_HEADER_MISSING;
use crate::video::{ImageLimits, UriAllowlist};

/// Session inputs waiting for the session (prompt updates, rejections); frames wait in a slot.
const INPUT_CAPACITY: usize = 16;
/// A few outputs of headroom; beyond that a slow reader holds the session back and frames are
/// skipped at the source instead of queueing here.
const OUTPUT_CAPACITY: usize = 4;

/// What starting a stream needs from the server.
pub struct Streams {
    pub pipeline: Pipeline,
    pub hub: Arc<SourceHub>,
    pub allowlist: UriAllowlist,
    pub limit: Limit,
    pub closing: watch::Receiver<bool>,
    pub prompt_limits: PromptLimits,
    pub image_limits: ImageLimits,
    pub max_everything_prompts: usize,
    /// This replica as the proxy knows it (None: a single server).
    pub replica: Option<String>,
    pub heartbeat: Option<Duration>,
    /// Running sessions by id (UpdateSession).
    pub sessions: Arc<SessionRegistry>,
}

/// A validated StreamStart: everything a session needs, its stream slot taken.
struct Prepared {
    source: SessionSource,
    config: SessionConfig,
    source_key: Option<String>,
    permit: tokio::sync::OwnedSemaphorePermit,
}

impl Streams {
    /// StreamSegment: validates the stream's first message (and the affinity header a proxy
    /// routed it by, `affinity`), resolves its source and starts the session; the client's later
    /// messages are its inputs.
    pub async fn start(
        &self,
        affinity: Option<&tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
        mut requests: tonic::Streaming<proto::StreamRequest>,
    ) -> Result<ResponseStream, Status> {
        use proto::stream_request::Msg;
        let first = requests.message().await.map_err(transport_status)?;
        let start = match first.and_then(|m| m.msg) {
            Some(Msg::Start(start)) => start,
            None => return Err(ApiError::invalid("start", "the stream ended before its StreamStart").into()),
            Some(_) => return Err(ApiError::invalid("start", "the first message must be StreamStart").into()),
        };
        let prepared = self.prepare(affinity, start, "start.")?;
        let slot = match &prepared.source {
            SessionSource::ClientFrames(slot) => Some(slot.clone()),
            SessionSource::Shared(_) => None,
        };
        let (inputs_tx, inputs) = mpsc::channel(INPUT_CAPACITY);
        // A shared source streams on after the client half-closes: its inputs stay open for
        // steering by id. Client frames finish once the client's stream closes.
        let keep_open = slot.is_none().then(|| inputs_tx.clone());
        let registration = self.sessions.register(&inputs_tx, prepared.source_key.clone());
        let (failure_tx, failure) = oneshot::channel();
        let reader = tokio::spawn(inbound::read(requests, inputs_tx, slot, self.prompt_limits, failure_tx).in_current_span());
        Ok(self.launch(prepared, inputs, registration, keep_open, Some(reader), failure))
    }

    /// OpenSession: the session StreamSegment would run for `start`, steered by its id only.
    pub fn open(
        &self,
        affinity: Option<&tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
        start: proto::StreamStart,
    ) -> Result<ResponseStream, Status> {
        if let Some(proto::stream_start::Source::ClientFrames(_)) = start.source {
            return Err(ApiError::invalid("client_frames", "OpenSession cannot receive frames; push them on StreamSegment").into());
        }
        let prepared = self.prepare(affinity, start, "")?;
        let (inputs_tx, inputs) = mpsc::channel(INPUT_CAPACITY);
        let registration = self.sessions.register(&inputs_tx, prepared.source_key.clone());
        let (_failure_tx, failure) = oneshot::channel();
        Ok(self.launch(prepared, inputs, registration, Some(inputs_tx), None, failure))
    }

    /// The checks and resolution every way into a session shares; `prefix` is the StreamStart's
    /// path in the request (`start.` in StreamSegment, empty in OpenSession).
    fn prepare(
        &self,
        affinity: Option<&tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
        start: proto::StreamStart,
        prefix: &str,
    ) -> Result<Prepared, ApiError> {
        use proto::stream_start::Source;
        let field = |name: &str| format!("{prefix}{name}");
        self.pipeline.engine().ensure_ready()?;
        if *self.closing.borrow() {
            return Err(ApiError::Unavailable("the server is shutting down".into()));
        }
        let permit = self.limit.admit()?;
        let mask_options = validate::mask_options(&field("mask_options"), start.mask_options.as_ref())?;
        if !start.max_fps.is_finite() || start.max_fps < 0.0 {
            return Err(ApiError::invalid(field("max_fps"), format!("must be a finite number >= 0, got {}", start.max_fps)));
        }
        let preview = validate::preview(&field("preview"), start.preview.as_ref())?;
        check_affinity(affinity, &start)?;
        let source_key = start_key(&start);
        let subscribed = |e: HubError| match e {
            HubError::NotFound(_) => ApiError::NotFound(format!("{}: {e}", field("source_name"))),
            e => e.into(),
        };
        let source = match start.source {
            None => return Err(ApiError::invalid(field("source"), "one of source_name, client_frames or uri is required")),
            Some(Source::SourceName(name)) => SessionSource::Shared(self.hub.subscribe(&name, start.max_fps).map_err(subscribed)?),
            Some(Source::ClientFrames(_)) => SessionSource::ClientFrames(Arc::new(FrameSlot::default())),
            Some(Source::Uri(uri)) => {
                self.allowlist.check(&uri).map_err(|reason| ApiError::PermissionDenied(format!("{}: {reason}", field("uri"))))?;
                SessionSource::Shared(self.hub.subscribe_uri(&uri, start.max_fps).map_err(subscribed)?)
            }
        };
        let auto = match &start.auto_mode {
            None => None,
            Some(mode) => {
                let options = validate::everything_options(&field("auto_mode.options"), mode.options.as_ref())?;
                validate::everything_within_limit(&field("auto_mode.options"), &options, self.max_everything_prompts)?;
                Some(AutoMode { options, every: u64::from(mode.every_n_frames.max(1)) })
            }
        };
        let config = SessionConfig {
            mask_options,
            track: start.track,
            auto,
            max_fps: start.max_fps,
            max_objects: self.prompt_limits.max_objects,
            image_limits: self.image_limits,
            closing: self.closing.clone(),
            replica: self.replica.clone(),
            heartbeat: self.heartbeat,
            preview,
        };
        Ok(Prepared { source, config, source_key, permit })
    }

    /// Runs the session on its own task. Its registration, `keep_open` and the stream's slot
    /// live as long as it does; `reader` (the client's messages) is stopped when it ends.
    fn launch(
        &self,
        prepared: Prepared,
        inputs: mpsc::Receiver<SessionInput>,
        registration: Registration,
        keep_open: Option<mpsc::Sender<SessionInput>>,
        reader: Option<tokio::task::JoinHandle<()>>,
        failure: oneshot::Receiver<Status>,
    ) -> ResponseStream {
        let Prepared { source, config, permit, .. } = prepared;
        let (outputs_tx, outputs) = mpsc::channel(OUTPUT_CAPACITY);
        let session_id = registration.id.clone();
        let pipeline = self.pipeline.clone();
        tokio::spawn(
            async move {
                run_session(pipeline, source, config, inputs, outputs_tx).await;
                // Dropping the request stream completes the call even if the client never half-closes.
                if let Some(reader) = reader {
                    reader.abort();
                }
                drop((registration, keep_open, permit));
            }
            .in_current_span(),
        );
        outbound::responses(outputs, failure, session_id)
    }
}

/// A stream that names a server-side source should carry its key in `x-samstream-source`, so
/// that a consistent-hash proxy sends all its viewers to one replica. A header that names
/// another source would put the stream on the wrong replica: refused. A missing one is allowed
/// (a single server needs none) but counted and logged.
fn check_affinity(
    header: Option<&tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    start: &proto::StreamStart,
) -> Result<(), ApiError> {
    let Some(key) = start_key(start) else { return Ok(()) };
    let Some(header) = header else {
        metrics::counter!(AFFINITY_HEADER_MISSING).increment(1);
        tracing::info!(%key, "stream without the {AFFINITY_HEADER} header: behind a consistent-hash proxy its viewers may land on different replicas");
        return Ok(());
    };
    let value = header.to_str().map_err(|_| ApiError::invalid(AFFINITY_HEADER, "is not printable ASCII"))?;
    if value == key {
        Ok(())
    } else {
        Err(ApiError::invalid(
            AFFINITY_HEADER,
            format!("{value:?} does not match the stream's source key {key:?} (the source's name, or its URI without credentials)"),
        ))
    }
}
