//! Heartbeats for silent streams: proxies cut a stream that sends nothing for their idle
//! timeout (HTTP/2 pings do not count), so a session sends a HEARTBEAT event after `every`
//! without any other message.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

pub(super) struct Heartbeat {
    every: Option<Duration>,
    /// When the session last sent anything (a Mutex, not a Cell: the session future must be
    /// Send).
    last_sent: Mutex<Instant>,
}

impl Heartbeat {
    /// `every`: None never sends one.
    pub(super) fn new(every: Option<Duration>) -> Self {
        Self { every, last_sent: Mutex::new(Instant::now()) }
    }

    /// Records that something was sent now.
    pub(super) fn sent(&self) {
        *self.last_sent.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    /// Resolves when a heartbeat is due: `every` after the last message sent; never without one.
    pub(super) async fn due(&self) {
        let last_sent = *self.last_sent.lock().unwrap_or_else(PoisonError::into_inner);
        match self.every {
            Some(every) => tokio::time::sleep_until((last_sent + every).into()).await,
            None => std::future::pending().await,
        }
    }
}
