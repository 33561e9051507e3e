//! Tower layers around every service: the size-limit status rewrite for unary calls, and
//! request logging by status class.

use http::HeaderValue;

use super::status::{OVERSIZED_PREFIX, TOO_LARGE};

/// The unary side of `status::transport_status`: an oversized request message is answered
/// with OUT_OF_RANGE in the response headers; it becomes RESOURCE_EXHAUSTED naming the flag.
pub fn oversized_message_is_resource_exhausted<B>(mut response: http::Response<B>) -> http::Response<B> {
    const OUT_OF_RANGE: &str = "11";
    let headers = response.headers_mut();
    let message = headers.get("grpc-message").and_then(|m| m.to_str().ok()).map(|m| m.replace("%20", " "));
    let too_large =
        headers.get("grpc-status").is_some_and(|s| s == OUT_OF_RANGE) && message.as_deref().is_some_and(|m| m.contains(TOO_LARGE));
    if too_large {
        let message = headers.get("grpc-message").and_then(|m| m.to_str().ok()).unwrap_or_default();
        let rewritten = format!("{}:%20{message}", OVERSIZED_PREFIX.replace(' ', "%20"));
        headers.insert("grpc-status", HeaderValue::from_static("8"));
        if let Ok(value) = HeaderValue::from_str(&rewritten) {
            headers.insert("grpc-message", value);
        }
    }
    response
}
