//! `samstream bench`: a load generator for `Segment` and `StreamSegment` — concurrency, total
//! requests or duration, rate limit — printing throughput and latency percentiles
//! (HdrHistogram), or JSON with `--json`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::Mutex;

use crate::proto;
use crate::proto::segmenter_client::SegmenterClient;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Rpc {
    Segment,
    Stream,
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
    /// Total Segment calls; without it the run lasts --seconds.
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
    /// Server-side source for --rpc stream.
    #[arg(long)]
    pub source: Option<String>,
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
    pub concurrency: usize,
    pub seconds: f64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub per_second: f64,
    /// Client-observed call latency (Segment) or server total per result (streams), ms.
    pub latency_ms: Percentiles,
    /// Server-reported stage durations, ms.
    pub stages_ms: BTreeMap<&'static str, Percentiles>,
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
struct Tally {
    ok: u64,
    errors: BTreeMap<String, u64>,
    latency_us: Vec<u64>,
    stages: BTreeMap<&'static str, Vec<u64>>,
}

async fn bench_segment(args: &BenchArgs) -> anyhow::Result<(Tally, f64)> {
    let path = args.image.as_ref().context("--rpc segment needs --image")?;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let size = imagesize::blob_size(&bytes).context("reading the image size")?;
    let request = proto::SegmentRequest {
        image: Some(proto::Image { kind: Some(proto::image::Kind::Encoded(bytes)) }),
        objects: vec![proto::ObjectPrompt {
            object_id: 1,
            points: vec![proto::Point {
                x: size.width as f32 / 2.0,
                y: size.height as f32 / 2.0,
                label: proto::PointLabel::Positive as i32,
            }],
            r#box: None,
        }],
        mask_options: None,
    };
    let client = SegmenterClient::connect(args.server.clone()).await?.max_encoding_message_size(usize::MAX);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let issued = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let interval = (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate));
    let workers: Vec<_> = (0..args.concurrency.max(1))
        .map(|_| {
            let (mut client, request, tally, issued) = (client.clone(), request.clone(), tally.clone(), issued.clone());
            let limit = args.requests;
            tokio::spawn(async move {
                loop {
                    let n = issued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if limit.is_some_and(|l| n >= l) || (limit.is_none() && Instant::now() >= until) {
                        break;
                    }
                    if let Some(interval) = interval {
                        tokio::time::sleep_until((started + interval.mul_f64(n as f64)).into()).await;
                    }
                    let t = Instant::now();
                    let result = client.segment(request.clone()).await;
                    let mut tally = tally.lock().await;
                    match result {
                        Ok(response) => {
                            tally.ok += 1;
                            tally.latency_us.push(t.elapsed().as_micros() as u64);
                            if let Some(timing) = response.into_inner().timing {
                                record_stages(&mut tally.stages, &timing);
                            }
                        }
                        Err(status) => *tally.errors.entry(format!("{:?}", status.code())).or_default() += 1,
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let tally = Arc::try_unwrap(tally).map_err(|_| anyhow::anyhow!("workers still hold the tally"))?.into_inner();
    Ok((tally, elapsed))
}

fn record_stages(stages: &mut BTreeMap<&'static str, Vec<u64>>, t: &proto::Timing) {
    let values = [t.capture_us, t.preprocess_us, t.queue_us, t.encoder_us, t.decoder_us, t.postprocess_us, t.total_us];
    for (stage, us) in crate::soak::STAGES.iter().zip(values) {
        stages.entry(stage).or_default().push(us);
    }
}

async fn bench_stream(args: &BenchArgs) -> anyhow::Result<(Tally, f64)> {
    let source = args.source.clone().context("--rpc stream needs --source")?;
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let streams: Vec<_> = (0..args.concurrency.max(1))
        .map(|i| tokio::spawn(crate::soak::one_stream(args.server.clone(), source.clone(), i as u32 + 1, until)))
        .collect();
    let mut tally = Tally::default();
    for stream in streams {
        let report = stream.await?;
        tally.ok += report.results;
        for e in report.errors {
            *tally.errors.entry(e).or_default() += 1;
        }
        for (stage, values) in report.stages {
            if stage == "total" {
                tally.latency_us.extend(&values);
            }
            tally.stages.entry(stage).or_default().extend(values);
        }
    }
    Ok((tally, started.elapsed().as_secs_f64()))
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (tally, seconds) = match args.rpc {
        Rpc::Segment => bench_segment(&args).await?,
        Rpc::Stream => bench_stream(&args).await?,
    };
    let report = BenchReport {
        rpc: match args.rpc {
            Rpc::Segment => "segment",
            Rpc::Stream => "stream",
        },
        concurrency: args.concurrency,
        seconds,
        ok: tally.ok,
        per_second: tally.ok as f64 / seconds,
        latency_ms: percentiles(tally.latency_us.iter().copied()),
        stages_ms: tally.stages.into_iter().map(|(stage, values)| (stage, percentiles(values))).collect(),
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
