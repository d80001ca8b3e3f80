//! The download of one layer blob: streamed into the pipeline's channel, resumed with
//! HTTP range requests after network errors, so the pipeline just sees more bytes.

use super::{Ctx, PullError};
use bytes::Bytes;
use futures_util::StreamExt;
use std::io::{self, Read};
use tokio::sync::mpsc;

use super::retry::{backoff, is_retryable};
use crate::store::LayerRecord;

impl Ctx {
    /// Streams the blob from `offset` into `tx`, resuming with range requests after
    /// network errors. Stops quietly when the pipeline hangs up.
    pub(super) async fn download(
        &self,
        layer: &LayerRecord,
        mut offset: u64,
        tx: mpsc::Sender<io::Result<Bytes>>,
    ) -> Result<(), PullError> {
        let digest = layer.digest.to_string();
        let mut attempt = 0u32;
        let mut last_error = String::new();
        loop {
            if attempt > self.opts.retries {
                let err = PullError::Download {
                    digest: layer.digest.clone(),
                    attempts: attempt,
                    reason: last_error,
                };
                let _ = tx.send(Err(io::Error::other("download failed"))).await;
                return Err(err);
            }
            if attempt > 0 {
                self.progress
                    .layer_retry(&layer.digest, attempt, &last_error);
                tokio::time::sleep(backoff(attempt)).await;
            }
            attempt += 1;
            let response = if offset == 0 {
                self.client
                    .pull_blob_stream(&self.fetch_ref, digest.as_str())
                    .await
                    .map(|s| (s, 0u64))
            } else {
                self.client
                    .pull_blob_stream_partial(&self.fetch_ref, digest.as_str(), offset, None)
                    .await
                    .map(|r| match r {
                        oci_client::client::BlobResponse::Partial(s) => (s, 0),
                        // The registry ignored the range: skip what we already have.
                        oci_client::client::BlobResponse::Full(s) => (s, offset),
                    })
            };
            let (mut stream, mut skip) = match response {
                Ok(s) => s,
                Err(e) if is_retryable(&e) => {
                    last_error = format!("{e:#}");
                    continue;
                }
                Err(e) => {
                    let reason = format!("{e}");
                    let _ = tx.send(Err(io::Error::other("download failed"))).await;
                    return Err(PullError::Download {
                        digest: layer.digest.clone(),
                        attempts: attempt,
                        reason,
                    });
                }
            };
            loop {
                match stream.next().await {
                    Some(Ok(mut chunk)) => {
                        if skip > 0 {
                            let n = skip.min(chunk.len() as u64);
                            skip -= n;
                            chunk = chunk.slice(n as usize..);
                            if chunk.is_empty() {
                                continue;
                            }
                        }
                        offset += chunk.len() as u64;
                        if offset > layer.size {
                            let _ = tx.send(Err(io::Error::other("blob too large"))).await;
                            return Err(PullError::SizeMismatch {
                                digest: layer.digest.clone(),
                                expected: layer.size,
                                actual: offset,
                            });
                        }
                        if tx.send(Ok(chunk)).await.is_err() {
                            return Ok(());
                        }
                    }
                    // oci-client's own check at the end of a full response: our pipeline
                    // hashes too and reports the mismatch with both digests.
                    Some(Err(e))
                        if e.get_ref()
                            .is_some_and(|i| i.is::<oci_client::errors::DigestError>()) =>
                    {
                        return Ok(());
                    }
                    Some(Err(e)) => {
                        last_error = format!("{e:#}");
                        break;
                    }
                    None => {
                        if offset >= layer.size {
                            return Ok(());
                        }
                        last_error =
                            format!("connection closed at byte {offset} of {}", layer.size);
                        break;
                    }
                }
            }
        }
    }
}

/// The blocking end of the download channel.
pub(super) struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
    /// Once the download has failed, every read fails: a closed channel after an error
    /// must not look like the end of the blob.
    failed: bool,
}

impl ChannelReader {
    pub(super) fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> Self {
        ChannelReader {
            rx,
            current: Bytes::new(),
            failed: false,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.failed {
                return Err(io::Error::other("download failed"));
            }
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => {
                    self.failed = true;
                    return Err(e);
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}
