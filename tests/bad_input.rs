//! Every kind of bad request gets the right status naming the field, and the server keeps
//! serving: after each rejection a good request still succeeds.

mod common;

use samstream::proto::{self, image::Kind};
use tonic::Code;

const W: u32 = 320;
const H: u32 = 240;

fn good_image() -> Option<proto::Image> {
    Some(proto::Image { kind: Some(Kind::Encoded(common::png_bytes("small.png"))) })
}

fn raw(width: u32, height: u32, format: proto::PixelFormat, data: Vec<u8>) -> Option<proto::Image> {
    Some(proto::Image { kind: Some(Kind::Raw(proto::RawImage { width, height, format: format as i32, data })) })
}

/// A tiny file that declares a large image: the pixel limit must apply before decoding.
fn flat_png(width: i32, height: i32) -> Vec<u8> {
    use opencv::core::{CV_8UC3, Mat, Scalar, Vector};
    let image = Mat::new_rows_cols_with_default(height, width, CV_8UC3, Scalar::all(90.0)).unwrap();
    let mut bytes = Vector::<u8>::new();
    opencv::imgcodecs::imencode_def(".png", &image, &mut bytes).unwrap();
    assert!(bytes.len() < 64 << 10, "compresses to a few KiB");
    bytes.as_slice().to_vec()
}

fn point(x: f32, y: f32, label: i32) -> proto::Point {
    proto::Point { x, y, label }
}

fn object(id: u32, points: Vec<proto::Point>, b: Option<proto::Box>) -> proto::ObjectPrompt {
    proto::ObjectPrompt { object_id: id, points, r#box: b }
}

fn positive(x: f32, y: f32) -> proto::Point {
    point(x, y, proto::PointLabel::Positive as i32)
}

fn good_objects() -> Vec<proto::ObjectPrompt> {
    vec![object(1, vec![positive(160.0, 120.0)], None)]
}

fn segment(image: Option<proto::Image>, objects: Vec<proto::ObjectPrompt>) -> proto::SegmentRequest {
    proto::SegmentRequest { image, objects, mask_options: None }
}

struct Case {
    name: &'static str,
    request: proto::SegmentRequest,
    code: Code,
    /// Text the status message must contain: the field's path.
    field: &'static str,
}

fn cases() -> Vec<Case> {
    let rgb_size = (W * H * 3) as usize;
    let b = |x0, y0, x1, y1| Some(proto::Box { x0, y0, x1, y1 });
    vec![
        Case { name: "no image", request: segment(None, good_objects()), code: Code::InvalidArgument, field: "image" },
        Case {
            name: "undecodable bytes",
            request: segment(Some(proto::Image { kind: Some(Kind::Encoded(b"\x89PNG but not really".to_vec())) }), good_objects()),
            code: Code::InvalidArgument,
            field: "image.encoded",
        },
        Case {
            name: "truncated PNG",
            request: segment(
                Some(proto::Image { kind: Some(Kind::Encoded(common::png_bytes("small.png")[..200].to_vec())) }),
                good_objects(),
            ),
            code: Code::InvalidArgument,
            field: "image.encoded",
        },
        Case {
            name: "raw buffer of the wrong length",
            request: segment(raw(W, H, proto::PixelFormat::Rgb8, vec![0; rgb_size - 1]), good_objects()),
            code: Code::InvalidArgument,
            field: "image.raw.data",
        },
        Case {
            name: "raw gray buffer sized for RGB",
            request: segment(raw(W, H, proto::PixelFormat::Gray8, vec![0; rgb_size]), good_objects()),
            code: Code::InvalidArgument,
            field: "image.raw.data",
        },
        Case {
            name: "raw zero width",
            request: segment(raw(0, H, proto::PixelFormat::Rgb8, vec![]), good_objects()),
            code: Code::InvalidArgument,
            field: "image.raw.width",
        },
        Case {
            name: "raw unspecified pixel format",
            request: segment(raw(W, H, proto::PixelFormat::Unspecified, vec![0; rgb_size]), good_objects()),
            code: Code::InvalidArgument,
            field: "image.raw.format",
        },
        Case { name: "no objects", request: segment(good_image(), vec![]), code: Code::InvalidArgument, field: "objects" },
        Case {
            name: "object with neither points nor box",
            request: segment(good_image(), vec![object(1, vec![], None)]),
            code: Code::InvalidArgument,
            field: "objects[0]",
        },
        Case {
            name: "unspecified point label",
            request: segment(good_image(), vec![object(1, vec![point(10.0, 10.0, 0)], None)]),
            code: Code::InvalidArgument,
            field: "objects[0].points[0].label",
        },
        Case {
            name: "unknown point label",
            request: segment(good_image(), vec![object(1, vec![point(10.0, 10.0, 17)], None)]),
            code: Code::InvalidArgument,
            field: "objects[0].points[0].label",
        },
        Case {
            name: "NaN coordinate",
            request: segment(good_image(), vec![object(1, vec![positive(f32::NAN, 10.0)], None)]),
            code: Code::InvalidArgument,
            field: "objects[0].points[0].x",
        },
        Case {
            name: "infinite coordinate",
            request: segment(good_image(), vec![object(1, vec![positive(10.0, f32::INFINITY)], None)]),
            code: Code::InvalidArgument,
            field: "objects[0].points[0].y",
        },
        Case {
            name: "point outside the image",
            request: segment(good_image(), vec![object(1, vec![positive(10.0, 10.0), positive(W as f32 + 1.0, 10.0)], None)]),
            code: Code::InvalidArgument,
            field: "objects[0].points[1].x",
        },
        Case {
            name: "negative coordinate",
            request: segment(good_image(), vec![object(1, vec![positive(10.0, -3.0)], None)]),
            code: Code::InvalidArgument,
            field: "objects[0].points[0].y",
        },
        Case {
            name: "box outside the image",
            request: segment(good_image(), vec![object(1, vec![], b(10.0, 10.0, 50.0, H as f32 + 20.0))]),
            code: Code::InvalidArgument,
            field: "objects[0].box.y1",
        },
        Case {
            name: "inverted box",
            request: segment(good_image(), vec![object(1, vec![], b(100.0, 10.0, 50.0, 60.0))]),
            code: Code::InvalidArgument,
            field: "objects[0].box.x1",
        },
        Case {
            name: "NaN in a box",
            request: segment(good_image(), vec![object(1, vec![], b(0.0, f32::NAN, 50.0, 60.0))]),
            code: Code::InvalidArgument,
            field: "objects[0].box.y0",
        },
        Case {
            name: "duplicate object ids",
            request: segment(good_image(), vec![object(4, vec![positive(1.0, 1.0)], None), object(4, vec![positive(2.0, 2.0)], None)]),
            code: Code::InvalidArgument,
            field: "objects[1].object_id",
        },
        Case {
            name: "too many objects",
            request: segment(good_image(), (0..5).map(|i| object(i, vec![positive(1.0, 1.0)], None)).collect()),
            code: Code::InvalidArgument,
            field: "objects",
        },
        Case {
            name: "too many points",
            request: segment(good_image(), vec![object(1, vec![positive(1.0, 1.0); 5], None)]),
            code: Code::InvalidArgument,
            field: "objects[0].points",
        },
        Case {
            name: "unknown mask format",
            request: proto::SegmentRequest {
                mask_options: Some(proto::MaskOptions { format: 42, multimask_output: false }),
                ..segment(good_image(), good_objects())
            },
            code: Code::InvalidArgument,
            field: "mask_options.format",
        },
        Case {
            name: "encoded image above the pixel limit",
            request: segment(Some(proto::Image { kind: Some(Kind::Encoded(flat_png(1000, 1000))) }), good_objects()),
            code: Code::ResourceExhausted,
            field: "image.encoded",
        },
        Case {
            name: "raw image above the pixel limit",
            request: segment(raw(1000, 600, proto::PixelFormat::Gray8, vec![0; 600_000]), good_objects()),
            code: Code::ResourceExhausted,
            field: "image.raw",
        },
        Case {
            name: "image payload above the byte limit",
            request: segment(raw(700, 700, proto::PixelFormat::Rgb8, vec![0; 700 * 700 * 3]), good_objects()),
            code: Code::ResourceExhausted,
            field: "image.raw.data",
        },
        Case {
            name: "message above the size limit",
            request: segment(raw(2000, 1000, proto::PixelFormat::Rgb8, vec![0; 6_000_000]), good_objects()),
            code: Code::ResourceExhausted,
            field: "max-message-bytes",
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_statuses_and_the_server_keeps_serving() {
    let mut config = common::config();
    config.limits.max_pixels = 500_000;
    config.limits.max_image_bytes = 1 << 20;
    config.limits.max_message_bytes = 4 << 20;
    config.limits.max_objects = 4;
    config.limits.max_points_per_object = 4;
    let server = common::start_server(config).await;
    let mut client = common::client(&server).await;
    client = client.max_encoding_message_size(64 << 20);
    for case in cases() {
        let status = client.segment(case.request).await.expect_err(case.name);
        assert_eq!(status.code(), case.code, "{}: {status:?}", case.name);
        assert!(status.message().contains(case.field), "{}: message {:?} does not name {}", case.name, status.message(), case.field);
        let ok = client.segment(segment(good_image(), good_objects())).await;
        let ok = ok.unwrap_or_else(|e| panic!("good request after {:?} failed: {e:?}", case.name));
        assert_eq!(ok.into_inner().objects.len(), 1);
    }
    server.shutdown().await.unwrap();
}
