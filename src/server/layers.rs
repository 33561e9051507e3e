//! Tower layers around every service.

use http::HeaderValue;

/// tonic rejects an oversized request message with OUT_OF_RANGE; the gRPC convention (and our
/// contract) for a size limit is RESOURCE_EXHAUSTED, with the flag that sets the limit named.
pub fn oversized_message_is_resource_exhausted<B>(mut response: http::Response<B>) -> http::Response<B> {
    const OUT_OF_RANGE: &str = "11";
    let headers = response.headers_mut();
    let too_large = headers.get("grpc-status").is_some_and(|s| s == OUT_OF_RANGE)
        && headers.get("grpc-message").and_then(|m| m.to_str().ok()).is_some_and(|m| {
            m.starts_with("Error,%20decoded%20message%20length%20too%20large") || m.starts_with("Error, decoded message length too large")
        });
    if too_large {
        let message = headers.get("grpc-message").and_then(|m| m.to_str().ok()).unwrap_or_default();
        let rewritten = format!("request%20message%20too%20large%20(--max-message-bytes):%20{message}");
        headers.insert("grpc-status", HeaderValue::from_static("8"));
        if let Ok(value) = HeaderValue::from_str(&rewritten) {
            headers.insert("grpc-message", value);
        }
    }
    response
}
