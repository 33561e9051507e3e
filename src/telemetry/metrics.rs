//! Prometheus metrics: one process-wide recorder, rendered on `GET /metrics` by a small hyper
//! server when `--metrics-listen` is given.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

pub const STAGE_DURATION: &str = "samstream_stage_duration_seconds";
pub const ACTIVE_STREAMS: &str = "samstream_active_streams";
pub const ACTIVE_SOURCES: &str = "samstream_active_sources";
pub const FRAMES_DROPPED: &str = "samstream_frames_dropped_total";
pub const ENCODER_RUNS: &str = "samstream_encoder_runs_total";
pub const STREAM_RESULTS: &str = "samstream_stream_results_total";
pub const SOURCE_RECONNECTS: &str = "samstream_source_reconnects_total";
pub const JOBS_SKIPPED: &str = "samstream_jobs_skipped_total";
pub const REQUESTS_REFUSED: &str = "samstream_requests_refused_total";
pub const ENCODER_BATCHED_IMAGES: &str = "samstream_encoder_batched_images_total";
pub const ENCODER_BATCHES: &str = "samstream_encoder_batches_total";
pub const SHAPE_RUNS: &str = "samstream_graph_shape_runs_total";
pub const PADDED_SLOTS: &str = "samstream_graph_padded_slots_total";
pub const RESIDENT_MEMORY: &str = "samstream_process_resident_memory_bytes";
pub const CLUSTER_PEERS_HEALTHY: &str = "samstream_cluster_peers_healthy";
pub const SOURCES_HANDED_OVER: &str = "samstream_sources_handed_over_total";
pub const AFFINITY_HEADER_MISSING: &str = "samstream_affinity_header_missing_total";

/// Seconds; from 1 ms (decoder on a GPU) to 10 s (a queued encoder on a slow CPU).
const DURATION_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once; later calls (more servers in one process) reuse it.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), DURATION_BUCKETS)
            .expect("non-empty buckets")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        metrics::describe_histogram!(STAGE_DURATION, metrics::Unit::Seconds, "Duration of each pipeline stage");
        metrics::describe_gauge!(ACTIVE_STREAMS, "StreamSegment sessions open now");
        metrics::describe_gauge!(ACTIVE_SOURCES, "Server-side sources grabbing now");
        metrics::describe_counter!(FRAMES_DROPPED, "Source frames skipped because the model was busy (latest frame wins)");
        metrics::describe_counter!(ENCODER_RUNS, "Image encoder runs, by origin (source name, client frames, segment)");
        metrics::describe_counter!(STREAM_RESULTS, "FrameResults sent on streams");
        metrics::describe_counter!(SOURCE_RECONNECTS, "Reconnect attempts of server-side sources");
        metrics::describe_counter!(JOBS_SKIPPED, "Queued model jobs skipped because their caller had gone (deadline, cancel, disconnect)");
        metrics::describe_counter!(REQUESTS_REFUSED, "Calls refused by the concurrency limits");
        metrics::describe_counter!(ENCODER_BATCHED_IMAGES, "Images encoded in a batch of two or more (--encoder-max-batch)");
        metrics::describe_counter!(ENCODER_BATCHES, "Encoder runs by batch size (real images), warm-up included");
        metrics::describe_counter!(
            SHAPE_RUNS,
            "Encoder and decoder runs by graph and shape (images or objects, padded up to a bucket), warm-up included"
        );
        metrics::describe_counter!(PADDED_SLOTS, "Padding images or objects run to fill a bucket, by graph and shape (wasted work)");
        metrics::describe_gauge!(RESIDENT_MEMORY, metrics::Unit::Bytes, "Resident set size of the server process");
        metrics::describe_gauge!(CLUSTER_PEERS_HEALTHY, "Replicas (this one included) passing their health checks, as this one sees them");
        metrics::describe_counter!(SOURCES_HANDED_OVER, "Sources stopped here because another replica owns them now (SOURCE_MOVED)");
        metrics::describe_counter!(
            AFFINITY_HEADER_MISSING,
            "Streams naming a server-side source without the x-samstream-source header (a proxy cannot keep their viewers together)"
        );
        handle
    })
}

/// The process's resident set size (Linux `VmRSS`), in bytes.
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// Serves `GET /metrics` on `addr` until the task is dropped; returns the bound address.
pub async fn serve(addr: SocketAddr) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let handle = handle();
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let mut upkeep = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = upkeep.tick() => handle.run_upkeep(),
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(|request: Request<hyper::body::Incoming>| async move {
                            Ok::<_, std::convert::Infallible>(respond(&request))
                        });
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                    });
                }
            }
        }
    });
    tracing::info!(addr = %bound, "metrics on /metrics");
    Ok((bound, task))
}

fn respond(request: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let (status, body) = match (request.method(), request.uri().path()) {
        (&hyper::Method::GET, "/metrics") => {
            if let Some(bytes) = resident_memory_bytes() {
                metrics::gauge!(RESIDENT_MEMORY).set(bytes as f64);
            }
            (StatusCode::OK, handle().render())
        }
        _ => (StatusCode::NOT_FOUND, "try GET /metrics\n".to_string()),
    };
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; version=0.0.4")
        .body(Full::new(Bytes::from(body)))
        .expect("static headers are valid")
}
