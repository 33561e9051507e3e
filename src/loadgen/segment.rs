//! Unary load (`Segment` or `SegmentEverything`): concurrent callers, optional rate limit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::Mutex;

use super::{BenchArgs, Tally, load_image, spread_objects};
use crate::proto;
use crate::proto::segmenter_client::SegmenterClient;
use crate::soak::record_stages;

/// One unary call the bench repeats.
#[derive(Clone)]
enum Call {
    Segment(proto::SegmentRequest),
    Everything(proto::SegmentEverythingRequest),
}

impl Call {
    /// Makes the call; the server's stage timings and the number of masks on success.
    async fn make(&self, client: &mut SegmenterClient<tonic::transport::Channel>) -> Result<(Option<proto::Timing>, usize), tonic::Status> {
        match self {
            Call::Segment(request) => {
                let response = client.segment(request.clone()).await?.into_inner();
                Ok((response.timing, response.objects.len()))
            }
            Call::Everything(request) => {
                let response = client.segment_everything(request.clone()).await?.into_inner();
                Ok((response.timing, response.masks.len()))
            }
        }
    }
}

pub(super) async fn bench_segment(args: &BenchArgs, everything: bool) -> anyhow::Result<(Tally, f64)> {
    let path = args.image.as_ref().context("--rpc segment and everything need --image")?;
    let (image, width, height) = load_image(path, args.raw)?;
    let call = if everything {
        let options =
            proto::AutoMaskOptions { points_per_side: args.points_per_side, crop_n_layers: args.crop_n_layers, ..Default::default() };
        Call::Everything(proto::SegmentEverythingRequest { image: Some(image), mask_options: None, options: Some(options) })
    } else {
        Call::Segment(proto::SegmentRequest {
            image: Some(image),
            objects: spread_objects(args.objects, width, height),
            mask_options: None,
        })
    };
    let mut client =
        SegmenterClient::connect(args.server.clone()).await?.max_encoding_message_size(usize::MAX).max_decoding_message_size(usize::MAX);
    for _ in 0..args.warmup {
        call.make(&mut client).await.context("warm-up call")?;
    }
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let issued = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let interval = (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate));
    let workers: Vec<_> = (0..args.concurrency.max(1))
        .map(|_| {
            let (mut client, call, tally, issued) = (client.clone(), call.clone(), tally.clone(), issued.clone());
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
                    let result = call.make(&mut client).await;
                    let mut tally = tally.lock().await;
                    match result {
                        Ok((timing, masks)) => {
                            tally.ok += 1;
                            tally.masks = Some(masks);
                            tally.latency_us.push(t.elapsed().as_micros() as u64);
                            if let Some(timing) = timing {
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
