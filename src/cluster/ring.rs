//! Envoy's RING_HASH load balancer, reproduced: the same hosts and the same key give the same
//! owner here as in Envoy, so a replica can tell which sources the proxy now sends elsewhere.
//!
//! Envoy (source/extensions/load_balancing_policies/ring_hash/ring_hash_lb.cc) hashes each
//! host's address string `"<ip>:<port>_<i>"` with xxHash64 (seed 0) for i in 0..n, where equal
//! weights give every host `ceil(minimum_ring_size / hosts)` entries; a request's hash (for a
//! header hash policy, xxHash64 of the header value) belongs to the first entry at or after it,
//! wrapping around. tests/cluster.rs checks this against a real Envoy.

use xxhash_rust::xxh64::xxh64;

/// Envoy's default `minimum_ring_size`.
pub const DEFAULT_MIN_RING_SIZE: u64 = 1024;
/// Envoy's default `maximum_ring_size`.
const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Ring {
    /// (hash, index into `hosts`), sorted by hash.
    entries: Vec<(u64, usize)>,
    hosts: Vec<String>,
}

impl Ring {
    /// The ring Envoy builds over `hosts` (address strings as Envoy prints them, `ip:port`),
    /// all of weight 1. Envoy walks the hosts in its own order; with equal weights every host
    /// gets the same number of entries, so the order does not change the ring.
    pub fn new(hosts: &[String], min_ring_size: u64) -> Self {
        let mut entries = Vec::new();
        if !hosts.is_empty() {
            let weight = 1.0 / hosts.len() as f64;
            let scale = ((weight * min_ring_size as f64).ceil() / weight).min(MAX_RING_SIZE as f64);
            let (mut current, mut target) = (0.0f64, 0.0f64);
            for (index, host) in hosts.iter().enumerate() {
                target += scale * weight;
                let mut i = 0u64;
                while current < target {
                    entries.push((xxh64(format!("{host}_{i}").as_bytes(), 0), index));
                    i += 1;
                    current += 1.0;
                }
            }
        }
        entries.sort_unstable();
        Self { entries, hosts: hosts.to_vec() }
    }

    /// The host a request whose hash key is `key` goes to; None on an empty ring.
    pub fn owner(&self, key: &str) -> Option<&str> {
        let hash = xxh64(key.as_bytes(), 0);
        let at = self.entries.partition_point(|&(h, _)| h < hash);
        let (_, host) = *self.entries.get(at).or_else(|| self.entries.first())?;
        Some(&self.hosts[host])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(ports: &[u16]) -> Vec<String> {
        ports.iter().map(|p| format!("127.0.0.1:{p}")).collect()
    }

    #[test]
    fn every_host_gets_an_equal_share_of_the_ring() {
        let ring = Ring::new(&hosts(&[1, 2, 3]), DEFAULT_MIN_RING_SIZE);
        assert_eq!(ring.entries.len(), 1026, "ceil(1024 / 3) = 342 entries per host");
        for host in 0..3 {
            assert_eq!(ring.entries.iter().filter(|e| e.1 == host).count(), 342);
        }
        assert!(Ring::new(&[], DEFAULT_MIN_RING_SIZE).owner("x").is_none());
    }

    #[test]
    fn keys_spread_and_a_removed_host_moves_few_others() {
        let three = Ring::new(&hosts(&[1, 2, 3]), DEFAULT_MIN_RING_SIZE);
        let two = Ring::new(&hosts(&[1, 3]), DEFAULT_MIN_RING_SIZE);
        let keys: Vec<String> = (0..300).map(|i| format!("cam-{i}")).collect();
        let on_two = keys.iter().filter(|k| three.owner(k) == Some("127.0.0.1:2")).count();
        assert!((60..=140).contains(&on_two), "about a third of the keys: {on_two}");
        // Envoy gives each host ceil(min_ring_size / hosts) entries, so the survivors gain
        // entries too and some of their keys (about one in seven here) trade places; the handover
        // follows Envoy there.
        let moved_between_survivors =
            keys.iter().filter(|k| three.owner(k) != Some("127.0.0.1:2") && two.owner(k) != three.owner(k)).count();
        assert!(moved_between_survivors * 4 < keys.len() - on_two, "{moved_between_survivors} of {} moved", keys.len() - on_two);
    }

    #[test]
    fn the_order_of_the_hosts_does_not_matter() {
        let a = Ring::new(&hosts(&[1, 2, 3, 4]), DEFAULT_MIN_RING_SIZE);
        let b = Ring::new(&hosts(&[4, 2, 1, 3]), DEFAULT_MIN_RING_SIZE);
        for i in 0..100 {
            let key = format!("rtsp://cam/{i}");
            assert_eq!(a.owner(&key), b.owner(&key));
        }
    }

    #[test]
    fn matches_envoy_on_recorded_keys() {
        // Where Envoy 1.40 sent requests with these x-samstream-source values, recorded from a
        // live Envoy over three HTTP backends (tests/cluster.rs checks the same live).
        let ring = Ring::new(&hosts(&[18101, 18102, 18103]), DEFAULT_MIN_RING_SIZE);
        let recorded = RECORDED.iter().map(|&(key, port)| (key, format!("127.0.0.1:{port}")));
        for (key, owner) in recorded {
            assert_eq!(ring.owner(key), Some(owner.as_str()), "{key}");
        }
    }

    const RECORDED: &[(&str, u16)] = &[
        ("lobby", 18103),
        ("gate", 18103),
        ("dock", 18102),
        ("rtsp://10.0.0.7/stream1", 18103),
        ("cam-0", 18103),
        ("cam-1", 18101),
        ("cam-2", 18102),
        ("cam-3", 18101),
        ("cam-4", 18103),
        ("cam-5", 18103),
        ("parking", 18101),
        ("rtsp://cams.example/north", 18102),
    ];
}
