//! Whether a forwarder accepts: the switch of a published port's hand-off between two
//! holders (see `handoff`). Both hold the same listening sockets; the new one starts
//! paused, is resumed, then the old one is paused, so that for a moment both accept
//! from one kernel queue and no connection is refused or lost.
//!
//! [`Gate::pause`] returns only once no accept can happen any more: every accept loop
//! counts itself in ([`Gate::enter`]) before it waits on its socket, under the same
//! lock that closes the gate, and out once it left the wait with what it accepted
//! already counted as an open connection. Paused, an established relay goes on.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The gate of one forwarder's accept loops (every published port of a container).
pub struct Gate {
    state: Mutex<State>,
    /// Signalled when an accept loop leaves its wait (for `pause`).
    left: Condvar,
    /// Bumped on each change, to wake the accept loops.
    changed: watch::Sender<u64>,
}

struct State {
    open: bool,
    /// Accept loops waiting on their sockets now.
    inside: usize,
}

/// One accept loop inside the gate: counted out on drop.
pub struct Inside<'a>(&'a Gate);

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.inside -= 1;
        self.0.left.notify_all();
    }
}

impl Gate {
    /// A gate that lets accepts through (`open`) or holds them back.
    pub fn new(open: bool) -> Arc<Gate> {
        Arc::new(Gate {
            state: Mutex::new(State { open, inside: 0 }),
            left: Condvar::new(),
            changed: watch::channel(0).0,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    pub fn is_open(&self) -> bool {
        self.lock().open
    }

    /// A receiver of changes, for an accept loop (see [`Gate::enter`]).
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// An accept loop may wait on its socket: `Some` while the gate is open (hold it
    /// until the wait is over and what it accepted is counted), `None` when paused
    /// (then wait for a change on `rx`, marked seen before this call).
    pub fn enter(&self) -> Option<Inside<'_>> {
        let mut st = self.lock();
        if !st.open {
            return None;
        }
        st.inside += 1;
        Some(Inside(self))
    }

    /// Accepts from now on.
    pub fn resume(&self) {
        let mut st = self.lock();
        if !st.open {
            st.open = true;
            tracing::info!("the published ports accept again");
        }
        self.changed.send_modify(|v| *v += 1);
    }

    /// No accept from now on: returns once every accept loop has left its wait, or
    /// fails after `timeout` (a forwarder that does not run any more).
    pub fn pause(&self, timeout: Duration) -> Result<(), String> {
        let mut st = self.lock();
        if st.open {
            st.open = false;
            tracing::info!("the published ports stop accepting (paused)");
        }
        self.changed.send_modify(|v| *v += 1);
        let deadline = Instant::now() + timeout;
        while st.inside > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "{} accept loops did not stop within {timeout:?}",
                    st.inside
                ));
            }
            st = self
                .left
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(())
    }
}

/// The accept loop's wait for its next connection (or datagram) through `gate`: `Some`
/// of what `accept` gave while the gate is open, with `Inside` still held (drop it once
/// what was accepted is counted); loops while the gate is closed.
pub async fn accept_through<'g, T, F, Fut>(
    gate: &'g Gate,
    rx: &mut watch::Receiver<u64>,
    mut accept: F,
) -> (T, Inside<'g>)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    loop {
        rx.borrow_and_update();
        let Some(inside) = gate.enter() else {
            // Paused: a change (resume) wakes this; one between the mark and here is
            // seen at once.
            let _ = rx.changed().await;
            continue;
        };
        tokio::select! {
            biased;
            _ = rx.changed() => continue,
            got = accept() => return (got, inside),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_waits_for_the_loops_inside_and_resume_lets_them_in() {
        let g = Gate::new(false);
        assert!(g.enter().is_none());
        g.resume();
        let inside = g.enter().expect("open");
        let g2 = g.clone();
        let t = std::thread::spawn(move || g2.pause(Duration::from_secs(30)));
        // The pause closes the gate at once, and waits for the loop inside.
        while g.is_open() {
            std::thread::yield_now();
        }
        assert!(g.enter().is_none());
        drop(inside);
        assert_eq!(t.join().unwrap(), Ok(()));
        let stuck = {
            g.resume();
            g.enter().unwrap()
        };
        let e = g.pause(Duration::from_millis(1)).unwrap_err();
        assert!(e.contains("did not stop"), "{e}");
        drop(stuck);
    }
}
