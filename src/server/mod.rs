//! gRPC transport: the Segmenter service, StreamSegment's stream adapter, health, reflection,
//! the layers around them, and the server's lifecycle. Errors of every layer become statuses
//! in one place (`status`); messages become domain types in `validate` and `convert`.

mod auth;
pub mod convert;
mod layers;
mod limit;
mod logging;
mod segmenter;
mod startup;
mod status;
mod stream;
pub mod validate;
mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use segmenter::Segmenter;
pub use status::ApiError;

use crate::cluster::ownership::Handover;
use crate::config::ServeConfig;
use crate::engine::Engine;
use crate::pipeline::Pipeline;
use crate::proto::segmenter_server::SegmenterServer;
use crate::session::SourceHub;

/// Health's name for this service (the overall status "" follows it).
pub const SERVICE_NAME: &str = "samstream.v1.Segmenter";

/// A server accepting connections; dropped or `shutdown()`, it stops serving.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// Where `/metrics` is served, with `--metrics-listen`.
    pub metrics_addr: Option<SocketAddr>,
    pub engine: Engine,
    /// Becomes `Some(true)` once health reports SERVING, `Some(false)` if the model failed.
    serving: tokio::sync::watch::Receiver<Option<bool>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl RunningServer {
    /// Waits until health says SERVING (true) or the model failed to load (false).
    pub async fn serving(&self) -> bool {
        let mut serving = self.serving.clone();
        serving.wait_for(Option::is_some).await.map(|s| s.unwrap_or(false)).unwrap_or(false)
    }

    /// Stops accepting, lets in-flight calls finish, and waits for the server task.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.wait().await
    }

    /// Runs until the server stops (after `shutdown_signal` resolves, for `serve`).
    pub async fn wait(self) -> anyhow::Result<()> {
        Ok(self.task.await.context("server task panicked")??)
    }
}

/// This replica's address among its peers, when it has peers: --advertise-addr, else the
/// address it listens on (which must then be a specific one).
fn cluster_address(config: &ServeConfig, bound: SocketAddr) -> anyhow::Result<Option<String>> {
    if !config.cluster.enabled() {
        return Ok(None);
    }
    match &config.cluster.advertise_addr {
        Some(addr) => Ok(Some(addr.clone())),
        None if bound.ip().is_unspecified() => {
            anyhow::bail!("with --peer or --peers-dns and a wildcard --listen ({bound}), set --advertise-addr to this replica's ip:port")
        }
        None => Ok(Some(bound.to_string())),
    }
}

/// Binds `config.listen`, starts loading the model on the inference thread and serves at once:
/// health reports NOT_SERVING until the model is loaded and warmed up.
pub async fn start(config: ServeConfig, shutdown_signal: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<RunningServer> {
    // Before the engine starts: its warm-up already records metrics.
    crate::telemetry::metrics::handle();
    let manifest = startup::load_manifest(&config).await?;
    let engine = startup::start_engine(&config);
    let pipeline = Pipeline::new(engine.clone());
    let sources = match &config.video.sources {
        Some(path) => crate::video::load_sources(path)?,
        None => Vec::new(),
    };
    let grace = Duration::from_secs_f64(config.video.source_grace_secs.max(0.0));
    let hub = Arc::new(SourceHub::new(pipeline.clone(), sources, grace));
    let (metrics_addr, metrics_task) = startup::serve_metrics(&config).await?.unzip();
    let listener = TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let replica = cluster_address(&config, addr)?;
    let cluster_task = replica.clone().map(|me| {
        let handover = Handover {
            hub: hub.clone(),
            membership: crate::cluster::membership::watch(&config.cluster),
            me,
            ring_min_size: config.cluster.ring_min_size,
            grace: Duration::from_secs_f64(config.cluster.handover_grace_secs),
            every: Duration::from_millis(config.cluster.peer_check_ms),
        };
        tokio::spawn(handover.run())
    });

    let (health, health_service) = tonic_health::server::health_reporter();
    let serving = startup::report_health(engine.clone(), health.clone()).await;
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    let segmenter = SegmenterServer::new(Segmenter::new(&config, pipeline, hub, manifest, closing, replica))
        .max_decoding_message_size(config.limits.max_message_bytes)
        .max_encoding_message_size(config.limits.max_message_bytes);
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let stop = startup::shutdown_sequence(config.shutdown_grace_secs, shutdown_rx, shutdown_signal, health, closing_tx);
    let served = startup::serve(&config, health_service, segmenter, listener, stop)?;
    let task = tokio::spawn(async move {
        let result = served.await;
        for task in metrics_task.into_iter().chain(cluster_task) {
            task.abort();
        }
        result
    });
    tracing::info!(%addr, "listening");
    Ok(RunningServer { addr, metrics_addr, engine, serving, shutdown: Some(shutdown_tx), task })
}
