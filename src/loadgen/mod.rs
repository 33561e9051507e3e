//! `samstream bench`: a load generator for `Segment` and `StreamSegment` — concurrency, total
//! requests or duration, rate limit — printing throughput and latency percentiles
//! (HdrHistogram), or JSON with `--json`. Besides plain calls and streams it times prompt
//! updates on a cached embedding and stream open/close churn.

mod segment;
mod stream;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::proto;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Rpc {
    /// Unary Segment calls on --image.
    Segment,
    /// Streams on the server-side --source, results as they come.
    Stream,
    /// One client-frames stream: a frame of --image, then prompt updates re-decoded on its
    /// cached embedding, each timed from sending to its result.
    PromptUpdate,
    /// Streams on --source opened and closed again (--requests times), for leaks.
    Churn,
    /// Unary SegmentEverything calls on --image (--points-per-side, --crop-n-layers).
    Everything,
}

impl Rpc {
    fn name(self) -> &'static str {
        match self {
            Rpc::Segment => "segment",
            Rpc::Stream => "stream",
            Rpc::PromptUpdate => "prompt-update",
            Rpc::Churn => "churn",
            Rpc::Everything => "everything",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Server address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub server: String,
    #[arg(long, value_enum, default_value_t = Rpc::Segment)]
    pub rpc: Rpc,
    /// Concurrent callers (Segment) or streams (StreamSegment).
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Total calls (Segment), prompt updates or open/close cycles; without it the run lasts
    /// --seconds.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Run time in seconds (streams always run for this long).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Segment calls per second over all callers; 0 = as fast as they return.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Image for Segment (JPEG/PNG/...), sent as encoded bytes.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Send --image decoded here, as raw RGB8 pixels (what a camera client sends), instead of
    /// its encoded bytes.
    #[arg(long)]
    pub raw: bool,
    /// Untimed Segment calls before the measured ones (first-use costs of a new image size).
    #[arg(long, default_value_t = 1)]
    pub warmup: u64,
    /// Server-side source for --rpc stream and churn (streams: a comma-separated list spreads
    /// the streams over several sources).
    #[arg(long)]
    pub source: Option<String>,
    /// Objects per request or stream, one point prompt each, spread over the image.
    #[arg(long, default_value_t = 1)]
    pub objects: u32,
    /// --rpc everything: grid points per side (unset: the server's default, 32).
    #[arg(long)]
    pub points_per_side: Option<u32>,
    /// --rpc everything: extra crop layers (unset: 0).
    #[arg(long)]
    pub crop_n_layers: Option<u32>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub rpc: &'static str,
    pub objects: u32,
    pub concurrency: usize,
    pub seconds: f64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub per_second: f64,
    /// Client-observed call latency (Segment) or server total per result (streams), ms.
    pub latency_ms: Percentiles,
    /// Server-reported stage durations, ms.
    pub stages_ms: BTreeMap<&'static str, Percentiles>,
    /// Results per second of each stream (--rpc stream).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_stream_per_second: Vec<f64>,
    /// Masks (objects) in the last answer (unary calls).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masks: Option<usize>,
}

fn percentiles(values: impl IntoIterator<Item = u64>) -> Percentiles {
    let mut h = Histogram::<u64>::new(3).expect("valid precision");
    for v in values {
        h.record(v).expect("u64 range");
    }
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Percentiles { p50: ms(0.5), p90: ms(0.9), p99: ms(0.99), max: h.max() as f64 / 1000.0 }
}

#[derive(Default)]
pub(crate) struct Tally {
    ok: u64,
    errors: BTreeMap<String, u64>,
    latency_us: Vec<u64>,
    stages: BTreeMap<&'static str, Vec<u64>>,
    /// Results of each stream, for streams.
    per_stream: Vec<u64>,
    /// Masks in the last unary answer.
    masks: Option<usize>,
}

/// `count` objects with one positive point each, spread over a `width` x `height` image.
pub(crate) fn spread_objects(count: u32, width: f32, height: f32) -> Vec<proto::ObjectPrompt> {
    (0..count)
        .map(|i| {
            let f = (i as f32 + 0.5) / count as f32;
            proto::ObjectPrompt {
                object_id: i + 1,
                points: vec![proto::Point {
                    x: width * (0.1 + 0.8 * f),
                    y: height * (0.2 + 0.6 * ((f * 7.0) % 1.0)),
                    label: proto::PointLabel::Positive as i32,
                }],
                r#box: None,
            }
        })
        .collect()
}

/// `path` as the request's image: its encoded bytes, or (`raw`) its RGB8 pixels; and its size.
pub(crate) fn load_image(path: &std::path::Path, raw: bool) -> anyhow::Result<(proto::Image, f32, f32)> {
    use opencv::prelude::*;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if !raw {
        let size = imagesize::blob_size(&bytes).context("reading the image size")?;
        return Ok((proto::Image { kind: Some(proto::image::Kind::Encoded(bytes)) }, size.width as f32, size.height as f32));
    }
    let bgr = opencv::imgcodecs::imdecode(&opencv::core::Vector::<u8>::from_slice(&bytes), opencv::imgcodecs::IMREAD_COLOR)?;
    anyhow::ensure!(!bgr.empty(), "cannot decode {}", path.display());
    let mut rgb = opencv::core::Mat::default();
    opencv::imgproc::cvt_color_def(&bgr, &mut rgb, opencv::imgproc::COLOR_BGR2RGB)?;
    let (width, height) = (rgb.cols() as u32, rgb.rows() as u32);
    let pixels = proto::RawImage { width, height, format: proto::PixelFormat::Rgb8 as i32, data: rgb.data_bytes()?.to_vec() };
    Ok((proto::Image { kind: Some(proto::image::Kind::Raw(pixels)) }, width as f32, height as f32))
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (tally, seconds) = match args.rpc {
        Rpc::Segment => segment::bench_segment(&args, false).await?,
        Rpc::Everything => segment::bench_segment(&args, true).await?,
        Rpc::Stream => stream::bench_stream(&args).await?,
        Rpc::PromptUpdate => stream::bench_prompt_updates(&args).await?,
        Rpc::Churn => stream::bench_churn(&args).await?,
    };
    let report = BenchReport {
        rpc: args.rpc.name(),
        objects: args.objects,
        concurrency: args.concurrency,
        seconds,
        ok: tally.ok,
        per_second: tally.ok as f64 / seconds,
        latency_ms: percentiles(tally.latency_us.iter().copied()),
        stages_ms: tally.stages.into_iter().map(|(stage, values)| (stage, percentiles(values))).collect(),
        per_stream_per_second: tally.per_stream.iter().map(|&n| n as f64 / seconds).collect(),
        masks: tally.masks,
        errors: tally.errors,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{}: {} ok in {:.1} s ({:.2}/s, concurrency {}), errors {:?}",
        report.rpc, report.ok, report.seconds, report.per_second, report.concurrency, report.errors
    );
    println!("{:<12} {:>9} {:>9} {:>9} {:>9}", "ms", "p50", "p90", "p99", "max");
    let row = |name: &str, p: &Percentiles| println!("{name:<12} {:>9.1} {:>9.1} {:>9.1} {:>9.1}", p.p50, p.p90, p.p99, p.max);
    row("latency", &report.latency_ms);
    for (stage, p) in &report.stages_ms {
        row(stage, p);
    }
    Ok(())
}
