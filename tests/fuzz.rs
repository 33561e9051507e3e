//! Property-based campaign over everything a client controls: 65 000 generated requests
//! through validation, 40 000 generated images through decoding, and 1 500 generated stream
//! message sequences against a real server (106 500 cases). No case may panic, hang or go
//! unanswered; every rejection names a field.

mod common;

use std::cell::Cell;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use samstream::proto::{self, image::Kind, stream_request::Msg as Req};
use samstream::server::ApiError;
use samstream::server::validate::{self, PromptLimits};
use samstream::video::{ImageLimits, decode_image};

const VALIDATION_CASES: u32 = 65_000;
const IMAGE_CASES: u32 = 40_000;
const STREAM_CASES: u32 = 1_500;

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() })
}

fn coordinate() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => -10.0f32..2000.0,
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => any::<f32>(),
    ]
}

fn point() -> impl Strategy<Value = proto::Point> {
    (coordinate(), coordinate(), prop_oneof![4 => 1i32..=2, 1 => any::<i32>()]).prop_map(|(x, y, label)| proto::Point { x, y, label })
}

fn object() -> impl Strategy<Value = proto::ObjectPrompt> {
    let bbox = (coordinate(), coordinate(), coordinate(), coordinate()).prop_map(|(x0, y0, x1, y1)| proto::Box { x0, y0, x1, y1 });
    (0u32..6, prop::collection::vec(point(), 0..6), prop::option::of(bbox)).prop_map(|(object_id, points, r#box)| proto::ObjectPrompt {
        object_id,
        points,
        r#box,
    })
}

fn field_of(error: &ApiError) -> &str {
    match error {
        ApiError::InvalidArgument { field, .. } => field,
        other => panic!("validation only rejects with INVALID_ARGUMENT, got {other:?}"),
    }
}

#[test]
fn generated_requests_are_validated_without_panics() {
    let limits = PromptLimits { max_objects: 5, max_points_per_object: 4 };
    let strategy = (prop::collection::vec(object(), 0..8), any::<i32>(), 1usize..3000, 1usize..3000);
    let (accepted, rejected) = (Cell::new(0u32), Cell::new(0u32));
    runner(VALIDATION_CASES)
        .run(&strategy, |(objects, format, width, height)| {
            let options = proto::MaskOptions { format, multimask_output: false };
            if let Err(e) = validate::mask_options("mask_options", Some(&options)) {
                prop_assert_eq!(field_of(&e), "mask_options.format");
            }
            match validate::object_prompts("objects", &objects, &limits).and_then(|prompts| {
                validate::prompts_inside("objects", &prompts, width, height)?;
                Ok(prompts)
            }) {
                Ok(prompts) => {
                    accepted.set(accepted.get() + 1);
                    prop_assert!(prompts.len() <= limits.max_objects);
                    for p in &prompts {
                        prop_assert!(!p.points.is_empty() || p.bbox.is_some());
                        for q in &p.points {
                            prop_assert!(q.x.is_finite() && q.y.is_finite() && q.x >= 0.0 && q.y >= 0.0);
                            prop_assert!(q.x <= width as f32 && q.y <= height as f32);
                        }
                        if let Some(b) = p.bbox {
                            prop_assert!(b.x0 < b.x1 && b.y0 < b.y1);
                        }
                    }
                }
                Err(e) => {
                    rejected.set(rejected.get() + 1);
                    prop_assert!(field_of(&e).starts_with("objects"), "{}", e);
                }
            }
            Ok(())
        })
        .unwrap();
    let (accepted, rejected) = (accepted.get(), rejected.get());
    eprintln!("validation: {VALIDATION_CASES} cases, {accepted} accepted, {rejected} rejected");
    assert!(accepted > 100 && rejected > 100, "the generator reaches both outcomes");
}

fn tiny_png() -> Vec<u8> {
    use opencv::core::{CV_8UC3, Mat, Scalar, Vector};
    let image = Mat::new_rows_cols_with_default(9, 13, CV_8UC3, Scalar::new(10.0, 200.0, 30.0, 0.0)).unwrap();
    let mut bytes = Vector::<u8>::new();
    opencv::imgcodecs::imencode_def(".png", &image, &mut bytes).unwrap();
    bytes.as_slice().to_vec()
}

#[test]
fn generated_images_are_decoded_or_refused_without_panics() {
    let png = tiny_png();
    let full = png.len();
    let keep = prop_oneof![2 => Just(full), 1 => 0..=full];
    let mutated_png = (prop::collection::vec((0..full, any::<u8>()), 0..3), keep).prop_map(move |(edits, keep)| {
        let mut bytes = png.clone();
        for (at, value) in edits {
            bytes[at] = value;
        }
        bytes.truncate(keep);
        Kind::Encoded(bytes)
    });
    let random_bytes = prop::collection::vec(any::<u8>(), 0..256).prop_map(Kind::Encoded);
    // Mostly consistent sizes (so that some decode), sometimes off by a little or a lot.
    let raw = (0u32..40, 0u32..40, -1i32..5, prop_oneof![3 => Just(0i64), 1 => -3i64..3, 1 => -4000i64..4000]).prop_map(
        |(width, height, format, skew)| {
            let channels = if format == proto::PixelFormat::Gray8 as i32 { 1 } else { 3 };
            let len = (i64::from(width * height) * channels + skew).max(0) as usize;
            Kind::Raw(proto::RawImage { width, height, format, data: vec![7; len] })
        },
    );
    let strategy = prop::option::of(prop_oneof![mutated_png, random_bytes, raw]);
    let limits = ImageLimits { max_pixels: 1000, max_bytes: 3000 };
    let (decoded, refused) = (Cell::new(0u32), Cell::new(0u32));
    runner(IMAGE_CASES)
        .run(&strategy, |kind| {
            let image = samstream::server::convert::image_payload(kind.map(|kind| proto::Image { kind: Some(kind) }));
            match decode_image(image.as_ref(), &limits) {
                Ok(rgb) => {
                    decoded.set(decoded.get() + 1);
                    use opencv::prelude::*;
                    prop_assert_eq!(rgb.channels(), 3);
                    prop_assert!((rgb.rows() * rgb.cols()) as u64 <= limits.max_pixels);
                }
                Err(e) => {
                    refused.set(refused.get() + 1);
                    let message = e.to_string();
                    prop_assert!(message.starts_with("image"), "{}", message);
                }
            }
            Ok(())
        })
        .unwrap();
    let (decoded, refused) = (decoded.get(), refused.get());
    eprintln!("images: {IMAGE_CASES} cases, {decoded} decoded, {refused} refused");
    assert!(decoded > 100 && refused > 100, "the generator reaches both outcomes");
}

fn stream_message() -> impl Strategy<Value = proto::StreamRequest> {
    let start = prop_oneof![
        6 => Just(Some(proto::stream_start::Source::ClientFrames(proto::ClientFrames {}))),
        1 => Just(Some(proto::stream_start::Source::SourceName("nope".into()))),
        1 => Just(Some(proto::stream_start::Source::Uri("file:///etc/passwd".into()))),
        1 => Just(None),
    ];
    let start = (start, coordinate(), any::<i32>(), any::<bool>()).prop_map(|(source, max_fps, format, track)| {
        Req::Start(proto::StreamStart {
            source,
            mask_options: Some(proto::MaskOptions { format: format.rem_euclid(5), multimask_output: false }),
            max_fps,
            track,
            auto_mode: None,
            preview: None,
        })
    });
    let prompts = (prop::collection::vec(object(), 0..4), prop::collection::vec(0u32..6, 0..3), any::<bool>(), any::<u64>())
        .prop_map(|(upsert, remove, clear, revision)| Req::Prompts(proto::PromptUpdate { upsert, remove, clear, revision }));
    // Frames are never decodable images here: each valid one would cost an encoder run.
    let frame = (prop::collection::vec(any::<u8>(), 0..64), any::<u64>(), any::<i64>()).prop_map(|(bytes, frame_id, timestamp_us)| {
        Req::Frame(proto::Frame { image: Some(proto::Image { kind: Some(Kind::Encoded(bytes)) }), frame_id, timestamp_us })
    });
    prop::option::of(prop_oneof![start, prompts, frame]).prop_map(|msg| proto::StreamRequest { msg })
}

/// Mostly a proper start first (so the sessions' own handling is reached), then anything.
fn stream_sequence() -> impl Strategy<Value = Vec<proto::StreamRequest>> {
    let first = prop_oneof![6 => Just(true), 1 => Just(false)];
    (first, prop::collection::vec(stream_message(), 0..6)).prop_map(|(proper, mut rest)| {
        if proper {
            let start = proto::StreamStart {
                source: Some(proto::stream_start::Source::ClientFrames(proto::ClientFrames {})),
                ..Default::default()
            };
            rest.insert(0, proto::StreamRequest { msg: Some(Req::Start(start)) });
        }
        rest
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_stream_message_orders_are_always_answered() {
    let server = common::start_server(common::config()).await;
    let client = common::client(&server).await;
    let sequences = std::cell::RefCell::new(Vec::new());
    runner(STREAM_CASES)
        .run(&stream_sequence(), |messages| {
            sequences.borrow_mut().push(messages);
            Ok(())
        })
        .unwrap();
    let sequences = sequences.into_inner();
    let (mut ended_ok, mut statuses, mut events) = (0u32, std::collections::BTreeMap::new(), 0u32);
    for messages in sequences {
        let mut client = client.clone();
        // The whole sequence, then half-close: every call must end by itself, promptly.
        let call = async move {
            let mut responses = client.stream_segment(tokio_stream::iter(messages)).await?.into_inner();
            let mut seen = 0u32;
            while let Some(response) = responses.message().await? {
                assert!(response.msg.is_some());
                seen += 1;
            }
            Ok::<u32, tonic::Status>(seen)
        };
        match tokio::time::timeout(Duration::from_secs(20), call).await.expect("a stream call hung") {
            Ok(seen) => {
                ended_ok += 1;
                events += seen;
            }
            Err(status) => {
                assert!(!status.message().is_empty(), "{status:?}");
                *statuses.entry(format!("{:?}", status.code())).or_insert(0u32) += 1;
            }
        }
    }
    eprintln!("streams: {STREAM_CASES} cases, {ended_ok} ended OK ({events} messages), refused {statuses:?}");
    assert!(ended_ok > 100, "the generator reaches accepted streams");
    // And the server still serves a real request.
    let mut client = common::client(&server).await;
    let request = proto::SegmentRequest {
        image: Some(proto::Image { kind: Some(Kind::Encoded(common::png_bytes("small.png"))) }),
        objects: vec![common::stream::point_object(1, 10.0, 10.0)],
        mask_options: None,
    };
    client.segment(request).await.expect("still serving after the campaign");
    server.shutdown().await.unwrap();
}
