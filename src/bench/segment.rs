//! Unary `Segment` load: concurrent callers, optional rate limit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::Mutex;

use super::{BenchArgs, Tally, spread_objects};
use crate::soak::record_stages;
use crate::proto;
use crate::proto::segmenter_client::SegmenterClient;

pub(super) async fn bench_segment(args: &BenchArgs) -> anyhow::Result<(Tally, f64)> {
    let path = args.image.as_ref().context("--rpc segment needs --image")?;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let size = imagesize::blob_size(&bytes).context("reading the image size")?;
    let request = proto::SegmentRequest {
        image: Some(proto::Image { kind: Some(proto::image::Kind::Encoded(bytes)) }),
        objects: spread_objects(args.objects, size.width as f32, size.height as f32),
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

