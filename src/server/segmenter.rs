//! The `samstream.v1.Segmenter` service.

use std::sync::Arc;
use std::time::Instant;

use opencv::prelude::*;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::status::ApiError;
use super::validate::{self, PromptLimits};
use crate::config::ServeConfig;
use crate::engine::{Engine, EngineState};
use crate::model::prompt::PromptTokens;
use crate::model::{Manifest, MaskRequest};
use crate::proto;
use crate::session::{SessionConfig, SessionSource, SourceHub, run_session};
use crate::telemetry::StageTimings;
use crate::video::{ImageLimits, UriAllowlist, decode_image};

/// Suggested back-off for calls refused by a concurrency limit: about one encoder run here.
const RETRY_AFTER_MS: u64 = 1_000;

pub struct Segmenter {
    engine: Engine,
    inflight: Limit,
    streams: Limit,
    closing: tokio::sync::watch::Receiver<bool>,
    hub: Arc<SourceHub>,
    allowlist: UriAllowlist,
    manifest: Arc<Manifest>,
    image_limits: ImageLimits,
    prompt_limits: PromptLimits,
    onnxruntime_version: String,
}

impl Segmenter {
    pub fn new(
        config: &ServeConfig,
        engine: Engine,
        hub: Arc<SourceHub>,
        manifest: Arc<Manifest>,
        closing: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self {
            engine,
            inflight: Limit::new("in-flight Segment", config.max_inflight),
            streams: Limit::new("stream", config.max_streams),
            closing,
            hub,
            allowlist: UriAllowlist::new(config.allow_uris.clone()),
            manifest,
            image_limits: config.image_limits(),
            prompt_limits: PromptLimits { max_objects: config.max_objects, max_points_per_object: config.max_points_per_object },
            onnxruntime_version: crate::model::onnxruntime_version(&config.ort_lib),
        }
    }

    async fn segment(&self, request: proto::SegmentRequest) -> Result<proto::SegmentResponse, ApiError> {
        let started = Instant::now();
        // Refuse at once while the model loads, before paying for the image decode.
        let preparation = self.engine.preparation()?;
        let _permit = self.inflight.admit()?;
        let mut timings = StageTimings::default();
        let options = validate::mask_options("mask_options", request.mask_options.as_ref())?;
        if request.objects.is_empty() {
            return Err(ApiError::invalid("objects", "at least one object is required"));
        }
        let prompts = validate::object_prompts("objects", &request.objects, &self.prompt_limits)?;
        let image_limits = self.image_limits;
        let (prompts, input, capture, preprocess) = blocking(move || {
            let t = Instant::now();
            let rgb = decode_image(request.image.as_ref(), &image_limits)?;
            let capture = t.elapsed();
            validate::prompts_inside("objects", &prompts, rgb.cols() as usize, rgb.rows() as usize)?;
            let (input, preprocess) = preparation.prepare(Arc::new(rgb))?;
            Ok((prompts, input, capture, preprocess))
        })
        .instrument(tracing::debug_span!("capture_and_preprocess"))
        .await?;
        (timings.capture, timings.preprocess) = (capture, preprocess);

        let geometry = input.geometry();
        let tokens = prompts.iter().map(|p| PromptTokens::new(p, &geometry)).collect();
        let encoded = self.engine.encode(input).await?;
        encoded.record(&mut timings);
        let request = MaskRequest { geometry, multimask: options.multimask, keep_low_res: false };
        let decoded = self.engine.decode(encoded.embedding, tokens, request).await?;
        decoded.record(&mut timings);

        let t = Instant::now();
        let ids: Vec<u32> = prompts.iter().map(|p| p.object_id).collect();
        let objects = blocking(move || Ok(crate::mask::object_masks(&decoded.decoded, &geometry, &ids, options, false)?))
            .instrument(tracing::debug_span!("postprocess"))
            .await?;
        timings.postprocess += t.elapsed();
        timings.total = started.elapsed();
        timings.report(&tracing::Span::current(), "segment");
        metrics::counter!(crate::telemetry::metrics::ENCODER_RUNS, "origin" => "segment").increment(1);
        Ok(proto::SegmentResponse {
            width: geometry.width as u32,
            height: geometry.height as u32,
            objects: objects.into_iter().map(|o| o.message).collect(),
            timing: Some(timings.to_proto()),
        })
    }

    /// Validates the stream's first message and resolves its source; the session runs on.
    async fn start_stream(
        &self,
        mut inbound: tonic::Streaming<proto::StreamRequest>,
    ) -> Result<tokio_stream::wrappers::ReceiverStream<Result<proto::StreamResponse, Status>>, Status> {
        use proto::stream_request::Msg;
        use proto::stream_start::Source;
        let first = inbound.message().await.map_err(crate::session::transport_status)?;
        let start = match first.and_then(|m| m.msg) {
            Some(Msg::Start(start)) => start,
            None => return Err(ApiError::invalid("start", "the stream ended before its StreamStart").into()),
            Some(_) => return Err(ApiError::invalid("start", "the first message must be StreamStart").into()),
        };
        self.engine.ensure_ready().map_err(ApiError::from)?;
        if *self.closing.borrow() {
            return Err(ApiError::Unavailable("the server is shutting down".into()).into());
        }
        let permit = self.streams.admit()?;
        let mask_options = validate::mask_options("start.mask_options", start.mask_options.as_ref())?;
        if !start.max_fps.is_finite() || start.max_fps < 0.0 {
            return Err(ApiError::invalid("start.max_fps", format!("must be a finite number >= 0, got {}", start.max_fps)).into());
        }
        let source = match start.source {
            None => return Err(ApiError::invalid("start.source", "one of source_name, client_frames or uri is required").into()),
            Some(Source::SourceName(name)) => SessionSource::Shared(self.hub.subscribe(&name, start.max_fps).map_err(ApiError::from)?),
            Some(Source::ClientFrames(_)) => SessionSource::ClientFrames,
            Some(Source::Uri(uri)) => {
                self.allowlist.check(&uri).map_err(|reason| ApiError::PermissionDenied(format!("start.uri: {reason}")))?;
                SessionSource::Shared(self.hub.subscribe_uri(&uri, start.max_fps).map_err(ApiError::from)?)
            }
        };
        let config = SessionConfig {
            mask_options,
            track: start.track,
            max_fps: start.max_fps,
            prompt_limits: self.prompt_limits,
            image_limits: self.image_limits,
            closing: self.closing.clone(),
        };
        // A few results of headroom; beyond that a slow reader holds the session back and
        // frames are skipped at the source instead of queueing here.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let engine = self.engine.clone();
        tokio::spawn(async move {
            run_session(engine, source, config, inbound, tx).await;
            drop(permit);
        });
        Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
    }

    fn model_info(&self) -> proto::ModelInfo {
        let (execution_provider, data_path, precision, max_batch) = match &*self.engine.state().borrow() {
            EngineState::Ready(r) => {
                (r.execution_provider.clone(), format!("{:?}", r.data_path).to_lowercase(), r.precision.clone(), r.max_batch as u32)
            }
            EngineState::Loading => ("loading".into(), String::new(), String::new(), 0),
            EngineState::Failed(reason) => (format!("failed: {reason}"), String::new(), String::new(), 0),
        };
        let m = &self.manifest;
        proto::ModelInfo {
            name: m.model.clone(),
            provenance: m.provenance.kind.clone(),
            meaningful_masks: m.provenance.meaningful_masks,
            provenance_detail: m.provenance_detail(),
            input_size: m.image_size as u32,
            execution_provider,
            files: m
                .files
                .iter()
                .map(|(name, f)| proto::ModelFile { name: name.clone(), sha256: f.sha256.clone(), bytes: f.bytes })
                .collect(),
            onnxruntime_version: self.onnxruntime_version.clone(),
            data_path,
            precision,
            encoder_max_batch: max_batch,
        }
    }
}

/// A concurrency cap: calls beyond it are refused at once rather than queued.
struct Limit {
    what: &'static str,
    max: usize,
    permits: Arc<tokio::sync::Semaphore>,
}

impl Limit {
    fn new(what: &'static str, max: usize) -> Self {
        Self { what, max, permits: Arc::new(tokio::sync::Semaphore::new(max)) }
    }

    /// A permit held for the call's lifetime, or RESOURCE_EXHAUSTED with a retry hint.
    fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.permits.clone().try_acquire_owned().map_err(|_| ApiError::Overloaded {
            what: self.what,
            limit: self.max,
            retry_after_ms: RETRY_AFTER_MS,
        })
    }
}

/// CPU-bound work (image decode, resampling, mask encoding) goes to the blocking pool.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work)).await.map_err(|e| ApiError::Internal(format!("worker task failed: {e}")))?
}

#[tonic::async_trait]
impl proto::segmenter_server::Segmenter for Segmenter {
    async fn segment(&self, request: Request<proto::SegmentRequest>) -> Result<Response<proto::SegmentResponse>, Status> {
        let span = crate::stage_span!("segment", objects = request.get_ref().objects.len());
        let result = self.segment(request.into_inner()).instrument(span.clone()).await;
        match &result {
            Ok(_) => span.in_scope(|| tracing::info!("segment done")),
            Err(e) => span.in_scope(|| tracing::info!(error = %e, "segment rejected")),
        }
        result.map(Response::new).map_err(Status::from)
    }

    type StreamSegmentStream = tokio_stream::wrappers::ReceiverStream<Result<proto::StreamResponse, Status>>;

    async fn stream_segment(
        &self,
        request: Request<tonic::Streaming<proto::StreamRequest>>,
    ) -> Result<Response<Self::StreamSegmentStream>, Status> {
        let result = self.start_stream(request.into_inner()).await;
        if let Err(status) = &result {
            tracing::info!(code = ?status.code(), message = status.message(), "stream refused");
        }
        result.map(Response::new)
    }

    async fn list_sources(&self, _request: Request<proto::ListSourcesRequest>) -> Result<Response<proto::ListSourcesResponse>, Status> {
        Ok(Response::new(proto::ListSourcesResponse { sources: self.hub.list() }))
    }

    async fn get_model_info(&self, _request: Request<proto::GetModelInfoRequest>) -> Result<Response<proto::ModelInfo>, Status> {
        Ok(Response::new(self.model_info()))
    }
}
