//! Streaming runs of `samstream client`: a local video file or camera sent frame by frame
//! (each frame waits for its result, so every frame gets masks and the overlay has them all),
//! or a server-side source / URI whose results are drawn on the frames the server sends along.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use opencv::core::Mat;
use opencv::prelude::*;
use opencv::videoio::{self, VideoCapture};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::live::LiveStats;
use super::overlay::{Outputs, canvas, preview_frame};
use super::prompts::TimedUpdate;
use super::reconnect::Reconnects;
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

/// Sends prompt updates whose time has come, numbering revisions from 1 on each stream, and
/// replays the ones already sent when a reconnected stream starts.
struct Prompter {
    script: std::collections::VecDeque<TimedUpdate>,
    sent: Vec<proto::PromptUpdate>,
    revision: u64,
}

impl Prompter {
    fn new(plan: &StreamPlan) -> Self {
        let mut script: Vec<TimedUpdate> = Vec::new();
        if !plan.initial.is_empty() {
            script.push(TimedUpdate { at: 0.0, update: proto::PromptUpdate { upsert: plan.initial.clone(), ..Default::default() } });
        }
        script.extend(plan.script.iter().cloned());
        Self { script: script.into(), sent: Vec::new(), revision: 0 }
    }

    async fn send(&mut self, mut update: proto::PromptUpdate, requests: &mpsc::Sender<proto::StreamRequest>) -> anyhow::Result<()> {
        self.revision += 1;
        update.revision = self.revision;
        requests.send(proto::StreamRequest { msg: Some(Req::Prompts(update)) }).await.context("the stream closed")
    }

    async fn send_due(&mut self, now: f64, requests: &mpsc::Sender<proto::StreamRequest>) -> anyhow::Result<()> {
        while self.script.front().is_some_and(|u| u.at <= now) {
            let update = self.script.pop_front().expect("checked above").update;
            self.sent.push(update.clone());
            self.send(update, requests).await?;
        }
        Ok(())
    }

    async fn replay(&mut self, requests: &mpsc::Sender<proto::StreamRequest>) -> anyhow::Result<()> {
        self.revision = 0;
        for update in self.sent.clone() {
            self.send(update, requests).await?;
        }
        Ok(())
    }
}

/// Opens a StreamSegment call (with the affinity header) whose first messages are the start
/// and the prompts so far.
async fn open(
    client: &mut SegmenterClient<tonic::transport::Channel>,
    start: &proto::StreamStart,
    prompter: &mut Prompter,
    now: f64,
) -> anyhow::Result<(mpsc::Sender<proto::StreamRequest>, tonic::Streaming<proto::StreamResponse>)> {
    let (requests, outbound) = mpsc::channel(8);
    requests.send(proto::StreamRequest { msg: Some(Req::Start(start.clone())) }).await?;
    prompter.replay(&requests).await?;
    prompter.send_due(now, &requests).await?;
    let request = crate::cluster::with_affinity(start, ReceiverStream::new(outbound));
    let responses = client.stream_segment(request).await?.into_inner();
    Ok((requests, responses))
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
    client: SegmenterClient<tonic::transport::Channel>,
    plan: StreamPlan,
    outputs: &mut Outputs,
    live: &mut LiveStats,
) -> anyhow::Result<()> {
    let prompter = Prompter::new(&plan);
    match plan.input {
        Input::Source(_) => view_source(client, &plan, prompter, outputs, live).await,
        Input::Video(_) | Input::Camera(_) => push_frames(client, &plan, prompter, outputs, live).await,
    }
}

/// Sends a local video or camera frame by frame, each waiting for its result.
async fn push_frames(
    mut client: SegmenterClient<tonic::transport::Channel>,
    plan: &StreamPlan,
    mut prompter: Prompter,
    outputs: &mut Outputs,
    live: &mut LiveStats,
) -> anyhow::Result<()> {
    let (requests, mut responses) = open(&mut client, &plan.start, &mut prompter, 0.0).await?;
    let started = Instant::now();
    let within =
        |frames: u64| plan.max_frames.is_none_or(|m| frames < m) && plan.seconds.is_none_or(|s| started.elapsed().as_secs_f64() < s);
    let (mut capture, fps, is_file) = open_capture(&plan.input)?;
    if is_file {
        outputs.set_frame_rate(fps);
    }
    let mut frame = Mat::default();
    let mut sent = 0u64;
    while within(sent) {
        // Decoding and writing video block: the runtime moves its other tasks (the gRPC
        // connection) off this worker meanwhile.
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
    drop(requests);
    Ok(())
}

/// Watches a server-side source, drawing results on the frames the server sends along (on a
/// neutral canvas without them); reconnects (with the prompts so far) when the stream ends with
/// a status worth retrying, as behind a proxy it does when a replica dies or hands the source
/// over.
async fn view_source(
    mut client: SegmenterClient<tonic::transport::Channel>,
    plan: &StreamPlan,
    mut prompter: Prompter,
    outputs: &mut Outputs,
    live: &mut LiveStats,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let elapsed = || started.elapsed().as_secs_f64();
    let (mut received, mut last_frame) = (0u64, 0);
    let mut reconnects = Reconnects::default();
    loop {
        let (requests, mut responses) = match open(&mut client, &plan.start, &mut prompter, elapsed()).await {
            Ok(stream) => stream,
            Err(error) => {
                reconnects.after(error).await?;
                continue;
            }
        };
        let ended = loop {
            if !(plan.max_frames.is_none_or(|m| received < m) && plan.seconds.is_none_or(|s| elapsed() < s)) {
                return Ok(());
            }
            if let Err(error) = prompter.send_due(elapsed(), &requests).await {
                break error;
            }
            let left = plan.seconds.map_or(Duration::from_secs(3600), |s| Duration::from_secs_f64((s - elapsed()).max(0.0)));
            let Ok(next) = tokio::time::timeout(left, next_result(&mut responses)).await else { return Ok(()) };
            let result = match next {
                Ok(Some(result)) => result,
                Ok(None) => return Ok(()),
                Err(error) => break error,
            };
            reconnects.succeeded();
            if result.frame_id == last_frame {
                continue; // a prompt update's re-decode of a frame already drawn
            }
            last_frame = result.frame_id;
            received += 1;
            live.record(&result);
            tokio::task::block_in_place(|| {
                let mut frame = match &result.preview {
                    Some(preview) => preview_frame(preview, result.width, result.height)?,
                    None => canvas(result.width, result.height)?,
                };
                outputs.write(&mut frame, &result)
            })?;
        };
        reconnects.after(ended).await?;
        // Frame ids are the serving replica's: a new one numbers from its own start.
        last_frame = 0;
    }
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
