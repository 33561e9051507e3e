//! RTSP cameras, for real: GStreamer's RTSP server on loopback (tests/support/rtsp_camera.py)
//! serving H.264, read by samstream's grabber over TCP and over UDP, through a server that
//! reconnects when the camera restarts, with credentials that never show in logs, events or
//! ListSources. Every frame carries its send time, so the age of the frames samstream reads is
//! measured (printed, not asserted: the machine is shared).
//!
//! The suite has no camera device (`/dev/video*`) to open; the camera code
//! path differs only in how OpenCV opens the device, and the GStreamer-pipeline tests cover
//! the rest of it.

mod common;

use std::time::Duration;

use common::rtsp::{RtspCamera, age_ms, percentiles, stamp_of};
use common::stream::{self as s, StreamClient};
use samstream::proto::{self, stream_start::Source};
use samstream::video::{Backoff, Grabber, RtspTransport, SourceConfig, SourceSpec, SourceState, SourceStatus};
use tokio::sync::watch;

const LONG: Duration = Duration::from_secs(60);

/// Reads `count` frames from `url` with the grabber alone; returns their sequence numbers and
/// ages in milliseconds (frames whose stamp did not decode are left out of the ages).
async fn grab(url: &str, transport: RtspTransport, count: usize) -> (Vec<u64>, Vec<f64>, SourceState) {
    let spec = SourceSpec::Rtsp { url: url.into(), transport, latency_ms: 0 };
    let config = SourceConfig { name: format!("cam-{}", transport.label()), spec, reconnect: Backoff::default() };
    let (state_tx, state) = watch::channel(SourceState::default());
    let grabber = Grabber::spawn(config, state_tx).unwrap();
    let mut frames = grabber.frames.clone();
    let (mut seqs, mut ages) = (Vec::new(), Vec::new());
    while seqs.len() < count {
        tokio::time::timeout(LONG, frames.changed()).await.expect("frames keep coming").unwrap();
        let Some(frame) = frames.borrow_and_update().clone() else { continue };
        seqs.push(frame.seq);
        if let Some(stamp) = stamp_of(&frame.rgb) {
            ages.push(age_ms(stamp, frame.timestamp_us));
        }
    }
    let state = *state.borrow();
    (seqs, ages, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_udp_cameras_are_read_and_their_frames_are_fresh() {
    let camera = RtspCamera::start(&["cam"]);
    for transport in [RtspTransport::Tcp, RtspTransport::Udp] {
        let (seqs, mut ages, state) = grab(&camera.url("cam"), transport, 40).await;
        assert_eq!((state.status, state.width, state.height), (SourceStatus::Connected, 320, 240), "{transport:?}");
        assert!(seqs.windows(2).all(|w| w[1] > w[0]), "{transport:?}: sequence numbers increase: {seqs:?}");
        assert!(ages.len() >= 36, "{transport:?}: the time stamp decodes in {} of 40 frames", ages.len());
        let (p50, p99) = percentiles(&mut ages);
        eprintln!(
            "rtsp over {}: {} frames, age when grabbed (camera stamp -> decoded RGB frame) p50 {p50:.1} ms, p99 {p99:.1} ms",
            transport.label(),
            ages.len()
        );
    }
}

async fn server_with_sources(dir: &std::path::Path, toml: &str) -> samstream::server::RunningServer {
    let mut config = common::config();
    config.video.sources = Some(s::write_sources(dir, toml));
    config.video.source_grace_secs = 0.5;
    common::start_server(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_restart_is_reconnected_and_the_viewer_keeps_its_stream() {
    let dir = tempfile::tempdir().unwrap();
    let mut camera = RtspCamera::start(&["gate"]);
    let toml = format!(
        "[[source]]\nname = \"gate\"\nkind = \"rtsp\"\nurl = \"{}\"\ntransport = \"udp\"\nreconnect = {{ initial_ms = 200, max_ms = 800 }}\n",
        camera.url("gate")
    );
    let server = server_with_sources(dir.path(), &toml).await;
    let mut client = common::client(&server).await;
    let listed = client.list_sources(proto::ListSourcesRequest {}).await.unwrap().into_inner().sources;
    assert_eq!(listed[0].kind, proto::SourceKind::Rtsp as i32);
    assert_eq!(listed[0].location, format!("rtsp {} over UDP", camera.url("gate")));

    let start = s::start(Source::SourceName("gate".into()), false, vec![s::point_object(1, 160.0, 120.0)]);
    let mut stream = StreamClient::open(&mut client, start).await.unwrap();
    let (before, _) = stream.results(3, LONG).await;
    s::check_results(&before);

    camera.stop();
    let lost_at = std::time::Instant::now();
    stream.until_event(proto::EventKind::SourceLost, LONG).await;
    let events = stream.until_event(proto::EventKind::SourceReconnecting, LONG).await;
    eprintln!("camera gone: SOURCE_LOST after {:.1?}", lost_at.elapsed());
    assert!(events.last().unwrap().message.contains("attempt"), "{events:?}");

    camera.restart();
    let back_at = std::time::Instant::now();
    stream.until_event(proto::EventKind::SourceConnected, LONG).await;
    let (after, _) = stream.results(3, LONG).await;
    eprintln!("camera back: SOURCE_CONNECTED and results again after {:.1?}", back_at.elapsed());
    s::check_results(&after);
    assert!(after[0].frame_id > before.last().unwrap().frame_id, "frame numbering continues across the reconnect");
    assert!(after[0].frames_dropped >= before.last().unwrap().frames_dropped, "drop counts continue too");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_reach_the_camera_and_never_the_logs_events_or_list_sources() {
    let password = "s3cret-Pa55";
    let camera = RtspCamera::with_credentials(&["lobby"], "viewer", password);
    let dir = tempfile::tempdir().unwrap();
    let sources =
        s::write_sources(dir.path(), &format!("[[source]]\nname = \"lobby\"\nkind = \"rtsp\"\nurl = \"{}\"\n", camera.url("lobby")));
    let args = ["--sources".to_string(), sources.display().to_string(), "--allow-uri".into(), "rtsp://*".into()];
    let mut server = common::process::ServerProcess::spawn(&args, &[("RUST_LOG", "debug,ort=warn,h2=info,tower=info,hyper=info")]);
    let mut client = server.serving(LONG).await;

    let listed = client.list_sources(proto::ListSourcesRequest {}).await.unwrap().into_inner().sources;
    assert_eq!(listed[0].location, format!("rtsp rtsp://viewer:***@127.0.0.1:{}/lobby over TCP", camera.port));

    // The configured source and the same camera as a client URI both need the credentials.
    let mut seen = Vec::new();
    for source in [Source::SourceName("lobby".into()), Source::Uri(camera.url("lobby"))] {
        let mut stream = StreamClient::open(&mut client, s::start(source, false, vec![s::point_object(1, 160.0, 120.0)])).await.unwrap();
        let (results, events) = stream.results(2, LONG).await;
        s::check_results(&results);
        seen.extend(events.into_iter().map(|e| e.message));
    }
    assert!(seen.iter().any(|m| m.contains("viewer:***@")), "the events name the camera, redacted: {seen:?}");
    assert!(seen.iter().all(|m| !m.contains(password)), "{seen:?}");
    server.terminate();
    let output = server.output();
    assert!(output.contains("viewer:***@"), "the logs name the camera, redacted");
    assert!(!output.contains(password), "the password is in the server's output:\n{output}");
}
