//! StreamSegment against a real server on port 0: a generated video file (looping and not),
//! an HTTP stream served by ffmpeg, a live GStreamer source and client frames; prompt updates
//! on the cached embedding, fan-out to two viewers, tracking, and refusals.

mod common;

use std::time::Duration;

use common::stream::{self as s, StreamClient};
use samstream::model::DataPath;
use samstream::proto::{self, stream_request::Msg as Req, stream_response::Msg as Resp, stream_start::Source};
use tonic::Code;

const LONG: Duration = Duration::from_secs(60);

async fn server_with_sources(dir: &std::path::Path, toml: &str) -> samstream::server::RunningServer {
    server_on_path(dir, toml, DataPath::Auto).await
}

async fn server_on_path(dir: &std::path::Path, toml: &str, data_path: DataPath) -> samstream::server::RunningServer {
    let mut config = common::config();
    config.runtime.data_path = data_path;
    config.video.sources = Some(s::write_sources(dir, toml));
    config.video.source_grace_secs = 0.5;
    common::start_server(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_source_streams_masks_then_ends() {
    let dir = tempfile::tempdir().unwrap();
    let video = s::make_video(dir.path(), "clip.mp4", 5.0, 10);
    let server = server_with_sources(dir.path(), &format!("[[source]]\nname = \"clip\"\nkind = \"file\"\npath = {video:?}\n")).await;
    let mut client = common::client(&server).await;

    let listed = client.list_sources(proto::ListSourcesRequest {}).await.unwrap().into_inner().sources;
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].name.as_str(), listed[0].kind), ("clip", proto::SourceKind::File as i32));

    let first = s::start(Source::SourceName("clip".into()), false, vec![s::point_object(1, 160.0, 120.0)]);
    let mut stream = StreamClient::open(&mut client, first).await.unwrap();
    // Not looping: the file plays once, the stream reports its end and closes cleanly.
    let (results, events) = stream.until_end(LONG).await;
    let kinds: Vec<i32> = events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds.first(), Some(&(proto::EventKind::Started as i32)), "{events:?}");
    assert!(kinds.contains(&(proto::EventKind::SourceConnected as i32)), "{events:?}");
    let ended = events.iter().find(|e| e.kind == proto::EventKind::SourceEnded as i32).expect("SOURCE_ENDED");
    assert!(ended.message.contains("end of file"), "{ended:?}");
    assert!(results.len() >= 3, "{} results", results.len());
    s::check_results(&results);
    for r in &results {
        assert_eq!((r.width, r.height), (320, 240));
        assert_eq!(r.objects.len(), 1);
        assert_eq!(r.prompt_revision, 1);
    }
    // The file plays at 10 fps while one frame takes the model far longer: frames are dropped,
    // and answered + dropped frames add up to the frames the file had after the first answer.
    let (first, last) = (&results[0], results.last().unwrap());
    assert!(last.frames_dropped > 0, "a 10 fps source outruns the CPU model: {last:?}");
    s::assert_source_rate(&results, 10.0);
    assert!(last.frame_id <= 50, "a 5 s file at 10 fps has 50 frames, got frame {}", last.frame_id);
    assert_eq!(last.frames_dropped - first.frames_dropped + results.len() as u64, last.frame_id - first.frame_id + 1);
    server.shutdown().await.unwrap();
}

/// The pump keeps two frames in the encoder's hands: while one encodes, the newest frame is
/// already captured, preprocessed and queued behind it (its queue time shows it), so the
/// encoder never waits for the pump; frame order and dropped-frame counts stay exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_is_pipelined_through_the_encoder_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let video = s::make_video(dir.path(), "pipe.mp4", 1.0, 10);
    let toml = format!("[[source]]\nname = \"pipe\"\nkind = \"file\"\npath = {video:?}\nloop = true\n");
    let server = server_with_sources(dir.path(), &toml).await;
    let mut client = common::client(&server).await;
    let mut stream =
        StreamClient::open(&mut client, s::start(Source::SourceName("pipe".into()), false, vec![s::point_object(1, 160.0, 120.0)]))
            .await
            .unwrap();
    let (results, _) = stream.results(5, LONG).await;
    s::check_results(&results);
    // A 10 fps source always has a new frame while the CPU encoder (hundreds of ms) is busy.
    let queued: Vec<u64> = results[1..].iter().map(|r| r.timing.unwrap().queue_us).collect();
    let waiting = queued.iter().filter(|&&us| us >= 50_000).count();
    let frames: Vec<(u64, u64)> = results.iter().map(|r| (r.frame_id, r.timing.unwrap().encoder_us)).collect();
    assert!(
        waiting * 2 > queued.len(),
        "frames wait in the encoder queue behind the current one: queue us {queued:?}, (frame, encoder us) {frames:?}"
    );
    drop(stream);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_file_keeps_going_and_prompt_updates_reuse_the_embedding() {
    let dir = tempfile::tempdir().unwrap();
    let video = s::make_video(dir.path(), "short.mp4", 1.0, 10);
    let toml = format!("[[source]]\nname = \"loop\"\nkind = \"file\"\npath = {video:?}\nloop = true\n");
    let server = server_with_sources(dir.path(), &toml).await;
    let mut client = common::client(&server).await;
    let mut stream =
        StreamClient::open(&mut client, s::start(Source::SourceName("loop".into()), false, vec![s::point_object(1, 100.0, 100.0)]))
            .await
            .unwrap();
    let (results, _) = stream.results(2, LONG).await;
    s::check_results(&results);

    // A mid-stream update: it is applied at once to the newest processed frame, decoder only.
    stream.send(s::prompts(vec![s::point_object(2, 200.0, 150.0)], 7)).await;
    let mut applied = false;
    let updated = loop {
        match stream.next(LONG).await.expect("stream open") {
            Resp::Event(e) if e.kind == proto::EventKind::PromptsApplied as i32 => applied = true,
            Resp::Event(_) => {}
            Resp::Result(r) if r.prompt_revision == 7 => break r,
            Resp::Result(r) => assert_eq!(r.prompt_revision, 1, "no other revision appears"),
        }
    };
    assert!(applied, "PROMPTS_APPLIED precedes the updated result");
    let t = updated.timing.unwrap();
    assert_eq!(t.encoder_us, 0, "the update reuses the cached embedding: {t:?}");
    assert!(t.decoder_us > 0);
    assert!(updated.frame_id >= results[1].frame_id, "the update applies to the newest processed frame");
    assert_eq!(updated.objects.iter().map(|o| o.object_id).collect::<Vec<_>>(), vec![1, 2]);

    // Later frames carry the update too; the 1 s, 10-frame file has looped.
    let (later, _) = stream.results(2, LONG).await;
    assert!(later.iter().all(|r| r.prompt_revision == 7 && r.objects.len() == 2));
    assert!(later.last().unwrap().frame_id > 10, "frame ids keep increasing across loops: {}", later.last().unwrap().frame_id);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_viewers_share_one_encoder_run_per_frame_and_tracking_follows_masks() {
    viewers_and_tracking(DataPath::Host).await;
}

/// The same on the device data path (its graphs on the CPU provider): the embedding is shared
/// in the provider's memory, and tracking feeds back the low-res logits the postprocessing
/// graph keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_data_path_shares_embeddings_and_tracks_objects() {
    viewers_and_tracking(DataPath::Device).await;
}

async fn viewers_and_tracking(data_path: DataPath) {
    let dir = tempfile::tempdir().unwrap();
    let video = s::make_video(dir.path(), "shared.mp4", 1.0, 10);
    // One source name per data path: both tests run in one process and share the metrics.
    let name = format!("shared-{data_path:?}");
    let toml = format!("[[source]]\nname = {name:?}\nkind = \"file\"\npath = {video:?}\nloop = true\n");
    let server = server_on_path(dir.path(), &toml, data_path).await;
    let mut client = common::client(&server).await;
    let runs_label = format!("origin=\"{name}\"");
    let runs_before = s::metric_value("samstream_encoder_runs_total", &runs_label);
    let object = || vec![s::point_object(5, 160.0, 120.0)];
    let mut tracked = StreamClient::open(&mut client, s::start(Source::SourceName(name.clone()), true, object())).await.unwrap();
    let mut fixed = StreamClient::open(&mut client, s::start(Source::SourceName(name.clone()), false, object())).await.unwrap();
    let (a, b) = tokio::join!(tracked.results(4, LONG), fixed.results(4, LONG));
    let (a, b) = (a.0, b.0);
    s::check_results(&a);
    s::check_results(&b);
    drop((tracked, fixed));
    let runs = s::metric_value("samstream_encoder_runs_total", &runs_label) - runs_before;
    let mut distinct: Vec<u64> = a.iter().chain(&b).map(|r| r.frame_id).collect();
    distinct.sort_unstable();
    distinct.dedup();
    // One encoder run per frame, whoever watches: far fewer runs than results delivered.
    assert!(runs < (a.len() + b.len()) as f64, "encoder runs {runs} for {} + {} results", a.len(), b.len());
    assert!(runs <= distinct.len() as f64 + 2.0, "encoder runs {runs} for {} distinct frames", distinct.len());
    let common_frames: Vec<(&proto::FrameResult, &proto::FrameResult)> =
        a.iter().filter_map(|x| b.iter().find(|y| y.frame_id == x.frame_id).map(|y| (x, y))).collect();
    assert!(
        common_frames.len() >= 2,
        "both viewers saw the same frames: {:?} / {:?}",
        a.iter().map(|r| r.frame_id).collect::<Vec<_>>(),
        b.iter().map(|r| r.frame_id).collect::<Vec<_>>()
    );
    for (x, y) in &common_frames {
        assert_eq!(x.timing.unwrap().encoder_us, y.timing.unwrap().encoder_us, "frame {} was encoded once", x.frame_id);
    }

    // Tracking: every result after the prompt still has object 5 (a mask, or reported lost
    // with score and area 0), and from the second shared frame on the tracked masks differ
    // from the untracked ones, because they come from the previous box and logits.
    for r in &a {
        let o = r.objects.iter().find(|o| o.object_id == 5).expect("tracked object is always reported");
        assert!(o.area > 0 || o.score == 0.0, "{o:?}");
    }
    let (x0, y0) = common_frames[0];
    assert_eq!(x0.objects[0].mask, y0.objects[0].mask, "the first frame uses the client's prompt in both sessions");
    let differs = common_frames[1..].iter().any(|(x, y)| x.objects[0].mask != y.objects[0].mask);
    assert!(differs, "tracked masks come from the previous mask, not the original point");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_stream_is_read_and_reconnected_when_its_server_dies() {
    let dir = tempfile::tempdir().unwrap();
    let video = s::make_video(dir.path(), "net.mp4", 2.0, 10);
    let port = s::free_port();
    let mut ffmpeg = s::FfmpegServer::http(&video, port, 60);
    let toml = format!(
        "[[source]]\nname = \"net\"\nkind = \"network\"\nurl = \"http://127.0.0.1:{port}/live.ts\"\nreconnect = {{ initial_ms = 200, max_ms = 800 }}\n"
    );
    let server = server_with_sources(dir.path(), &toml).await;
    let mut client = common::client(&server).await;
    let mut stream =
        StreamClient::open(&mut client, s::start(Source::SourceName("net".into()), false, vec![s::point_object(1, 50.0, 50.0)]))
            .await
            .unwrap();
    let (results, _) = stream.results(3, LONG).await;
    s::check_results(&results);
    s::assert_source_rate(&results, 10.0);

    ffmpeg.kill();
    let events = stream.until_event(proto::EventKind::SourceLost, LONG).await;
    assert!(events.iter().all(|e| e.kind != proto::EventKind::SourceEnded as i32), "a live source is not ended: {events:?}");
    let events = stream.until_event(proto::EventKind::SourceReconnecting, LONG).await;
    assert!(events.last().unwrap().message.contains("attempt"), "{events:?}");
    stream.until_event(proto::EventKind::SourceReconnecting, LONG).await;

    let listed = client.list_sources(proto::ListSourcesRequest {}).await.unwrap().into_inner().sources;
    assert_eq!(listed[0].status, proto::SourceStatus::Reconnecting as i32);

    // The source comes back on the same address: frames resume.
    let _ffmpeg = s::FfmpegServer::http(&video, port, 60);
    stream.until_event(proto::EventKind::SourceConnected, LONG).await;
    let (resumed, _) = stream.results(1, LONG).await;
    assert!(resumed[0].frame_id > results.last().unwrap().frame_id);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_gstreamer_source_and_an_unreachable_one() {
    let dir = tempfile::tempdir().unwrap();
    let closed_port = s::free_port();
    let toml = format!(
        "[[source]]\nname = \"live\"\nkind = \"gstreamer\"\npipeline = \"videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=5/1 ! videoconvert ! appsink\"\n\
         [[source]]\nname = \"nowhere\"\nkind = \"network\"\nurl = \"tcp://127.0.0.1:{closed_port}\"\nreconnect = {{ initial_ms = 100, max_ms = 200, max_attempts = 2 }}\n"
    );
    let server = server_with_sources(dir.path(), &toml).await;
    let mut client = common::client(&server).await;
    let mut live =
        StreamClient::open(&mut client, s::start(Source::SourceName("live".into()), false, vec![s::point_object(1, 10.0, 10.0)]))
            .await
            .unwrap();
    let (results, _) = live.results(3, LONG).await;
    s::check_results(&results);
    s::assert_source_rate(&results, 5.0);

    // Connection refused: reconnect attempts are reported, then the source gives up; no hang.
    let mut nowhere = StreamClient::open(&mut client, s::start(Source::SourceName("nowhere".into()), false, vec![])).await.unwrap();
    let events = nowhere.until_event(proto::EventKind::SourceEnded, LONG).await;
    let reconnecting = events.iter().filter(|e| e.kind == proto::EventKind::SourceReconnecting as i32).count();
    assert_eq!(reconnecting, 2, "{events:?}");
    assert!(events.last().unwrap().message.contains("gave up"), "{events:?}");
    assert!(nowhere.next(LONG).await.is_none(), "the stream closes after the source ended");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_frames_are_segmented_and_bad_ones_rejected() {
    let server = common::start_server(common::config()).await;
    let mut client = common::client(&server).await;
    let mut stream = StreamClient::open(
        &mut client,
        s::start(Source::ClientFrames(proto::ClientFrames {}), false, vec![s::point_object(3, 160.0, 120.0)]),
    )
    .await
    .unwrap();
    let frame = |id: u64, bytes: Vec<u8>| proto::StreamRequest {
        msg: Some(Req::Frame(proto::Frame {
            image: Some(proto::Image { kind: Some(proto::image::Kind::Encoded(bytes)) }),
            frame_id: id,
            timestamp_us: 1_000_000 + id as i64 * 40_000,
        })),
    };
    let png = common::png_bytes("small.png");
    stream.send(frame(10, png.clone())).await;
    let (first, _) = stream.results(1, LONG).await;
    assert_eq!((first[0].frame_id, first[0].timestamp_us, first[0].width), (10, 1_400_000, 320));
    assert_eq!(first[0].objects.len(), 1);

    // A corrupt frame is rejected by an event naming the field; the stream goes on.
    stream.send(frame(11, b"garbage".to_vec())).await;
    let events = stream.until_event(proto::EventKind::Rejected, LONG).await;
    assert!(events.last().unwrap().message.starts_with("frame.image.encoded"), "{events:?}");
    // So is a bad prompt update, and a second start.
    stream.send(s::prompts(vec![s::point_object(4, f32::NAN, 1.0)], 2)).await;
    let events = stream.until_event(proto::EventKind::Rejected, LONG).await;
    assert!(events.last().unwrap().message.starts_with("prompts.upsert[0].points[0].x"), "{events:?}");
    stream.send(s::start(Source::ClientFrames(proto::ClientFrames {}), false, vec![]).remove(0)).await;
    let events = stream.until_event(proto::EventKind::Rejected, LONG).await;
    assert!(events.last().unwrap().message.starts_with("start:"), "{events:?}");

    // Frames sent faster than the model runs: the latest wins, the rest are counted.
    for id in 20..25 {
        stream.send(frame(id, png.clone())).await;
    }
    drop(stream.requests); // half-close: the session answers what is left, then ends
    let mut results = Vec::new();
    while let Some(message) = stream.responses.message().await.unwrap() {
        if let Some(Resp::Result(r)) = message.msg {
            results.push(r);
        }
    }
    let last = results.last().expect("the last frame is answered");
    assert_eq!(last.frame_id, 24, "the newest frame is processed");
    assert_eq!(last.frames_dropped + results.len() as u64, 5, "answered + dropped = sent");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_refused_with_clear_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config();
    config.video.sources = Some(s::write_sources(dir.path(), ""));
    config.video.allow_uris = vec!["http://127.0.0.1:1/allowed/*".into(), "http://169.254.*".into()];
    let server = common::start_server(config).await;
    let mut client = common::client(&server).await;
    let refused = |source: Source| s::start(source, false, vec![]);
    let cases = [
        (refused(Source::SourceName("missing".into())), Code::NotFound, "start.source_name"),
        (refused(Source::Uri("file:///etc/passwd".into())), Code::PermissionDenied, "start.uri"),
        (refused(Source::Uri("http://169.254.169.254/latest".into())), Code::PermissionDenied, "start.uri"),
        (vec![s::prompts(vec![], 1)], Code::InvalidArgument, "start"),
        (vec![proto::StreamRequest { msg: Some(Req::Start(proto::StreamStart::default())) }], Code::InvalidArgument, "start.source"),
        (
            vec![proto::StreamRequest {
                msg: Some(Req::Start(proto::StreamStart {
                    source: Some(Source::ClientFrames(proto::ClientFrames {})),
                    max_fps: -1.0,
                    ..Default::default()
                })),
            }],
            Code::InvalidArgument,
            "start.max_fps",
        ),
    ];
    for (first, code, field) in cases {
        let status = match StreamClient::open(&mut client, first).await {
            Err(status) => status,
            Ok(mut stream) => stream.responses.message().await.expect_err("refused"),
        };
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains(field), "{status:?} names {field}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_frames_in_a_file_are_reported_and_the_stream_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    // MPEG-TS survives damage: the decoder drops the broken frames and carries on.
    let video = dir.path().join("damaged.ts");
    let status = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10", "-t", "6"])
        .args(["-c:v", "mpeg4", "-q:v", "5", "-f", "mpegts"])
        .arg(&video)
        .status()
        .unwrap();
    assert!(status.success());
    let mut bytes = std::fs::read(&video).unwrap();
    let len = bytes.len();
    for start in [len / 4, len / 2] {
        for (i, b) in bytes[start..start + 6000].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(97).wrapping_add(13);
        }
    }
    std::fs::write(&video, bytes).unwrap();
    let server = server_with_sources(dir.path(), &format!("[[source]]\nname = \"damaged\"\nkind = \"file\"\npath = {video:?}\n")).await;
    let mut client = common::client(&server).await;
    let mut stream =
        StreamClient::open(&mut client, s::start(Source::SourceName("damaged".into()), false, vec![s::point_object(1, 50.0, 50.0)]))
            .await
            .unwrap();
    let (results, events) = stream.until_end(LONG).await;
    let skipped: Vec<&proto::StreamEvent> = events.iter().filter(|e| e.kind == proto::EventKind::FramesSkipped as i32).collect();
    assert!(!skipped.is_empty(), "damage is reported: {events:?}");
    assert!(skipped[0].message.contains("unreadable frame"), "{skipped:?}");
    assert!(results.len() >= 2, "the stream went on: {} results", results.len());
    s::check_results(&results);
    assert!(events.last().is_some_and(|e| e.kind == proto::EventKind::SourceEnded as i32), "{events:?}");
    server.shutdown().await.unwrap();
}
