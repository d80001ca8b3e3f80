//! What is worth another attempt (network errors, 5xx, 429) and how long to wait.

use super::Ctx;
use std::time::Duration;

pub(super) fn is_retryable(e: &oci_client::errors::OciDistributionError) -> bool {
    use oci_client::errors::OciDistributionError as E;
    match e {
        E::RequestError(_) | E::IoError(_) => true,
        E::ServerError { code, .. } => *code >= 500 || *code == 429,
        _ => false,
    }
}

pub(super) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((100u64 << attempt.min(6)).min(5_000))
}

impl Ctx {
    /// Runs `op` again, with backoff, while it fails with a network error, up to the
    /// configured number of retries.
    pub(super) async fn retrying<T, Fut>(
        &self,
        op: impl Fn() -> Fut,
    ) -> Result<T, oci_client::errors::OciDistributionError>
    where
        Fut: std::future::Future<Output = Result<T, oci_client::errors::OciDistributionError>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Err(e) if is_retryable(&e) && attempt < self.opts.retries => {
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt)).await;
                }
                other => return other,
            }
        }
    }
}
