//! `samstream client`: segments an image, or runs a streaming session on a video file, a
//! camera, a URL or a server-side source (one subcommand each, see `args`), with prompts from
//! flags or a timed JSON script.
//! Writes an overlay (image, or mp4 for streams: masks tinted per object with ids and boxes)
//! and/or PNG masks, and keeps a live line of stage latencies on stderr.

mod args;
mod live;
pub mod overlay;
mod prompts;
mod reconnect;
mod session;

use crate::proto::segmenter_client::SegmenterClient;
use crate::telemetry::{STAGE_NAMES, stage_values};
use crate::{proto, video};
use anyhow::{Context, bail};
pub use args::{ClientCommand, Connection, EverythingArgs, OutputArgs, PromptArgs, StreamArgs, StreamRun, legacy_form};
pub use prompts::{Tagged, parse_box, parse_point};

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

pub async fn run(command: ClientCommand) -> anyhow::Result<()> {
    use proto::stream_start::Source;
    let (input, run) = match command {
        ClientCommand::Image { path, connection, prompts, outputs, everything } => {
            let client = connect(&connection).await?;
            return if everything.everything {
                segment_everything(client, &path, &outputs, &everything).await
            } else {
                segment_image(client, &path, &prompts, &outputs).await
            };
        }
        ClientCommand::Video { path, run } => (session::Input::Video(path), run),
        ClientCommand::Camera { device, run } => (session::Input::Camera(device), run),
        ClientCommand::Url { uri, run } => (session::Input::Source(Source::Uri(uri)), run),
        ClientCommand::Source { name, run } => (session::Input::Source(Source::SourceName(name)), run),
    };
    let client = connect(&run.connection).await?;
    stream(client, input, &run).await
}

/// Connects, waits until the model is loaded and prints what the server runs.
async fn connect(connection: &Connection) -> anyhow::Result<SegmenterClient<tonic::transport::Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(connection.server.clone())?
        .connect()
        .await
        .with_context(|| format!("connecting to {}", connection.server))?;
    wait_until_serving(channel.clone(), std::time::Duration::from_secs(connection.ready_timeout)).await?;
    let mut client = SegmenterClient::new(channel).max_decoding_message_size(256 << 20).max_encoding_message_size(256 << 20);
    let info = client.get_model_info(proto::GetModelInfoRequest {}).await?.into_inner();
    println!("model: {} ({}, {}) on {}", info.name, info.provenance, info.provenance_detail, info.execution_provider);
    if !info.checkpoint_url.is_empty() {
        println!("checkpoint: downloaded from {} (sha256 {})", info.checkpoint_url, info.checkpoint_sha256);
    }
    if !info.meaningful_masks {
        println!("note: random-init weights; the masks below are meaningless (export the official checkpoint for real masks)");
    }
    Ok(client)
}

async fn segment_everything(
    mut client: SegmenterClient<tonic::transport::Channel>,
    image: &std::path::Path,
    outputs: &OutputArgs,
    everything: &EverythingArgs,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(image).with_context(|| format!("reading {}", image.display()))?;
    let wants_png = outputs.out_masks.is_some() || outputs.overlay.is_some();
    let format = if wants_png { proto::MaskFormat::Png } else { proto::MaskFormat::CocoRle };
    let request = proto::SegmentEverythingRequest {
        image: Some(proto::Image { kind: Some(proto::image::Kind::Encoded(bytes.clone())) }),
        mask_options: Some(proto::MaskOptions { format: format as i32, multimask_output: false }),
        options: Some(everything.options()),
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
    overlay::write_image_outputs(outputs.overlay.as_deref(), outputs.out_masks.as_deref(), &bytes, &objects, "mask")?;
    if let Some(t) = response.timing {
        let stages: Vec<String> =
            STAGE_NAMES.iter().zip(stage_values(&t)).map(|(stage, us)| format!("{stage} {:.1}", us as f64 / 1e3)).collect();
        println!("timing (ms): {}", stages.join(", "));
    }
    Ok(())
}

async fn segment_image(
    mut client: SegmenterClient<tonic::transport::Channel>,
    image: &std::path::Path,
    prompts: &PromptArgs,
    outputs: &OutputArgs,
) -> anyhow::Result<()> {
    let objects = prompts::objects_from_flags(&prompts.points, &prompts.boxes);
    if objects.is_empty() {
        bail!("give at least one --point or --box (or --everything)");
    }
    let bytes = std::fs::read(image).with_context(|| format!("reading {}", image.display()))?;
    let wants_png = outputs.out_masks.is_some() || outputs.overlay.is_some();
    let format = if wants_png { proto::MaskFormat::Png } else { proto::MaskFormat::CocoRle };
    let request = proto::SegmentRequest {
        image: Some(proto::Image { kind: Some(proto::image::Kind::Encoded(bytes.clone())) }),
        objects,
        mask_options: Some(proto::MaskOptions { format: format as i32, multimask_output: prompts.multimask }),
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
    overlay::write_image_outputs(outputs.overlay.as_deref(), outputs.out_masks.as_deref(), &bytes, &response.objects, "object")?;
    if let Some(t) = response.timing {
        let stages: Vec<String> =
            STAGE_NAMES.iter().zip(stage_values(&t)).map(|(stage, us)| format!("{stage} {:.1}", us as f64 / 1e3)).collect();
        println!("timing (ms): {}", stages.join(", "));
    }
    Ok(())
}

async fn stream(client: SegmenterClient<tonic::transport::Channel>, input: session::Input, run: &StreamRun) -> anyhow::Result<()> {
    use proto::stream_start::Source;
    let StreamRun { prompts, outputs: output_args, stream: options, everything, .. } = run;
    let objects = prompts::objects_from_flags(&prompts.points, &prompts.boxes);
    let script = options.script.as_deref().map(prompts::load_script).transpose()?.unwrap_or_default();
    let (source, server_side) = match &input {
        session::Input::Source(source) => (source.clone(), true),
        _ => (Source::ClientFrames(proto::ClientFrames {}), false),
    };
    let mut outputs = overlay::Outputs::new(output_args.overlay.as_deref(), output_args.out_masks.as_deref())?;
    // The overlay of a server-side source is drawn on the frames the masks belong to, which
    // only the server has: it sends them along, at their own size.
    let preview = (server_side && output_args.overlay.is_some()).then_some(proto::PreviewOptions {
        max_side: *video::preview::MAX_SIDE_RANGE.end(),
        quality: 90,
        every_n_results: 1,
    });
    let format = if outputs.wants_masks() { proto::MaskFormat::Png } else { proto::MaskFormat::CocoRle };
    let start = proto::StreamStart {
        source: Some(source),
        mask_options: Some(proto::MaskOptions { format: format as i32, multimask_output: prompts.multimask }),
        max_fps: options.max_fps,
        track: options.track,
        auto_mode: everything
            .everything
            .then(|| proto::AutoMode { options: Some(everything.options()), every_n_frames: options.every_n_frames }),
        preview,
    };
    let plan = session::StreamPlan { input, initial: objects, script, start, max_frames: options.max_frames, seconds: options.seconds };
    let mut live = live::LiveStats::new(options.quiet);
    let outcome = session::run(client, plan, &mut outputs, &mut live).await;
    live.finish();
    outputs.finish()?;
    if let Some(path) = &output_args.overlay {
        println!("overlay: {} frames written to {}", outputs.frames_written, path.display());
    }
    outcome
}
