//! Sessions other calls can steer: the session id of a STARTED event, UpdateSession from a
//! second client, OpenSession for clients without bidirectional streams, and preview frames that
//! are the very frames the masks belong to.

mod common;

use std::time::Duration;

use common::stream::{self as s, StreamClient};
use opencv::core::Vector;
use opencv::prelude::*;
use samstream::proto::{self, stream_request::Msg as Req, stream_response::Msg as Resp, stream_start::Source};
use tonic::Code;

const LONG: Duration = Duration::from_secs(60);

fn update(session_id: &str, upsert: Vec<proto::ObjectPrompt>, revision: u64) -> proto::UpdateSessionRequest {
    proto::UpdateSessionRequest {
        session_id: session_id.into(),
        prompts: Some(proto::PromptUpdate { upsert, remove: vec![], clear: false, revision }),
    }
}

/// A 320x240 frame of one colour whose red channel is `level` (green 40, blue 200).
fn frame(frame_id: u64, level: u8) -> proto::StreamRequest {
    let pixels: Vec<u8> = std::iter::repeat_n([level, 40, 200], 320 * 240).flatten().collect();
    let raw = proto::RawImage { width: 320, height: 240, format: proto::PixelFormat::Rgb8 as i32, data: pixels };
    let image = proto::Image { kind: Some(proto::image::Kind::Raw(raw)) };
    proto::StreamRequest { msg: Some(Req::Frame(proto::Frame { image: Some(image), frame_id, timestamp_us: frame_id as i64 })) }
}

/// The red level of a preview JPEG's centre pixel.
fn red_of(jpeg: &[u8]) -> i32 {
    let decoded = opencv::imgcodecs::imdecode(&Vector::<u8>::from_slice(jpeg), opencv::imgcodecs::IMREAD_COLOR).unwrap();
    let bgr = *decoded.at_2d::<opencv::core::Vec3b>(decoded.rows() / 2, decoded.cols() / 2).unwrap();
    i32::from(bgr[2])
}

fn started_id(events: &[proto::StreamEvent]) -> String {
    let started = events.iter().find(|e| e.kind == proto::EventKind::Started as i32).expect("a STARTED event");
    assert_eq!(started.session_id.len(), 32, "an unguessable id: {started:?}");
    started.session_id.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_client_steers_a_session_by_id_and_previews_are_the_frames_masks_belong_to() {
    let server = common::start_server(common::config()).await;
    let mut watcher = common::client(&server).await;
    let mut steering = common::client(&server).await;

    let start = proto::StreamStart {
        source: Some(Source::ClientFrames(proto::ClientFrames {})),
        preview: Some(proto::PreviewOptions { max_side: 160, quality: 90, every_n_results: 1 }),
        ..Default::default()
    };
    let mut stream = StreamClient::open(&mut watcher, vec![proto::StreamRequest { msg: Some(Req::Start(start)) }]).await.unwrap();
    let started = stream.until_event(proto::EventKind::Started, LONG).await;
    let id = started_id(&started);

    // Frames of known content, one at a time: each result's preview is its own frame.
    let levels = [30u8, 120, 220];
    for (i, level) in levels.iter().enumerate() {
        stream.send(frame(i as u64 + 1, *level)).await;
        let (results, _) = stream.results(1, LONG).await;
        let result = &results[0];
        assert_eq!(result.frame_id, i as u64 + 1);
        let preview = result.preview.as_ref().expect("a preview with every result");
        assert_eq!((preview.width, preview.height), (160, 120), "the longest side is max_side");
        let red = red_of(&preview.jpeg);
        assert!((red - i32::from(*level)).abs() <= 8, "frame {}: preview red {red}, the frame's {level}", result.frame_id);
        assert!(result.timing.unwrap().preview_us > 0, "the preview stage is timed");
    }

    // The other client steers: the watcher sees PROMPTS_APPLIED and a result at that revision.
    let answer = steering.update_session(update(&id, vec![s::point_object(7, 160.0, 120.0)], 5)).await.unwrap().into_inner();
    assert_eq!((answer.revision, answer.objects), (5, 1));
    let events = stream.until_event(proto::EventKind::PromptsApplied, LONG).await;
    assert!(events.last().unwrap().message.contains("revision 5"), "{events:?}");
    let (results, _) = stream.results(1, LONG).await;
    assert_eq!(results[0].prompt_revision, 5);
    assert_eq!(results[0].objects.iter().map(|o| o.object_id).collect::<Vec<_>>(), vec![7]);
    assert_eq!(results[0].frame_id, 3, "the update re-decodes the last frame");
    let red = red_of(&results[0].preview.as_ref().expect("preview").jpeg);
    assert!((red - 220).abs() <= 8, "the re-decoded result's preview is that frame: red {red}");

    // A prompt outside the frame is refused by the session, naming the field; the stream goes on.
    let outside = steering.update_session(update(&id, vec![s::point_object(8, 900.0, 10.0)], 6)).await.unwrap_err();
    assert_eq!(outside.code(), Code::InvalidArgument, "{outside:?}");
    assert!(outside.message().contains("prompts.upsert"), "{outside:?}");
    stream.send(frame(4, 60)).await;
    let (results, _) = stream.results(1, LONG).await;
    assert_eq!((results[0].frame_id, results[0].prompt_revision), (4, 5));

    // Unknown, missing and ended ids.
    let unknown = steering.update_session(update("0123456789abcdef0123456789abcdef", vec![], 1)).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(unknown.message().contains("session_id"), "{unknown:?}");
    let missing = steering.update_session(update("", vec![], 1)).await.unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    assert!(missing.message().contains("session_id"), "{missing:?}");
    drop(stream);
    let deadline = tokio::time::Instant::now() + LONG;
    let ended = loop {
        match steering.update_session(update(&id, vec![s::point_object(1, 10.0, 10.0)], 9)).await {
            Err(status) => break status,
            Ok(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Ok(_) => panic!("the ended session still takes updates"),
        }
    };
    assert_eq!(ended.code(), Code::NotFound, "{ended:?}");
    assert!(ended.message().contains("session_id"), "{ended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_session_streams_a_source_that_update_session_steers() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config();
    config.video.sources = Some(s::looping_source(dir.path()));
    let server = common::start_server(config).await;
    let mut viewer = common::client(&server).await;
    let mut planner = common::client(&server).await;

    let start = proto::StreamStart {
        source: Some(Source::SourceName("loop".into())),
        preview: Some(proto::PreviewOptions { max_side: 0, quality: 0, every_n_results: 2 }),
        ..Default::default()
    };
    let mut responses = viewer.open_session(start.clone()).await.unwrap().into_inner();
    let mut next = async || match tokio::time::timeout(LONG, responses.message()).await.expect("a response in time") {
        Ok(Some(response)) => response.msg.expect("a message"),
        other => panic!("the session ended: {other:?}"),
    };
    let id = loop {
        if let Resp::Event(e) = next().await
            && e.kind == proto::EventKind::Started as i32
        {
            break started_id(&[e]);
        }
    };
    let mut with_preview = 0;
    for _ in 0..4 {
        loop {
            if let Resp::Result(r) = next().await {
                with_preview += usize::from(r.preview.is_some());
                break;
            }
        }
    }
    assert_eq!(with_preview, 2, "every second result carries a preview");

    // The planner names the session's source in the affinity header, as a proxy routes it.
    let mut request = tonic::Request::new(update(&id, vec![s::point_object(3, 100.0, 100.0)], 1));
    request.metadata_mut().insert("x-samstream-source", "loop".parse().unwrap());
    assert_eq!(planner.update_session(request).await.unwrap().into_inner().revision, 1);
    let steered = loop {
        if let Resp::Result(r) = next().await
            && r.prompt_revision == 1
        {
            break r;
        }
    };
    assert_eq!(steered.objects.len(), 1);

    // A call routed for another source would reach the wrong replica behind a proxy: refused.
    let mut wrong = tonic::Request::new(update(&id, vec![], 2));
    wrong.metadata_mut().insert("x-samstream-source", "lobby".parse().unwrap());
    let status = planner.update_session(wrong).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("x-samstream-source"), "{status:?}");

    // OpenSession cannot take frames; bad preview options name their field.
    let frames = proto::StreamStart { source: Some(Source::ClientFrames(proto::ClientFrames {})), ..Default::default() };
    let status = viewer.open_session(frames).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("client_frames"), "{status:?}");
    for (preview, field) in [
        (proto::PreviewOptions { max_side: 8, ..Default::default() }, "preview.max_side"),
        (proto::PreviewOptions { max_side: 5000, ..Default::default() }, "preview.max_side"),
        (proto::PreviewOptions { quality: 101, ..Default::default() }, "preview.quality"),
    ] {
        let start = proto::StreamStart { source: Some(Source::SourceName("loop".into())), preview: Some(preview), ..Default::default() };
        let status = viewer.open_session(start.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with(field), "{status:?}");
        let stream = StreamClient::open(&mut viewer, vec![proto::StreamRequest { msg: Some(Req::Start(start)) }]).await;
        let status = stream.err().expect("StreamSegment refuses it too");
        assert!(status.message().starts_with(&format!("start.{field}")), "{status:?}");
    }
    // The session and the server went on.
    assert!(matches!(next().await, Resp::Result(_) | Resp::Event(_)));
}
