//! Bearer-token authentication as a tower layer around every service but health: a missing
//! or wrong `authorization: Bearer <token>` gets UNAUTHENTICATED before any handler runs.
//! Tokens are compared in constant time, against every configured token.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use subtle::ConstantTimeEq;
use tonic::Status;

/// Health stays open so that load balancers and orchestrators can probe without a token.
const OPEN_PREFIX: &str = "/grpc.health.v1.Health/";

#[derive(Clone, Default)]
pub struct AuthLayer {
    tokens: Arc<Vec<Vec<u8>>>,
}

impl AuthLayer {
    /// One token per line; blank lines and `#` comments are ignored. An empty file is refused,
    /// so that a misconfigured deployment does not silently run without authentication.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading token file {}: {e}", path.display()))?;
        let tokens: Vec<Vec<u8>> =
            text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(|l| l.as_bytes().to_vec()).collect();
        anyhow::ensure!(!tokens.is_empty(), "token file {} holds no token", path.display());
        Ok(Self { tokens: Arc::new(tokens) })
    }

    fn authorized(&self, header: Option<&http::HeaderValue>) -> bool {
        let Some(presented) = header.and_then(|v| v.as_bytes().strip_prefix(b"Bearer ")) else { return false };
        // No early exit: every token is compared, whichever matches.
        self.tokens.iter().fold(subtle::Choice::from(0), |any, token| any | token.as_slice().ct_eq(presented)).into()
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth { inner, layer: self.clone() }
    }
}

#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    layer: AuthLayer,
}

impl<S, B> tower::Service<http::Request<B>> for Auth<S>
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
        let open = self.layer.tokens.is_empty() || request.uri().path().starts_with(OPEN_PREFIX);
        if open || self.layer.authorized(request.headers().get(http::header::AUTHORIZATION)) {
            return Box::pin(self.inner.call(request));
        }
        let status = Status::unauthenticated("missing or invalid bearer token (metadata `authorization: Bearer <token>`)");
        Box::pin(std::future::ready(Ok(status.into_http())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_listed_bearer_token_passes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, "# operators\nalpha-token\n\n beta-token \n").unwrap();
        let layer = AuthLayer::from_file(&file).unwrap();
        let header = |v: &str| http::HeaderValue::from_str(v).unwrap();
        assert!(layer.authorized(Some(&header("Bearer alpha-token"))));
        assert!(layer.authorized(Some(&header("Bearer beta-token"))));
        assert!(!layer.authorized(Some(&header("Bearer alpha"))));
        assert!(!layer.authorized(Some(&header("alpha-token"))));
        assert!(!layer.authorized(None));
        std::fs::write(&file, "# nothing\n").unwrap();
        assert!(AuthLayer::from_file(&file).is_err());
    }
}
