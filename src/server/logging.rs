//! Request logging as a tower layer: one line per call when it ends, with its method, gRPC
//! status and duration, at a level by status class (warn for the server's failures, info for
//! the rest; health checks at debug, they come every second). Refusals that never reach a
//! handler (authentication, size limits, a model still loading) are logged the same way.
//! A unary error is answered in the response headers; anything else ends with the trailers,
//! so the body is watched for them (a stream cut by the client has none).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use hyper::body::{Body, Frame, SizeHint};
use tonic::Code;

const QUIET_PREFIX: &str = "/grpc.health.v1.Health/";

#[derive(Clone, Default)]
pub struct RequestLogLayer;

impl<S> tower::Layer<S> for RequestLogLayer {
    type Service = RequestLog<S>;

    fn layer(&self, inner: S) -> RequestLog<S> {
        RequestLog { inner }
    }
}

#[derive(Clone)]
pub struct RequestLog<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for RequestLog<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let call = Call { method: request.uri().path().to_string(), started: Instant::now() };
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            if let Some(code) = response.headers().get("grpc-status") {
                call.log(code.to_str().ok(), response.headers().get("grpc-message").and_then(|m| m.to_str().ok()));
                return Ok(response);
            }
            Ok(response.map(|body| tonic::body::Body::new(LoggedBody { inner: body, call: Some(call) })))
        })
    }
}

/// A call in flight: what to log when it ends.
struct Call {
    method: String,
    started: Instant,
}

impl Call {
    fn log(&self, code: Option<&str>, message: Option<&str>) {
        let code = code.and_then(|c| c.parse::<i32>().ok()).map_or(Code::Unknown, Code::from);
        let elapsed_ms = self.started.elapsed().as_secs_f64() * 1e3;
        let message = message.map(|m| m.replace("%20", " ")).unwrap_or_default();
        let method = self.method.as_str();
        if method.starts_with(QUIET_PREFIX) {
            tracing::debug!(method, ?code, elapsed_ms, "call ended");
        } else if server_failure(code) {
            tracing::warn!(method, ?code, %message, elapsed_ms, "call failed");
        } else if code == Code::Ok {
            tracing::info!(method, elapsed_ms, "call done");
        } else {
            tracing::info!(method, ?code, %message, elapsed_ms, "call refused");
        }
    }

    fn log_cut(&self) {
        tracing::info!(method = %self.method, elapsed_ms = self.started.elapsed().as_secs_f64() * 1e3, "call ended by the client");
    }
}

/// Codes that say the server could not do its part (as opposed to a request it refused).
fn server_failure(code: Code) -> bool {
    matches!(code, Code::Unknown | Code::Internal | Code::Unavailable | Code::DataLoss | Code::Unimplemented | Code::DeadlineExceeded)
}

/// A response body that logs its call when the trailers go out, or when it is dropped
/// without them (the client went away).
struct LoggedBody<B> {
    inner: B,
    call: Option<Call>,
}

impl<B: Body + Unpin> Body for LoggedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(trailers) = frame.trailers_ref()
            && let Some(call) = self.call.take()
        {
            call.log(trailers.get("grpc-status").and_then(|c| c.to_str().ok()), trailers.get("grpc-message").and_then(|m| m.to_str().ok()));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for LoggedBody<B> {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.log_cut();
        }
    }
}
