//! What a proxy does to a stream with nothing to say: Envoy (deploy/envoy/envoy.yaml with its
//! stream_idle_timeout lowered to 2 s) cuts a silent StreamSegment call at its idle timeout
//! although the client sends HTTP/2 keepalive pings, and ends it with a status that is not
//! UNAVAILABLE; samstream's HEARTBEAT events (--stream-heartbeat-secs) keep it open. The
//! silent stream here is a client-frames stream whose client has sent no frame yet, as a
//! camera that stopped sending would be.

mod common;

use std::time::{Duration, Instant};

use common::envoy::Envoy;
use samstream::proto::{self, segmenter_client::SegmenterClient, stream_response::Msg as Resp};
use tokio_stream::wrappers::ReceiverStream;

const IDLE_TIMEOUT: &str = "2s";
const WATCH: Duration = Duration::from_secs(6);

/// Opens a client-frames stream through `envoy`, sends nothing and watches it for `WATCH`:
/// the heartbeats received, or how (and when) the stream ended.
async fn silent_stream(envoy: &Envoy) -> (usize, Option<(tonic::Code, Duration)>) {
    let channel = tonic::transport::Endpoint::from_shared(envoy.url())
        .unwrap()
        .http2_keep_alive_interval(Duration::from_millis(500))
        .keep_alive_while_idle(true)
        .connect()
        .await
        .unwrap();
    let (requests, rx) = tokio::sync::mpsc::channel(1);
    let start =
        proto::StreamStart { source: Some(proto::stream_start::Source::ClientFrames(proto::ClientFrames {})), ..Default::default() };
    requests.send(proto::StreamRequest { msg: Some(proto::stream_request::Msg::Start(start)) }).await.unwrap();
    let mut responses = SegmenterClient::new(channel).stream_segment(ReceiverStream::new(rx)).await.unwrap().into_inner();
    let opened = Instant::now();
    let mut heartbeats = 0;
    while opened.elapsed() < WATCH {
        let left = WATCH.saturating_sub(opened.elapsed());
        match tokio::time::timeout(left, responses.message()).await {
            Err(_) => break,
            Ok(Ok(Some(proto::StreamResponse { msg: Some(Resp::Event(event)) }))) => {
                heartbeats += usize::from(event.kind == proto::EventKind::Heartbeat as i32);
            }
            Ok(Ok(_)) => return (heartbeats, Some((tonic::Code::Ok, opened.elapsed()))),
            Ok(Err(status)) => return (heartbeats, Some((status.code(), opened.elapsed()))),
        }
    }
    drop(requests);
    (heartbeats, None)
}

async fn through_envoy(heartbeat_secs: f64) -> (usize, Option<(tonic::Code, Duration)>) {
    let mut config = common::config();
    config.stream_heartbeat_secs = heartbeat_secs;
    let server = common::start_server(config).await;
    let envoy = Envoy::start(&[server.addr.to_string()], &[&format!("stream_idle_timeout={IDLE_TIMEOUT}")]);
    envoy.wait_healthy(&[server.addr.to_string()], Duration::from_secs(30)).await;
    let outcome = silent_stream(&envoy).await;
    server.shutdown().await.unwrap();
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_silent_stream_open_through_the_idle_timeout() {
    let (_, cut) = through_envoy(0.0).await;
    let (code, after) = cut.expect("without heartbeats Envoy cuts the silent stream");
    eprintln!(
        "no heartbeat: Envoy (stream_idle_timeout {IDLE_TIMEOUT}, client pinging every 500 ms) ended the stream with {code:?} after {after:.1?}"
    );
    assert_ne!(code, tonic::Code::Ok);
    assert!(after >= Duration::from_millis(1900), "cut at the idle timeout, not before: {after:?}");

    let (heartbeats, cut) = through_envoy(1.0).await;
    eprintln!("heartbeat every 1 s: {heartbeats} heartbeats in {WATCH:?}, ended: {cut:?}");
    assert!(cut.is_none(), "the stream stays open with heartbeats: {cut:?}");
    assert!(heartbeats >= 4, "{heartbeats} heartbeats in {WATCH:?}");
}
