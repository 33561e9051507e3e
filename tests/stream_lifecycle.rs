//! Process-wide gauges need a process of their own: this binary holds one test, so no other
//! stream moves the active-streams gauge while it watches it.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::stream::{self as s, StreamClient};
use samstream::proto::{self, stream_start::Source};

const LONG: Duration = Duration::from_secs(60);

fn scrape(addr: std::net::SocketAddr) -> String {
    let mut connection = std::net::TcpStream::connect(addr).expect("metrics port accepts");
    connection.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    connection.write_all(b"GET /metrics HTTP/1.0\r\nHost: test\r\n\r\n").unwrap();
    let mut body = String::new();
    connection.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"), "{}", &body[..body.len().min(200)]);
    body
}

async fn gauge_settles_at(name: &str, expected: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let value = s::metric_value(name, "");
        if value == expected || Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnects_free_the_stream_and_metrics_show_every_stage() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config();
    config.video.sources = Some(s::looping_source(dir.path()));
    config.video.source_grace_secs = 0.3;
    config.limits.max_streams = 128;
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let server = common::start_server(config).await;
    let metrics_addr = server.metrics_addr.expect("metrics served");
    let mut client = common::client(&server).await;

    let streams_before = s::metric_value("samstream_active_streams", "");
    let mut stream =
        StreamClient::open(&mut client, s::start(Source::SourceName("loop".into()), false, vec![s::point_object(1, 100.0, 100.0)]))
            .await
            .unwrap();
    stream.results(2, LONG).await;
    assert_eq!(s::metric_value("samstream_active_streams", ""), streams_before + 1.0);
    assert_eq!(s::metric_value("samstream_active_sources", ""), 1.0);

    // The client vanishes mid-stream: the session ends, the gauge returns, and after the grace
    // period the source stops grabbing and encoding.
    drop(stream);
    assert_eq!(gauge_settles_at("samstream_active_streams", streams_before).await, streams_before);
    assert_eq!(gauge_settles_at("samstream_active_sources", 0.0).await, 0.0, "no viewers: the source stops");
    let runs = s::metric_value("samstream_encoder_runs_total", "origin=\"loop\"");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(s::metric_value("samstream_encoder_runs_total", "origin=\"loop\""), runs, "nothing is encoded for nobody");
    let listed = client.list_sources(proto::ListSourcesRequest {}).await.unwrap().into_inner().sources;
    assert_eq!(listed[0].status, proto::SourceStatus::Idle as i32);

    // 100 clients vanish at once mid-stream: every session ends, the gauge returns, the
    // source stops, and memory stays within a stated bound.
    const CLIENTS: usize = 100;
    const RSS_BOUND_MIB: f64 = 100.0;
    let rss_before = samstream::telemetry::metrics::resident_memory_bytes().unwrap() as f64;
    let mut crowd = Vec::new();
    for _ in 0..CLIENTS {
        crowd.push(StreamClient::open(&mut client, s::start(Source::SourceName("loop".into()), false, vec![])).await.unwrap());
    }
    for stream in &mut crowd {
        stream.results(1, LONG).await;
    }
    assert_eq!(s::metric_value("samstream_active_streams", ""), streams_before + CLIENTS as f64);
    drop(crowd);
    assert_eq!(gauge_settles_at("samstream_active_streams", streams_before).await, streams_before);
    assert_eq!(gauge_settles_at("samstream_active_sources", 0.0).await, 0.0);
    let rss_after = samstream::telemetry::metrics::resident_memory_bytes().unwrap() as f64;
    let growth = (rss_after - rss_before) / 1048576.0;
    eprintln!("RSS around {CLIENTS} abrupt disconnects: {:.1} -> {:.1} MiB", rss_before / 1048576.0, rss_after / 1048576.0);
    assert!(growth < RSS_BOUND_MIB, "RSS grew {growth:.1} MiB (bound {RSS_BOUND_MIB} MiB)");

    // A unary call too, then the exporter shows the stage histograms of both RPCs.
    let image = proto::Image { kind: Some(proto::image::Kind::Encoded(common::png_bytes("small.png"))) };
    let request = proto::SegmentRequest { image: Some(image), objects: vec![s::point_object(1, 10.0, 10.0)], mask_options: None };
    client.segment(request).await.unwrap();
    let body = tokio::task::spawn_blocking(move || scrape(metrics_addr)).await.unwrap();
    for stage in ["capture", "preprocess", "queue", "encoder", "decoder", "postprocess", "total"] {
        for rpc in ["stream", "segment"] {
            let series = format!("samstream_stage_duration_seconds_bucket{{stage=\"{stage}\",rpc=\"{rpc}\",le=\"0.5\"}}");
            assert!(body.contains(&series), "{series} missing from /metrics");
        }
    }
    for name in ["samstream_active_streams", "samstream_active_sources", "samstream_frames_dropped_total", "samstream_encoder_runs_total"] {
        assert!(body.contains(name), "{name} missing from /metrics");
    }
    server.shutdown().await.unwrap();
}
