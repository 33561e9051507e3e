//! Concurrency caps: calls beyond them are refused at once (RESOURCE_EXHAUSTED with a retry
//! hint) rather than queued.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::status::ApiError;

/// Suggested back-off for calls refused by a concurrency limit: about one encoder run here.
const RETRY_AFTER_MS: u64 = 1_000;

pub struct Limit {
    what: &'static str,
    max: usize,
    permits: Arc<Semaphore>,
}

impl Limit {
    pub fn new(what: &'static str, max: usize) -> Self {
        Self { what, max, permits: Arc::new(Semaphore::new(max)) }
    }

    /// A permit held for the call's lifetime, or RESOURCE_EXHAUSTED with a retry hint.
    pub fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.permits.clone().try_acquire_owned().map_err(|_| ApiError::Overloaded {
            what: self.what,
            limit: self.max,
            retry_after_ms: RETRY_AFTER_MS,
        })
    }
}
