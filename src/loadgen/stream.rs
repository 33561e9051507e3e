//! `StreamSegment` load: streams on a server-side source, prompt updates on a cached
//! embedding, and open/close churn.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{BenchArgs, Tally, load_image, spread_objects};
use crate::proto::segmenter_client::SegmenterClient;
use crate::proto::{self, stream_request::Msg as Req, stream_response::Msg as Resp};
use crate::soak::record_stages;

/// Width and height of --image, where prompts are placed; streams on a source of another size
/// should pass an image of the source's size.
fn prompt_area(args: &BenchArgs) -> anyhow::Result<(f32, f32)> {
    match &args.image {
        Some(path) => {
            let size = imagesize::size(path).with_context(|| format!("reading the size of {}", path.display()))?;
            Ok((size.width as f32, size.height as f32))
        }
        None => Ok((64.0, 64.0)),
    }
}

/// `--concurrency` streams; with several comma-separated `--source`s, stream i watches source
/// i modulo their number.
pub(super) async fn bench_stream(args: &BenchArgs) -> anyhow::Result<(Tally, f64)> {
    let sources: Vec<String> = args.source.as_deref().context("--rpc stream needs --source")?.split(',').map(str::to_string).collect();
    let (width, height) = prompt_area(args)?;
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let streams: Vec<_> = (0..args.concurrency.max(1))
        .map(|i| {
            let objects = spread_objects(args.objects, width, height);
            tokio::spawn(crate::soak::one_stream(args.server.clone(), sources[i % sources.len()].clone(), objects, until))
        })
        .collect();
    let mut tally = Tally::default();
    for stream in streams {
        let report = stream.await?;
        tally.ok += report.results;
        tally.per_stream.push(report.results);
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

fn request(msg: Req) -> proto::StreamRequest {
    proto::StreamRequest { msg: Some(msg) }
}

/// The next FrameResult, skipping events; rejected messages and a closed stream are errors.
async fn next_result(responses: &mut tonic::Streaming<proto::StreamResponse>) -> anyhow::Result<proto::FrameResult> {
    loop {
        match tokio::time::timeout(Duration::from_secs(120), responses.message()).await.context("no result within 120 s")?? {
            Some(proto::StreamResponse { msg: Some(Resp::Result(result)) }) => return Ok(result),
            Some(proto::StreamResponse { msg: Some(Resp::Event(e)) }) if e.kind == proto::EventKind::Rejected as i32 => {
                bail!("rejected: {}", e.message)
            }
            Some(_) => {}
            None => bail!("the stream ended"),
        }
    }
}

/// One client-frames stream: one frame of --image, then prompt updates (each moves every
/// object's point) timed from sending to the result carrying their revision. The server must
/// answer them from the cached embedding: a result with an encoder run counts as an error.
pub(super) async fn bench_prompt_updates(args: &BenchArgs) -> anyhow::Result<(Tally, f64)> {
    let path = args.image.as_ref().context("--rpc prompt-update needs --image")?;
    let (image, _, _) = load_image(path, args.raw)?;
    let (width, height) = prompt_area(args)?;
    let mut client = SegmenterClient::connect(args.server.clone()).await?.max_encoding_message_size(usize::MAX);
    let (requests, outbound) = mpsc::channel(4);
    let start =
        proto::StreamStart { source: Some(proto::stream_start::Source::ClientFrames(proto::ClientFrames {})), ..Default::default() };
    requests.send(request(Req::Start(start))).await?;
    let update = |revision: u64| {
        let mut objects = spread_objects(args.objects, width, height);
        for object in &mut objects {
            object.points[0].x = (object.points[0].x + revision as f32 * 7.0) % width;
        }
        request(Req::Prompts(proto::PromptUpdate { upsert: objects, revision, ..Default::default() }))
    };
    requests.send(update(1)).await?;
    let frame = proto::Frame { image: Some(image), frame_id: 1, timestamp_us: 0 };
    requests.send(request(Req::Frame(frame))).await?;
    let mut responses = client.stream_segment(ReceiverStream::new(outbound)).await?.into_inner();
    next_result(&mut responses).await.context("the first frame's result")?;

    let mut tally = Tally::default();
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let count = args.requests.unwrap_or(u64::MAX).saturating_add(args.warmup);
    for revision in 2..count.saturating_add(2) {
        let measured = revision - 2 >= args.warmup;
        if args.requests.is_none() && Instant::now() >= until {
            break;
        }
        let sent = Instant::now();
        requests.send(update(revision)).await?;
        let result = loop {
            let result = next_result(&mut responses).await?;
            if result.prompt_revision >= revision {
                break result;
            }
        };
        let timing = result.timing.unwrap_or_default();
        if !measured {
            continue;
        }
        if timing.encoder_us != 0 {
            *tally.errors.entry("re-encoded instead of using the cached embedding".into()).or_default() += 1;
            continue;
        }
        tally.ok += 1;
        tally.latency_us.push(sent.elapsed().as_micros() as u64);
        record_stages(&mut tally.stages, &timing);
    }
    Ok((tally, started.elapsed().as_secs_f64()))
}

/// Opens a stream on --source, waits for its first message (STARTED), and drops it; `requests`
/// times (default 100) over `concurrency` workers. Latency is open to first message.
pub(super) async fn bench_churn(args: &BenchArgs) -> anyhow::Result<(Tally, f64)> {
    let source = args.source.clone().context("--rpc churn needs --source")?;
    let client = SegmenterClient::connect(args.server.clone()).await?;
    let total = args.requests.unwrap_or(100);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..args.concurrency.max(1))
        .map(|_| {
            let (mut client, source, next) = (client.clone(), source.clone(), next.clone());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                    let opened = Instant::now();
                    let start =
                        proto::StreamStart { source: Some(proto::stream_start::Source::SourceName(source.clone())), ..Default::default() };
                    let outcome = async {
                        let (requests, outbound) = mpsc::channel(1);
                        let call = crate::cluster::with_affinity(&start, ReceiverStream::new(outbound));
                        requests.send(request(Req::Start(start))).await?;
                        let mut responses = client.stream_segment(call).await?.into_inner();
                        tokio::time::timeout(Duration::from_secs(30), responses.message()).await.context("no first message")??;
                        anyhow::Ok(())
                    }
                    .await;
                    match outcome {
                        Ok(()) => {
                            tally.ok += 1;
                            tally.latency_us.push(opened.elapsed().as_micros() as u64);
                        }
                        Err(e) => *tally.errors.entry(e.to_string()).or_default() += 1,
                    }
                }
                tally
            })
        })
        .collect();
    let mut tally = Tally::default();
    for worker in workers {
        let part = worker.await?;
        tally.ok += part.ok;
        tally.latency_us.extend(part.latency_us);
        for (e, n) in part.errors {
            *tally.errors.entry(e).or_default() += n;
        }
    }
    Ok((tally, started.elapsed().as_secs_f64()))
}
