//! Source affinity across replicas. Behind a consistent-hash proxy (Envoy's RING_HASH on the
//! `x-samstream-source` header, deploy/envoy/) every viewer of a camera reaches the same
//! replica, so each camera is opened and encoded once for the whole cluster. The proxy moves
//! only new streams when the set of healthy replicas changes; long streams stay where they
//! were. So each replica watches the same peers the proxy balances over (`membership`),
//! computes the proxy's own ring (`ring`), and hands over the sources it no longer owns by
//! ending their streams with a reason to reconnect (`ownership`).

pub mod membership;
mod options;
pub mod ownership;
pub mod ring;

pub use options::ClusterOptions;

use crate::video::without_userinfo;

/// The request header a proxy hashes: a stream's source key (`source_key`).
pub const AFFINITY_HEADER: &str = "x-samstream-source";

/// What a stream that names a server-side source is routed by: the configured source's name,
/// or a client URI without its credentials (they have no business in proxy headers).
pub enum SourceRef<'a> {
    Name(&'a str),
    Uri(&'a str),
}

pub fn source_key(source: SourceRef<'_>) -> String {
    match source {
        SourceRef::Name(name) => name.to_string(),
        SourceRef::Uri(uri) => without_userinfo(uri),
    }
}

/// The key of the server-side source a StreamStart names (None for client frames).
pub fn start_key(start: &crate::proto::StreamStart) -> Option<String> {
    use crate::proto::stream_start::Source;
    match start.source.as_ref()? {
        Source::SourceName(name) => Some(source_key(SourceRef::Name(name))),
        Source::Uri(uri) => Some(source_key(SourceRef::Uri(uri))),
        Source::ClientFrames(_) => None,
    }
}

/// A StreamSegment request carrying the affinity header of the source `start` names, as every
/// client should send it (`samstream client` does).
pub fn with_affinity<T>(start: &crate::proto::StreamStart, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = start_key(start).and_then(|key| tonic::metadata::MetadataValue::try_from(key).ok()) {
        request.metadata_mut().insert(AFFINITY_HEADER, value);
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_names_or_uris_without_credentials() {
        assert_eq!(source_key(SourceRef::Name("lobby")), "lobby");
        assert_eq!(source_key(SourceRef::Uri("rtsp://viewer:pw@10.0.0.7/s1")), "rtsp://10.0.0.7/s1");
    }

    #[test]
    fn requests_carry_the_header_only_for_server_side_sources() {
        use crate::proto::{ClientFrames, StreamStart, stream_start::Source};
        let named = StreamStart { source: Some(Source::SourceName("gate".into())), ..Default::default() };
        assert_eq!(with_affinity(&named, ()).metadata().get(AFFINITY_HEADER).unwrap(), "gate");
        let pushed = StreamStart { source: Some(Source::ClientFrames(ClientFrames {})), ..Default::default() };
        assert!(with_affinity(&pushed, ()).metadata().get(AFFINITY_HEADER).is_none());
    }
}
