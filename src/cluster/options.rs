use clap::Args;
use serde::{Deserialize, Serialize};

use super::ring::DEFAULT_MIN_RING_SIZE;

/// Replicas behind a consistent-hash proxy (deploy/envoy/): who the peers are, so that sources
/// the proxy now sends elsewhere are handed over.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct ClusterOptions {
    /// Every replica's gRPC address as the proxy balances over them (`ip:port`, this replica's
    /// included); repeatable or comma-separated. With --peers-dns instead, the DNS name's
    /// addresses. Without either, this server is on its own and hands nothing over.
    #[arg(long = "peer", env = "SAMSTREAM_PEERS", value_delimiter = ',')]
    #[serde(default)]
    pub peers: Vec<String>,

    /// `name:port` whose A/AAAA records are the replicas (a Kubernetes headless Service, as the
    /// proxy's STRICT_DNS cluster resolves it); re-resolved on every check.
    #[arg(long, env = "SAMSTREAM_PEERS_DNS", conflicts_with = "peers")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers_dns: Option<String>,

    /// This replica's address among the peers (`ip:port`); default: the listen address.
    #[arg(long, env = "SAMSTREAM_ADVERTISE_ADDR")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise_addr: Option<String>,

    /// How often every peer is health-checked (grpc.health.v1, as the proxy does), in ms.
    #[arg(long, env = "SAMSTREAM_PEER_CHECK_MS", default_value_t = 1000)]
    pub peer_check_ms: u64,

    /// Seconds another healthy replica must own a source running here before its streams here
    /// end with SOURCE_MOVED (covers the moments the proxy's view and this one differ).
    #[arg(long, env = "SAMSTREAM_HANDOVER_GRACE_SECS", default_value_t = 5.0)]
    pub handover_grace_secs: f64,

    /// The proxy's ring hash `minimum_ring_size` (Envoy's default 1024).
    #[arg(long, env = "SAMSTREAM_RING_MIN_SIZE", default_value_t = DEFAULT_MIN_RING_SIZE)]
    pub ring_min_size: u64,
}

impl ClusterOptions {
    pub fn enabled(&self) -> bool {
        !self.peers.is_empty() || self.peers_dns.is_some()
    }

    pub fn check(&self) -> Result<(), String> {
        for peer in &self.peers {
            peer.parse::<std::net::SocketAddr>().map_err(|_| format!("--peer {peer:?}: expected ip:port as the proxy sees it"))?;
        }
        if let Some(addr) = &self.advertise_addr {
            addr.parse::<std::net::SocketAddr>().map_err(|_| format!("--advertise-addr {addr:?}: expected ip:port"))?;
        }
        if !(self.handover_grace_secs.is_finite() && self.handover_grace_secs >= 0.0) {
            return Err(format!("--handover-grace-secs must be >= 0, got {}", self.handover_grace_secs));
        }
        if self.peer_check_ms == 0 {
            return Err("--peer-check-ms must be > 0".into());
        }
        Ok(())
    }
}
