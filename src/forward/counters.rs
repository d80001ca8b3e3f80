//! What a published port has carried: connections open, accepted and failed, bytes
//! each way. Relaxed atomics bumped by the forwarder's one thread (a few per connection
//! and one per read, nothing per byte), read by whoever reports them: the holder writes
//! a [`Snapshot`] of every port to a small file in the run root, which the
//! supervisor's metrics read on each scrape (see `crate::metrics`).

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// The live counters of one published port.
#[derive(Debug, Default)]
pub struct PortCounters {
    pub open: AtomicU64,
    pub accepted: AtomicU64,
    pub failed: AtomicU64,
    /// Bytes from clients to the container.
    pub bytes_in: AtomicU64,
    /// Bytes from the container to clients.
    pub bytes_out: AtomicU64,
}

/// The counters of one port at one moment, as written to the holder's file. For UDP a
/// "connection" is a flow: a client address with its upstream socket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The port as published (`127.0.0.1:8080->80/tcp`).
    pub port: String,
    pub open: u64,
    pub accepted: u64,
    pub failed: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl PortCounters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    /// A connection accepted: open until the returned guard drops (it may go to the
    /// connection's task: counted from the accept on, see `gate`).
    pub fn accept(self: &Arc<Self>) -> OpenGuard {
        self.accepted.fetch_add(1, Relaxed);
        self.open.fetch_add(1, Relaxed);
        OpenGuard(self.clone())
    }

    pub fn snapshot(&self, port: &str) -> Snapshot {
        Snapshot {
            port: port.to_string(),
            open: self.open.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            failed: self.failed.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
        }
    }
}

/// An open connection: counted down however it ends (a task dropped at stop too).
pub struct OpenGuard(Arc<PortCounters>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Relaxed);
    }
}
