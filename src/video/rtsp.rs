//! RTSP cameras through GStreamer's `rtspsrc`: the transport chosen per source, no jitter
//! buffering beyond `latency_ms`, and an appsink that keeps only the newest decoded frame, so a
//! slow consumer never reads old video (the grabber's latest-frame slot does the rest).

use serde::Deserialize;

/// How RTP travels: interleaved in the RTSP TCP connection (works through NAT and firewalls),
/// or as UDP datagrams (lower overhead, loses frames rather than delaying them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    #[default]
    Tcp,
    Udp,
}

impl RtspTransport {
    /// rtspsrc's `protocols` value.
    fn protocols(self) -> &'static str {
        match self {
            RtspTransport::Tcp => "tcp",
            RtspTransport::Udp => "udp",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            RtspTransport::Tcp => "TCP",
            RtspTransport::Udp => "UDP",
        }
    }
}

/// rtspsrc gives up on a silent server after this long (both transports), so a camera that
/// vanishes is reported lost and reconnected instead of hanging the grabber.
const SILENCE_TIMEOUT_US: u64 = 5_000_000;

/// The GStreamer pipeline that reads `url`. The URL is quoted into the pipeline description, so
/// characters that could end the quote are refused (a valid URL percent-encodes them).
pub fn pipeline(url: &str, transport: RtspTransport, latency_ms: u32) -> Result<String, String> {
    if let Some(c) = url.chars().find(|c| !c.is_ascii_graphic() || matches!(c, '"' | '\\')) {
        return Err(format!("the RTSP url contains {c:?}, which a URL must percent-encode"));
    }
    Ok(format!(
        "rtspsrc location=\"{url}\" protocols={} latency={latency_ms} drop-on-latency=true timeout={SILENCE_TIMEOUT_US} \
         tcp-timeout={SILENCE_TIMEOUT_US} ! decodebin ! videoconvert ! video/x-raw,format=BGR \
         ! appsink drop=true max-buffers=1 sync=false",
        transport.protocols()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transport_and_latency_reach_rtspsrc() {
        let tcp = pipeline("rtsp://cam:pw@10.0.0.7/s1", RtspTransport::Tcp, 0).unwrap();
        assert!(tcp.starts_with("rtspsrc location=\"rtsp://cam:pw@10.0.0.7/s1\" protocols=tcp latency=0 "), "{tcp}");
        assert!(tcp.ends_with("appsink drop=true max-buffers=1 sync=false"), "{tcp}");
        assert!(pipeline("rtsp://h/s", RtspTransport::Udp, 50).unwrap().contains("protocols=udp latency=50 "));
    }

    #[test]
    fn a_url_cannot_break_out_of_its_quotes() {
        for url in ["rtsp://h/s\" ! filesink location=/tmp/x", "rtsp://h/a b", "rtsp://h/s\\", "rtsp://h/s\n"] {
            assert!(pipeline(url, RtspTransport::Tcp, 0).is_err(), "{url:?}");
        }
    }
}
