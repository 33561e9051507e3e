//! Which replicas are up, seen the way the proxy sees them: the peer list (static, or a DNS
//! name re-resolved each round) and a grpc.health.v1 check of every peer each round, with the
//! proxy's thresholds, so that this replica's ring is the proxy's ring.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use super::ClusterOptions;

/// Failed checks in a row before a peer counts as down, and passed checks before it counts as
/// up: the `unhealthy_threshold` and `healthy_threshold` of deploy/envoy/envoy.yaml.
const UNHEALTHY_AFTER: u32 = 2;
const HEALTHY_AFTER: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Membership {
    /// Peers passing their health checks (this replica too, while it serves), sorted.
    pub healthy: Vec<String>,
    /// Every peer known in the last round.
    pub known: Vec<String>,
}

enum PeerList {
    Static(Vec<String>),
    Dns(String),
}

impl PeerList {
    async fn resolve(&self) -> Result<BTreeSet<String>, String> {
        match self {
            PeerList::Static(peers) => Ok(peers.iter().cloned().collect()),
            PeerList::Dns(name) => {
                let addresses = tokio::net::lookup_host(name.as_str()).await.map_err(|e| format!("resolving {name}: {e}"))?;
                Ok(addresses.map(|a| a.to_string()).collect())
            }
        }
    }
}

struct Peer {
    health: HealthClient<Channel>,
    healthy: bool,
    passes: u32,
    failures: u32,
}

impl Peer {
    fn new(address: &str, timeout: Duration) -> Result<Self, String> {
        let endpoint = Endpoint::from_shared(format!("http://{address}")).map_err(|e| format!("{address}: {e}"))?;
        let channel = endpoint.connect_timeout(timeout).timeout(timeout).connect_lazy();
        Ok(Self { health: HealthClient::new(channel), healthy: false, passes: 0, failures: 0 })
    }

    async fn check(&mut self) -> bool {
        let request = HealthCheckRequest { service: String::new() };
        self.health.check(request).await.is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32)
    }

    fn record(&mut self, passed: bool) {
        if passed {
            self.passes += 1;
            self.failures = 0;
            if self.passes >= HEALTHY_AFTER {
                self.healthy = true;
            }
        } else {
            self.failures += 1;
            self.passes = 0;
            if self.failures >= UNHEALTHY_AFTER {
                self.healthy = false;
            }
        }
    }
}

/// Starts watching the peers; the receiver changes whenever the healthy set does.
pub fn watch(options: &ClusterOptions) -> watch::Receiver<Membership> {
    let list = match &options.peers_dns {
        Some(name) => PeerList::Dns(name.clone()),
        None => PeerList::Static(options.peers.clone()),
    };
    let every = Duration::from_millis(options.peer_check_ms);
    let (tx, rx) = watch::channel(Membership::default());
    tokio::spawn(run(list, every, tx));
    rx
}

async fn run(list: PeerList, every: Duration, tx: watch::Sender<Membership>) {
    // A check slower than half the interval counts as failed, as a proxy's timeout would.
    let timeout = (every / 2).max(Duration::from_millis(100));
    let mut peers: HashMap<String, Peer> = HashMap::new();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if tx.is_closed() {
            return;
        }
        let addresses = match list.resolve().await {
            Ok(addresses) => addresses,
            Err(e) => {
                tracing::warn!(error = %e, "peers not resolved; keeping the last known set");
                continue;
            }
        };
        peers.retain(|address, _| addresses.contains(address));
        for address in &addresses {
            if !peers.contains_key(address) {
                match Peer::new(address, timeout) {
                    Ok(peer) => {
                        peers.insert(address.clone(), peer);
                    }
                    Err(e) => tracing::warn!(error = %e, "a peer address that cannot be used"),
                }
            }
        }
        let checks = peers.iter_mut().map(|(address, peer)| async move {
            let passed = tokio::time::timeout(timeout, peer.check()).await.unwrap_or(false);
            peer.record(passed);
            (address.clone(), peer.healthy)
        });
        let results = futures_util::future::join_all(checks).await;
        let healthy: Vec<String> =
            results.iter().filter(|(_, up)| *up).map(|(a, _)| a.clone()).collect::<BTreeSet<_>>().into_iter().collect();
        let known: Vec<String> = addresses.into_iter().collect();
        tx.send_if_modified(|current| {
            let next = Membership { healthy: healthy.clone(), known: known.clone() };
            if *current == next {
                return false;
            }
            tracing::info!(healthy = ?next.healthy, known = next.known.len(), "cluster membership changed");
            metrics::gauge!(crate::telemetry::metrics::CLUSTER_PEERS_HEALTHY).set(next.healthy.len() as f64);
            *current = next;
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn thresholds_match_the_proxy() {
        let mut peer = Peer::new("127.0.0.1:1", Duration::from_millis(100)).unwrap();
        assert!(!peer.healthy, "a new peer is down until its first check passes");
        peer.record(true);
        assert!(peer.healthy);
        peer.record(false);
        assert!(peer.healthy, "one failed check is not enough");
        peer.record(false);
        assert!(!peer.healthy);
        peer.record(true);
        assert!(peer.healthy);
    }
}
