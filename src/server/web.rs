//! Browsers on the gRPC port: gRPC-Web (tonic-web) beside native gRPC, CORS for the origins the
//! operator allowed, and the viewer's files at `/` with `--viewer`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The viewer as built from viewer/ (its bundle is checked against its sources by a test).
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("/", "text/html; charset=utf-8", include_bytes!("../../viewer/dist/index.html")),
    ("/index.html", "text/html; charset=utf-8", include_bytes!("../../viewer/dist/index.html")),
    ("/viewer.js", "text/javascript; charset=utf-8", include_bytes!("../../viewer/dist/viewer.js")),
    ("/viewer.css", "text/css; charset=utf-8", include_bytes!("../../viewer/dist/viewer.css")),
];

/// What a gRPC-Web client sends and must read back, beyond the CORS-safelisted headers.
const REQUEST_HEADERS: [&str; 8] = [
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "authorization",
    "x-samstream-source",
    "connect-protocol-version",
    "connect-timeout-ms",
];
const RESPONSE_HEADERS: [&str; 4] = ["grpc-status", "grpc-message", "grpc-status-details-bin", "retry-after-ms"];

/// CORS for gRPC-Web calls from pages of `origins` (already checked to be valid header values);
/// None without any, so that browsers refuse other sites' pages.
pub fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    let names = |names: &[&'static str]| names.iter().map(|n| http::HeaderName::from_static(n)).collect::<Vec<_>>();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::POST, Method::OPTIONS])
            .allow_headers(names(&REQUEST_HEADERS))
            .expose_headers(names(&RESPONSE_HEADERS))
            .max_age(std::time::Duration::from_secs(3600)),
    )
}

/// Answers `GET` for the viewer's files when `enabled`; everything else goes on to gRPC.
#[derive(Clone, Copy)]
pub struct ViewerLayer {
    pub enabled: bool,
}

impl<S> tower::Layer<S> for ViewerLayer {
    type Service = Viewer<S>;

    fn layer(&self, inner: S) -> Viewer<S> {
        Viewer { inner, enabled: self.enabled }
    }
}

#[derive(Clone)]
pub struct Viewer<S> {
    inner: S,
    enabled: bool,
}

type Answer<S, B> =
    Pin<Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, <S as tower::Service<http::Request<B>>>::Error>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Viewer<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Answer<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if self.enabled && (request.method() == Method::GET || request.method() == Method::HEAD) {
            let path = request.uri().path();
            if let Some((_, content_type, body)) = ASSETS.iter().find(|(p, _, _)| *p == path) {
                let response = asset(content_type, body);
                return Box::pin(async move { Ok(response) });
            }
        }
        Box::pin(self.inner.call(request))
    }
}

fn asset(content_type: &'static str, body: &'static [u8]) -> http::Response<tonic::body::Body> {
    http::Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        // The page and its script change with the server's version: always revalidate.
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-content-type-options", "nosniff")
        .body(tonic::body::Body::new(http_body_util::Full::new(Bytes::from_static(body))))
        .expect("static headers are valid")
}
