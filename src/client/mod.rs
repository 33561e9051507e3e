//! `samstream client`: segments an image, or runs a streaming session on a video file, a
//! camera, a URL or a server-side source, with prompts from flags or a timed JSON script.
//! Writes an overlay (image, or mp4 for streams: masks tinted per object with ids and boxes)
//! and/or PNG masks, and keeps a live line of stage latencies on stderr.

mod live;
pub mod overlay;
mod prompts;
mod reconnect;
mod session;

use std::path::PathBuf;

use crate::proto;
use crate::proto::segmenter_client::SegmenterClient;
use crate::telemetry::{STAGE_NAMES, stage_values};
use anyhow::{Context, bail};
use clap::Args;
pub use prompts::{Tagged, parse_box, parse_point};

#[derive(Debug, Clone, Args)]
#[group(skip)]
#[command(group(clap::ArgGroup::new("input").required(true).multiple(false)))]
pub struct ClientArgs {
    /// Server address.
    #[arg(long, env = "SAMSTREAM_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// Segment one image (JPEG, PNG, BMP, WebP), sent as encoded bytes.
    #[arg(long, group = "input")]
    pub image: Option<PathBuf>,
    /// Stream a local video file, frame by frame (every frame gets masks).
    #[arg(long, group = "input")]
    pub video: Option<PathBuf>,
    /// Stream a local camera: an index (0) or a device path (/dev/video0).
    #[arg(long, group = "input")]
    pub camera: Option<String>,
    /// Stream a network URI the server opens itself (must be allowed by its --allow-uri).
    #[arg(long, group = "input")]
    pub url: Option<String>,
    /// Stream a server-side source by name (see ListSources).
    #[arg(long, group = "input")]
    pub source: Option<String>,
    /// A point prompt `[ID:]x,y[,neg]` (object 1 without an id); repeatable.
    #[arg(long = "point", value_parser = parse_point)]
    pub points: Vec<Tagged<proto::Point>>,
    /// A box prompt `[ID:]x0,y0,x1,y1`; one per object.
    #[arg(long = "box", value_parser = parse_box)]
    pub boxes: Vec<Tagged<proto::Box>>,
    /// JSON script of timed prompt updates (see src/client/prompts.rs or the README).
    #[arg(long)]
    pub script: Option<PathBuf>,
    /// Return the three candidate masks with their scores.
    #[arg(long)]
    pub multimask: bool,
    /// Streams: re-prompt each object from its previous mask.
    #[arg(long)]
    pub track: bool,
    /// Streams: most frames per second the server processes (0 = as fast as it can).
    #[arg(long, default_value_t = 0.0)]
    pub max_fps: f32,
    /// Overlay output: an image for --image, an mp4 video for streams.
    #[arg(long)]
    pub overlay: Option<PathBuf>,
    /// Directory for PNG masks (`object_<id>.png`, or `frame_<n>_object_<id>.png` for streams).
    #[arg(long, alias = "out-dir")]
    pub out_masks: Option<PathBuf>,
    /// Streams: stop after this many results.
    #[arg(long)]
    pub max_frames: Option<u64>,
    /// Streams: stop after this many seconds.
    #[arg(long)]
    pub seconds: Option<f64>,
    /// No live line on stderr (the summary is still printed).
    #[arg(long)]
    pub quiet: bool,
    /// Seconds to wait for the server's health to report SERVING (model loaded).
    #[arg(long, default_value_t = 120)]
    pub ready_timeout: u64,
    #[command(flatten)]
    pub everything: EverythingArgs,
}

/// Segment everything: every object in the image (SegmentEverything), or on a stream's frames
/// next to the prompted objects (StreamStart.auto_mode). Unset options are the server's
/// (the reference generator's) defaults.
#[derive(Debug, Clone, Args)]
#[group(skip)]
pub struct EverythingArgs {
    /// Segment everything (no prompts needed).
    #[arg(long)]
    pub everything: bool,
    /// Grid points per side.
    #[arg(long, requires = "everything")]
    pub points_per_side: Option<u32>,
    /// Grid points per decoder call.
    #[arg(long, requires = "everything")]
    pub points_per_batch: Option<u32>,
    /// Keep masks whose predicted IoU is above this.
    #[arg(long, requires = "everything")]
    pub pred_iou_thresh: Option<f64>,
    /// Keep masks whose stability score is at least this.
    #[arg(long, requires = "everything")]
    pub stability_score_thresh: Option<f64>,
    /// Box IoU above which a duplicate is dropped.
    #[arg(long, requires = "everything")]
    pub box_nms_thresh: Option<f64>,
    /// Extra crop layers (each has its own encoder runs).
    #[arg(long, requires = "everything")]
    pub crop_n_layers: Option<u32>,
    /// Remove holes and islands smaller than this many pixels.
    #[arg(long, requires = "everything")]
    pub min_mask_region_area: Option<u32>,
    /// Streams: segment every Nth processed frame.
    #[arg(long, requires = "everything", default_value_t = 1)]
    pub every_n_frames: u32,
}

impl EverythingArgs {
    fn options(&self) -> proto::AutoMaskOptions {
        proto::AutoMaskOptions {
            points_per_side: self.points_per_side,
            points_per_batch: self.points_per_batch,
            pred_iou_thresh: self.pred_iou_thresh,
            stability_score_thresh: self.stability_score_thresh,
            box_nms_thresh: self.box_nms_thresh,
            crop_n_layers: self.crop_n_layers,
            min_mask_region_area: self.min_mask_region_area,
            ..Default::default()
        }
    }
}

/// Polls grpc.health.v1 until the server reports SERVING, so a client started together with
/// the server does not race the model's warm-up.
async fn wait_until_serving(channel: tonic::transport::Channel, timeout: std::time::Duration) -> anyhow::Result<()> {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let mut health = HealthClient::new(channel);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let status = health.check(HealthCheckRequest { service: String::new() }).await.map(|r| r.into_inner().status);
        if status.as_ref().is_ok_and(|s| *s == ServingStatus::Serving as i32) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("server not SERVING after {timeout:?} (last answer: {status:?})");
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

pub async fn run(args: ClientArgs) -> anyhow::Result<()> {
    let objects = prompts::objects_from_flags(&args.points, &args.boxes);
    let script = args.script.as_deref().map(prompts::load_script).transpose()?.unwrap_or_default();
    let channel = tonic::transport::Endpoint::from_shared(args.server.clone())?
        .connect()
        .await
        .with_context(|| format!("connecting to {}", args.server))?;
    wait_until_serving(channel.clone(), std::time::Duration::from_secs(args.ready_timeout)).await?;
    let mut client = SegmenterClient::new(channel).max_decoding_message_size(256 << 20).max_encoding_message_size(256 << 20);
    let info = client.get_model_info(proto::GetModelInfoRequest {}).await?.into_inner();
    println!("model: {} ({}, {}) on {}", info.name, info.provenance, info.provenance_detail, info.execution_provider);
    if !info.checkpoint_url.is_empty() {
        println!("checkpoint: downloaded from {} (sha256 {})", info.checkpoint_url, info.checkpoint_sha256);
    }
    if !info.meaningful_masks {
        println!("note: random-init weights; the masks below are meaningless (export the official checkpoint for real masks)");
    }
    match &args.image {
        Some(image) if args.everything.everything => segment_everything(client, &args, image).await,
        Some(image) => segment_image(client, &args, image, objects).await,
        None => stream(client, &args, objects, script).await,
    }
}

async fn segment_everything(
    mut client: SegmenterClient<tonic::transport::Channel>,
    args: &ClientArgs,
    image: &std::path::Path,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(image).with_context(|| format!("reading {}", image.display()))?;
    let wants_png = args.out_masks.is_some() || args.overlay.is_some();
    let format = if wants_png { proto::MaskFormat::Png } else { proto::MaskFormat::CocoRle };
    let request = proto::SegmentEverythingRequest {
        image: Some(proto::Image { kind: Some(proto::image::Kind::Encoded(bytes.clone())) }),
        mask_options: Some(proto::MaskOptions { format: format as i32, multimask_output: false }),
        options: Some(args.everything.options()),
    };
    let response = client.segment_everything(request).await?.into_inner();
    println!("image: {}x{}, {} masks", response.image_width, response.image_height, response.masks.len());
    for crop in &response.crops {
        let b = crop.crop_box.unwrap_or_default();
        println!(
            "crop [{:.0}, {:.0}, {:.0}, {:.0}] (layer {}): {} points, {} masks passed IoU, {} stability, {} kept",
            b.x0, b.y0, b.x1, b.y1, crop.layer, crop.points, crop.passed_iou, crop.passed_stability, crop.kept
        );
    }
    // Masks are numbered from 1 in the answer's order (best first).
    let objects = overlay::numbered(&response.masks);
    for (object, auto) in objects.iter().zip(&response.masks) {
        let b = object.bbox.unwrap_or_default();
        println!(
            "mask {}: predicted IoU {:.3}, stability {:.3}, area {} px, bbox [{:.0}, {:.0}, {:.0}, {:.0}]",
            object.object_id, auto.predicted_iou, auto.stability_score, object.area, b.x0, b.y0, b.x1, b.y1
        );
    }
    overlay::write_image_outputs(args.overlay.as_deref(), args.out_masks.as_deref(), &bytes, &objects, "mask")?;
    if let Some(t) = response.timing {
        let stages: Vec<String> =
            STAGE_NAMES.iter().zip(stage_values(&t)).map(|(stage, us)| format!("{stage} {:.1}", us as f64 / 1e3)).collect();
        println!("timing (ms): {}", stages.join(", "));
    }
    Ok(())
}

async fn segment_image(
    mut client: SegmenterClient<tonic::transport::Channel>,
    args: &ClientArgs,
    image: &std::path::Path,
    objects: Vec<proto::ObjectPrompt>,
) -> anyhow::Result<()> {
    if objects.is_empty() {
        bail!("give at least one --point or --box (or --everything)");
    }
    let bytes = std::fs::read(image).with_context(|| format!("reading {}", image.display()))?;
    let wants_png = args.out_masks.is_some() || args.overlay.is_some();
    let format = if wants_png { proto::MaskFormat::Png } else { proto::MaskFormat::CocoRle };
    let request = proto::SegmentRequest {
        image: Some(proto::Image { kind: Some(proto::image::Kind::Encoded(bytes.clone())) }),
        objects,
        mask_options: Some(proto::MaskOptions { format: format as i32, multimask_output: args.multimask }),
    };
    let response = client.segment(request).await?.into_inner();
    println!("image: {}x{}", response.width, response.height);
    for object in &response.objects {
        let b = object.bbox.unwrap_or_default();
        println!(
            "object {}: score {:.3}, area {} px, bbox [{:.0}, {:.0}, {:.0}, {:.0}], candidates {}",
            object.object_id,
            object.score,
            object.area,
            b.x0,
            b.y0,
            b.x1,
            b.y1,
            object.candidates.len()
        );
    }
    overlay::write_image_outputs(args.overlay.as_deref(), args.out_masks.as_deref(), &bytes, &response.objects, "object")?;
    if let Some(t) = response.timing {
        let stages: Vec<String> =
            STAGE_NAMES.iter().zip(stage_values(&t)).map(|(stage, us)| format!("{stage} {:.1}", us as f64 / 1e3)).collect();
        println!("timing (ms): {}", stages.join(", "));
    }
    Ok(())
}

async fn stream(
    client: SegmenterClient<tonic::transport::Channel>,
    args: &ClientArgs,
    objects: Vec<proto::ObjectPrompt>,
    script: Vec<prompts::TimedUpdate>,
) -> anyhow::Result<()> {
    use proto::stream_start::Source;
    let input = match (&args.video, &args.camera, &args.url, &args.source) {
        (Some(path), ..) => session::Input::Video(path.clone()),
        (_, Some(device), ..) => session::Input::Camera(device.clone()),
        (_, _, Some(uri), _) => session::Input::Source(Source::Uri(uri.clone())),
        (.., Some(name)) => session::Input::Source(Source::SourceName(name.clone())),
        _ => bail!("give --image, --video, --camera, --url or --source"),
    };
    let source = match &input {
        session::Input::Source(source) => source.clone(),
        _ => Source::ClientFrames(proto::ClientFrames {}),
    };
    let mut outputs = overlay::Outputs::new(args.overlay.as_deref(), args.out_masks.as_deref())?;
    let format = if outputs.wants_masks() { proto::MaskFormat::Png } else { proto::MaskFormat::CocoRle };
    let start = proto::StreamStart {
        source: Some(source),
        mask_options: Some(proto::MaskOptions { format: format as i32, multimask_output: args.multimask }),
        max_fps: args.max_fps,
        track: args.track,
        auto_mode: args
            .everything
            .everything
            .then(|| proto::AutoMode { options: Some(args.everything.options()), every_n_frames: args.everything.every_n_frames }),
    };
    let plan = session::StreamPlan { input, initial: objects, script, start, max_frames: args.max_frames, seconds: args.seconds };
    let mut live = live::LiveStats::new(args.quiet);
    let outcome = session::run(client, plan, &mut outputs, &mut live).await;
    live.finish();
    outputs.finish()?;
    if let Some(path) = &args.overlay {
        println!("overlay: {} frames written to {}", outputs.frames_written, path.display());
    }
    outcome
}
