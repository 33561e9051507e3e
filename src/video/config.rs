//! Operator-configured server-side sources (`--sources FILE`, TOML).
//!
//! ```toml
//! [[source]]
//! name = "lobby"
//! kind = "file"                      # file | camera | network | gstreamer
//! path = "/videos/lobby.mp4"
//! loop = true
//!
//! [[source]]
//! name = "gate"
//! kind = "rtsp"                      # an RTSP camera, through GStreamer's rtspsrc
//! url = "rtsp://user:password@10.0.0.7/stream1"
//! transport = "tcp"                  # tcp (default) | udp
//! latency_ms = 0                     # jitter buffer; 0 = none beyond what decoding needs
//! reconnect = { initial_ms = 250, max_ms = 8000, max_attempts = 0 }   # 0 = forever
//!
//! [[source]]
//! name = "feed"
//! kind = "network"                   # HTTP(S), TCP, UDP, RTMP, ...: anything FFmpeg opens
//! url = "http://10.0.0.8/live.ts"
//!
//! [[source]]
//! name = "bench-cam"
//! kind = "camera"
//! device = "/dev/video0"             # or an index such as "0"
//!
//! [[source]]
//! name = "synthetic"
//! kind = "gstreamer"
//! pipeline = "videotestsrc is-live=true ! video/x-raw,width=640,height=480,framerate=10/1 ! videoconvert ! appsink"
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::rtsp::RtspTransport;
use super::uri::redact_userinfo;

#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    File { path: PathBuf, looping: bool },
    Camera { device: String },
    Rtsp { url: String, transport: RtspTransport, latency_ms: u32 },
    Network { url: String },
    Gstreamer { pipeline: String },
}

impl SourceSpec {
    /// Files end; everything else is live and is reconnected when lost.
    pub fn is_live(&self) -> bool {
        !matches!(self, SourceSpec::File { .. })
    }

    /// A client URI's source: RTSP cameras over TCP, anything else through FFmpeg.
    pub fn for_uri(uri: &str) -> Self {
        let scheme = uri.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("rtsp" | "rtsps") => SourceSpec::Rtsp { url: uri.into(), transport: RtspTransport::Tcp, latency_ms: 0 },
            _ => SourceSpec::Network { url: uri.into() },
        }
    }

    /// For logs, events and ListSources: the location as configured, credentials redacted.
    pub fn describe(&self) -> String {
        match self {
            SourceSpec::File { path, looping } => format!("file {}{}", path.display(), if *looping { " (looping)" } else { "" }),
            SourceSpec::Camera { device } => format!("camera {device}"),
            SourceSpec::Rtsp { url, transport, .. } => format!("rtsp {} over {}", redact_userinfo(url), transport.label()),
            SourceSpec::Network { url } => format!("network {}", redact_userinfo(url)),
            SourceSpec::Gstreamer { pipeline } => format!("gstreamer {pipeline}"),
        }
    }
}

/// Capped exponential backoff between reconnect attempts.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Backoff {
    pub initial_ms: u64,
    pub max_ms: u64,
    /// 0 retries forever.
    pub max_attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { initial_ms: 250, max_ms: 8_000, max_attempts: 0 }
    }
}

impl Backoff {
    /// Delay before attempt `attempt` (1-based): initial * 2^(attempt-1), capped.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u64.checked_shl(attempt.saturating_sub(1)).unwrap_or(u64::MAX);
        Duration::from_millis(self.initial_ms.saturating_mul(factor).min(self.max_ms))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    pub name: String,
    pub spec: SourceSpec,
    pub reconnect: Backoff,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    File,
    Camera,
    Rtsp,
    Network,
    Gstreamer,
}

/// One `[[source]]` table as written; `SourceConfig::try_from` checks the kind's fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceTable {
    name: String,
    kind: Kind,
    path: Option<PathBuf>,
    #[serde(default, rename = "loop")]
    looping: bool,
    device: Option<String>,
    url: Option<String>,
    transport: Option<RtspTransport>,
    latency_ms: Option<u32>,
    pipeline: Option<String>,
    #[serde(default)]
    reconnect: Backoff,
}

impl TryFrom<SourceTable> for SourceConfig {
    type Error = anyhow::Error;

    fn try_from(t: SourceTable) -> anyhow::Result<Self> {
        let name = t.name;
        let required = |value: Option<String>, field: &str| value.ok_or_else(|| anyhow::anyhow!("source {name:?}: `{field}` is required"));
        if !matches!(t.kind, Kind::Rtsp) && (t.transport.is_some() || t.latency_ms.is_some()) {
            anyhow::bail!("source {name:?}: `transport` and `latency_ms` apply to rtsp sources only");
        }
        let spec = match t.kind {
            Kind::File => {
                SourceSpec::File { path: t.path.ok_or_else(|| anyhow::anyhow!("source {name:?}: `path` is required"))?, looping: t.looping }
            }
            Kind::Camera => SourceSpec::Camera { device: required(t.device, "device")? },
            Kind::Rtsp => {
                let url = required(t.url, "url")?;
                anyhow::ensure!(
                    url.to_ascii_lowercase().starts_with("rtsp://") || url.to_ascii_lowercase().starts_with("rtsps://"),
                    "source {name:?}: an rtsp source's url starts with rtsp:// or rtsps://"
                );
                super::rtsp::pipeline(&url, RtspTransport::Tcp, 0).map_err(|e| anyhow::anyhow!("source {name:?}: {e}"))?;
                SourceSpec::Rtsp { url, transport: t.transport.unwrap_or_default(), latency_ms: t.latency_ms.unwrap_or(0) }
            }
            Kind::Network => SourceSpec::Network { url: required(t.url, "url")? },
            Kind::Gstreamer => SourceSpec::Gstreamer { pipeline: required(t.pipeline, "pipeline")? },
        };
        Ok(SourceConfig { name, spec, reconnect: t.reconnect })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourcesFile {
    #[serde(default)]
    source: Vec<SourceTable>,
}

pub fn load_sources(path: &Path) -> anyhow::Result<Vec<SourceConfig>> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    parse_sources(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

pub fn parse_sources(text: &str) -> anyhow::Result<Vec<SourceConfig>> {
    let file: SourcesFile = toml::from_str(text)?;
    let sources = file.source.into_iter().map(SourceConfig::try_from).collect::<anyhow::Result<Vec<_>>>()?;
    let mut names = std::collections::HashSet::new();
    for source in &sources {
        anyhow::ensure!(!source.name.is_empty(), "a source needs a name");
        anyhow::ensure!(names.insert(source.name.as_str()), "source name {:?} is used twice", source.name);
    }
    Ok(sources)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_parses() {
        let sources = parse_sources(include_str!("../../deploy/sources.example.toml")).unwrap();
        let gate = sources.iter().find(|s| s.name == "gate-camera").unwrap();
        assert!(matches!(&gate.spec, SourceSpec::Rtsp { transport: RtspTransport::Tcp, latency_ms: 0, .. }), "{:?}", gate.spec);
        assert!(!gate.spec.describe().contains("secret"));
    }

    #[test]
    fn parses_every_kind_with_defaults() {
        let sources = parse_sources(
            r#"
            [[source]]
            name = "a"
            kind = "file"
            path = "/v.mp4"
            loop = true
            [[source]]
            name = "b"
            kind = "network"
            url = "tcp://127.0.0.1:9000"
            reconnect = { initial_ms = 100, max_ms = 400 }
            [[source]]
            name = "c"
            kind = "gstreamer"
            pipeline = "videotestsrc ! appsink"
            [[source]]
            name = "d"
            kind = "camera"
            device = "0"
            [[source]]
            name = "e"
            kind = "rtsp"
            url = "rtsp://cam:pw@10.0.0.7/s1"
            [[source]]
            name = "f"
            kind = "rtsp"
            url = "rtsp://10.0.0.8/s1"
            transport = "udp"
            latency_ms = 40
            "#,
        )
        .unwrap();
        assert_eq!(sources.len(), 6);
        assert_eq!(
            sources[4].spec,
            SourceSpec::Rtsp { url: "rtsp://cam:pw@10.0.0.7/s1".into(), transport: RtspTransport::Tcp, latency_ms: 0 }
        );
        assert_eq!(sources[5].spec, SourceSpec::Rtsp { url: "rtsp://10.0.0.8/s1".into(), transport: RtspTransport::Udp, latency_ms: 40 });
        assert_eq!(sources[4].spec.describe(), "rtsp rtsp://cam:***@10.0.0.7/s1 over TCP");
        assert_eq!(sources[0].spec, SourceSpec::File { path: "/v.mp4".into(), looping: true });
        assert_eq!(sources[1].reconnect, Backoff { initial_ms: 100, max_ms: 400, max_attempts: 0 });
        assert!(!sources[0].spec.is_live() && sources[1].spec.is_live());
    }

    #[test]
    fn rejects_duplicates_and_unknown_fields() {
        let dup = "[[source]]\nname='a'\nkind='camera'\ndevice='0'\n[[source]]\nname='a'\nkind='camera'\ndevice='1'\n";
        assert!(parse_sources(dup).is_err());
        assert!(parse_sources("[[source]]\nname='a'\nkind='camera'\ndevice='0'\ncolour='red'\n").is_err());
        assert!(parse_sources("[[source]]\nname='a'\nkind='satellite'\n").is_err());
        assert!(parse_sources("[[source]]\nname='a'\nkind='network'\n").is_err(), "network needs a url");
        let udp_file = "[[source]]\nname='a'\nkind='file'\npath='/v.mp4'\ntransport='udp'\n";
        assert!(parse_sources(udp_file).unwrap_err().to_string().contains("rtsp sources only"));
        assert!(parse_sources("[[source]]\nname='a'\nkind='rtsp'\nurl='http://x/y'\n").is_err(), "rtsp needs rtsp://");
        assert!(parse_sources("[[source]]\nname='a'\nkind='rtsp'\nurl='rtsp://x/y'\ntransport='quic'\n").is_err());
    }

    #[test]
    fn client_uris_pick_their_reader_by_scheme() {
        assert!(matches!(SourceSpec::for_uri("RTSP://cam/s"), SourceSpec::Rtsp { transport: RtspTransport::Tcp, .. }));
        assert!(matches!(SourceSpec::for_uri("http://cam/s.ts"), SourceSpec::Network { .. }));
        assert_eq!(SourceSpec::for_uri("http://u:p@cam/s.ts").describe(), "network http://u:***@cam/s.ts");
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = Backoff { initial_ms: 100, max_ms: 1000, max_attempts: 0 };
        let delays: Vec<u64> = (1..=6).map(|a| b.delay(a).as_millis() as u64).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.delay(200).as_millis(), 1000);
    }
}
