//! What is worth another attempt (network errors, timeouts, 5xx, 429) and how long to
//! wait: exponential backoff from half a second up to ten, for as long as the retry
//! window lasts (tens of seconds: a registry that restarts is back within it).

use super::Ctx;
use std::time::{Duration, Instant};

use crate::client::ClientError;

/// The wait before attempt `attempt + 1` (attempt 1 is the first retry).
pub(super) fn delay(attempt: u32) -> Duration {
    Duration::from_millis((250u64 << attempt.min(6)).min(10_000))
}

/// Retries of one request or download, spread over a window of time.
pub(super) struct Backoff {
    started: Instant,
    window: Duration,
    /// Attempts made so far.
    pub(super) attempts: u32,
}

impl Backoff {
    /// Retries of an operation whose first attempt starts now.
    pub(super) fn new(window: Duration) -> Backoff {
        Backoff {
            started: Instant::now(),
            window,
            attempts: 1,
        }
    }

    /// Waits the backoff before another attempt and counts it; false (at once) when the
    /// wait would end past the window.
    pub(super) async fn retry(&mut self) -> bool {
        match next_delay(self.attempts, self.started.elapsed(), self.window) {
            Some(d) => {
                tokio::time::sleep(d).await;
                self.attempts += 1;
                true
            }
            None => false,
        }
    }

    pub(super) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// The wait before the next attempt after `attempts`, when `elapsed` of `window` is spent.
fn next_delay(attempts: u32, elapsed: Duration, window: Duration) -> Option<Duration> {
    let d = delay(attempts);
    (elapsed + d <= window).then_some(d)
}

impl Ctx {
    /// Runs `op` again, with backoff, while it fails with an error worth retrying and the
    /// retry window lasts.
    pub(super) async fn retrying<T, Fut>(&self, op: impl Fn() -> Fut) -> Result<T, ClientError>
    where
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let mut backoff = Backoff::new(self.opts.retry_window);
        loop {
            match op().await {
                Err(e) if e.is_retryable() => {
                    tracing::info!(
                        attempt = backoff.attempts,
                        error = %crate::text::error_chain(&e),
                        "retrying"
                    );
                    if !backoff.retry().await {
                        return Err(if backoff.attempts > 1 {
                            ClientError::GaveUp {
                                attempts: backoff.attempts,
                                elapsed: backoff.elapsed(),
                                last: Box::new(e),
                            }
                        } else {
                            e
                        });
                    }
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_over_tens_of_seconds() {
        let window = Duration::from_secs(40);
        let mut elapsed = Duration::ZERO;
        let mut attempts = 1;
        let mut waits = Vec::new();
        while let Some(d) = next_delay(attempts, elapsed, window) {
            waits.push(d);
            elapsed += d;
            attempts += 1;
        }
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        assert!(waits.iter().all(|d| *d <= Duration::from_secs(10)));
        assert!(
            elapsed >= Duration::from_secs(30) && elapsed <= window,
            "retried over {elapsed:?}: {waits:?}"
        );
        assert!(
            waits[0] <= Duration::from_secs(1),
            "the first retry is quick"
        );
        assert_eq!(next_delay(1, Duration::from_secs(40), window), None);
    }
}
