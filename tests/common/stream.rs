//! Helpers for StreamSegment tests: generated videos, ffmpeg network servers, stream clients.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use samstream::proto::segmenter_client::SegmenterClient;
use samstream::proto::{self, stream_request::Msg as Req, stream_response::Msg as Resp};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// A test video made by ffmpeg's test pattern: `seconds` long at `fps`, 320x240.
pub fn make_video(dir: &Path, name: &str, seconds: f32, fps: u32) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size=320x240:rate={fps}"))
        .args(["-t", &seconds.to_string(), "-c:v", "mpeg4", "-q:v", "5"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg made {}", path.display());
    path
}

/// A free TCP port on loopback (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// ffmpeg serving `video` in a loop as MPEG-TS over HTTP on 127.0.0.1:`port`, for at most
/// `limit_secs`. Killed when dropped.
pub struct FfmpegServer(Child);

impl FfmpegServer {
    pub fn http(video: &Path, port: u16, limit_secs: u32) -> Self {
        let child = Command::new("ffmpeg")
            .args(["-loglevel", "error", "-re", "-stream_loop", "-1", "-i"])
            .arg(video)
            // Re-encoded so that the codec headers travel in-band (an MP4's are global).
            .args(["-t", &limit_secs.to_string(), "-c:v", "mpeg4", "-q:v", "5", "-f", "mpegts", "-listen", "1"])
            .arg(format!("http://127.0.0.1:{port}/live.ts"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffmpeg starts");
        Self(child)
    }

    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for FfmpegServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A sources file with one source, `loop`: a 1 s, 10 fps test video played in a loop.
pub fn looping_source(dir: &Path) -> PathBuf {
    let video = make_video(dir, "loop.mp4", 1.0, 10);
    write_sources(dir, &format!("[[source]]\nname = \"loop\"\nkind = \"file\"\npath = {video:?}\nloop = true\n"))
}

pub fn write_sources(dir: &Path, toml: &str) -> PathBuf {
    let path = dir.join("sources.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// One open StreamSegment call: `send` requests, `next` responses (with a timeout).
pub struct StreamClient {
    pub requests: mpsc::Sender<proto::StreamRequest>,
    pub responses: tonic::Streaming<proto::StreamResponse>,
}

pub fn start(source: proto::stream_start::Source, track: bool, objects: Vec<proto::ObjectPrompt>) -> Vec<proto::StreamRequest> {
    let mut messages =
        vec![proto::StreamRequest { msg: Some(Req::Start(proto::StreamStart { source: Some(source), track, ..Default::default() })) }];
    if !objects.is_empty() {
        messages.push(prompts(objects, 1));
    }
    messages
}

pub fn prompts(upsert: Vec<proto::ObjectPrompt>, revision: u64) -> proto::StreamRequest {
    proto::StreamRequest { msg: Some(Req::Prompts(proto::PromptUpdate { upsert, remove: vec![], clear: false, revision })) }
}

pub fn point_object(id: u32, x: f32, y: f32) -> proto::ObjectPrompt {
    proto::ObjectPrompt { object_id: id, points: vec![proto::Point { x, y, label: proto::PointLabel::Positive as i32 }], r#box: None }
}

impl StreamClient {
    pub async fn open(client: &mut SegmenterClient<Channel>, first: Vec<proto::StreamRequest>) -> Result<Self, tonic::Status> {
        let (requests, rx) = mpsc::channel(16);
        for message in first {
            requests.send(message).await.unwrap();
        }
        let responses = client.stream_segment(ReceiverStream::new(rx)).await?.into_inner();
        Ok(Self { requests, responses })
    }

    pub async fn send(&self, message: proto::StreamRequest) {
        self.requests.send(message).await.expect("stream still open");
    }

    /// The next response; `None` when the stream ended with OK. Panics on timeout or error.
    pub async fn next(&mut self, within: Duration) -> Option<Resp> {
        match tokio::time::timeout(within, self.responses.message()).await {
            Ok(Ok(message)) => message.map(|m| m.msg.expect("response has a message")),
            Ok(Err(status)) => panic!("stream failed: {status:?}"),
            Err(_) => panic!("no response within {within:?}"),
        }
    }

    /// Reads until `count` FrameResults arrived, returning them and the events seen meanwhile.
    pub async fn results(&mut self, count: usize, within: Duration) -> (Vec<proto::FrameResult>, Vec<proto::StreamEvent>) {
        let deadline = tokio::time::Instant::now() + within;
        let (mut results, mut events) = (Vec::new(), Vec::new());
        while results.len() < count {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Resp::Result(r)) => results.push(r),
                Some(Resp::Event(e)) => events.push(e),
                None => panic!("stream ended after {} of {count} results; events {events:?}", results.len()),
            }
        }
        (results, events)
    }

    /// Reads until the stream ends with OK: every result and event it sent.
    pub async fn until_end(&mut self, within: Duration) -> (Vec<proto::FrameResult>, Vec<proto::StreamEvent>) {
        let (mut results, mut events) = (Vec::new(), Vec::new());
        while let Some(message) = self.next(within).await {
            match message {
                Resp::Result(r) => results.push(r),
                Resp::Event(e) => events.push(e),
            }
        }
        (results, events)
    }

    /// Reads events (and skips results) until one of `kind` arrives.
    pub async fn until_event(&mut self, kind: proto::EventKind, within: Duration) -> Vec<proto::StreamEvent> {
        let deadline = tokio::time::Instant::now() + within;
        let mut events = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Resp::Event(e)) => {
                    let done = e.kind == kind as i32;
                    events.push(e);
                    if done {
                        return events;
                    }
                }
                Some(Resp::Result(_)) => {}
                None => panic!("stream ended before a {kind:?} event; events {events:?}"),
            }
        }
    }
}

/// The sum of a Prometheus counter or gauge over every series whose labels contain `labels`.
pub fn metric_value(name: &str, labels: &str) -> f64 {
    samstream::telemetry::metrics::handle()
        .render()
        .lines()
        .filter(|l| l.starts_with(name) && (l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' ')) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Checks the invariants every FrameResult of a stream must hold.
pub fn check_results(results: &[proto::FrameResult]) {
    for pair in results.windows(2) {
        assert!(pair[1].frame_id > pair[0].frame_id, "frame ids increase: {} then {}", pair[0].frame_id, pair[1].frame_id);
        assert!(pair[1].timestamp_us > pair[0].timestamp_us, "timestamps increase");
        assert!(pair[1].frames_dropped >= pair[0].frames_dropped, "frames_dropped is cumulative");
    }
    let first = &results[0];
    for (i, r) in results.iter().enumerate() {
        let t = r.timing.expect("timing");
        assert!(t.encoder_us > 0 && t.preprocess_us > 0, "frame {}: {t:?}", r.frame_id);
        if !r.objects.is_empty() {
            assert!(t.decoder_us > 0 && t.postprocess_us > 0, "frame {}: {t:?}", r.frame_id);
        }
        let stages = t.capture_us + t.preprocess_us + t.queue_us + t.encoder_us + t.decoder_us + t.postprocess_us;
        assert!(stages <= t.total_us, "frame {}: stages {stages} us exceed total {} us", r.frame_id, t.total_us);
        // Every source frame since the first result is either answered or counted as dropped.
        let seen = r.frame_id - first.frame_id + 1;
        assert_eq!(r.frames_dropped - first.frames_dropped, seen - (i as u64 + 1), "frame {}: frames_dropped", r.frame_id);
    }
}

/// The source's frame rate as the results see it: frame ids over timestamps.
pub fn assert_source_rate(results: &[proto::FrameResult], fps: f64) {
    let (first, last) = (&results[0], results.last().unwrap());
    let seconds = (last.timestamp_us - first.timestamp_us) as f64 / 1e6;
    let rate = (last.frame_id - first.frame_id) as f64 / seconds;
    assert!(
        (rate - fps).abs() <= fps * 0.3,
        "frames {}..{} in {seconds:.2} s = {rate:.1} fps, source runs at {fps}",
        first.frame_id,
        last.frame_id
    );
}
