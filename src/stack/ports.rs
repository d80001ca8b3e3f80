//! A stack with no proxy whose app publishes its own ports: a new app generation takes
//! the published sockets over from the old one's holder instead of binding them (see
//! `forward::handoff`), and starts paused. The switch is the new one resumed, then the
//! old one paused: for a moment both accept from the one kernel queue, and the socket
//! never closes, so no connection is refused or lost. The drain then waits until the
//! old holder relays nothing.

use anyhow::bail;
use std::time::{Duration, Instant};

use super::Stack;
use crate::cli::Global;
use crate::containers::{Container, Containers};
use crate::forward::handoff;

/// How long a recovery or `up` waits for the old app's relayed connections.
pub const DRAIN: Duration = Duration::from_secs(10);

/// The app's ports move by hand-off: no proxy, and the app publishes ports itself.
pub fn applies(stack: &Stack) -> bool {
    stack.proxy.is_none() && !stack.app.desc.publish.is_empty()
}

/// The port a new app's readiness is checked on when the stack names none: its first
/// published TCP port (in the container).
pub fn ready_port(stack: &Stack) -> Option<u16> {
    stack.app.port.or_else(|| {
        stack
            .app
            .desc
            .publish
            .iter()
            .find(|p| !p.udp)
            .map(|p| p.container_port)
    })
}

/// Refused unless the holder of the running app `old` can hand its ports over.
pub fn check_source(g: &Global, stack: &Stack, old: &Container) -> anyhow::Result<()> {
    if !handoff::serves(&g.run_root, &old.record.id) {
        bail!(
            "stack {} has no [proxy] role and its app publishes its own ports, but the holder of {} \
             serves no hand-off socket ({}: it is gone, or was started by an older frun), so its \
             ports cannot move to a new container without a gap. Run `frun up -f {}` (it brings the \
             app back under a holder that hands its ports over; replacing it is a short outage), \
             then swap again",
            stack.name,
            old.record.name,
            handoff::socket_path(&g.run_root, &old.record.id).display(),
            stack.file.display()
        );
    }
    Ok(())
}

/// The just created container `new` takes its published sockets from `old`'s holder.
pub fn take_from(
    containers: &Containers,
    new: Container,
    old: &Container,
) -> anyhow::Result<Container> {
    let mut record = new.record.clone();
    record.ports_from = Some(old.record.id.clone());
    containers.update(new, record)
}

/// Waits until the holder of the new app `new` serves its control socket (it does so
/// just after the container starts), at most 10 s.
pub fn wait_serving(g: &Global, new: &Container) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !handoff::serves(&g.run_root, &new.record.id) {
        if Instant::now() >= deadline {
            bail!(
                "the holder of {} serves no hand-off socket 10 s after its start (its log: {})",
                new.record.name,
                new.dir.join("holder.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// The switch: `new` accepts, then every one of `old` stops accepting (each returns
/// once it accepts no more; a holder already gone is skipped).
pub fn switch(g: &Global, new: &Container, old: &[&Container]) -> anyhow::Result<()> {
    if !handoff::resume(&g.run_root, &new.record.id)? {
        bail!(
            "the holder of {} serves no hand-off socket: it cannot accept on the published ports",
            new.record.name
        );
    }
    for o in old {
        handoff::pause(&g.run_root, &o.record.id)?;
    }
    Ok(())
}

/// Back: every one of `old` accepts, then `new` (if any) stops accepting. Failures are
/// logged: this runs on the way out of a failure.
pub fn switch_back(g: &Global, old: &[&Container], new: Option<&Container>) {
    for o in old {
        if let Err(e) = handoff::resume(&g.run_root, &o.record.id) {
            tracing::warn!(container = %o.record.name, error = %format!("{e:#}"), "resuming the old app's ports");
        }
    }
    if let Some(n) = new {
        if let Err(e) = handoff::pause(&g.run_root, &n.record.id) {
            tracing::warn!(container = %n.record.name, error = %format!("{e:#}"), "pausing the new app's ports");
        }
    }
}

/// The connections the holders of `apps` relay now.
pub fn relayed(g: &Global, apps: &[&Container]) -> u64 {
    apps.iter()
        .map(|c| {
            handoff::open_connections(&g.run_root, &c.record.id)
                .ok()
                .flatten()
                .unwrap_or(0)
        })
        .sum()
}

/// Waits until the holders of `apps` relay nothing, at most `timeout`; what is left.
pub fn drain(g: &Global, apps: &[&Container], timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        let n = relayed(g, apps);
        if n == 0 || Instant::now() >= deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
