//! Segment everything, the pipeline's second method: `SamAutomaticMaskGenerator.generate` with
//! samstream's engine. The pipeline drives the model's steps (`model::everything`): one encoder
//! run per crop; per crop, the grid's points through the decoder in batches (each batch's host
//! work overlapping the next batch's decode), each batch's masks kept by the model's filters,
//! the crop's duplicates removed; then the crops merged, and the answer's masks encoded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use opencv::core::{Mat, Rect};
use opencv::prelude::*;

use super::{Pipeline, PipelineError, blocking};
use crate::engine::{EncodedFrame, FrameOrigin};
use crate::mask::{self, CocoRle, EncodedMask, MaskData, MaskFormat};
use crate::model::everything::EverythingOptions;
use crate::model::everything::batch::{BatchKept, Kept, dedupe_crop, keep_batch};
use crate::model::everything::crops::{CropBox, point_grid, points_per_side};
use crate::model::everything::merge::{MergedMask, merge};
use crate::model::everything::runs::MaskRuns;
use crate::model::{MaskOutput, MaskRequest, PromptTokens};
use crate::telemetry::StageTimings;
use crate::telemetry::metrics::ENCODER_RUNS;

/// One mask of the answer.
#[derive(Debug, Clone)]
pub struct AutoMask {
    pub mask: EncodedMask,
    /// XYXY in image pixels, right and bottom exclusive (the API's boxes); zeros when empty.
    pub bbox: mask::PixelBox,
    pub area: u64,
    pub predicted_iou: f32,
    pub stability_score: f32,
    /// The grid point that produced it, in image pixels.
    pub point: [f64; 2],
    pub crop: CropBox,
    /// The mask as runs over the image, for trackers that match masks across frames.
    pub runs: MaskRuns,
}

/// A crop's encoded frame, and whether this work encoded it (the whole image of a stream's
/// frame was encoded for the stream: its stages are not this work's).
struct CropFrame {
    frame: Arc<EncodedFrame>,
    encoded_here: bool,
}

/// What happened in one crop, for the response and the logs.
#[derive(Debug, Clone, Copy)]
pub struct CropReport {
    pub crop: CropBox,
    pub points: usize,
    /// Masks (three per point) whose predicted IoU passed.
    pub passed_iou: usize,
    /// Of those, masks whose stability passed too.
    pub passed_stability: usize,
    /// Left after dropping masks at a crop edge inside the image, and NMS within the crop.
    pub kept: usize,
    pub encoder: Duration,
    pub decoder: Duration,
    pub postprocess: Duration,
}

pub struct Everything {
    pub width: usize,
    pub height: usize,
    pub masks: Vec<AutoMask>,
    pub crops: Vec<CropReport>,
    /// `nms` is the NMS across crops and the small-region pass.
    pub timings: StageTimings,
}

/// Batches of one crop in the decoder while the host works on the one before, when the
/// decoder runs on a GPU; on the CPU the host's work would take cores from the decoder (2-core
/// machine, 720p, defaults: 52.4 s overlapped, 49.0 s one after the other).
fn batches_in_flight(on_gpu: bool) -> usize {
    if on_gpu { 2 } else { 1 }
}

impl Pipeline {
    /// Segments everything in an 8-bit RGB image. `started` is when the request arrived,
    /// `capture` how long decoding its image took.
    pub async fn segment_everything(
        &self,
        rgb: Arc<Mat>,
        capture: Duration,
        started: Instant,
        options: EverythingOptions,
        format: MaskFormat,
    ) -> Result<Everything, PipelineError> {
        let (width, height) = (rgb.cols() as usize, rgb.rows() as usize);
        let crops = options.crops(width, height);
        let frames = self.encode_crops(&rgb, &crops, started, None).await?;
        let mut everything = self.everything_on(&crops, frames, &options, format, width, height).await?;
        everything.timings.capture = capture;
        everything.timings.total = started.elapsed();
        Ok(everything)
    }

    /// Segments everything in a frame a stream already encoded: its embedding serves the
    /// whole-image crop, its pixels the other crops. The stages are this work's alone.
    pub async fn segment_everything_frame(
        &self,
        frame: &Arc<EncodedFrame>,
        options: EverythingOptions,
        format: MaskFormat,
    ) -> Result<Everything, PipelineError> {
        let started = Instant::now();
        let (width, height) = (frame.geometry.width, frame.geometry.height);
        let crops = options.crops(width, height);
        let frames = self.encode_crops(&frame.pixels, &crops, started, Some(frame.clone())).await?;
        let mut everything = self.everything_on(&crops, frames, &options, format, width, height).await?;
        everything.timings.total = started.elapsed();
        Ok(everything)
    }

    /// The crops' grids through the decoder, then NMS across crops and small regions.
    async fn everything_on(
        &self,
        crops: &[CropBox],
        frames: Vec<CropFrame>,
        options: &EverythingOptions,
        format: MaskFormat,
        width: usize,
        height: usize,
    ) -> Result<Everything, PipelineError> {
        let mut timings = StageTimings::default();
        let mut kept_per_crop = Vec::with_capacity(crops.len());
        let mut reports = Vec::with_capacity(crops.len());
        for (crop, CropFrame { frame, encoded_here }) in crops.iter().zip(frames) {
            if encoded_here {
                timings += StageTimings { capture: Duration::ZERO, total: Duration::ZERO, ..frame.timings };
            }
            let (kept, report, crop_timings) = self.segment_crop(frame, *crop, options, width, height).await?;
            timings += crop_timings;
            kept_per_crop.push(kept);
            reports.push(report);
        }
        let nms_started = Instant::now();
        let (crops, options) = (crops.to_vec(), *options);
        let masks = blocking(move || {
            merge(kept_per_crop, &crops, &options)?.into_iter().map(|m| auto_mask(m, format)).collect::<Result<Vec<_>, PipelineError>>()
        })
        .await?;
        timings.nms = nms_started.elapsed();
        Ok(Everything { width, height, masks, crops: reports, timings })
    }

    /// One encoder run per crop (`whole`, when given, is the whole image's, already encoded);
    /// on a GPU the engine batches the crops' runs.
    async fn encode_crops(
        &self,
        rgb: &Arc<Mat>,
        crops: &[CropBox],
        started: Instant,
        whole: Option<Arc<EncodedFrame>>,
    ) -> Result<Vec<CropFrame>, PipelineError> {
        let in_flight = self.engine.runtime()?.max_batch.max(1) + 1;
        let origin = FrameOrigin { grabbed_at: started, ..FrameOrigin::now() };
        let encodes = crops.iter().copied().map(|crop| {
            let rgb = rgb.clone();
            let whole = whole.clone();
            async move {
                let is_whole = crop.width() == rgb.cols() as usize && crop.height() == rgb.rows() as usize;
                if let (true, Some(frame)) = (is_whole, whole) {
                    return Ok(CropFrame { frame, encoded_here: false });
                }
                let image = if is_whole {
                    rgb
                } else {
                    Arc::new(blocking(move || Ok(crop_image(&rgb, &crop).map_err(crate::model::ModelError::from)?)).await?)
                };
                let frame = self.encode(image, origin, Duration::ZERO).await?;
                metrics::counter!(ENCODER_RUNS, "origin" => "everything").increment(1);
                Ok::<_, PipelineError>(CropFrame { frame, encoded_here: true })
            }
        });
        futures_util::stream::iter(encodes).buffered(in_flight).collect::<Vec<_>>().await.into_iter().collect()
    }

    /// The grid of one crop through the decoder, batch by batch; the masks kept after NMS
    /// within the crop, in its own frame.
    async fn segment_crop(
        &self,
        frame: Arc<EncodedFrame>,
        crop: CropBox,
        options: &EverythingOptions,
        width: usize,
        height: usize,
    ) -> Result<(Vec<Kept>, CropReport, StageTimings), PipelineError> {
        let geometry = frame.geometry;
        let per_side = points_per_side(options.points_per_side, crop.layer, options.crop_n_points_downscale_factor);
        let (cw, ch) = (crop.width() as f64, crop.height() as f64);
        let points: Vec<[f64; 2]> = point_grid(per_side).into_iter().map(|[x, y]| [x * cw, y * ch]).collect();
        let filter = options.filter();
        let request = MaskRequest { geometry, output: MaskOutput::Candidates(filter) };
        let mut timings = StageTimings::default();
        let mut report = CropReport {
            crop,
            points: points.len(),
            passed_iou: 0,
            passed_stability: 0,
            kept: 0,
            encoder: frame.timings.encoder,
            decoder: Duration::ZERO,
            postprocess: Duration::ZERO,
        };
        let batches: Vec<Vec<[f64; 2]>> = points.chunks(options.points_per_batch.max(1)).map(<[_]>::to_vec).collect();
        let batches = batches.into_iter().map(|batch| {
            let tokens: Vec<PromptTokens> = batch.iter().map(|&[x, y]| PromptTokens::point(x, y, &geometry)).collect();
            let frame = frame.clone();
            async move {
                let decoded = self.engine.decode(frame, tokens, request).await?;
                let decode_timings = decoded.timings;
                let started = Instant::now();
                let found = blocking(move || Ok(keep_batch(&decoded, &batch, &geometry, &filter, &crop, (width, height))?)).await?;
                Ok::<_, PipelineError>((found, decode_timings, started.elapsed()))
            }
        });
        let on_gpu = self.engine.runtime()?.backend.on_gpu();
        let mut batches = futures_util::stream::iter(batches).buffered(batches_in_flight(on_gpu));
        let mut kept = Vec::new();
        let mut first = true;
        while let Some(batch) = batches.next().await {
            let (BatchKept { kept: batch_kept, passed_iou, passed_stability }, mut decode_timings, postprocess) = batch?;
            // A batch waiting behind the one before waits for this request's own work.
            if !std::mem::take(&mut first) {
                decode_timings.queue = Duration::ZERO;
            }
            report.passed_iou += passed_iou;
            report.passed_stability += passed_stability;
            report.decoder += decode_timings.decoder;
            report.postprocess += decode_timings.postprocess + postprocess;
            timings += decode_timings;
            timings.postprocess += postprocess;
            kept.extend(batch_kept);
        }
        let kept = dedupe_crop(kept, options.box_nms_thresh);
        report.kept = kept.len();
        Ok((kept, report, timings))
    }
}

/// The crop's pixels as their own (contiguous) image.
fn crop_image(rgb: &Mat, crop: &CropBox) -> Result<Mat, opencv::Error> {
    let rect = Rect::new(crop.x0 as i32, crop.y0 as i32, crop.width() as i32, crop.height() as i32);
    Mat::roi(rgb, rect)?.try_clone()
}

/// A mask of the answer as the API gives it: encoded as asked, with its box's right and bottom
/// exclusive (zeros for an empty mask).
fn auto_mask(m: MergedMask, format: MaskFormat) -> Result<AutoMask, PipelineError> {
    let mask = encode(&m.runs, format)?;
    let b = m.inclusive_box;
    let bbox = if m.runs.area() == 0 {
        mask::PixelBox::default()
    } else {
        mask::PixelBox { x0: b[0] as f32, y0: b[1] as f32, x1: (b[2] + 1) as f32, y1: (b[3] + 1) as f32 }
    };
    Ok(AutoMask {
        mask,
        bbox,
        area: m.runs.area(),
        predicted_iou: m.iou,
        stability_score: m.stability,
        point: m.point,
        crop: m.crop,
        runs: m.runs,
    })
}

/// The mask in the requested format: COCO RLE straight from the runs, the others from pixels.
fn encode(runs: &MaskRuns, format: MaskFormat) -> Result<EncodedMask, PipelineError> {
    let (width, height) = (runs.width as u32, runs.height as u32);
    match format {
        MaskFormat::CocoRle => {
            let counts = mask::coco_counts_string(&runs.runs);
            Ok(EncodedMask { width, height, data: MaskData::CocoRle(CocoRle { size: [height, width], counts }) })
        }
        MaskFormat::Png | MaskFormat::Polygons => Ok(mask::encode(&runs.to_mat()?, format)?),
    }
}
