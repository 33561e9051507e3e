//! The `samstream.v1.Segmenter` service.

use std::sync::Arc;
use std::time::Instant;

use opencv::prelude::*;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::results::object_masks;
use super::status::ApiError;
use super::validate::{self, PromptLimits};
use crate::config::ServeConfig;
use crate::engine::{Engine, EngineState};
use crate::model::prompt::PromptTokens;
use crate::model::{Manifest, Preprocessor};
use crate::proto;
use crate::telemetry::StageTimings;
use crate::video::{ImageLimits, decode_image};

pub struct Segmenter {
    engine: Engine,
    manifest: Arc<Manifest>,
    preprocessor: Preprocessor,
    image_limits: ImageLimits,
    prompt_limits: PromptLimits,
    onnxruntime_version: String,
}

impl Segmenter {
    pub fn new(config: &ServeConfig, engine: Engine, manifest: Arc<Manifest>) -> Self {
        Self {
            engine,
            manifest,
            preprocessor: Preprocessor::new(config.resize),
            image_limits: config.image_limits(),
            prompt_limits: PromptLimits { max_objects: config.max_objects, max_points_per_object: config.max_points_per_object },
            onnxruntime_version: crate::model::onnxruntime_version(&config.ort_lib),
        }
    }

    async fn segment(&self, request: proto::SegmentRequest) -> Result<proto::SegmentResponse, ApiError> {
        let started = Instant::now();
        // Refuse at once while the model loads, before paying for the image decode.
        self.engine.ensure_ready()?;
        let mut timings = StageTimings::default();
        let options = validate::mask_options(request.mask_options.as_ref())?;
        if request.objects.is_empty() {
            return Err(ApiError::invalid("objects", "at least one object is required"));
        }
        let prompts = validate::object_prompts("objects", &request.objects, &self.prompt_limits)?;
        let (image_limits, preprocessor) = (self.image_limits, self.preprocessor);
        let (prompts, image, capture, preprocess) = blocking(move || {
            let t = Instant::now();
            let rgb = decode_image(request.image.as_ref(), &image_limits)?;
            let capture = t.elapsed();
            validate::prompts_inside("objects", &prompts, rgb.cols() as usize, rgb.rows() as usize)?;
            let t = Instant::now();
            let image = preprocessor.run(&rgb)?;
            Ok((prompts, image, capture, t.elapsed()))
        })
        .instrument(tracing::debug_span!("capture_and_preprocess"))
        .await?;
        (timings.capture, timings.preprocess) = (capture, preprocess);

        let geometry = image.geometry;
        let tokens = prompts.iter().map(|p| PromptTokens::new(p, &geometry)).collect();
        let encoded = self.engine.encode(image).await?;
        let decoded = self.engine.decode(encoded.embedding, tokens).await?;
        (timings.queue, timings.encoder, timings.decoder) = (encoded.queue + decoded.queue, encoded.encoder, decoded.decoder);

        let t = Instant::now();
        let ids: Vec<u32> = prompts.iter().map(|p| p.object_id).collect();
        let objects = blocking(move || object_masks(&decoded.decoded, &geometry, &ids, options))
            .instrument(tracing::debug_span!("postprocess"))
            .await?;
        timings.postprocess = t.elapsed();
        timings.total = started.elapsed();
        timings.record(&tracing::Span::current());
        Ok(proto::SegmentResponse {
            width: geometry.width as u32,
            height: geometry.height as u32,
            objects,
            timing: Some(timings.to_proto()),
        })
    }

    fn model_info(&self) -> proto::ModelInfo {
        let execution_provider = match &*self.engine.state().borrow() {
            EngineState::Ready { execution_provider } => execution_provider.clone(),
            EngineState::Loading => "loading".into(),
            EngineState::Failed(reason) => format!("failed: {reason}"),
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
        }
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
        let span = tracing::info_span!(
            "segment",
            objects = request.get_ref().objects.len(),
            capture_us = tracing::field::Empty,
            preprocess_us = tracing::field::Empty,
            queue_us = tracing::field::Empty,
            encoder_us = tracing::field::Empty,
            decoder_us = tracing::field::Empty,
            postprocess_us = tracing::field::Empty,
            total_us = tracing::field::Empty,
        );
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
        _request: Request<tonic::Streaming<proto::StreamRequest>>,
    ) -> Result<Response<Self::StreamSegmentStream>, Status> {
        Err(ApiError::Unimplemented("StreamSegment is not implemented yet".into()).into())
    }

    async fn list_sources(&self, _request: Request<proto::ListSourcesRequest>) -> Result<Response<proto::ListSourcesResponse>, Status> {
        Ok(Response::new(proto::ListSourcesResponse { sources: Vec::new() }))
    }

    async fn get_model_info(&self, _request: Request<proto::GetModelInfoRequest>) -> Result<Response<proto::ModelInfo>, Status> {
        Ok(Response::new(self.model_info()))
    }
}
