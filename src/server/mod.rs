//! gRPC transport: the Segmenter service, health, reflection, and the server's lifecycle.

mod auth;
mod layers;
mod segmenter;
mod status;
pub mod validate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::ServingStatus;

pub use segmenter::Segmenter;
pub use status::ApiError;

use crate::config::ServeConfig;
use crate::engine::{Engine, LoadedModel, Runtime};
use crate::model::{Manifest, OrtModel, Preprocessor};
use crate::proto::segmenter_server::SegmenterServer;
use crate::session::SourceHub;

/// Health's name for this service (the overall status "" follows it).
pub const SERVICE_NAME: &str = "samstream.v1.Segmenter";

/// `--encoder-max-batch` auto on a GPU: eight 1024x1024 frames per encoder call.
const GPU_MAX_BATCH: usize = 8;

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

/// Binds `config.listen`, starts loading the model on the inference thread and serves at once:
/// health reports NOT_SERVING until the model is loaded and warmed up.
pub async fn start(config: ServeConfig, shutdown_signal: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<RunningServer> {
    // Before the engine starts: its warm-up already records metrics.
    crate::telemetry::metrics::handle();
    let model_dir = config.model_dir.clone();
    let needed = [config.encoder_precision.file_name(), "decoder.onnx"];
    // Hashing the graphs reads tens of megabytes: not on a runtime worker.
    let manifest = tokio::task::spawn_blocking(move || {
        let manifest = Manifest::load(&model_dir)?;
        manifest.verify(&model_dir, &needed)?;
        let mut manifest = manifest;
        for name in manifest.missing(&model_dir).into_iter().map(str::to_string).collect::<Vec<_>>() {
            tracing::info!(file = %name, "listed in the manifest but absent; only another --encoder-precision reads it");
            manifest.files.remove(&name);
        }
        Ok::<_, crate::model::ModelError>(manifest)
    })
    .await??;
    if !manifest.provenance.meaningful_masks {
        tracing::warn!("model {}: random-init weights, masks are meaningless", manifest.provenance_detail());
    }
    let manifest = Arc::new(manifest);
    let options = config.ort_options();
    let model_dir = config.model_dir.clone();
    let max_batch = config.encoder_max_batch;
    let engine = Engine::start(
        move || {
            let model = OrtModel::load(&model_dir, &options)?;
            // Auto: batching pays on a GPU (one launch for several frames), not on a CPU, where
            // a batch costs as much as its images one by one.
            let max_batch = match max_batch {
                0 if model.on_gpu => GPU_MAX_BATCH,
                0 => 1,
                n => n,
            };
            let runtime =
                Runtime { execution_provider: model.execution_provider, data_path: model.data_path, precision: model.precision, max_batch };
            Ok(LoadedModel { encoder: model.encoder, decoder: model.decoder, runtime })
        },
        config.queue_capacity,
        Preprocessor::new(config.resize),
    );

    let sources = match &config.sources {
        Some(path) => crate::video::load_sources(path)?,
        None => Vec::new(),
    };
    let hub = Arc::new(SourceHub::new(engine.clone(), sources, Duration::from_secs_f64(config.source_grace_secs.max(0.0))));
    let metrics_addr = match config.metrics_listen {
        Some(addr) => Some(crate::telemetry::metrics::serve(addr).await.with_context(|| format!("binding metrics on {addr}"))?),
        None => None,
    };
    let listener = TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;

    let (health, health_service) = tonic_health::server::health_reporter();
    for name in ["", SERVICE_NAME] {
        health.set_service_status(name, ServingStatus::NotServing).await;
    }
    let stopping_health = health.clone();
    let ready_engine = engine.clone();
    let (serving_tx, serving) = tokio::sync::watch::channel(None);
    tokio::spawn(async move {
        match ready_engine.ready().await {
            Ok(runtime) => {
                for name in ["", SERVICE_NAME] {
                    health.set_service_status(name, ServingStatus::Serving).await;
                }
                tracing::info!(provider = %runtime.execution_provider, "serving");
                serving_tx.send_replace(Some(true));
            }
            Err(e) => {
                tracing::error!(error = %e, "model unavailable; health stays NOT_SERVING");
                serving_tx.send_replace(Some(false));
            }
        }
    });

    // v1 for current tools, v1alpha for grpcurl 1.8 and Postman.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    let segmenter = SegmenterServer::new(Segmenter::new(&config, engine.clone(), hub, manifest, closing))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);

    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let drain = Duration::from_secs_f64((config.shutdown_grace_secs / 4.0).clamp(0.0, 1.0));
    let stop = async move {
        tokio::select! {
            _ = shutdown_rx => {}
            () = shutdown_signal => {}
        }
        tracing::info!("shutting down");
        // Load balancers stop routing here; open streams end with a final event.
        for name in ["", SERVICE_NAME] {
            stopping_health.set_service_status(name, ServingStatus::NotServing).await;
        }
        closing_tx.send_replace(true);
        // Health pollers get a moment to see NOT_SERVING before connections are drained.
        tokio::time::sleep(drain).await;
    };
    let auth = match &config.auth_token_file {
        Some(path) => auth::AuthLayer::from_file(path)?,
        None => auth::AuthLayer::default(),
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls_config(&config)? {
        builder = builder.tls_config(tls)?;
    }
    let router = builder
        .layer(tower::util::MapResponseLayer::new(layers::oversized_message_is_resource_exhausted))
        .layer(auth)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(segmenter);
    let (metrics_addr, metrics_task) = metrics_addr.unzip();
    let task = tokio::spawn(async move {
        // Small writes (an event, then a result) must go out at once: with Nagle's algorithm a
        // result waits for the peer's delayed ACK of the event, ~40 ms on Linux.
        let incoming = TcpListenerStream::new(listener).map(|accepted| {
            if let Ok(stream) = &accepted {
                let _ = stream.set_nodelay(true);
            }
            accepted
        });
        let served = router.serve_with_incoming_shutdown(incoming, stop).await;
        if let Some(metrics) = metrics_task {
            metrics.abort();
        }
        served
    });
    tracing::info!(%addr, "listening");
    Ok(RunningServer { addr, metrics_addr, engine, serving, shutdown: Some(shutdown_tx), task })
}

fn tls_config(config: &ServeConfig) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else { return Ok(None) };
    let read = |path: &std::path::PathBuf| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
    if let Some(ca) = &config.tls_client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(Some(tls))
}
