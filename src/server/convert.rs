//! Between the wire and the domain: messages in, domain types out, and back. Validation that
//! can refuse a request lives in `validate`; these conversions cannot fail.

use crate::engine::EngineState;
use crate::mask::{EncodedMask, MaskData, MaskFormat, PixelBox};
use crate::model::Manifest;
use crate::model::everything::crops::CropBox;
use crate::pipeline::{AutoMask, CropReport, Everything, ObjectResult, SegmentedImage};
use crate::proto;
use crate::session::{EventKind, FrameOutcome, SessionEvent, SessionOutput, SourceInfo};
use crate::video::{ImagePayload, PixelFormat, SourceSpec, SourceStatus};

/// The image of a message, or `None` when it carries none (the decoder says which field).
pub fn image_payload(image: Option<proto::Image>) -> Option<ImagePayload> {
    match image?.kind? {
        proto::image::Kind::Encoded(bytes) => Some(ImagePayload::Encoded(bytes)),
        proto::image::Kind::Raw(raw) => {
            let format = match proto::PixelFormat::try_from(raw.format) {
                Ok(proto::PixelFormat::Unspecified) => PixelFormat::Unspecified,
                Ok(proto::PixelFormat::Rgb8) => PixelFormat::Rgb8,
                Ok(proto::PixelFormat::Bgr8) => PixelFormat::Bgr8,
                Ok(proto::PixelFormat::Gray8) => PixelFormat::Gray8,
                Err(_) => PixelFormat::Unknown(raw.format),
            };
            Some(ImagePayload::Raw { width: raw.width, height: raw.height, format, data: raw.data })
        }
    }
}

pub fn mask_format(format: proto::MaskFormat) -> MaskFormat {
    match format {
        proto::MaskFormat::Unspecified | proto::MaskFormat::CocoRle => MaskFormat::CocoRle,
        proto::MaskFormat::Png => MaskFormat::Png,
        proto::MaskFormat::Polygons => MaskFormat::Polygons,
    }
}

pub fn mask(mask: EncodedMask) -> proto::Mask {
    use proto::mask::Data;
    let data = match mask.data {
        MaskData::CocoRle(rle) => Data::CocoRle(proto::CocoRle { size: rle.size.to_vec(), counts: rle.counts }),
        MaskData::Png(png) => Data::Png(png),
        MaskData::Polygons(polygons) => {
            Data::Polygons(proto::Polygons { polygons: polygons.into_iter().map(|xy| proto::Polygon { xy }).collect() })
        }
    };
    proto::Mask { width: mask.width, height: mask.height, data: Some(data) }
}

pub fn pixel_box(b: PixelBox) -> proto::Box {
    proto::Box { x0: b.x0, y0: b.y0, x1: b.x1, y1: b.y1 }
}

pub fn object_mask(object: ObjectResult) -> proto::ObjectMask {
    proto::ObjectMask {
        object_id: object.object_id,
        mask: Some(mask(object.mask)),
        score: object.score,
        bbox: Some(pixel_box(object.bbox)),
        area: object.area,
        candidates: object.candidates.into_iter().map(|(m, score)| proto::MaskCandidate { mask: Some(mask(m)), score }).collect(),
    }
}

pub fn segment_response(segmented: SegmentedImage) -> proto::SegmentResponse {
    proto::SegmentResponse {
        width: segmented.geometry.width as u32,
        height: segmented.geometry.height as u32,
        objects: segmented.objects.into_iter().map(object_mask).collect(),
        timing: Some(segmented.timings.to_proto()),
    }
}

fn crop_box(crop: &CropBox) -> proto::Box {
    proto::Box { x0: crop.x0 as f32, y0: crop.y0 as f32, x1: crop.x1 as f32, y1: crop.y1 as f32 }
}

pub fn auto_mask(m: AutoMask, object_id: u32) -> proto::AutoMask {
    proto::AutoMask {
        mask: Some(mask(m.mask)),
        bbox: Some(pixel_box(m.bbox)),
        area: m.area,
        predicted_iou: m.predicted_iou,
        stability_score: m.stability_score,
        point: Some(proto::Point { x: m.point[0] as f32, y: m.point[1] as f32, label: proto::PointLabel::Positive as i32 }),
        crop_box: Some(crop_box(&m.crop)),
        object_id,
    }
}

fn crop_report(r: CropReport) -> proto::CropReport {
    let us = |d: std::time::Duration| d.as_micros() as u64;
    proto::CropReport {
        crop_box: Some(crop_box(&r.crop)),
        layer: r.crop.layer as u32,
        points: r.points as u32,
        passed_iou: r.passed_iou as u32,
        passed_stability: r.passed_stability as u32,
        kept: r.kept as u32,
        encoder_us: us(r.encoder),
        decoder_us: us(r.decoder),
        postprocess_us: us(r.postprocess),
    }
}

pub fn everything_response(everything: Everything) -> proto::SegmentEverythingResponse {
    proto::SegmentEverythingResponse {
        masks: everything.masks.into_iter().map(|m| auto_mask(m, 0)).collect(),
        image_width: everything.width as u32,
        image_height: everything.height as u32,
        timing: Some(everything.timings.to_proto()),
        crops: everything.crops.into_iter().map(crop_report).collect(),
    }
}

pub fn frame_result(outcome: FrameOutcome) -> proto::FrameResult {
    proto::FrameResult {
        frame_id: outcome.frame_id,
        timestamp_us: outcome.timestamp_us,
        width: outcome.width,
        height: outcome.height,
        objects: outcome.objects.into_iter().map(object_mask).collect(),
        timing: Some(outcome.timings.to_proto()),
        prompt_revision: outcome.prompt_revision,
        frames_dropped: outcome.frames_dropped,
        auto_ran: outcome.auto.is_some(),
        auto_removed: outcome.auto.as_ref().map(|a| a.removed.clone()).unwrap_or_default(),
        auto_timing: outcome.auto.as_ref().map(|a| a.timings.to_proto()),
        auto_masks: outcome.auto.map(|a| a.masks.into_iter().map(|(m, id)| auto_mask(m, id)).collect()).unwrap_or_default(),
        preview: outcome.preview.map(|p| proto::PreviewFrame { jpeg: p.jpeg.clone(), width: p.width, height: p.height }),
    }
}

pub fn event(event: SessionEvent) -> proto::StreamEvent {
    let kind = match event.kind {
        EventKind::Started => proto::EventKind::Started,
        EventKind::SourceConnected => proto::EventKind::SourceConnected,
        EventKind::SourceLost => proto::EventKind::SourceLost,
        EventKind::SourceReconnecting => proto::EventKind::SourceReconnecting,
        EventKind::SourceEnded => proto::EventKind::SourceEnded,
        EventKind::PromptsApplied => proto::EventKind::PromptsApplied,
        EventKind::Rejected => proto::EventKind::Rejected,
        EventKind::ShuttingDown => proto::EventKind::ShuttingDown,
        EventKind::FramesSkipped => proto::EventKind::FramesSkipped,
        EventKind::SourceMoved => proto::EventKind::SourceMoved,
        EventKind::Heartbeat => proto::EventKind::Heartbeat,
    };
    proto::StreamEvent { kind: kind as i32, message: event.message, session_id: String::new() }
}

pub fn stream_response(output: SessionOutput) -> proto::StreamResponse {
    use proto::stream_response::Msg;
    let msg = match output {
        SessionOutput::Result(outcome) => Msg::Result(frame_result(*outcome)),
        SessionOutput::Event(e) => Msg::Event(event(e)),
    };
    proto::StreamResponse { msg: Some(msg) }
}

pub fn source_info(source: SourceInfo) -> proto::SourceInfo {
    let kind = match source.spec {
        SourceSpec::File { .. } => proto::SourceKind::File,
        SourceSpec::Camera { .. } => proto::SourceKind::Camera,
        SourceSpec::Rtsp { .. } => proto::SourceKind::Rtsp,
        SourceSpec::Network { .. } => proto::SourceKind::Network,
        SourceSpec::Gstreamer { .. } => proto::SourceKind::Gstreamer,
    };
    let status = match source.state.status {
        SourceStatus::Idle => proto::SourceStatus::Idle,
        SourceStatus::Connecting => proto::SourceStatus::Connecting,
        SourceStatus::Connected => proto::SourceStatus::Connected,
        SourceStatus::Reconnecting => proto::SourceStatus::Reconnecting,
        SourceStatus::Ended => proto::SourceStatus::Ended,
        SourceStatus::Failed => proto::SourceStatus::Failed,
    };
    proto::SourceInfo {
        location: source.spec.describe(),
        name: source.name,
        kind: kind as i32,
        status: status as i32,
        width: source.state.width,
        height: source.state.height,
        fps: source.state.fps,
    }
}

/// GetModelInfo: the manifest's provenance and files, and what the model runs on (`loading`
/// or `failed: ...` in place of the provider until it is ready).
pub fn model_info(manifest: &Manifest, state: &EngineState, onnxruntime_version: &str) -> proto::ModelInfo {
    let (execution_provider, data_path, precision, max_batch) = match state {
        EngineState::Ready(r) => {
            (r.backend.provider.to_string(), r.backend.data_path.to_string(), r.backend.precision.to_string(), r.max_batch as u32)
        }
        EngineState::Loading => ("loading".into(), String::new(), String::new(), 0),
        EngineState::Failed(reason) => (format!("failed: {reason}"), String::new(), String::new(), 0),
    };
    proto::ModelInfo {
        name: manifest.model.clone(),
        provenance: manifest.provenance.kind.clone(),
        meaningful_masks: manifest.provenance.meaningful_masks,
        provenance_detail: manifest.provenance_detail(),
        input_size: manifest.image_size as u32,
        execution_provider,
        files: manifest
            .files
            .iter()
            .map(|(name, f)| proto::ModelFile { name: name.clone(), sha256: f.sha256.clone(), bytes: f.bytes })
            .collect(),
        onnxruntime_version: onnxruntime_version.to_string(),
        data_path,
        precision,
        encoder_max_batch: max_batch,
        checkpoint_sha256: manifest.provenance.checkpoint_sha256.clone().unwrap_or_default(),
        checkpoint_url: manifest.provenance.checkpoint_url.clone().unwrap_or_default(),
    }
}
