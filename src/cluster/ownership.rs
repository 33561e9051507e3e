//! Handing sources over: a source running here that the ring now gives to another healthy
//! replica (one joined, or came back) is stopped here once that has held for the grace period,
//! its viewers told SOURCE_MOVED and UNAVAILABLE, so they reconnect through the proxy and land
//! on the owner, and the camera is not opened and encoded twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::membership::Membership;
use super::ring::Ring;
use crate::session::SourceHub;
use crate::telemetry::metrics::SOURCES_HANDED_OVER;

pub struct Handover {
    pub hub: Arc<SourceHub>,
    pub membership: watch::Receiver<Membership>,
    /// This replica's address among the peers.
    pub me: String,
    pub ring_min_size: u64,
    pub grace: Duration,
    pub every: Duration,
}

impl Handover {
    pub async fn run(mut self) {
        // key -> (the other owner, since when)
        let mut foreign: HashMap<String, (String, Instant)> = HashMap::new();
        let mut warned_absent = false;
        let mut ticker = tokio::time::interval(self.every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                changed = self.membership.changed() => if changed.is_err() { return },
            }
            let membership = self.membership.borrow().clone();
            // Only a replica that sees itself serving decides anything.
            if !membership.healthy.contains(&self.me) {
                if !warned_absent && !membership.known.is_empty() && !membership.known.contains(&self.me) {
                    tracing::warn!(me = %self.me, known = ?membership.known, "this replica is not among its peers: set --advertise-addr");
                    warned_absent = true;
                }
                foreign.clear();
                continue;
            }
            let ring = Ring::new(&membership.healthy, self.ring_min_size);
            let running = self.hub.running_keys();
            foreign.retain(|key, _| running.contains(key));
            for key in running {
                let Some(owner) = ring.owner(&key).map(str::to_string) else { continue };
                if owner == self.me {
                    foreign.remove(&key);
                    continue;
                }
                let since = match foreign.get(&key) {
                    Some((known, since)) if *known == owner => *since,
                    _ => {
                        foreign.insert(key.clone(), (owner.clone(), Instant::now()));
                        continue;
                    }
                };
                if since.elapsed() >= self.grace {
                    let reason = format!("source {key} is now served by replica {owner} (the cluster changed); reconnect to follow it");
                    let viewers = self.hub.evict(&key, &reason);
                    metrics::counter!(SOURCES_HANDED_OVER).increment(1);
                    tracing::warn!(%key, %owner, viewers, "source handed over to its owner");
                    foreign.remove(&key);
                }
            }
        }
    }
}
