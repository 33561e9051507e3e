//! Faults and overload against real servers: concurrency caps, deadlines, slow readers, and
//! SIGTERM on the real binary.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::stream::{self as s, StreamClient};
use samstream::proto::{self, stream_start::Source};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

const LONG: Duration = Duration::from_secs(60);

fn segment_request() -> proto::SegmentRequest {
    proto::SegmentRequest {
        image: Some(proto::Image { kind: Some(proto::image::Kind::Encoded(common::png_bytes("small.png"))) }),
        objects: vec![s::point_object(1, 10.0, 10.0)],
        mask_options: None,
    }
}

fn looping_source(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let video = s::make_video(dir, &format!("{name}.mp4"), 1.0, 10);
    s::write_sources(dir, &format!("[[source]]\nname = \"{name}\"\nkind = \"file\"\npath = {video:?}\nloop = true\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_caps_calls_are_refused_at_once_and_admitted_streams_keep_going() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config();
    config.limits.max_inflight = 1;
    config.limits.max_streams = 1;
    config.video.sources = Some(looping_source(dir.path(), "capped"));
    let server = common::start_server(config).await;
    let mut client = common::client(&server).await;

    let mut first = client.clone();
    let running = tokio::spawn(async move { first.segment(segment_request()).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let refused = client.segment(segment_request()).await.expect_err("over the in-flight cap");
    assert!(started.elapsed() < Duration::from_millis(500), "refused at once, not queued");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("in-flight Segment limit of 1"), "{refused:?}");
    assert_eq!(refused.metadata().get("retry-after-ms").and_then(|v| v.to_str().ok()), Some("1000"));
    running.await.unwrap().expect("the admitted call completes");

    let mut admitted = StreamClient::open(&mut client, s::start(Source::SourceName("capped".into()), false, vec![])).await.unwrap();
    admitted.results(1, LONG).await;
    let second = match StreamClient::open(&mut client, s::start(Source::SourceName("capped".into()), false, vec![])).await {
        Err(status) => status,
        Ok(mut stream) => stream.responses.message().await.expect_err("over the stream cap"),
    };
    assert_eq!(second.code(), Code::ResourceExhausted, "{second:?}");
    assert!(second.metadata().get("retry-after-ms").is_some());
    let (more, _) = admitted.results(2, LONG).await;
    s::check_results(&more);
    drop(admitted);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_deadline_cancels_the_queued_work() {
    let server = common::start_server(common::config()).await;
    let client = common::client(&server).await;
    let skipped_before = s::metric_value("samstream_jobs_skipped_total", "stage=\"encoder\"");
    let mut busy = client.clone();
    let running = tokio::spawn(async move { busy.segment(segment_request()).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut hurried = client.clone();
    let mut request = tonic::Request::new(segment_request());
    request.set_timeout(Duration::from_millis(400));
    let status = hurried.segment(request).await.expect_err("the deadline expires while queued");
    // The server answers DEADLINE_EXCEEDED; tonic's client may report its own timer first.
    assert!(matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled), "{status:?}");
    running.await.unwrap().expect("the first call is unaffected");
    // Its encoder job was still queued when the deadline expired: it is skipped, not run.
    let deadline = Instant::now() + Duration::from_secs(10);
    while s::metric_value("samstream_jobs_skipped_total", "stage=\"encoder\"") <= skipped_before {
        assert!(Instant::now() < deadline, "the expired call's encoder job was run anyway");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_paused_and_others_are_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config();
    config.video.sources = Some(looping_source(dir.path(), "shared"));
    let server = common::start_server(config).await;
    let mut client = common::client(&server).await;
    // Polygons of random-init masks are large (thousands of specks per frame), so a stalled
    // reader fills the transport window at once and its session has to wait.
    let start = |polygons: bool| {
        let format = if polygons { proto::MaskFormat::Polygons } else { proto::MaskFormat::CocoRle };
        let mut messages = s::start(Source::SourceName("shared".into()), false, vec![s::point_object(1, 160.0, 120.0)]);
        if let Some(proto::stream_request::Msg::Start(start)) = &mut messages[0].msg {
            start.mask_options = Some(proto::MaskOptions { format: format as i32, multimask_output: false });
        }
        messages
    };
    let mut stalled = StreamClient::open(&mut client, start(true)).await.unwrap();
    let mut reader = StreamClient::open(&mut client, start(false)).await.unwrap();
    let (results, _) = reader.results(6, LONG).await;
    s::check_results(&results);
    s::assert_source_rate(&results, 10.0);
    let reader_last = results.last().unwrap().frame_id;

    // What the stalled stream holds: a few results buffered, then a jump — it was paused and
    // frames were skipped at the source instead of queueing for it.
    let mut buffered = Vec::new();
    let resumed = loop {
        let (next, _) = stalled.results(1, LONG).await;
        let r = next.into_iter().next().unwrap();
        if r.frame_id > reader_last {
            break r;
        }
        buffered.push(r.frame_id);
    };
    assert!(buffered.len() <= 6, "a stalled reader had {} results buffered: {buffered:?}", buffered.len());
    let last_buffered = buffered.last().copied().unwrap_or(0);
    assert!(resumed.frame_id >= last_buffered + 2, "frames skipped while paused: {buffered:?} then {}", resumed.frame_id);
    drop(stalled);
    server.shutdown().await.unwrap();
}

/// The real binary: SIGTERM turns health NOT_SERVING, ends open streams with a final event
/// and exits 0 within the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero_within_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let sources = looping_source(dir.path(), "live");
    let mut child = Command::new(env!("CARGO_BIN_EXE_samstream"))
        .args(["serve", "--listen", "127.0.0.1:0", "--shutdown-grace-secs", "4", "--intra-threads", "1"])
        .arg("--model-dir")
        .arg(common::model_dir())
        .arg("--sources")
        .arg(&sources)
        .env("ORT_DYLIB_PATH", common::ort_lib())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("samstream listening on ").unwrap_or_else(|| panic!("{line}")).to_string();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel.clone());
    let status = |h: &mut HealthClient<_>| {
        let mut h = h.clone();
        async move { h.check(HealthCheckRequest { service: String::new() }).await.map(|r| r.into_inner().status) }
    };
    let deadline = Instant::now() + LONG;
    while status(&mut health).await.ok() != Some(ServingStatus::Serving as i32) {
        assert!(Instant::now() < deadline, "never SERVING");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut client = proto::segmenter_client::SegmenterClient::new(channel);
    let mut stream = StreamClient::open(&mut client, s::start(Source::SourceName("live".into()), false, vec![])).await.unwrap();
    stream.results(1, LONG).await;

    let signalled = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    // The signal is handled asynchronously: poll, within the drain window (a quarter of the
    // grace period, 1 s here) in which the server still answers.
    let mut seen = status(&mut health).await.ok();
    while seen != Some(ServingStatus::NotServing as i32) && signalled.elapsed() < Duration::from_millis(900) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        seen = status(&mut health).await.ok();
    }
    assert_eq!(seen, Some(ServingStatus::NotServing as i32), "health flips before the drain");
    let events = stream.until_event(proto::EventKind::ShuttingDown, LONG).await;
    assert!(!events.is_empty());
    let end = stream.responses.message().await.expect_err("the stream ends UNAVAILABLE");
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    let exit = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    assert!(signalled.elapsed() < Duration::from_secs(6), "exited {:?} after SIGTERM, grace is 4 s", signalled.elapsed());
}
