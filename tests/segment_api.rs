//! The unary API against a real server on port 0 through a tonic client: masks, encodings
//! (checked with pycocotools), timings, model info, health, and every kind of bad input.

mod common;

use samstream::model::DataPath;
use samstream::proto::{self, image::Kind, mask::Data};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

fn encoded(file: &str) -> Option<proto::Image> {
    Some(proto::Image { kind: Some(Kind::Encoded(common::png_bytes(file))) })
}

fn point(x: f32, y: f32, positive: bool) -> proto::Point {
    let label = if positive { proto::PointLabel::Positive } else { proto::PointLabel::Negative };
    proto::Point { x, y, label: label as i32 }
}

fn request(
    image: Option<proto::Image>,
    objects: Vec<proto::ObjectPrompt>,
    format: proto::MaskFormat,
    multimask: bool,
) -> proto::SegmentRequest {
    proto::SegmentRequest { image, objects, mask_options: Some(proto::MaskOptions { format: format as i32, multimask_output: multimask }) }
}

fn landscape_objects() -> Vec<proto::ObjectPrompt> {
    vec![
        proto::ObjectPrompt { object_id: 7, points: vec![point(864.0, 562.0, true), point(1300.0, 300.0, false)], r#box: None },
        proto::ObjectPrompt { object_id: 9, points: vec![], r#box: Some(proto::Box { x0: 400.0, y0: 300.0, x1: 1300.0, y1: 800.0 }) },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_returns_masks_timings_and_model_info() {
    let server = common::start_server(common::config()).await;
    let mut client = common::client(&server).await;

    let info = client.get_model_info(proto::GetModelInfoRequest {}).await.unwrap().into_inner();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(common::model_dir().join("manifest.json")).unwrap()).unwrap();
    assert_eq!(info.provenance, manifest["provenance"]["kind"].as_str().unwrap());
    assert_eq!(info.meaningful_masks, manifest["provenance"]["meaningful_masks"].as_bool().unwrap());
    assert_eq!(info.input_size, 1024);
    assert_eq!(info.execution_provider, "CPUExecutionProvider");
    assert!(info.onnxruntime_version.starts_with("1.31"), "onnxruntime {}", info.onnxruntime_version);
    let encoder = info.files.iter().find(|f| f.name == "encoder.onnx").expect("encoder listed");
    assert_eq!(encoder.sha256, manifest["files"]["encoder.onnx"]["sha256"].as_str().unwrap());

    let response = client
        .segment(request(encoded("landscape.png"), landscape_objects(), proto::MaskFormat::CocoRle, false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((response.width, response.height), (1920, 1080));
    assert_eq!(response.objects.iter().map(|o| o.object_id).collect::<Vec<_>>(), vec![7, 9]);
    for object in &response.objects {
        let mask = object.mask.as_ref().unwrap();
        assert_eq!((mask.width, mask.height), (1920, 1080));
        let Some(Data::CocoRle(rle)) = &mask.data else { panic!("default format is COCO RLE") };
        assert_eq!(rle.size, vec![1080, 1920]);
        assert!(object.area > 0 && object.area < 1920 * 1080, "area {}", object.area);
        assert!(object.candidates.is_empty(), "single-mask output has no candidates");
        let b = object.bbox.unwrap();
        assert!(b.x0 < b.x1 && b.y0 < b.y1 && b.x1 <= 1920.0 && b.y1 <= 1080.0);
    }
    let t = response.timing.expect("timing");
    assert!(t.capture_us > 0 && t.preprocess_us > 0 && t.encoder_us > 0 && t.decoder_us > 0 && t.postprocess_us > 0, "{t:?}");
    let stages = t.capture_us + t.preprocess_us + t.queue_us + t.encoder_us + t.decoder_us + t.postprocess_us;
    assert!(stages <= t.total_us, "stages {stages} us exceed the total {} us", t.total_us);
    assert!(t.total_us - stages < t.total_us / 4, "most of the total is accounted for by stages: {t:?}");

    let multi = client
        .segment(request(encoded("landscape.png"), landscape_objects(), proto::MaskFormat::CocoRle, true))
        .await
        .unwrap()
        .into_inner();
    for object in &multi.objects {
        assert_eq!(object.candidates.len(), 3);
        let scores: Vec<f32> = object.candidates.iter().map(|c| c.score).collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "candidates best first: {scores:?}");
        assert_eq!(object.score, scores[0]);
        assert_eq!(object.mask, object.candidates[0].mask);
    }
    server.shutdown().await.unwrap();
}

/// Pixels where two PNG masks of the same size differ.
fn differing_pixels(a: &[u8], b: &[u8]) -> usize {
    use opencv::prelude::*;
    let decode = |png: &[u8]| {
        let mat = opencv::imgcodecs::imdecode(&opencv::core::Vector::<u8>::from_slice(png), opencv::imgcodecs::IMREAD_GRAYSCALE).unwrap();
        mat.data_bytes().unwrap().to_vec()
    };
    let (a, b) = (decode(a), decode(b));
    assert_eq!(a.len(), b.len());
    a.iter().zip(&b).filter(|(x, y)| x != y).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_data_path_serves_the_host_paths_masks_and_reports_its_stages() {
    let host = common::start_server(common::config()).await;
    let mut config = common::config();
    config.runtime.data_path = DataPath::Device;
    let device = common::start_server(config).await;
    let (mut host_client, mut device_client) = (common::client(&host).await, common::client(&device).await);
    let host_info = host_client.get_model_info(proto::GetModelInfoRequest {}).await.unwrap().into_inner();
    let device_info = device_client.get_model_info(proto::GetModelInfoRequest {}).await.unwrap().into_inner();
    assert_eq!((host_info.data_path.as_str(), device_info.data_path.as_str()), ("host", "device"));
    for (image, objects) in [("landscape.png", landscape_objects()), ("small.png", vec![landscape_objects().remove(0)])] {
        let objects: Vec<proto::ObjectPrompt> = objects
            .into_iter()
            .map(|mut o| {
                // Keep the prompts inside the small image too.
                for p in &mut o.points {
                    (p.x, p.y) = (p.x / 8.0, p.y / 8.0);
                }
                o
            })
            .collect();
        for multimask in [false, true] {
            let ask = || request(encoded(image), objects.clone(), proto::MaskFormat::Png, multimask);
            let a = host_client.segment(ask()).await.unwrap().into_inner();
            let b = device_client.segment(ask()).await.unwrap().into_inner();
            assert_eq!((a.width, a.height), (b.width, b.height));
            for (x, y) in a.objects.iter().zip(&b.objects) {
                assert_eq!(x.object_id, y.object_id);
                // Bit-exact preprocessing: the same encoder input, so the same scores.
                assert_eq!(x.score, y.score, "{image}: the device path must see the same tensor");
                let masks = |o: &proto::ObjectMask| -> Vec<Vec<u8>> {
                    let all = if multimask { o.candidates.iter().map(|c| c.mask.clone()).collect() } else { vec![o.mask.clone()] };
                    all.into_iter()
                        .map(|m| match m.unwrap().data {
                            Some(Data::Png(png)) => png,
                            _ => panic!("png"),
                        })
                        .collect()
                };
                for (p, q) in masks(x).iter().zip(&masks(y)) {
                    let differing = differing_pixels(p, q);
                    // OpenCV's and ONNX Runtime's bilinear kernels round differently in the
                    // last bit; a logit that close to 0 may land on either side.
                    assert!(differing as f64 <= 1e-4 * f64::from(a.width * a.height), "{image}: {differing} pixels differ");
                }
                assert!(x.area.abs_diff(y.area) as f64 <= 1e-4 * f64::from(a.width * a.height), "{image}: areas {} / {}", x.area, y.area);
            }
            let t = b.timing.unwrap();
            assert!(t.preprocess_us > 0 && t.encoder_us > 0 && t.decoder_us > 0 && t.postprocess_us > 0, "{t:?}");
            // On the CPU provider the "upload" is the copy of the frame into ONNX Runtime's
            // input buffer; masks are written straight into host buffers, nothing comes back.
            assert!(t.upload_us > 0, "{t:?}");
            assert_eq!(t.download_us, 0, "the CPU provider's memory is the host's: nothing to download");
            let stages =
                t.capture_us + t.preprocess_us + t.upload_us + t.queue_us + t.encoder_us + t.decoder_us + t.postprocess_us + t.download_us;
            assert!(stages <= t.total_us, "stages {stages} us exceed the total {} us", t.total_us);
        }
    }
    host.shutdown().await.unwrap();
    device.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rle_png_and_polygons_agree_under_pycocotools() {
    let server = common::start_server(common::config()).await;
    let mut client = common::client(&server).await;
    // The large image: its masks have blobs of several pixels, so the polygon checks bite.
    let objects = vec![landscape_objects().remove(1)];
    let mut by_format = Vec::new();
    for format in [proto::MaskFormat::CocoRle, proto::MaskFormat::Png, proto::MaskFormat::Polygons] {
        let response = client.segment(request(encoded("landscape.png"), objects.clone(), format, false)).await.unwrap().into_inner();
        by_format.push(response.objects.into_iter().next().unwrap());
    }
    let [rle_object, png_object, polygon_object] = <[proto::ObjectMask; 3]>::try_from(by_format).unwrap();
    assert_eq!(rle_object.area, png_object.area);
    assert_eq!(rle_object.area, polygon_object.area);
    let Some(Data::CocoRle(rle)) = rle_object.mask.unwrap().data else { panic!("rle") };
    let Some(Data::Png(png)) = png_object.mask.unwrap().data else { panic!("png") };
    let Some(Data::Polygons(polygons)) = polygon_object.mask.unwrap().data else { panic!("polygons") };
    let encoded = common::EncodedMask { rle, png, polygons, area: rle_object.area, bbox: rle_object.bbox.unwrap() };
    // Random-init masks are fine-grained textures, so polygons (outer contours through pixel
    // centres) are held to the structural checks only; tests/mask_encodings.rs checks their
    // IoU on solid shapes.
    match common::check_with_pycocotools(&encoded, None, 0.0) {
        Ok(report) => eprintln!("pycocotools cross-check: {report}"),
        Err(report) => panic!("encodings disagree: {report}"),
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_serving_after_warm_up_and_not_before() {
    // A model whose decoder cannot load never becomes ready: health must say so, and Segment
    // must answer UNAVAILABLE rather than hang.
    let broken = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(common::model_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && path.file_name() != Some("decoder.onnx".as_ref()) {
            std::fs::copy(&path, broken.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(broken.path().join("decoder.onnx"), b"not an onnx graph").unwrap();
    let manifest_path = broken.path().join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    use sha2::Digest;
    manifest["files"]["decoder.onnx"]["sha256"] = serde_json::json!(format!("{:x}", sha2::Sha256::digest(b"not an onnx graph")));
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let mut config = common::config();
    config.model_dir = broken.path().to_path_buf();
    samstream::telemetry::init_test_logging();
    let server = samstream::server::start(config, std::future::pending()).await.unwrap();
    assert!(!server.serving().await, "a broken decoder must fail to load");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr)).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "samstream.v1.Segmenter"] {
        let status = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner().status;
        assert_eq!(status, ServingStatus::NotServing as i32, "service {service:?}");
    }
    let mut client = proto::segmenter_client::SegmenterClient::new(channel);
    let objects = vec![proto::ObjectPrompt { object_id: 1, points: vec![point(10.0, 10.0, true)], r#box: None }];
    let err = client.segment(request(encoded("small.png"), objects, proto::MaskFormat::CocoRle, false)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    server.shutdown().await.unwrap();

    let server = common::start_server(common::config()).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr)).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel);
    for service in ["", "samstream.v1.Segmenter"] {
        let status = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner().status;
        assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
    }
    server.shutdown().await.unwrap();
}

/// A copy of the model directory without `left_out`, the manifest unchanged.
fn model_copy_without(left_out: &[&str]) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(common::model_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if path.is_file() && !left_out.contains(&name.as_str()) {
            std::fs::copy(&path, copy.path().join(&name)).unwrap();
        }
    }
    copy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_directory_without_the_optional_encoders_serves_fp32() {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(common::model_dir().join("manifest.json")).unwrap()).unwrap();
    for optional in ["encoder_int8.onnx", "encoder_fp16.onnx"] {
        assert!(manifest["files"][optional].is_object(), "the test export lists {optional}");
    }
    let trimmed = model_copy_without(&["encoder_int8.onnx", "encoder_fp16.onnx"]);
    let mut config = common::config();
    config.model_dir = trimmed.path().to_path_buf();
    let server = common::start_server(config).await;
    let mut client = common::client(&server).await;
    let info = client.get_model_info(proto::GetModelInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.precision, "fp32 (exact)");
    let files: Vec<&str> = info.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(files, ["decoder.onnx", "decoder_shared.onnx", "encoder.onnx"], "only the files present are reported");
    let objects = vec![proto::ObjectPrompt { object_id: 1, points: vec![point(100.0, 100.0, true)], r#box: None }];
    client.segment(request(encoded("small.png"), objects, proto::MaskFormat::CocoRle, false)).await.expect("fp32 serves");
    server.shutdown().await.unwrap();

    // Asking for a precision whose file is missing fails, saying how to export it.
    let mut config = common::config();
    config.model_dir = trimmed.path().to_path_buf();
    config.runtime.encoder_precision = samstream::model::EncoderPrecision::Int8;
    let error = samstream::server::start(config, std::future::pending()).await.err().expect("the int8 encoder is missing");
    assert!(error.to_string().contains("encoder_int8.onnx") && error.to_string().contains("export.py --int8"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fp16_encoder_serves_and_says_so() {
    let mut config = common::config();
    config.runtime.encoder_precision = samstream::model::EncoderPrecision::Fp16;
    let server = common::start_server(config).await;
    let mut client = common::client(&server).await;
    let info = client.get_model_info(proto::GetModelInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.precision, "fp16 encoder (not exact)");
    let objects = vec![proto::ObjectPrompt { object_id: 1, points: vec![point(100.0, 100.0, true)], r#box: None }];
    let response = client.segment(request(encoded("small.png"), objects, proto::MaskFormat::CocoRle, false)).await.unwrap().into_inner();
    assert!(response.objects[0].area > 0);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_gpu_provider_falls_back_to_the_cpu_or_fails_by_flag() {
    // The onnxruntime wheel used here is CPU-only, so CUDA cannot be registered.
    let mut config = common::config();
    config.runtime.device = "cuda:0".parse().unwrap();
    let server = common::start_server(config).await;
    let mut client = common::client(&server).await;
    let info = client.get_model_info(proto::GetModelInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.execution_provider, "CPUExecutionProvider (fallback)");
    assert_eq!(info.data_path, "host", "auto picks the host stages once the model runs on the CPU");
    server.shutdown().await.unwrap();

    let mut config = common::config();
    config.runtime.device = "tensorrt:1".parse().unwrap();
    config.runtime.device_fallback = samstream::model::DeviceFallback::Fail;
    let server = samstream::server::start(config, std::future::pending()).await.unwrap();
    assert!(!server.serving().await, "a server without its GPU provider must not report SERVING");
    let mut client = common::client(&server).await;
    let request = proto::SegmentRequest {
        image: encoded("small.png"),
        objects: vec![proto::ObjectPrompt { object_id: 1, points: vec![point(10.0, 10.0, true)], r#box: None }],
        mask_options: None,
    };
    let status = client.segment(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("tensorrt:1"), "{}", status.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_images_are_encoded_in_one_batch_with_the_same_masks() {
    batching(DataPath::Host).await;
}

/// On the device data path each frame of a batch is preprocessed by the graph straight into
/// its slot of the encoder's batch input, and the batch's embeddings are split on the device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_data_path_batches_frames_of_different_sizes() {
    batching(DataPath::Device).await;
}

async fn batching(data_path: DataPath) {
    let mut config = common::config();
    config.engine.encoder_max_batch = 4;
    config.runtime.data_path = data_path;
    let server = common::start_server(config).await;
    let mut client = common::client(&server).await;
    let info = client.get_model_info(proto::GetModelInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.encoder_max_batch, 4);
    for size in 1..=4 {
        let runs = common::stream::metric_value("samstream_encoder_batches_total", &format!("size=\"{size}\""));
        assert!(runs >= 1.0, "warm-up ran a batch of {size} before SERVING ({runs} runs)");
    }
    let images = ["small.png", "square.png", "portrait.png", "landscape.png"];
    let segment = |name: &str| {
        let objects = vec![proto::ObjectPrompt { object_id: 1, points: vec![point(150.0, 120.0, true)], r#box: None }];
        request(encoded(name), objects, proto::MaskFormat::CocoRle, false)
    };
    let mut one_by_one = Vec::new();
    for name in images {
        one_by_one.push(client.segment(segment(name)).await.unwrap().into_inner());
    }
    let batched_before = common::stream::metric_value("samstream_encoder_batched_images_total", "");
    // (The two batching tests share the counter; a batch of the other's only adds to it.)
    // All at once: the first runs alone while the others queue, then they go as one batch.
    let calls: Vec<_> = images
        .iter()
        .map(|name| {
            let (mut client, request) = (client.clone(), segment(name));
            tokio::spawn(async move { client.segment(request).await })
        })
        .collect();
    let mut together = Vec::new();
    for call in calls {
        together.push(call.await.unwrap().unwrap().into_inner());
    }
    let batched = common::stream::metric_value("samstream_encoder_batched_images_total", "") - batched_before;
    assert!(batched >= 2.0, "no batch was formed ({batched} images in batches)");
    let encoder_times: Vec<u64> = together.iter().map(|r| r.timing.unwrap().encoder_us).collect();
    assert!(
        encoder_times.iter().any(|t| encoder_times.iter().filter(|u| *u == t).count() >= 2),
        "batched calls share one encoder run: {encoder_times:?}"
    );
    for ((name, alone), batch) in images.iter().zip(&one_by_one).zip(&together) {
        let (a, b) = (&alone.objects[0], &batch.objects[0]);
        assert!((a.score - b.score).abs() < 1e-3, "{name}: score {} alone, {} in a batch", a.score, b.score);
        let tolerance = (a.area as f64 * 1e-3).max(2.0);
        assert!((a.area as f64 - b.area as f64).abs() <= tolerance, "{name}: area {} alone, {} in a batch", a.area, b.area);
    }
}
