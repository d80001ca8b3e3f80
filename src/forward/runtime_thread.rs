//! A current-thread tokio runtime on a thread of its own, serving what was spawned on
//! it until stopped: the forwarder of a container's published ports and the forwarder
//! of a stack's unix sockets each run on one. Stopping drops the runtime on its thread,
//! so its tasks end (listeners and connections close) before [`RuntimeThread::stop`]
//! returns.

use std::io;

pub struct RuntimeThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RuntimeThread {
    /// Runs `rt` on a new thread named `name`; `first` runs there before it serves (to
    /// spawn the tasks, set the thread's scheduling).
    pub fn start(
        name: &str,
        rt: tokio::runtime::Runtime,
        first: impl FnOnce(&tokio::runtime::Runtime) + Send + 'static,
    ) -> io::Result<RuntimeThread> {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                first(&rt);
                // Ends at `stop` (or when the handle is dropped: the sender with it).
                let _stopped_or_dropped = rt.block_on(rx);
                // Dropping the runtime drops its tasks: listeners and connections close.
                drop(rt);
            })?;
        Ok(RuntimeThread {
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// Ends the runtime and waits for its thread. True when this call ended it, false
    /// when an earlier one had.
    pub fn stop(&mut self) -> bool {
        if let Some(tx) = self.stop.take() {
            // Fails only when the thread has ended already: nothing to tell it then.
            let _ended_already = tx.send(());
        }
        let Some(t) = self.thread.take() else {
            return false;
        };
        if t.join().is_err() {
            tracing::warn!("a forwarder's thread panicked: its connections were cut");
        }
        true
    }
}
