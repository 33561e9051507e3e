//! `samstream bench` against a real server: bounded runs of both RPCs, checked through --json.

mod common;

use std::process::Command;

use common::stream as s;

/// `samstream bench ARGS --json`, waited for off the runtime's workers (the server under test
/// runs on them).
async fn bench(args: &[&str]) -> serde_json::Value {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let output = Command::new(env!("CARGO_BIN_EXE_samstream")).arg("bench").args(&args).arg("--json").output().unwrap();
        assert!(output.status.success(), "bench failed: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_reports_throughput_and_percentiles_for_both_rpcs() {
    let dir = tempfile::tempdir().unwrap();
    let video = s::make_video(dir.path(), "bench.mp4", 1.0, 10);
    let mut config = common::config();
    config.video.sources = Some(s::write_sources(
        dir.path(),
        &["bench", "bench2"].map(|name| format!("[[source]]\nname = {name:?}\nkind = \"file\"\npath = {video:?}\nloop = true\n")).concat(),
    ));
    let server = common::start_server(config).await;
    let url = format!("http://{}", server.addr);
    let image = common::parity_dir().join("small.png");

    let image = image.to_str().unwrap();
    let segment = bench(&["--server", &url, "--rpc", "segment", "--concurrency", "2", "--requests", "3", "--image", image]).await;
    assert_eq!(segment["rpc"], "segment");
    assert_eq!(segment["ok"], 3, "{segment}");
    assert_eq!(segment["errors"], serde_json::json!({}));
    let latency = &segment["latency_ms"];
    assert!(latency["p50"].as_f64().unwrap() > 0.0 && latency["p50"].as_f64() <= latency["p99"].as_f64(), "{latency}");
    assert!(latency["max"].as_f64().unwrap() >= segment["stages_ms"]["encoder"]["p50"].as_f64().unwrap());
    assert!(segment["per_second"].as_f64().unwrap() > 0.0);

    // --raw sends the decoded pixels (RawImage RGB8), as a camera client would: no capture.
    let raw = bench(&["--server", &url, "--rpc", "segment", "--requests", "2", "--raw", "--image", image]).await;
    assert_eq!((raw["ok"].as_u64(), &raw["errors"]), (Some(2), &serde_json::json!({})), "{raw}");
    assert!(raw["stages_ms"]["capture"]["p50"].as_f64().unwrap() < segment["stages_ms"]["capture"]["p50"].as_f64().unwrap(), "{raw}");

    // Two sources, two streams: one each, with each stream's own rate reported.
    let stream = bench(&["--server", &url, "--rpc", "stream", "--concurrency", "2", "--seconds", "6", "--source", "bench,bench2"]).await;
    assert_eq!(stream["rpc"], "stream");
    assert!(stream["ok"].as_u64().unwrap() >= 2, "{stream}");
    assert_eq!(stream["errors"], serde_json::json!({}));
    assert!(stream["stages_ms"]["decoder"]["p50"].as_f64().unwrap() > 0.0);
    let rates = stream["per_stream_per_second"].as_array().expect("per-stream rates");
    assert!(rates.len() == 2 && rates.iter().all(|r| r.as_f64().unwrap() > 0.0), "{stream}");

    // Prompt updates are answered from the cached embedding: the bench counts any result with
    // an encoder run as an error, so ok == requests means none re-encoded.
    let updates = bench(&["--server", &url, "--rpc", "prompt-update", "--requests", "4", "--objects", "2", "--image", image]).await;
    assert_eq!(
        (updates["rpc"].as_str(), updates["ok"].as_u64(), updates["objects"].as_u64()),
        (Some("prompt-update"), Some(4), Some(2)),
        "{updates}"
    );
    assert_eq!(updates["errors"], serde_json::json!({}));
    assert_eq!(updates["stages_ms"]["encoder"]["max"].as_f64(), Some(0.0), "{updates}");
    let decoder = updates["stages_ms"]["decoder"]["p50"].as_f64().unwrap();
    assert!(decoder > 0.0 && updates["latency_ms"]["p50"].as_f64().unwrap() >= decoder, "{updates}");

    let churn = bench(&["--server", &url, "--rpc", "churn", "--requests", "20", "--concurrency", "4", "--source", "bench"]).await;
    assert_eq!((churn["ok"].as_u64(), &churn["errors"]), (Some(20), &serde_json::json!({})), "{churn}");
    server.shutdown().await.unwrap();
}
