//! `frun swap` and `frun rollback`: the app of a running stack replaced by a new image
//! with no failed request, or not at all.
//!
//! [`swap`] is one function of numbered steps: pull (and compare digests), check the
//! memory for two apps, start the new generation beside the old, wait until it is
//! healthy, point the proxy at it (the symlink to the app's socket renamed, see
//! `upstream`; a reload only for a template that names the app's address), drain
//! (until the old app has no open connection), stop the old app, record the
//! deployment. Up to the switch, any failure removes what was new and leaves the old
//! app serving.
//!
//! Each step is a [`Phase`], written to `ROOT/stacks/<stack>/swap.json` before the step
//! acts (temp + fsync + rename) and logged once per change. A `kill -9` of frun leaves
//! that file; the next `frun up`, `frun swap` or supervisor start reads it in
//! [`recover`]: before the switch it undoes the swap (the proxy pointed back at the old
//! app, the new one removed), after it it finishes it (the proxy on the new app, the old
//! one stopped), and says so in the history. A lock file (`flock`, released by the
//! kernel when frun dies) keeps two changes of one stack from running at once and tells
//! a half-done swap from a running one.

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::history::{self, Entry, Outcome, StepTime};
use super::up::{self, Resolved, Running};
use super::{ports, upstream};
use super::{stack_dir, Stack};
use crate::cli::Global;
use crate::containers::{Container, Containers};
use crate::model;

/// Where a swap is; persisted before each step acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The new image is in the store; nothing was started.
    Pulled,
    /// The new app container is being created, started, waited for.
    Starting,
    /// The new app passed its health check.
    Ready,
    /// The proxy's configuration is being pointed at the new app and reloaded.
    Switching,
    /// The proxy serves from the new app; the old one finishes what it has.
    Draining,
    /// The old app is being stopped and removed.
    Stopping,
    /// The deployment is in the history; only this state file is left to remove.
    Recorded,
}

impl Phase {
    #[cfg(test)]
    const ALL: [Phase; 7] = [
        Phase::Pulled,
        Phase::Starting,
        Phase::Ready,
        Phase::Switching,
        Phase::Draining,
        Phase::Stopping,
        Phase::Recorded,
    ];

    /// The proxy may still send requests to the old app: an interrupted swap is undone.
    fn before_switch(self) -> bool {
        self <= Phase::Switching
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Pulled => "pulled",
            Phase::Starting => "starting",
            Phase::Ready => "ready",
            Phase::Switching => "switching",
            Phase::Draining => "draining",
            Phase::Stopping => "stopping",
            Phase::Recorded => "recorded",
        })
    }
}

/// `swap.json`: what a swap in progress is doing, enough to finish or undo it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    pub phase: Phase,
    /// `swap` or `rollback`.
    pub how: String,
    pub image: ResolvedRecord,
    /// The old app containers (newest last) and the new one.
    pub old: Vec<String>,
    pub new: String,
    pub previous_digest: Option<String>,
    pub file_image: String,
    pub started: String,
    pub steps: Vec<StepTime>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ResolvedRecord {
    pub reference: String,
    pub pinned: String,
    pub digest: String,
}

fn state_path(root: &Path, stack: &str) -> PathBuf {
    stack_dir(root, stack).join("swap.json")
}

fn lock_path(root: &Path, stack: &str) -> PathBuf {
    stack_dir(root, stack).join("lock")
}

/// The stack's change lock (`up`, `swap`, `rollback`), waited for; released when the
/// returned file drops or the process dies.
pub fn lock(root: &Path, stack: &str) -> anyhow::Result<std::fs::File> {
    take_lock(root, stack, true)?.context("a blocking lock")
}

/// The lock if nobody holds it (the supervisor does not wait for a running swap).
pub fn try_lock(root: &Path, stack: &str) -> Option<std::fs::File> {
    take_lock(root, stack, false).ok().flatten()
}

fn take_lock(root: &Path, stack: &str, wait: bool) -> anyhow::Result<Option<std::fs::File>> {
    use frun_images::fsutil::lock_file;
    use rustix::fs::FlockOperation;
    let p = lock_path(root, stack);
    std::fs::create_dir_all(p.parent().expect("a stack directory"))
        .with_context(|| format!("creating the directory of {p:?}"))?;
    match lock_file(&p, FlockOperation::NonBlockingLockExclusive) {
        Ok(f) => return Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && wait => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("locking {p:?}")),
    }
    eprintln!("Waiting for another frun up/swap of stack {stack} to finish");
    let f =
        lock_file(&p, FlockOperation::LockExclusive).with_context(|| format!("locking {p:?}"))?;
    Ok(Some(f))
}

fn read_state(root: &Path, stack: &str) -> anyhow::Result<Option<State>> {
    let p = state_path(root, stack);
    match std::fs::read(&p) {
        Ok(d) => Ok(Some(
            serde_json::from_slice(&d).with_context(|| format!("reading {p:?}"))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {p:?}")),
    }
}

/// Persists `st` at `phase` (logged once per change); the test hook
/// `FRUN_TEST_STOP_AT=<phase>` kills this process right there, as a `kill -9` would.
fn enter(root: &Path, stack: &str, st: &mut State, phase: Phase) -> anyhow::Result<()> {
    let was = st.phase;
    st.phase = phase;
    let p = state_path(root, stack);
    frun_images::fsutil::write_atomic(&p, &serde_json::to_vec_pretty(st)?)
        .with_context(|| format!("writing {p:?}"))?;
    tracing::info!(stack, phase = %phase, was = %was, "swap");
    // The one test hook of frun (`crate::fault`), named by the phase.
    frun_runtime::fault::reached(&phase.to_string());
    Ok(())
}

fn clear_state(root: &Path, stack: &str) -> anyhow::Result<()> {
    let p = state_path(root, stack);
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {p:?}")),
    }
}

/// What a swap did, for the user and for `--format json`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub stack: String,
    pub how: String,
    /// `deployed`, `unchanged` or `failed`.
    pub outcome: String,
    pub reference: String,
    pub digest: String,
    pub previous_digest: Option<String>,
    pub container: Option<String>,
    pub old_containers: Vec<String>,
    /// The old app ignored its stop signal for the whole grace period.
    pub killed_old: bool,
    pub steps: Vec<StepTime>,
    pub total_ms: u64,
    pub error: Option<String>,
}

/// One line per step with its time (on a terminal or not), on stderr.
struct Progress {
    quiet: bool,
    steps: Vec<StepTime>,
    t: Instant,
    total: Instant,
}

impl Progress {
    fn new(quiet: bool) -> Progress {
        Progress {
            quiet,
            steps: Vec::new(),
            t: Instant::now(),
            total: Instant::now(),
        }
    }

    /// Ends the current step (timed from the end of the previous one).
    fn done(&mut self, step: &str, detail: &str) {
        let ms = self.t.elapsed().as_millis() as u64;
        self.t = Instant::now();
        self.steps.push(StepTime {
            step: step.into(),
            ms,
        });
        if !self.quiet {
            eprintln!("{step:<8} {ms:>6} ms  {detail}");
        }
    }

    fn total_ms(&self) -> u64 {
        self.total.elapsed().as_millis() as u64
    }
}

/// What `swap` is asked to do.
pub struct Options {
    /// The image; `None`: the deployed reference again (re-pulled).
    pub image: Option<String>,
    /// Swap even when the digest is the running one.
    pub force: bool,
    /// How long the old app may take to finish what it has.
    pub drain_timeout: Duration,
    /// `frun rollback`: back to the previous deployment, from the store.
    pub rollback: bool,
    pub quiet: bool,
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}

/// The free memory (`MemAvailable`), in bytes.
fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn mib(b: u64) -> String {
    format!("{} MiB", b >> 20)
}

/// Step 2: room for a second app beside the first. The new one may grow to its memory
/// limit (without one: to what the old one uses now); the old one's use is already out
/// of `MemAvailable`.
fn memory_check(stack: &Stack, old: Option<&Container>) -> anyhow::Result<String> {
    let Some(avail) = mem_available() else {
        return Ok("not checked: /proc/meminfo has no MemAvailable".into());
    };
    let (need, what) = match (stack.app.desc.memory, old) {
        (Some(limit), _) => (limit, "its memory limit"),
        (None, Some(o)) => (
            crate::stats::cgroup_sample(&crate::stats::Host::default(), &o.record.cgroup)
                .memory_bytes,
            "what the running app uses (no memory limit set)",
        ),
        (None, None) => return Ok("not checked: no limit and no running app".into()),
    };
    if need > avail {
        bail!(
            "not enough memory to run two app containers at once: the new one may use {} ({what}), \
             the host has {} available. Nothing was started; free memory or lower [app] memory",
            mib(need),
            mib(avail)
        );
    }
    Ok(format!(
        "{} needed ({what}), {} available",
        mib(need),
        mib(avail)
    ))
}

/// nginx's worker processes: every process of the proxy container but its master.
fn proxy_workers(px: &Container) -> Vec<i32> {
    let master = px.state().ok().and_then(|s| s.pid);
    crate::stats::cgroup_pids(&crate::stats::Host::default(), &px.record.cgroup)
        .into_iter()
        .filter(|p| Some(*p) != master)
        .collect()
}

/// Connections to `port` of container `c` that are being answered (established, or
/// closed by the peer but not yet by the app), from its network namespace's table.
fn open_connections(c: &Container, port: u16) -> usize {
    let Some(pid) = c.state().ok().and_then(|s| s.pid) else {
        return 0;
    };
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(format!("/proc/{pid}/net/{f}")).ok())
        .map(|t| count_connections(&t, port))
        .sum()
}

/// In `/proc/net/tcp` text: entries whose local port is `port` in state ESTABLISHED
/// (01), SYN_RECV (03) or CLOSE_WAIT (08).
fn count_connections(table: &str, port: u16) -> usize {
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local_port = f
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            local_port == Some(port) && matches!(f.get(3), Some(&"01" | &"03" | &"08"))
        })
        .count()
}

fn alive_pid(pid: i32) -> bool {
    crate::containers::pid_start(pid).is_some()
}

/// `frun swap` / `frun rollback`: the numbered steps (see the module documentation).
pub fn swap(g: &Global, stack: &Stack, opts: &Options) -> anyhow::Result<Report> {
    let containers = Containers::open(&g.root)?;
    let how = if opts.rollback { "rollback" } else { "swap" };
    let mut progress = Progress::new(opts.quiet);

    // 0. One change of the stack at a time; a swap a kill left half-done is finished or
    //    undone first. The stack must be up: a swap replaces a running app.
    let _lock = lock(&g.root, &stack.name)?;
    recover(g, stack, opts.quiet)?;
    let running = Running::find(&containers, &stack.name)?;
    let Some(old) = running.apps.last() else {
        bail!(
            "the app of stack {} is not running: `frun up -f {}` first",
            stack.name,
            stack.file.display()
        );
    };
    // No proxy, and the app publishes its own ports: they move to the new app by a
    // hand-off between the two holders (see `ports`), which the old one must serve.
    let handoff = ports::applies(stack);
    if handoff {
        ports::check_source(g, stack, old)?;
    }
    if stack.proxy.is_some() && running.proxy.is_none() {
        bail!(
            "the proxy of stack {} is not running: `frun up -f {}` first",
            stack.name,
            stack.file.display()
        );
    }
    let entries = history::load(&g.root, &stack.name)?;

    // 1. The image: pulled (a swap) or found in the store by digest (a rollback: no
    //    registry); nothing to do when it is what runs already.
    let image: Resolved = if opts.rollback {
        let Some(e) = history::previous(&entries) else {
            bail!(
                "nothing to roll back to: the history of stack {} has no earlier deployment with another image (frun history)",
                stack.name
            );
        };
        let store = crate::commands::images::open_store(g)?;
        let r = store
            .find_image(&e.pinned)
            .ok()
            .filter(|r| r.layers.iter().all(|l| store.has_layer(&l.diff_id)));
        if r.is_none() {
            bail!(
                "the image of the deployment of {} ({}) is no longer in the store: pull {} first",
                e.time,
                e.pinned,
                e.pinned
            );
        }
        Resolved {
            reference: e.reference.clone(),
            pinned: e.pinned.clone(),
            digest: e.digest.clone(),
        }
    } else {
        let reference = match &opts.image {
            Some(i) => i.clone(),
            None => history::current(&entries)
                .filter(|e| e.file_image == stack.app.desc.image)
                .map_or_else(|| stack.app.desc.image.clone(), |e| e.reference.clone()),
        };
        let parsed: frun_images::ImageRef = reference
            .parse()
            .with_context(|| format!("the image {reference}"))?;
        let r = crate::model::pull_for_role(g, &parsed, stack.registry_auth("app"), true)
            .with_context(|| format!("pulling {parsed}"))?;
        up::pin_image(g, &r)?
    };
    let previous_digest = old.record.image_digest.clone();
    let mut report = Report {
        stack: stack.name.clone(),
        how: how.into(),
        outcome: "unchanged".into(),
        reference: image.reference.clone(),
        digest: image.digest.clone(),
        previous_digest: Some(previous_digest.clone()),
        container: None,
        old_containers: running.apps.iter().map(|c| c.record.name.clone()).collect(),
        killed_old: false,
        steps: Vec::new(),
        total_ms: 0,
        error: None,
    };
    let same = image.digest == previous_digest;
    progress.done(
        if opts.rollback { "find" } else { "pull" },
        &format!(
            "{} {}{}",
            image.reference,
            short(&image.digest),
            if same { " (the running digest)" } else { "" }
        ),
    );
    if same && !opts.force {
        if !opts.quiet {
            eprintln!(
                "{} runs {} already: nothing to do (--force swaps anyway)",
                old.record.name,
                short(&image.digest)
            );
        }
        report.steps = progress.steps;
        report.total_ms = progress.total.elapsed().as_millis() as u64;
        return Ok(report);
    }
    let gen = Running::next_generation(&containers, &stack.name)?;
    let d = up::app_description(stack, &image.pinned, &image.digest, gen);
    let new_name = d.name.clone().expect("a named generation");
    report.container = Some(new_name.clone());
    let mut st = State {
        phase: Phase::Pulled,
        how: how.into(),
        image: ResolvedRecord {
            reference: image.reference.clone(),
            pinned: image.pinned.clone(),
            digest: image.digest.clone(),
        },
        old: report.old_containers.clone(),
        new: new_name.clone(),
        previous_digest: Some(previous_digest.clone()),
        file_image: stack.app.desc.image.clone(),
        started: crate::containers::now(),
        steps: Vec::new(),
    };
    enter(&g.root, &stack.name, &mut st, Phase::Pulled)?;

    // Before the switch, a failure removes the new container and leaves the old app
    // serving; it is recorded, and the swap exits non-zero.
    let fail = |report: &mut Report,
                progress: &Progress,
                st: &State,
                new: Option<&Container>,
                e: anyhow::Error|
     -> anyhow::Result<()> {
        if let Some(c) = new {
            up::discard(g, &containers, c, "the new app container");
        }
        report.outcome = "failed".into();
        report.error = Some(format!("{e:#}"));
        report.steps = progress.steps.clone();
        report.total_ms = progress.total_ms();
        record(
            g,
            stack,
            st,
            Outcome::Failed,
            Some(format!("{e:#}")),
            &progress.steps,
        )?;
        clear_state(&g.root, &stack.name)
    };

    // 2. Memory for two apps at once: a small box must not swap itself to death.
    match memory_check(stack, Some(old)) {
        Ok(m) => progress.done("memory", &m),
        Err(e) => {
            fail(&mut report, &progress, &st, None, e)?;
            return Ok(report);
        }
    }

    //    And with `[backup] before_swap = true`, a backup of the data as it is now: one
    //    that fails stops the swap here, the old app serving on.
    match crate::backup::before_swap(g, stack) {
        Ok(Some(b)) => progress.done("backup", &b.name),
        Ok(None) => {}
        Err(e) => {
            fail(
                &mut report,
                &progress,
                &st,
                None,
                e.context("the backup before the swap"),
            )?;
            return Ok(report);
        }
    }

    // 3. The new generation beside the old one (the role's name stays `app`).
    enter(&g.root, &stack.name, &mut st, Phase::Starting)?;
    let new = match model::create(g, &d, true) {
        Ok(c) => c,
        Err(e) => {
            fail(&mut report, &progress, &st, None, e)?;
            return Ok(report);
        }
    };
    //    Without a proxy its published sockets come from the old app's holder, paused.
    let new = match handoff {
        true => match ports::take_from(&containers, new, old) {
            Ok(c) => c,
            Err(e) => {
                let c = containers.find(&new_name).ok();
                fail(&mut report, &progress, &st, c.as_ref(), e)?;
                return Ok(report);
            }
        },
        false => new,
    };
    if let Err(e) = crate::commands::start_detached(g, &new) {
        fail(
            &mut report,
            &progress,
            &st,
            Some(&new),
            anyhow::anyhow!("{e:#}"),
        )?;
        return Ok(report);
    }
    progress.done("start", &new_name);

    // 4. Healthy by the stack's own check (or its port accepting): until then the old
    //    app serves alone.
    let ready = up::wait_ready(&new, ports::ready_port(stack)).and_then(|()| match &stack.proxy {
        Some(_) => upstream::wait_serving(&g.root, &stack.name, up::generation(&new)),
        None if handoff => ports::wait_serving(g, &new),
        None => Ok(()),
    });
    if let Err(e) = ready {
        fail(&mut report, &progress, &st, Some(&new), e)?;
        return Ok(report);
    }
    enter(&g.root, &stack.name, &mut st, Phase::Ready)?;
    progress.done("health", "ready");

    // 5. The proxy pointed at the new app: the app's socket link renamed to the new
    //    generation's (see upstream: no reload, the clients' connections stay), and
    //    the conf rendered again; only a template that names the app's address changes
    //    with it, and then takes `nginx -t` and a graceful reload. nginx's workers are
    //    noted first: after a reload, the old ones may still talk to the old app.
    enter(&g.root, &stack.name, &mut st, Phase::Switching)?;
    let mut old_workers = Vec::new();
    if let Some(px) = &running.proxy {
        old_workers = proxy_workers(px);
        // The conf first: when nginx rejects it, no request has gone to the new app.
        let switched = up::point_proxy(g, stack, px, &new)
            .and_then(|reloaded| {
                if reloaded {
                    wait_new_workers(px, &old_workers)?;
                }
                Ok(reloaded)
            })
            .and_then(|reloaded| {
                upstream::point(&g.root, &stack.name, up::generation(&new))?;
                Ok(reloaded)
            });
        match switched {
            Ok(reloaded) => {
                if !reloaded {
                    old_workers.clear();
                }
                progress.done(
                    "switch",
                    &format!(
                        "app.sock -> {}{}",
                        upstream::socket(&g.root, &stack.name, up::generation(&new))
                            .file_name()
                            .map_or(String::new(), |n| n.to_string_lossy().into_owned()),
                        if reloaded {
                            format!(
                                ", {} reloaded (its conf names the app's address)",
                                px.record.name
                            )
                        } else {
                            ", no proxy reload".into()
                        }
                    ),
                );
            }
            Err(e) => {
                // Back to the old app before the new one goes.
                let back = upstream::point(&g.root, &stack.name, up::generation(old))
                    .and_then(|()| up::point_proxy(g, stack, px, old));
                if let Err(r) = back {
                    tracing::warn!(error = %format!("{r:#}"), "pointing the proxy back at the old app");
                }
                fail(&mut report, &progress, &st, Some(&new), e)?;
                return Ok(report);
            }
        }
    } else if handoff {
        // The new app accepts on the published ports, then the old one stops: for a
        // moment both take connections from the one queue.
        let olds: Vec<&Container> = running.apps.iter().collect();
        if let Err(e) = ports::switch(g, &new, &olds) {
            ports::switch_back(g, &olds, Some(&new));
            fail(&mut report, &progress, &st, Some(&new), e)?;
            return Ok(report);
        }
        progress.done(
            "switch",
            &format!(
                "published ports handed over: {} accepts, {} paused",
                new_name,
                report.old_containers.join(", ")
            ),
        );
    } else {
        progress.done("switch", "no proxy role: nothing to point");
    }

    // 6. Drain: what the old app was asked before the switch is answered. A connection
    //    the proxy made just before the rename is accepted within moments; then the
    //    old app's open connections (and, after a reload, nginx's old workers) are
    //    waited for, within the drain timeout.
    enter(&g.root, &stack.name, &mut st, Phase::Draining)?;
    let deadline = Instant::now() + opts.drain_timeout;
    if running.proxy.is_some() {
        std::thread::sleep(Duration::from_millis(200).min(opts.drain_timeout));
    }
    let port = stack.app.port;
    let mut left: Vec<i32> = old_workers.clone();
    let mut conns: usize;
    loop {
        left.retain(|p| alive_pid(*p));
        conns = port.map_or(0, |p| {
            running.apps.iter().map(|c| open_connections(c, p)).sum()
        });
        if handoff {
            let olds: Vec<&Container> = running.apps.iter().collect();
            conns += ports::relayed(g, &olds) as usize;
        }
        if (left.is_empty() && conns == 0) || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    progress.done(
        "drain",
        &if left.is_empty() && conns == 0 {
            "the old app has no open connection".to_string()
        } else {
            format!(
                "after {:?}: {conns} connections still open on the old app, {} old nginx workers busy: stopping it anyway",
                opts.drain_timeout,
                left.len(),
            )
        },
    );

    // 7. The old app stopped (stop signal, grace, then SIGKILL: said when it came to
    //    that) and removed.
    enter(&g.root, &stack.name, &mut st, Phase::Stopping)?;
    for c in &running.apps {
        if up::retire(g, &containers, c)? {
            report.killed_old = true;
        }
    }
    progress.done(
        "stop",
        &format!(
            "{} removed{}",
            report.old_containers.join(", "),
            if report.killed_old {
                format!(
                    " (killed: it ignored its stop signal for {} s)",
                    old.record.stop_timeout
                )
            } else {
                String::new()
            }
        ),
    );

    // 8. The deployment in the history; then the state file goes.
    report.outcome = "deployed".into();
    report.steps = progress.steps.clone();
    report.total_ms = progress.total_ms();
    st.steps = progress.steps.clone();
    let msg = report
        .killed_old
        .then(|| "the old app was killed after its grace period".to_string());
    record(g, stack, &st, Outcome::Deployed, msg, &progress.steps)?;
    enter(&g.root, &stack.name, &mut st, Phase::Recorded)?;
    clear_state(&g.root, &stack.name)?;
    Ok(report)
}

/// After SIGHUP, nginx's master starts workers of the new configuration; until one
/// runs, the old configuration serves. None within 10 s: the reload failed.
fn wait_new_workers(px: &Container, old: &[i32]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if proxy_workers(px).iter().any(|p| !old.contains(p)) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "nginx in {} started no worker of the new configuration within 10 s after its reload (its log: frun logs {})",
                px.record.name,
                px.log_group()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The swap's end: its history entry and its `swap` event (outcome, digests, duration).
fn record(
    g: &Global,
    stack: &Stack,
    st: &State,
    outcome: Outcome,
    message: Option<String>,
    steps: &[StepTime],
) -> anyhow::Result<()> {
    let ms: u64 = steps.iter().map(|s| s.ms).sum();
    let mut ev = crate::events::Event::new(crate::events::Kind::Swap)
        .stack(&stack.name)
        .role("app")
        .attr("how", &st.how)
        .attr("outcome", outcome)
        .attr("image", &st.image.reference)
        .attr("digest", &st.image.digest)
        .attr(
            "previous_digest",
            st.previous_digest.as_deref().unwrap_or(""),
        )
        .attr("container", &st.new)
        .took(Duration::from_millis(ms));
    if let Some(m) = &message {
        ev = ev.attr("message", m);
    }
    crate::events::emit(&g.root, ev);
    history::append(
        &g.root,
        &stack.name,
        Entry {
            time: crate::containers::now(),
            how: st.how.clone(),
            reference: st.image.reference.clone(),
            pinned: st.image.pinned.clone(),
            digest: st.image.digest.clone(),
            previous_digest: st.previous_digest.clone(),
            file_image: st.file_image.clone(),
            outcome,
            container: Some(st.new.clone()),
            message,
            steps: steps.to_vec(),
        },
    )
}

/// Finishes or undoes a swap that a kill left half-done (see the module
/// documentation). The caller holds the stack's lock.
pub fn recover(g: &Global, stack: &Stack, quiet: bool) -> anyhow::Result<()> {
    let Some(mut st) = read_state(&g.root, &stack.name)? else {
        return Ok(());
    };
    if st.phase == Phase::Recorded {
        return clear_state(&g.root, &stack.name);
    }
    let containers = Containers::open(&g.root)?;
    let running = Running::find(&containers, &stack.name)?;
    let find = |name: &str| running.apps.iter().find(|c| c.record.name == name);
    let new = find(&st.new);
    let old = st.old.iter().rev().find_map(|n| find(n));
    let finish = !st.phase.before_switch() || old.is_none();
    let interrupted = st.phase;
    let (outcome, what) = match (finish, new) {
        (true, Some(new)) => {
            // Forward: the proxy on the new app (or the published ports: the new app
            // accepts, the old ones drained), every older generation gone.
            if let Some(px) = &running.proxy {
                upstream::point(&g.root, &stack.name, up::generation(new))?;
                up::point_proxy(g, stack, px, new)?;
            }
            if ports::applies(stack) {
                let olds: Vec<&Container> = running
                    .apps
                    .iter()
                    .filter(|c| c.record.name != st.new)
                    .collect();
                if let Err(e) = ports::switch(g, new, &olds) {
                    tracing::warn!(error = %format!("{e:#}"), "handing the published ports to the new app");
                }
                ports::drain(g, &olds, ports::DRAIN);
            }
            for c in running.apps.iter().filter(|c| c.record.name != st.new) {
                up::retire(g, &containers, c)?;
            }
            (Outcome::Finished, format!("finished: {} serves", st.new))
        }
        _ => {
            // Back: the proxy on the old app, the new one gone (if it got that far).
            if let (Some(px), Some(old)) = (&running.proxy, old) {
                upstream::point(&g.root, &stack.name, up::generation(old))?;
                up::point_proxy(g, stack, px, old)?;
            }
            let new = containers
                .find(&st.new)
                .ok()
                .filter(|c| c.record.labels.get(crate::model::LABEL_STACK) == Some(&stack.name));
            // The published ports: the old app accepts (again), the new one stops and
            // finishes what it took.
            if ports::applies(stack) {
                ports::switch_back(g, &old.into_iter().collect::<Vec<_>>(), new.as_ref());
                if let Some(c) = &new {
                    ports::drain(g, &[c], ports::DRAIN);
                }
            }
            if let Some(c) = new {
                up::retire(g, &containers, &c)?;
            }
            (
                Outcome::Undone,
                match old {
                    Some(o) => format!("undone: {} serves on", o.record.name),
                    None => "undone: no app was left running".into(),
                },
            )
        }
    };
    let msg = format!("frun was interrupted in phase {interrupted}; the next frun {what}");
    if !quiet {
        eprintln!(
            "A swap of stack {} was interrupted in phase {interrupted}: {what}",
            stack.name
        );
    }
    tracing::info!(stack = %stack.name, phase = %interrupted, outcome = %outcome, "interrupted swap recovered");
    let steps = st.steps.clone();
    record(g, stack, &st, outcome, Some(msg), &steps)?;
    enter(&g.root, &stack.name, &mut st, Phase::Recorded)?;
    clear_state(&g.root, &stack.name)
}

/// At the supervisor's start: every stack with a half-done swap nobody is running.
pub fn recover_all(g: &Global) {
    let stacks = g.root.join("stacks");
    for e in std::fs::read_dir(&stacks).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !state_path(&g.root, &name).exists() {
            continue;
        }
        let Some(_lock) = try_lock(&g.root, &name) else {
            continue;
        };
        let file = std::fs::read(e.path().join("stack.json"))
            .ok()
            .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
            .and_then(|v| v["file"].as_str().map(PathBuf::from));
        let Some(file) = file else {
            tracing::warn!(stack = %name, "a half-done swap, but no stack.json to read the stack from");
            continue;
        };
        let r = Stack::load(&file, &g.root).and_then(|s| recover(g, &s, true));
        if let Err(e) = r {
            tracing::warn!(stack = %name, error = %format!("{e:#}"), "recovering a half-done swap");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase_names() -> Vec<String> {
        Phase::ALL.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn phases_order_and_name_themselves() {
        assert!(Phase::Pulled.before_switch());
        assert!(Phase::Switching.before_switch());
        assert!(!Phase::Draining.before_switch());
        assert!(!Phase::Stopping.before_switch());
        assert_eq!(
            phase_names(),
            [
                "pulled",
                "starting",
                "ready",
                "switching",
                "draining",
                "stopping",
                "recorded"
            ]
        );
        for p in Phase::ALL {
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{p}\""));
        }
    }

    #[test]
    fn open_connections_are_counted_by_local_port_and_state() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1\n\
           1: 0500590A:1F90 0100590A:A1B2 01 00000000:00000000 00:00000000 00000000  1000        0 2\n\
           2: 0500590A:1F90 0100590A:A1B3 06 00000000:00000000 00:00000000 00000000     0        0 0\n\
           3: 0500590A:1F90 0100590A:A1B4 08 00000000:00000000 00:00000000 00000000  1000        0 3\n\
           4: 0500590A:0050 0100590A:A1B5 01 00000000:00000000 00:00000000 00000000  1000        0 4\n";
        assert_eq!(count_connections(table, 8080), 2);
        assert_eq!(count_connections(table, 80), 1);
        assert_eq!(count_connections("", 80), 0);
    }

    #[test]
    fn digests_shorten_for_people() {
        assert_eq!(short("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
    }
}
