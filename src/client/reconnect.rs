//! When a viewer of a server-side source reconnects. Through a proxy a replica that dies ends
//! the stream with INTERNAL or CANCELLED (the proxy resets it), not UNAVAILABLE, and a source
//! handed to another replica ends with UNAVAILABLE: all three mean "reconnect", and the proxy
//! routes the new stream to the source's current replica.

use std::time::Duration;

const FIRST_WAIT: Duration = Duration::from_millis(200);
const LONGEST_WAIT: Duration = Duration::from_secs(5);
/// Attempts in a row without a result before giving up.
const ATTEMPTS: u32 = 10;

pub fn is_retryable(status: &tonic::Status) -> bool {
    matches!(status.code(), tonic::Code::Unavailable | tonic::Code::Internal | tonic::Code::Cancelled)
}

/// Exponential backoff between attempts, reset by every result.
#[derive(Debug, Default)]
pub struct Reconnects {
    failed_in_a_row: u32,
}

impl Reconnects {
    pub fn succeeded(&mut self) {
        self.failed_in_a_row = 0;
    }

    /// After the stream ended with `error`: waits and returns Ok to reconnect, or gives the
    /// error back when it is not worth retrying.
    pub async fn after(&mut self, error: anyhow::Error) -> anyhow::Result<()> {
        let Some(status) = error.downcast_ref::<tonic::Status>().filter(|s| is_retryable(s)) else { return Err(error) };
        self.failed_in_a_row += 1;
        if self.failed_in_a_row > ATTEMPTS {
            return Err(error.context(format!("gave up after {ATTEMPTS} reconnects without a result")));
        }
        let wait = FIRST_WAIT.saturating_mul(1 << (self.failed_in_a_row - 1).min(5)).min(LONGEST_WAIT);
        eprintln!("[reconnect] {:?}: {}; reconnecting in {} ms", status.code(), status.message(), wait.as_millis());
        tokio::time::sleep(wait).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_resets_and_hand_overs_are_retried_refusals_are_not() {
        for code in [tonic::Code::Unavailable, tonic::Code::Internal, tonic::Code::Cancelled] {
            assert!(is_retryable(&tonic::Status::new(code, "")), "{code:?}");
        }
        for code in [tonic::Code::InvalidArgument, tonic::Code::NotFound, tonic::Code::PermissionDenied, tonic::Code::Unauthenticated] {
            assert!(!is_retryable(&tonic::Status::new(code, "")), "{code:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waits_grow_and_the_attempts_run_out() {
        let mut reconnects = Reconnects::default();
        let started = tokio::time::Instant::now();
        for _ in 0..ATTEMPTS {
            reconnects.after(tonic::Status::internal("reset").into()).await.unwrap();
        }
        // 0.2 + 0.4 + 0.8 + 1.6 + 3.2 + 5 * 5 s
        assert_eq!(started.elapsed(), Duration::from_millis(31_200));
        assert!(reconnects.after(tonic::Status::internal("reset").into()).await.is_err());
        reconnects.succeeded();
        assert!(reconnects.after(tonic::Status::unavailable("moved").into()).await.is_ok());
        assert!(reconnects.after(tonic::Status::not_found("source").into()).await.is_err());
    }
}
