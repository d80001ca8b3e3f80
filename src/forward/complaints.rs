//! What the forwarder tells the user when a published port fails (a target that
//! refuses, a container that is gone): the first failure at once, then at most one
//! message per interval, counting the ones held back, so that a refusing target under
//! load does not flood the log.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the forwarder tells the user something (a line starting with `frun:`).
pub type Say = Arc<dyn Fn(&str) + Send + Sync>;

/// Failures of one published port, told to the user: the first at once, then at most
/// one message per interval, which counts the ones held back meanwhile, so that a
/// target refusing under load does not flood the log.
pub struct Complaints {
    say: Say,
    every: Duration,
    quiet: Mutex<Quiet>,
}

#[derive(Default)]
struct Quiet {
    last: Option<Instant>,
    held: u64,
    last_text: String,
}

impl Complaints {
    pub fn new(say: Say, every: Duration) -> Complaints {
        Complaints {
            say,
            every,
            quiet: Mutex::default(),
        }
    }

    pub(super) fn complain(&self, text: String) {
        let now = Instant::now();
        let mut q = self.quiet.lock().unwrap_or_else(|e| e.into_inner());
        if q.last.is_some_and(|t| now.duration_since(t) < self.every) {
            q.held += 1;
            q.last_text = text;
            return;
        }
        let held = std::mem::take(&mut q.held);
        q.last = Some(now);
        drop(q);
        self.tell(&text, held);
    }

    /// Tells what was held back, if anything (when the forwarder stops).
    pub fn flush(&self) {
        let mut q = self.quiet.lock().unwrap_or_else(|e| e.into_inner());
        let held = std::mem::take(&mut q.held);
        let text = std::mem::take(&mut q.last_text);
        drop(q);
        if held > 0 {
            self.tell(&text, held - 1);
        }
    }

    fn tell(&self, text: &str, more: u64) {
        let text = if more > 0 {
            format!("{text} (and {more} more like it since the last message)")
        } else {
            text.to_string()
        };
        (self.say)(&text);
    }
}

/// The message for a failed connect (or a UDP target that answers "port unreachable").
pub(super) fn connect_failure_text(
    what: &str,
    to: SocketAddr,
    e: &io::Error,
    proto: &str,
) -> String {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => format!(
            "frun: {what}: {to} refused the {}: nothing listens on {proto} port {} in the container",
            if proto == "udp" {
                "datagrams (port unreachable)"
            } else {
                "connection"
            },
            to.port()
        ),
        Some(
            libc::ENETUNREACH
            | libc::EHOSTUNREACH
            | libc::EHOSTDOWN
            | libc::ETIMEDOUT
            | libc::EADDRNOTAVAIL,
        ) => format!(
            "frun: {what}: cannot reach {to} ({e}): the container is gone or has lost its network"
        ),
        _ => format!("frun: {what}: connecting to {to} failed: {e}"),
    }
}
