//! `frun stop` and `frun rm`: the stop signal, the grace period, SIGKILL; and removal
//! of a container with whatever a crash left of it.

use anyhow::{bail, Context};
use nix::sys::signal::Signal;
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::{Global, RmArgs, StopArgs};
use crate::containers::{Container, Containers, Status};
use crate::holder::{end_holder, stop_pid, wait_exited};
use crate::limits;

/// Runs `f` on each named container, like Docker: every error is reported, the others
/// still go on, and the exit code says whether any failed.
fn each_container(
    g: &Global,
    keys: &[String],
    f: impl Fn(&Containers, Container) -> anyhow::Result<()>,
) -> anyhow::Result<ExitCode> {
    let containers = Containers::open(&g.root)?;
    let mut failed = false;
    for key in keys {
        match containers.find(key).and_then(|c| f(&containers, c)) {
            Ok(()) => println!("{key}"),
            Err(e) => {
                eprintln!("frun: error: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub fn stop(g: &Global, args: StopArgs) -> anyhow::Result<ExitCode> {
    let time = args
        .time
        .as_deref()
        .map(|t| limits::parse_stop_timeout("-t", t))
        .transpose()?;
    each_container(g, &args.containers, |_, c| {
        // Said before the signal, so that the holder does not restart it.
        std::fs::write(c.stop_requested_path(), b"")
            .with_context(|| format!("writing {:?}", c.stop_requested_path()))?;
        let st = c.state()?;
        if st.status == Status::Running {
            let pid = st.pid.context("running container without a pid")?;
            let timeout = time.unwrap_or(c.record.stop_timeout);
            stop_pid(pid, c.record.stop_signal, timeout);
            wait_exited(&c, Duration::from_secs(30))?;
        }
        Ok(())
    })
}

/// Removes a container that is not running, and whatever a crash left of it: the
/// processes still in its cgroup (killed first), its network (lease, netns file, veth:
/// all found by the id the record names), its cgroup, its directory.
pub fn remove_container(g: &Global, containers: &Containers, c: &Container) -> anyhow::Result<()> {
    // 1. Nothing may run on in the cgroup once the record is gone: kill and remove it.
    match frun_runtime::cgroup::Cgroup::open(&c.record.cgroup) {
        Ok(cg) => {
            if let Err(e) = cg.remove() {
                bail!("removing the cgroup of container {}: {e}", c.record.name);
            }
        }
        Err(e) => tracing::warn!(error = %e, "opening the container's cgroup"),
    }
    // 2. Normally the holder disconnected it; after a crash, this does.
    if let Some(n) = &c.record.network {
        match n.config(&g.root, &g.run_root) {
            Ok(cfg) => {
                if let Err(e) = crate::net::detach(&cfg, &c.record.id) {
                    tracing::warn!(error = %format!("{e:#}"), "disconnecting container {} from the bridge", c.record.name);
                }
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "the container's network"),
        }
    }
    // 3. Its rootfs mount lives in the container's mount namespace only; the directory
    //    goes last.
    containers.remove(c)
}

pub fn rm(g: &Global, args: RmArgs) -> anyhow::Result<ExitCode> {
    each_container(g, &args.containers, |containers, c| {
        let st = c.state()?;
        if st.status == Status::Running && !args.force {
            bail!(
                "container {} is running: stop it first, or use rm -f",
                c.record.name
            );
        }
        if args.force {
            // No restart after this, whatever the policy; then the container's
            // processes and its holder end, whatever state they are in.
            crate::cleanup::logged(
                "marking the container stopped (its restart policy may start it again)",
                std::fs::write(c.stop_requested_path(), b""),
            );
            if let Some(pid) = st.pid.filter(|_| st.status == Status::Running) {
                stop_pid(pid, Signal::SIGKILL as i32, 0);
                let _ = wait_exited(&c, Duration::from_secs(5));
            }
            end_holder(&c.state().unwrap_or(st));
        }
        // With -f, the removal keeps the container's hold lock, so no holder starts it
        // while it goes; a holder that is starting (not on record yet) is ended first.
        let _hold = if args.force { take_hold(&c)? } else { None };
        // The holder of an --rm container may be removing it right now.
        if c.dir.exists() {
            remove_container(g, containers, &c)?;
        }
        Ok(())
    })
}

/// The hold lock of a container (see `sweep::hold`), once no holder has it. A holder
/// holds it from its first step and records its pid a moment later: until then it can
/// only be waited for, then ended. None when the container's directory is gone (its
/// `--rm` holder removed it).
fn take_hold(c: &Container) -> anyhow::Result<Option<std::fs::File>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(f) = crate::sweep::abandoned(&c.dir) {
            return Ok(Some(f));
        }
        if !c.dir.exists() {
            return Ok(None);
        }
        if let Ok(st) = c.state() {
            end_holder(&st);
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "container {}: a holder keeps it and could not be ended within 10 s",
                c.record.name
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
