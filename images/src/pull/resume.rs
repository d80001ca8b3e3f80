//! The download of one layer blob: streamed into the pipeline's channel, resumed with
//! HTTP range requests after network errors, so the pipeline just sees more bytes.

use super::{Ctx, PullError};
use bytes::Bytes;
use std::io::{self, Read};
use tokio::sync::mpsc;

use super::retry::Backoff;
use crate::client::{BlobResponse, ClientError};
use crate::store::LayerRecord;

impl Ctx {
    /// Streams the blob from `offset` into `tx`, resuming with range requests after
    /// network errors for as long as the retry window lasts (counted from the last request
    /// that made progress). Stops quietly when the pipeline hangs up.
    pub(super) async fn download(
        &self,
        layer: &LayerRecord,
        mut offset: u64,
        tx: mpsc::Sender<io::Result<Bytes>>,
    ) -> Result<(), PullError> {
        let mut backoff = Backoff::new(self.opts.retry_window);
        loop {
            let before = offset;
            let result = self.download_once(layer, &mut offset, &tx).await;
            // The window is for an outage: a request that made progress starts a new one
            // (a long download may see several unrelated cuts).
            if offset > before {
                backoff = Backoff::new(self.opts.retry_window);
            }
            let error = match result {
                Ok(()) => return Ok(()),
                Err(Stop::Pull(e)) => {
                    let _ = tx.send(Err(io::Error::other("download failed"))).await;
                    return Err(e);
                }
                Err(Stop::Network(e)) => e,
            };
            let gave_up = !error.is_retryable() || {
                self.progress.layer_retry(
                    &layer.digest,
                    backoff.attempts,
                    &crate::text::error_chain(&error),
                );
                !backoff.retry().await
            };
            if gave_up {
                let _ = tx.send(Err(io::Error::other("download failed"))).await;
                return Err(PullError::Download {
                    digest: layer.digest.clone(),
                    attempts: backoff.attempts,
                    elapsed: backoff.elapsed(),
                    source: error,
                });
            }
        }
    }

    /// One request: from `offset` to the end of the blob or the first error.
    async fn download_once(
        &self,
        layer: &LayerRecord,
        offset: &mut u64,
        tx: &mpsc::Sender<io::Result<Bytes>>,
    ) -> Result<(), Stop> {
        let (mut stream, mut skip) = match self.client.blob(&layer.digest, *offset).await? {
            BlobResponse::Partial(s) => (s, 0),
            // The registry ignored the range: skip what we already have.
            BlobResponse::Full(s) => (s, *offset),
        };
        loop {
            let Some(mut chunk) = stream.next().await? else {
                if *offset >= layer.size {
                    return Ok(());
                }
                return Err(Stop::Network(ClientError::Truncated {
                    digest: layer.digest.clone(),
                    at: *offset,
                    size: layer.size,
                }));
            };
            if skip > 0 {
                let n = skip.min(chunk.len() as u64);
                skip -= n;
                chunk = chunk.slice(n as usize..);
                if chunk.is_empty() {
                    continue;
                }
            }
            *offset += chunk.len() as u64;
            if *offset > layer.size {
                return Err(Stop::Pull(PullError::SizeMismatch {
                    digest: layer.digest.clone(),
                    expected: layer.size,
                    actual: *offset,
                }));
            }
            if tx.send(Ok(chunk)).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// Why one request of a download stopped.
enum Stop {
    /// A network or registry error: maybe worth another request.
    Network(ClientError),
    /// The blob is wrong: the pull fails.
    Pull(PullError),
}

impl From<ClientError> for Stop {
    fn from(e: ClientError) -> Stop {
        Stop::Network(e)
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
