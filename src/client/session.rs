//! Streaming runs of `samstream client`: a local video file or camera sent frame by frame
//! (each frame waits for its result, so every frame gets masks and the overlay has them all),
//! or a server-side source / URI whose results are drawn on a neutral canvas.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use opencv::core::Mat;
use opencv::prelude::*;
use opencv::videoio::{self, VideoCapture};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::live::LiveStats;
use super::overlay::{Outputs, canvas};
use super::prompts::TimedUpdate;
use crate::proto::segmenter_client::SegmenterClient;
use crate::proto::{self, stream_request::Msg as Req, stream_response::Msg as Resp};

pub enum Input {
    Video(std::path::PathBuf),
    Camera(String),
    Source(proto::stream_start::Source),
}

pub struct StreamPlan {
    pub input: Input,
    pub initial: Vec<proto::ObjectPrompt>,
    pub script: Vec<TimedUpdate>,
    pub start: proto::StreamStart,
    pub max_frames: Option<u64>,
    pub seconds: Option<f64>,
}

/// Sends prompt updates whose time has come, numbering revisions from 1.
struct Prompter {
    script: std::collections::VecDeque<TimedUpdate>,
    revision: u64,
}

impl Prompter {
    async fn send_due(&mut self, now: f64, requests: &mpsc::Sender<proto::StreamRequest>) -> anyhow::Result<()> {
        while self.script.front().is_some_and(|u| u.at <= now) {
            let mut update = self.script.pop_front().expect("checked above").update;
            self.revision += 1;
            update.revision = self.revision;
            requests.send(proto::StreamRequest { msg: Some(Req::Prompts(update)) }).await.context("the stream closed")?;
        }
        Ok(())
    }
}

/// Reads the next FrameResult, printing events on the way; None when the stream ends.
async fn next_result(responses: &mut tonic::Streaming<proto::StreamResponse>) -> anyhow::Result<Option<proto::FrameResult>> {
    loop {
        match responses.message().await? {
            Some(proto::StreamResponse { msg: Some(Resp::Result(result)) }) => return Ok(Some(result)),
            Some(proto::StreamResponse { msg: Some(Resp::Event(e)) }) => {
                let kind = proto::EventKind::try_from(e.kind).map_or("UNKNOWN".into(), |k| k.as_str_name().to_string());
                // On a terminal the live line has no newline yet: clear it first.
                let lead = if std::io::IsTerminal::is_terminal(&std::io::stderr()) { "\r\x1b[K" } else { "" };
                eprintln!("{lead}[event] {kind}: {}", e.message);
            }
            Some(_) => {}
            None => return Ok(None),
        }
    }
}

pub async fn run(
    mut client: SegmenterClient<tonic::transport::Channel>,
    plan: StreamPlan,
    outputs: &mut Outputs,
    live: &mut LiveStats,
) -> anyhow::Result<()> {
    let (requests, outbound) = mpsc::channel(8);
    requests.send(proto::StreamRequest { msg: Some(Req::Start(plan.start.clone())) }).await?;
    let mut script: Vec<TimedUpdate> = Vec::new();
    if !plan.initial.is_empty() {
        script.push(TimedUpdate { at: 0.0, update: proto::PromptUpdate { upsert: plan.initial.clone(), ..Default::default() } });
    }
    script.extend(plan.script.iter().cloned());
    let mut prompter = Prompter { script: script.into(), revision: 0 };
    prompter.send_due(0.0, &requests).await?;
    let mut responses = client.stream_segment(ReceiverStream::new(outbound)).await?.into_inner();
    let started = Instant::now();
    let within =
        |frames: u64| plan.max_frames.is_none_or(|m| frames < m) && plan.seconds.is_none_or(|s| started.elapsed().as_secs_f64() < s);

    match &plan.input {
        Input::Video(_) | Input::Camera(_) => {
            let (mut capture, fps, is_file) = open_capture(&plan.input)?;
            if is_file {
                outputs.set_frame_rate(fps);
            }
            let mut frame = Mat::default();
            let mut sent = 0u64;
            while within(sent) {
                // Decoding and writing video block: the runtime moves its other tasks (the
                // gRPC connection) off this worker meanwhile.
                if !tokio::task::block_in_place(|| capture.read(&mut frame))? || frame.empty() {
                    break;
                }
                let at = if is_file { sent as f64 / fps } else { started.elapsed().as_secs_f64() };
                prompter.send_due(at, &requests).await?;
                sent += 1;
                let raw = proto::RawImage {
                    width: frame.cols() as u32,
                    height: frame.rows() as u32,
                    format: proto::PixelFormat::Bgr8 as i32,
                    data: frame.data_bytes()?.to_vec(),
                };
                let message = proto::Frame {
                    image: Some(proto::Image { kind: Some(proto::image::Kind::Raw(raw)) }),
                    frame_id: sent,
                    timestamp_us: (at * 1e6) as i64,
                };
                requests.send(proto::StreamRequest { msg: Some(Req::Frame(message)) }).await.context("the stream closed")?;
                // Results of re-decoded earlier frames (after a prompt update) are skipped.
                loop {
                    let Some(result) = next_result(&mut responses).await? else { bail!("the stream ended before frame {sent}'s result") };
                    if result.frame_id == sent {
                        live.record(&result);
                        tokio::task::block_in_place(|| outputs.write(&mut frame, &result))?;
                        break;
                    }
                }
            }
        }
        Input::Source(_) => {
            let mut received = 0u64;
            let mut last_frame = 0;
            while within(received) {
                prompter.send_due(started.elapsed().as_secs_f64(), &requests).await?;
                let left = plan
                    .seconds
                    .map_or(Duration::from_secs(3600), |s| Duration::from_secs_f64((s - started.elapsed().as_secs_f64()).max(0.0)));
                let Ok(next) = tokio::time::timeout(left, next_result(&mut responses)).await else { break };
                let Some(result) = next? else { break };
                if result.frame_id == last_frame {
                    continue; // a prompt update's re-decode of a frame already drawn
                }
                last_frame = result.frame_id;
                received += 1;
                live.record(&result);
                let mut frame = canvas(result.width, result.height)?;
                tokio::task::block_in_place(|| outputs.write(&mut frame, &result))?;
            }
        }
    }
    drop(requests);
    Ok(())
}

fn open_capture(input: &Input) -> anyhow::Result<(VideoCapture, f64, bool)> {
    let (capture, is_file) = match input {
        Input::Video(path) => (VideoCapture::from_file(path.as_path(), videoio::CAP_ANY)?, true),
        Input::Camera(device) => match device.parse::<i32>() {
            Ok(index) => (VideoCapture::new(index, videoio::CAP_ANY)?, false),
            Err(_) => (VideoCapture::from_file(device, videoio::CAP_V4L2)?, false),
        },
        Input::Source(_) => unreachable!("server-side sources are not opened here"),
    };
    if !capture.is_opened()? {
        bail!("cannot open the video input");
    }
    let fps = capture.get(videoio::CAP_PROP_FPS).ok().filter(|f| f.is_finite() && *f > 0.0).unwrap_or(10.0);
    Ok((capture, fps, is_file))
}
