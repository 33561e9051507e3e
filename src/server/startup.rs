//! The steps `server::start` takes, each named: verify the model files, start the engine (the
//! model loads on its thread), report health as the engine gets ready, the shutdown sequence,
//! and the router with its layers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;

use super::{SERVICE_NAME, auth, layers, logging, web};
use crate::config::ServeConfig;
use crate::engine::{Engine, ModelLoader};
use crate::model::{DataPath, Manifest, ModelError, Preprocessor, RuntimeOptions};
use crate::proto::segmenter_server::SegmenterServer;

/// Reads the manifest and verifies the files this server will read against their recorded
/// hashes, off the runtime's workers (tens of megabytes are hashed).
pub async fn load_manifest(config: &ServeConfig) -> anyhow::Result<Arc<Manifest>> {
    let model_dir = config.model_dir.clone();
    let encoder = config.runtime.encoder_precision.file_name();
    let manifest = tokio::task::spawn_blocking(move || {
        let mut manifest = Manifest::load(&model_dir)?;
        let mut needed = vec![encoder, "decoder.onnx"];
        // The shared decoder is read when it is there (older exports lack it).
        if model_dir.join(crate::model::SHARED_DECODER).is_file() {
            needed.push(crate::model::SHARED_DECODER);
        }
        manifest.verify(&model_dir, &needed)?;
        for name in manifest.missing(&model_dir).into_iter().map(str::to_string).collect::<Vec<_>>() {
            tracing::info!(file = %name, "listed in the manifest but absent; only another --encoder-precision reads it");
            manifest.files.remove(&name);
        }
        Ok::<_, ModelError>(manifest)
    })
    .await??;
    if !manifest.provenance.meaningful_masks {
        tracing::warn!("model {}: random-init weights, masks are meaningless", manifest.provenance_detail());
    }
    Ok(Arc::new(manifest))
}

/// The engine, loading the model on its own thread; health says NOT_SERVING until it is ready.
/// With `--data-path auto`, a device data path that fails its warm-up gives way to the host one.
pub fn start_engine(config: &ServeConfig) -> Engine {
    let (model_dir, runtime) = (config.model_dir.clone(), config.runtime.clone());
    let mut loader = ModelLoader::new(move || crate::model::load(&model_dir, &runtime));
    if config.runtime.data_path == DataPath::Auto {
        let model_dir = config.model_dir.clone();
        let host = RuntimeOptions { data_path: DataPath::Host, ..config.runtime.clone() };
        loader = loader.with_host_fallback(move || crate::model::load(&model_dir, &host));
    }
    Engine::start(loader, &config.engine, Preprocessor::new(config.runtime.resize))
}

/// Serves `/metrics` when asked to; its address and task.
pub async fn serve_metrics(config: &ServeConfig) -> anyhow::Result<Option<(SocketAddr, tokio::task::JoinHandle<()>)>> {
    match config.metrics_listen {
        Some(addr) => Ok(Some(crate::telemetry::metrics::serve(addr).await.with_context(|| format!("binding metrics on {addr}"))?)),
        None => Ok(None),
    }
}

/// Health starts NOT_SERVING and turns SERVING once the engine is ready; the returned watch
/// says which (Some(true) serving, Some(false) the model failed).
pub async fn report_health(engine: Engine, health: HealthReporter) -> watch::Receiver<Option<bool>> {
    for name in ["", SERVICE_NAME] {
        health.set_service_status(name, ServingStatus::NotServing).await;
    }
    let (serving_tx, serving) = watch::channel(None);
    tokio::spawn(async move {
        match engine.ready().await {
            Ok(runtime) => {
                for name in ["", SERVICE_NAME] {
                    health.set_service_status(name, ServingStatus::Serving).await;
                }
                tracing::info!(provider = %runtime.backend.provider, "serving");
                serving_tx.send_replace(Some(true));
            }
            Err(e) => {
                tracing::error!(error = %e, "model unavailable; health stays NOT_SERVING");
                serving_tx.send_replace(Some(false));
            }
        }
    });
    serving
}

/// Resolves when the server should stop accepting: on `shutdown()` or the signal. Health turns
/// NOT_SERVING first and open streams are told to end, then load balancers get a moment
/// (a quarter of the grace period, at most 1 s) before connections are drained.
pub async fn shutdown_sequence(
    grace_secs: f64,
    requested: oneshot::Receiver<()>,
    signal: impl Future<Output = ()>,
    health: HealthReporter,
    closing: watch::Sender<bool>,
) {
    tokio::select! {
        _ = requested => {}
        () = signal => {}
    }
    tracing::info!("shutting down");
    for name in ["", SERVICE_NAME] {
        health.set_service_status(name, ServingStatus::NotServing).await;
    }
    closing.send_replace(true);
    tokio::time::sleep(Duration::from_secs_f64((grace_secs / 4.0).clamp(0.0, 1.0))).await;
}

/// Serves the services behind their layers on `listener` until `stop` resolves: request
/// logging (outermost, so it sees every refusal), the viewer's files, CORS for the allowed
/// origins, gRPC-Web, the size-limit status rewrite, authentication; health, reflection (v1 for current tools, v1alpha for grpcurl 1.8 and
/// Postman) and the Segmenter.
pub fn serve(
    config: &ServeConfig,
    health: HealthServer<impl Health>,
    segmenter: SegmenterServer<super::Segmenter>,
    listener: TcpListener,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<impl Future<Output = Result<(), tonic::transport::Error>> + Send + 'static> {
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let auth = match &config.auth_token_file {
        Some(path) => auth::AuthLayer::from_file(path)?,
        None => auth::AuthLayer::default(),
    };
    // HTTP/1.1 for gRPC-Web and the viewer's files; gRPC itself stays on HTTP/2.
    let mut builder = tonic::transport::Server::builder().accept_http1(true);
    if let Some(tls) = tls_config(config)? {
        builder = builder.tls_config(tls)?;
    }
    let router = builder
        .layer(logging::RequestLogLayer)
        // Before gRPC-Web, which refuses every request that is not gRPC.
        .layer(web::ViewerLayer { enabled: config.browser.viewer })
        .layer(tower::util::option_layer(web::cors(&config.browser.cors_origins)))
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(tower::util::MapResponseLayer::new(layers::oversized_message_is_resource_exhausted))
        .layer(auth)
        .add_service(health)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(segmenter);
    // Small writes (an event, then a result) must go out at once: with Nagle's algorithm a
    // result waits for the peer's delayed ACK of the event, ~40 ms on Linux.
    let incoming = TcpListenerStream::new(listener).map(|accepted| {
        if let Ok(stream) = &accepted {
            let _ = stream.set_nodelay(true);
        }
        accepted
    });
    Ok(router.serve_with_incoming_shutdown(incoming, stop))
}

fn tls_config(config: &ServeConfig) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let tls = &config.tls;
    let (Some(cert), Some(key)) = (&tls.tls_cert, &tls.tls_key) else { return Ok(None) };
    let read = |path: &std::path::PathBuf| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let mut server_tls = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
    if let Some(ca) = &tls.tls_client_ca {
        server_tls = server_tls.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(Some(server_tls))
}
