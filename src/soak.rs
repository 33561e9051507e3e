//! `samstream soak`: N streams on one server-side source for M minutes, bounded, then a
//! report of errors, dropped frames, per-stage p50/p99 and the server's RSS at start and end.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;

use crate::proto::segmenter_client::SegmenterClient;
use crate::proto::{self, stream_request::Msg as Req, stream_response::Msg as Resp};
use crate::telemetry::{STAGE_NAMES, stage_values};

#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    /// Server address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// The server-side source every stream watches.
    #[arg(long)]
    pub source: String,
    /// Concurrent streams.
    #[arg(long, default_value_t = 4)]
    pub streams: usize,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 600)]
    pub seconds: u64,
    /// The server's metrics endpoint (host:port), for its resident memory.
    #[arg(long)]
    pub metrics: Option<String>,
}

/// Appends one result's stage durations (microseconds) under their stage names.
pub(crate) fn record_stages(stages: &mut BTreeMap<&'static str, Vec<u64>>, t: &proto::Timing) {
    for (stage, us) in STAGE_NAMES.into_iter().zip(stage_values(t)) {
        stages.entry(stage).or_default().push(us);
    }
}

/// Source results carry their frame's capture time (Unix µs when the grab returned, the server's
/// clock; the same clock when client and server share a machine): "age" is capture to arrival
/// here, "delivery" the part of it after the server's own stages from then on (its total less
/// the grab): sending, proxies, the client's receiving.
fn record_arrival(stages: &mut BTreeMap<&'static str, Vec<u64>>, result: &proto::FrameResult, timing: &proto::Timing) {
    let now_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
    let age_us = now_us - result.timestamp_us;
    if result.timestamp_us > 0 && age_us >= 0 {
        stages.entry("age").or_default().push(age_us as u64);
        let server_us = timing.total_us.saturating_sub(timing.capture_us) as i64;
        stages.entry("delivery").or_default().push((age_us - server_us).max(0) as u64);
    }
}

/// What one stream saw: result count, its last cumulative frames_dropped, errors, and every
/// result's stage durations in microseconds.
#[derive(Default)]
pub(crate) struct StreamReport {
    pub results: u64,
    pub frames_dropped: u64,
    pub errors: Vec<String>,
    pub stages: BTreeMap<&'static str, Vec<u64>>,
}

/// Holds one stream on `source` with `objects` as its prompts until `until`.
pub(crate) async fn one_stream(server: String, source: String, objects: Vec<proto::ObjectPrompt>, until: Instant) -> StreamReport {
    let mut report = StreamReport::default();
    let mut client = match SegmenterClient::connect(server).await {
        Ok(c) => c,
        Err(e) => {
            report.errors.push(format!("connect: {e}"));
            return report;
        }
    };
    let start_message = proto::StreamStart { source: Some(proto::stream_start::Source::SourceName(source)), ..Default::default() };
    let start = proto::StreamRequest { msg: Some(Req::Start(start_message.clone())) };
    let prompts =
        proto::StreamRequest { msg: Some(Req::Prompts(proto::PromptUpdate { upsert: objects, revision: 1, ..Default::default() })) };
    // The request side stays open until the deadline (dropping `requests` half-closes it).
    let (requests, outbound) = tokio::sync::mpsc::channel(2);
    let _ = requests.send(start).await;
    let _ = requests.send(prompts).await;
    let outbound = crate::cluster::with_affinity(&start_message, tokio_stream::wrappers::ReceiverStream::new(outbound));
    let mut responses = match client.stream_segment(outbound).await {
        Ok(r) => r.into_inner(),
        Err(e) => {
            report.errors.push(format!("open: {e}"));
            return report;
        }
    };
    while Instant::now() < until {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, responses.message()).await {
            Err(_) => break,
            Ok(Ok(Some(proto::StreamResponse { msg: Some(Resp::Result(r)) }))) => {
                report.results += 1;
                report.frames_dropped = r.frames_dropped;
                if let Some(t) = &r.timing {
                    record_stages(&mut report.stages, t);
                    record_arrival(&mut report.stages, &r, t);
                }
            }
            Ok(Ok(Some(proto::StreamResponse { msg: Some(Resp::Event(e)) }))) => {
                if e.kind == proto::EventKind::Rejected as i32 || e.kind == proto::EventKind::SourceEnded as i32 {
                    report.errors.push(format!("event {:?}: {}", proto::EventKind::try_from(e.kind), e.message));
                }
            }
            Ok(Ok(_)) => break,
            Ok(Err(status)) => {
                report.errors.push(format!("stream: {status}"));
                break;
            }
        }
    }
    drop(requests);
    report
}

fn one_point(id: u32) -> proto::ObjectPrompt {
    proto::ObjectPrompt {
        object_id: id,
        points: vec![proto::Point { x: 10.0 + id as f32, y: 10.0, label: proto::PointLabel::Positive as i32 }],
        r#box: None,
    }
}

/// Reads `samstream_process_resident_memory_bytes` from the server's /metrics.
async fn server_rss(metrics: &str) -> Option<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut connection = tokio::net::TcpStream::connect(metrics).await.ok()?;
    connection.write_all(b"GET /metrics HTTP/1.0\r\nHost: soak\r\n\r\n").await.ok()?;
    let mut body = String::new();
    connection.read_to_string(&mut body).await.ok()?;
    body.lines().find(|l| l.starts_with(crate::telemetry::metrics::RESIDENT_MEMORY))?.rsplit(' ').next()?.parse().ok()
}

pub async fn run(args: SoakArgs) -> anyhow::Result<()> {
    let rss_start = match &args.metrics {
        Some(m) => server_rss(m).await,
        None => None,
    };
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let tasks: Vec<_> = (0..args.streams)
        .map(|i| tokio::spawn(one_stream(args.server.clone(), args.source.clone(), vec![one_point(i as u32 + 1)], until)))
        .collect();
    let mut reports = Vec::new();
    for task in tasks {
        reports.push(task.await.context("stream task")?);
    }
    let rss_end = match &args.metrics {
        Some(m) => server_rss(m).await,
        None => None,
    };
    let elapsed = started.elapsed().as_secs_f64();
    let results: u64 = reports.iter().map(|r| r.results).sum();
    let dropped: u64 = reports.iter().map(|r| r.frames_dropped).sum();
    let errors: Vec<&String> = reports.iter().flat_map(|r| &r.errors).collect();
    println!("soak: {} streams on source {:?} for {elapsed:.0} s", args.streams, args.source);
    println!("results {results} ({:.2}/s over all streams), frames dropped {dropped}, errors {}", results as f64 / elapsed, errors.len());
    for e in errors.iter().take(10) {
        println!("  error: {e}");
    }
    println!("{:<12} {:>10} {:>10} {:>10}", "stage", "p50 ms", "p99 ms", "max ms");
    for stage in STAGE_NAMES {
        let mut histogram = Histogram::<u64>::new(3).expect("valid precision");
        for r in &reports {
            for &us in r.stages.get(stage).into_iter().flatten() {
                histogram.record(us).expect("within range");
            }
        }
        let ms = |v: u64| v as f64 / 1000.0;
        println!(
            "{stage:<12} {:>10.1} {:>10.1} {:>10.1}",
            ms(histogram.value_at_quantile(0.5)),
            ms(histogram.value_at_quantile(0.99)),
            ms(histogram.max())
        );
    }
    match (rss_start, rss_end) {
        (Some(a), Some(b)) => println!("server RSS: start {:.1} MiB, end {:.1} MiB", a / 1048576.0, b / 1048576.0),
        _ => println!("server RSS: unknown (pass --metrics HOST:PORT)"),
    }
    anyhow::ensure!(errors.is_empty(), "{} errors during the soak", errors.len());
    Ok(())
}
