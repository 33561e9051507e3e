//! `samstream client`: segments one image through a running server and prints a summary.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

use crate::proto;
use crate::proto::segmenter_client::SegmenterClient;

#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Server address.
    #[arg(long, env = "SAMSTREAM_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// Image file (JPEG, PNG, BMP, WebP) sent as encoded bytes.
    #[arg(long)]
    pub image: PathBuf,
    /// A point prompt `x,y` (positive) or `x,y,neg`; repeatable. All prompts form object 1.
    #[arg(long = "point", value_parser = parse_point)]
    pub points: Vec<proto::Point>,
    /// A box prompt `x0,y0,x1,y1`.
    #[arg(long = "box", value_parser = parse_box)]
    pub bbox: Option<proto::Box>,
    /// Return the three candidate masks with their scores.
    #[arg(long)]
    pub multimask: bool,
    /// Write each object's mask as PNG into this directory.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Seconds to wait for the server's health to report SERVING (model loaded).
    #[arg(long, default_value_t = 120)]
    pub ready_timeout: u64,
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

fn numbers(text: &str, expected: usize) -> Result<Vec<f32>, String> {
    let values: Vec<f32> =
        text.split(',').take(expected).map(|v| v.trim().parse::<f32>().map_err(|e| e.to_string())).collect::<Result<_, _>>()?;
    if values.len() != expected {
        return Err(format!("expected {expected} comma-separated numbers"));
    }
    Ok(values)
}

fn parse_point(text: &str) -> Result<proto::Point, String> {
    let v = numbers(text, 2)?;
    let label = match text.split(',').nth(2).map(str::trim) {
        None | Some("pos") => proto::PointLabel::Positive,
        Some("neg") => proto::PointLabel::Negative,
        Some(other) => return Err(format!("label must be pos or neg, got {other}")),
    };
    Ok(proto::Point { x: v[0], y: v[1], label: label as i32 })
}

fn parse_box(text: &str) -> Result<proto::Box, String> {
    let v = numbers(text, 4)?;
    Ok(proto::Box { x0: v[0], y0: v[1], x1: v[2], y1: v[3] })
}

pub async fn run(args: ClientArgs) -> anyhow::Result<()> {
    if args.points.is_empty() && args.bbox.is_none() {
        bail!("give at least one --point or a --box");
    }
    let bytes = std::fs::read(&args.image).with_context(|| format!("reading {}", args.image.display()))?;
    let channel = tonic::transport::Endpoint::from_shared(args.server.clone())?
        .connect()
        .await
        .with_context(|| format!("connecting to {}", args.server))?;
    wait_until_serving(channel.clone(), std::time::Duration::from_secs(args.ready_timeout)).await?;
    let mut client = SegmenterClient::new(channel);
    let info = client.get_model_info(proto::GetModelInfoRequest {}).await?.into_inner();
    println!("model: {} ({}, {}) on {}", info.name, info.provenance, info.provenance_detail, info.execution_provider);
    if !info.meaningful_masks {
        println!("note: random-init weights; the masks below are meaningless (export the official checkpoint for real masks)");
    }
    let format = if args.out_dir.is_some() { proto::MaskFormat::Png } else { proto::MaskFormat::CocoRle };
    let request = proto::SegmentRequest {
        image: Some(proto::Image { kind: Some(proto::image::Kind::Encoded(bytes)) }),
        objects: vec![proto::ObjectPrompt { object_id: 1, points: args.points, r#box: args.bbox }],
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
        if let (Some(dir), Some(proto::mask::Data::Png(png))) = (&args.out_dir, object.mask.as_ref().and_then(|m| m.data.as_ref())) {
            std::fs::create_dir_all(dir)?;
            let path = dir.join(format!("object_{}.png", object.object_id));
            std::fs::write(&path, png)?;
            println!("  mask written to {}", path.display());
        }
    }
    if let Some(t) = response.timing {
        println!(
            "timing (ms): capture {:.1}, preprocess {:.1}, queue {:.1}, encoder {:.1}, decoder {:.1}, postprocess {:.1}, total {:.1}",
            t.capture_us as f64 / 1e3,
            t.preprocess_us as f64 / 1e3,
            t.queue_us as f64 / 1e3,
            t.encoder_us as f64 / 1e3,
            t.decoder_us as f64 / 1e3,
            t.postprocess_us as f64 / 1e3,
            t.total_us as f64 / 1e3
        );
    }
    Ok(())
}
