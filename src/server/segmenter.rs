//! The `samstream.v1.Segmenter` service: each handler validates, calls the pipeline (or the
//! session layer) once, and turns the answer into messages.

use std::sync::Arc;
use std::time::Instant;

use opencv::prelude::*;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::convert;
use super::limit::Limit;
use super::status::ApiError;
use super::stream::{ResponseStream, Streams};
use super::validate::{self, PromptLimits};
use crate::config::ServeConfig;
use crate::model::Manifest;
use crate::pipeline::{Pipeline, decode_image};
use crate::proto;
use crate::session::{SessionRegistry, SourceHub};
use crate::video::{ImageLimits, UriAllowlist};

pub struct Segmenter {
    pipeline: Pipeline,
    inflight: Limit,
    streams: Streams,
    max_everything_prompts: usize,
    max_message_bytes: usize,
    hub: Arc<SourceHub>,
    manifest: Arc<Manifest>,
    image_limits: ImageLimits,
    prompt_limits: PromptLimits,
    onnxruntime_version: String,
}

impl Segmenter {
    pub fn new(
        config: &ServeConfig,
        pipeline: Pipeline,
        hub: Arc<SourceHub>,
        manifest: Arc<Manifest>,
        closing: tokio::sync::watch::Receiver<bool>,
        replica: Option<String>,
    ) -> Self {
        let image_limits = config.limits.image_limits();
        let prompt_limits = config.limits.prompt_limits();
        let streams = Streams {
            pipeline: pipeline.clone(),
            hub: hub.clone(),
            allowlist: UriAllowlist::new(config.video.allow_uris.clone()),
            limit: Limit::new("stream", config.limits.max_streams),
            closing,
            prompt_limits,
            image_limits,
            max_everything_prompts: config.limits.max_everything_prompts,
            replica,
            heartbeat: (config.stream_heartbeat_secs > 0.0).then(|| std::time::Duration::from_secs_f64(config.stream_heartbeat_secs)),
            sessions: Arc::new(SessionRegistry::default()),
        };
        Self {
            pipeline,
            inflight: Limit::new("in-flight Segment", config.limits.max_inflight),
            streams,
            max_everything_prompts: config.limits.max_everything_prompts,
            max_message_bytes: config.limits.max_message_bytes,
            hub,
            manifest,
            image_limits,
            prompt_limits,
            onnxruntime_version: crate::model::onnxruntime_version(&config.runtime.ort_lib),
        }
    }

    async fn segment(&self, request: proto::SegmentRequest) -> Result<proto::SegmentResponse, ApiError> {
        let started = Instant::now();
        // Refuse at once while the model loads, before paying for the image decode.
        self.pipeline.engine().ensure_ready()?;
        let _permit = self.inflight.admit()?;
        let options = validate::mask_options("mask_options", request.mask_options.as_ref())?;
        if request.objects.is_empty() {
            return Err(ApiError::invalid("objects", "at least one object is required"));
        }
        let prompts = validate::object_prompts("objects", &request.objects, &self.prompt_limits)?;
        let (rgb, capture) = decode_image(convert::image_payload(request.image), self.image_limits).await?;
        validate::prompts_inside("objects", &prompts, rgb.cols() as usize, rgb.rows() as usize)?;
        let segmented = self.pipeline.segment_image(Arc::new(rgb), capture, started, &prompts, options).await?;
        segmented.timings.report(&tracing::Span::current(), "segment");
        Ok(convert::segment_response(segmented))
    }
}

impl Segmenter {
    async fn segment_everything(&self, request: proto::SegmentEverythingRequest) -> Result<proto::SegmentEverythingResponse, ApiError> {
        let started = Instant::now();
        self.pipeline.engine().ensure_ready()?;
        let _permit = self.inflight.admit()?;
        let format = validate::mask_options("mask_options", request.mask_options.as_ref())?.format;
        let options = validate::everything_options("options", request.options.as_ref())?;
        validate::everything_within_limit("options", &options, self.max_everything_prompts)?;
        let (rgb, capture) = decode_image(convert::image_payload(request.image), self.image_limits).await?;
        let everything = self.pipeline.segment_everything(Arc::new(rgb), capture, started, options, format).await?;
        everything.timings.report(&tracing::Span::current(), "everything");
        let response = convert::everything_response(everything);
        let bytes = prost::Message::encoded_len(&response);
        if bytes > self.max_message_bytes {
            return Err(ApiError::ResourceExhausted(format!(
                "the answer ({} masks) takes {bytes} bytes, over the limit of {} (--max-message-bytes); ask for MASK_FORMAT_COCO_RLE or fewer masks",
                response.masks.len(),
                self.max_message_bytes
            )));
        }
        Ok(response)
    }
}

#[tonic::async_trait]
impl proto::segmenter_server::Segmenter for Segmenter {
    async fn segment(&self, request: Request<proto::SegmentRequest>) -> Result<Response<proto::SegmentResponse>, Status> {
        let span = crate::stage_span!("segment", objects = request.get_ref().objects.len());
        self.segment(request.into_inner()).instrument(span).await.map(Response::new).map_err(Status::from)
    }

    type StreamSegmentStream = ResponseStream;

    async fn stream_segment(&self, request: Request<tonic::Streaming<proto::StreamRequest>>) -> Result<Response<ResponseStream>, Status> {
        let affinity = request.metadata().get(crate::cluster::AFFINITY_HEADER).cloned();
        self.streams.start(affinity.as_ref(), request.into_inner()).await.map(Response::new)
    }

    type OpenSessionStream = ResponseStream;

    async fn open_session(&self, request: Request<proto::StreamStart>) -> Result<Response<ResponseStream>, Status> {
        let affinity = request.metadata().get(crate::cluster::AFFINITY_HEADER).cloned();
        self.streams.open(affinity.as_ref(), request.into_inner()).map(Response::new)
    }

    async fn update_session(
        &self,
        request: Request<proto::UpdateSessionRequest>,
    ) -> Result<Response<proto::UpdateSessionResponse>, Status> {
        let affinity = request.metadata().get(crate::cluster::AFFINITY_HEADER).cloned();
        self.streams.update(affinity.as_ref(), request.into_inner()).await.map(Response::new).map_err(Status::from)
    }

    async fn list_sources(&self, _request: Request<proto::ListSourcesRequest>) -> Result<Response<proto::ListSourcesResponse>, Status> {
        let sources = self.hub.list().into_iter().map(convert::source_info).collect();
        Ok(Response::new(proto::ListSourcesResponse { sources }))
    }

    async fn segment_everything(
        &self,
        request: Request<proto::SegmentEverythingRequest>,
    ) -> Result<Response<proto::SegmentEverythingResponse>, Status> {
        let span = crate::stage_span!("everything", points_per_side = request.get_ref().options.as_ref().and_then(|o| o.points_per_side));
        self.segment_everything(request.into_inner()).instrument(span).await.map(Response::new).map_err(Status::from)
    }

    async fn get_model_info(&self, _request: Request<proto::GetModelInfoRequest>) -> Result<Response<proto::ModelInfo>, Status> {
        let state = self.pipeline.engine().state().borrow().clone();
        Ok(Response::new(convert::model_info(&self.manifest, &state, &self.onnxruntime_version)))
    }
}
