//! The holder: one small process per container (`frun __holder ID`, as conmon is for
//! podman) that starts it, keeps its stdio and logs, serves its published ports,
//! applies its restart policy, records how it ended, and removes what `--rm` asks to.
//!
//! It is frun started again (`Global::frun_command`): a fresh, single-threaded process,
//! safe to fork the container from (the CLI may have started threads to pull). A
//! detached holder lives in a session and a cgroup of frun's own, so it outlives the
//! command, the login session or the systemd unit that started it. In the foreground,
//! `frun run` waits for it and exits with the container's code.

use anyhow::{bail, Context};
use frun_runtime::{ExitState, RootfsSource, SpawnConfig, Stdio};
use nix::sys::signal::{self, Signal};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use crate::cleanup;
use crate::cli::Global;
use crate::commands::exit_code;
use crate::commands::images::open_store;
use crate::containers::{now, pid_start, Container, Containers, State, Status};
use crate::hosts::refresh_hosts;

/// Exit codes of `run` for failures before the command runs, as Docker's.
pub const EXIT_FRUN_ERROR: u8 = 125;
const EXIT_CANNOT_INVOKE: u8 = 126;
const EXIT_NOT_FOUND: u8 = 127;

/// What the holder of a detached container prints once the container runs.
const HOLDER_STARTED: &str = "started";

pub fn code(c: i32) -> ExitCode {
    ExitCode::from(c.clamp(0, 255) as u8)
}

/// A container's holder could not start it: what it said, and the exit code `run`
/// passes on (126/127 for a command that cannot run, as Docker's).
#[derive(Debug)]
pub struct StartFailed {
    pub code: i32,
    pub message: String,
}

impl std::fmt::Display for StartFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message.trim_end().trim_start_matches("frun: error: "))
    }
}

impl std::error::Error for StartFailed {}

/// `frun __holder ID` as a command, born with the stop signals blocked.
pub fn holder_command(g: &Global, id: &str) -> anyhow::Result<Command> {
    let mut cmd = g.frun_command()?;
    for _ in 0..g.verbose {
        cmd.arg("--verbose");
    }
    cmd.arg("__holder").arg(id);
    use std::os::unix::process::CommandExt;
    // SAFETY: sigprocmask is async-signal-safe and changes only the child's mask. The holder
    // is born with Ctrl-C, SIGTERM and SIGHUP blocked (std clears the mask before this
    // runs): one that comes while it starts waits for the container instead of killing it.
    unsafe {
        cmd.pre_exec(|| {
            signal::sigprocmask(signal::SigmaskHow::SIG_BLOCK, Some(&stop_signals()), None)
                .map_err(std::io::Error::from)
        });
    }
    Ok(cmd)
}

/// Starts a created container under a holder of its own (`frun __holder`, in a session of
/// its own: it outlives this command), and returns once the container runs.
pub fn start_detached(g: &Global, c: &Container) -> anyhow::Result<()> {
    let mut cmd = holder_command(g, &c.record.id)?;
    // The holder says "started" on its stdout once the container runs, then lets go of
    // both pipes; if it cannot start the container it says why on stderr and exits.
    // The state file cannot tell: with --rm a container that exits at once is gone
    // before anyone could read it.
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe; the holder outlives this command.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the container's holder")?;
    crate::fault::reached(crate::fault::Step::RunHolderStarted);
    let mut stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut said = String::new();
        let _ = stdout.read_to_string(&mut said);
        let _ = tx.send(said);
    });
    let said = rx
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| anyhow::anyhow!("container {} did not start within 60 s", c.record.name))?;
    if said.lines().any(|l| l == HOLDER_STARTED) {
        // Reap it later: the holder lives on; a zombie of a short-lived CLI is reaped by
        // init when the CLI exits, and a long-lived caller (the supervisor) reaps it.
        std::mem::forget(child);
        return Ok(());
    }
    let status = child.wait()?;
    let mut why = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut why);
    }
    if why.trim().is_empty() {
        why = format!(
            "frun: error: the holder of container {} exited with {status}\n",
            c.record.name
        );
    }
    let code = match status.code() {
        Some(c) if c == EXIT_CANNOT_INVOKE as i32 || c == EXIT_NOT_FOUND as i32 => c,
        _ => EXIT_FRUN_ERROR as i32,
    };
    Err(StartFailed { code, message: why }.into())
}

/// `frun __holder ID`: start the container and supervise it until it exits.
pub fn run(g: &Global, id: &str, restarted: bool) -> anyhow::Result<ExitCode> {
    // Ctrl-C, SIGTERM and SIGHUP stop the container; until it runs they wait, blocked.
    // Blocked first, in the only thread: every thread started later inherits the mask,
    // so none of them can take such a signal and die of it, leaving the container
    // running without its holder. (The container's process unblocks them.)
    let set = stop_signals();
    set.thread_block()?;
    crate::trim::one_arena();
    let containers = Containers::open(&g.root)?;
    let c = containers.find(id)?;
    // This holder works on it while it lives: `gc` leaves it alone (see sweep.rs).
    crate::sweep::hold(&c.dir)?;
    crate::fault::reached(crate::fault::Step::HolderBegun);
    if c.record.tty {
        crate::tty::block_winch()?;
    }
    // A detached holder leaves the caller's cgroup for frun's own: a login session or
    // a systemd unit that ends must not take the container's holder with it.
    if c.record.detached {
        if let Some(parent) = c.record.cgroup.parent() {
            if let Err(e) = crate::supervise::join_own_cgroup(parent) {
                tracing::warn!(error = %format!("{e:#}"), "moving the holder into frun's cgroup");
            }
        }
    }
    // What the previous run of this holder left: the restart count, and whether a user
    // stopped it (a fresh start forgets that).
    let previous = c.state().ok();
    let restarts = match (&previous, restarted) {
        (Some(p), true) => p.restart_count + 1,
        _ => 0,
    };
    if !restarted {
        crate::cleanup::remove_file(c.stop_requested_path());
    }
    // The holder is on record before it starts anything: `rm -f` ends it (and so the
    // start) instead of removing the container from under it.
    if let Some(mut p) = previous.clone() {
        p.held_by(std::process::id() as i32);
        c.set_state(&p)?;
    }
    crate::fault::reached(crate::fault::Step::HolderRecorded);
    let store = open_store(g)?;
    let mut spec = c.spec()?;
    if c.record.tty && !c.record.detached {
        // The caller's window size, set before the container's process starts.
        if let Some(mut p) = spec.process().clone() {
            p.set_console_size(crate::tty::console_size());
            spec.set_process(Some(p));
        }
    }
    let lower = c.lower_dirs(&store);
    let cfg = SpawnConfig {
        spec,
        rootfs: RootfsSource::Overlay {
            lower_dirs: lower,
            upper: c.dir.join("upper"),
            work: c.dir.join("work"),
        },
        mountpoint: c.dir.join("rootfs"),
        cgroup: c.record.cgroup.clone(),
    };
    // With -t the pty is the container's stdio: its master comes back over `console`.
    let (console, console_theirs) = match c.record.tty {
        true => {
            let (ours, theirs) = crate::tty::console_pair()?;
            (Some(ours), Some(theirs))
        }
        false => (None, None),
    };
    let (stdio, pipes) = if c.record.tty {
        (Stdio::default(), None)
    } else if c.record.detached {
        let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let null = std::fs::File::open("/dev/null")?;
        (
            Stdio {
                stdin: Some(OwnedFd::from(null)),
                stdout: Some(out_w),
                stderr: Some(err_w),
            },
            Some((out_r, err_r)),
        )
    } else if c.record.interactive {
        (Stdio::default(), None)
    } else {
        // As Docker: without -i the container's stdin is not the caller's.
        (
            Stdio {
                stdin: Some(std::fs::File::open("/dev/null")?.into()),
                ..Default::default()
            },
            None,
        )
    };

    let net_cfg = match &c.record.network {
        Some(n) => Some(n.config(&g.root, &g.run_root)?),
        None => None,
    };
    // Published ports are bound before the start, so that a taken port fails it (or
    // taken over from the holder of the container this one replaces).
    let spawned = take_ports(g, &c).and_then(|(bound, accepting)| {
        crate::fault::reached(crate::fault::Step::HolderPortsBound);
        let opts = frun_runtime::SpawnOptions {
            console_socket: console_theirs,
            ..Default::default()
        };
        Ok((
            frun_runtime::spawn_with(&cfg, stdio, opts)?,
            bound,
            accepting,
        ))
    });
    let (started, bound, accepting) = match spawned {
        Ok(s) => s,
        Err(e) => {
            if let Some(n) = &net_cfg {
                cleanup::logged(
                    "releasing the container's network",
                    crate::net::detach(n, &c.record.id),
                );
            }
            let msg = format!("starting container {}: {e:#}", c.record.name);
            let exit = start_failure_code(&e);
            let mut st = State::created();
            st.status = Status::Exited;
            st.exit_code = Some(exit as i32);
            st.finished_at = Some(now());
            st.error = Some(msg.clone());
            c.set_state(&st)?;
            if c.record.auto_remove {
                cleanup::logged("removing the container's state", containers.remove(&c));
            }
            eprintln!("frun: error: {msg}");
            return Ok(ExitCode::from(exit));
        }
    };
    crate::fault::reached(crate::fault::Step::HolderSpawned);
    let mut st = State::created();
    st.status = Status::Running;
    st.pid = Some(started.pid);
    st.pid_start = pid_start(started.pid);
    st.held_by(std::process::id() as i32);
    st.started_at = Some(now());
    st.restart_count = restarts;
    c.set_state(&st)?;
    crate::fault::reached(crate::fault::Step::HolderRunningRecorded);
    let began = Instant::now();
    if restarted {
        crate::events::emit(
            &g.root,
            crate::events::Event::of(crate::events::Kind::Restart, &c)
                .attr("restartCount", restarts),
        );
    }
    crate::events::emit(
        &g.root,
        crate::events::Event::of(crate::events::Kind::Start, &c).attr("pid", started.pid),
    );
    if c.record.detached {
        // `frun run -d` waits for this line, then for both pipes to close.
        let mut out = std::io::stdout().lock();
        writeln!(out, "{HOLDER_STARTED}")?;
        out.flush()?;
        drop(out);
        crate::fault::reached(crate::fault::Step::HolderStartedSaid);
        // From here on the holder's own messages (the forwarder's "target refused", a
        // failed clean-up) go to `holder.log` in the container's directory.
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?;
        let own_log_path = c.dir.join("holder.log");
        let own_log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&own_log_path)
            .with_context(|| format!("opening {own_log_path:?}"))?;
        nix::unistd::dup2(null.as_raw_fd(), 1)?;
        nix::unistd::dup2(own_log.as_raw_fd(), 2)?;
    }

    let master = match &console {
        Some(sock) => Some(crate::tty::recv_master(sock)?),
        None => None,
    };
    drop(console);
    // Logs of a detached container: one thread per stream, JSON lines like Docker's (a
    // terminal has one stream: stdout).
    let mut loggers = Vec::new();
    let mut relay = None;
    let streams: Vec<(OwnedFd, &str)> = match (pipes, master) {
        (Some((out_r, err_r)), _) => vec![(out_r, "stdout"), (err_r, "stderr")],
        (None, Some(m)) if c.record.detached => vec![(m, "stdout")],
        (None, Some(m)) => {
            relay = Some(crate::tty::relay(m, c.record.interactive)?);
            Vec::new()
        }
        (None, None) => Vec::new(),
    };
    let mut log = None;
    if !streams.is_empty() {
        let writer = c.open_log()?;
        for (fd, stream) in streams {
            let (writer, stream) = (writer.clone(), crate::logs::writer::Stream::parse(stream));
            loggers.push(std::thread::spawn(move || {
                writer.copy(std::fs::File::from(fd), stream)
            }));
        }
        log = Some(writer);
    }
    // What frun has to tell about the container while it runs (the forwarder's "the
    // target refused"): a `frun:` line where its output goes, so in its log when it is
    // detached (`frun logs` shows it), on the terminal otherwise.
    let say: crate::forward::Say = match &log {
        Some(writer) => {
            let writer = writer.clone();
            std::sync::Arc::new(move |text: &str| {
                writer.line(crate::logs::writer::Stream::Stderr, &format!("{text}\n"));
                tracing::warn!("{text}");
            })
        }
        None => std::sync::Arc::new(|text: &str| eprintln!("{text}")),
    };
    // Ctrl-C, SIGTERM, SIGHUP to the holder (blocked since it started) become a stop of
    // the container.
    let pid = started.pid;
    let (stop_signal, timeout) = (c.record.stop_signal, c.record.stop_timeout);
    let marker = c.stop_requested_path();
    std::thread::spawn(move || {
        if set.wait().is_ok() {
            // A stop asked of the holder is a stop by the user: no restart follows.
            crate::cleanup::logged("marking the stop as asked", std::fs::write(&marker, b""));
            stop_pid(pid, stop_signal, timeout);
        }
    });

    // The forwarder: host ports to the container's address, in this process; it
    // connects from inside the container's network namespace (see forward.rs). Its
    // sockets are also handed to the holder of a replacement on request (a swap: see
    // forward::handoff), through a control socket in the run root.
    let mut port_copies = Vec::new();
    let forwarder = match (&c.record.network, &net_cfg) {
        (Some(n), Some(cfg)) if !bound.is_empty() => {
            let path = cfg.netns_path(&c.record.id);
            let netns = match crate::forward::Netns::open(&path) {
                Ok(ns) => Some(std::sync::Arc::new(ns)),
                Err(e) => {
                    tracing::warn!(error = %e, path = %path.display(), "forwarding through the bridge instead");
                    None
                }
            };
            let ip = std::net::IpAddr::V4(n.ip);
            for b in &bound {
                port_copies.push(b.try_clone_fd()?);
            }
            Some(crate::forward::start(
                bound,
                ip,
                netns,
                say.clone(),
                accepting,
            )?)
        }
        _ => None,
    };
    let handoff = forwarder.as_ref().and_then(|f| {
        use crate::forward::handoff;
        let serving = handoff::Serving {
            ports: std::mem::take(&mut port_copies),
            gate: f.gate(),
            counters: f.tcp_counters(),
            resumed_marker: resumed_marker(&c),
        };
        match handoff::serve(handoff::socket_path(&g.run_root, &c.record.id), serving) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "serving the ports' control socket: no swap can take them over");
                // Nobody could resume it: it accepts now.
                f.gate().resume();
                None
            }
        }
    });

    // A stack's app also answers on its generation's unix socket, which the stack's
    // proxy reaches through a symlink (see stack::upstream): a swap renames the symlink.
    let upstream = match &net_cfg {
        Some(cfg) => {
            let netns = crate::forward::Netns::open(&cfg.netns_path(&c.record.id))
                .ok()
                .map(std::sync::Arc::new);
            match crate::stack::upstream::serve(&g.root, &c, netns, say.clone()) {
                Ok(u) => u,
                Err(e) => {
                    say(&format!("frun: the proxy cannot reach this app: {e:#}"));
                    None
                }
            }
        }
        None => None,
    };
    // What the ports carry, for the supervisor's metrics (see crate::metrics).
    let ports_report = forwarder.as_ref().map(|f| {
        crate::metrics::report_ports(
            crate::metrics::ports_path(&g.run_root, &c.record.id),
            f.counters(),
        )
    });

    crate::fault::reached(crate::fault::Step::HolderServing);
    // The start is over: its code and heap are given back for the container's life
    // (see trim.rs).
    match crate::trim::release_startup_memory() {
        Ok(r) => tracing::debug!(code_kb = r.code_kb, "start-up memory released"),
        Err(e) => tracing::debug!(error = %e, "releasing the start-up memory"),
    }
    let exit = frun_runtime::wait(&started)?;
    // The published ports close with the container: a client is refused from now on,
    // instead of being accepted and dropped (unless a replacement holds them too).
    if let Some(h) = handoff {
        h.stop();
    }
    if let Some(f) = forwarder {
        f.stop();
    }
    if let Some(r) = ports_report {
        r.stop();
    }
    if let Some(u) = upstream {
        u.stop();
    }
    for l in loggers {
        if l.join().is_err() {
            tracing::warn!("a log writer of the container panicked: its last lines may be lost");
        }
    }
    if let Some(r) = relay {
        r.finish();
    }
    if log.is_some() && !c.record.publish.is_empty() {
        let ports: Vec<String> = c.record.publish.iter().map(|p| p.to_string()).collect();
        say(&format!(
            "frun: the container exited (code {}): its published ports are closed ({})",
            exit.code,
            ports.join(", ")
        ));
    }
    // The restart policy: the same container (its address kept, so a proxy that
    // points at it needs no new config) after a back-off that grows while it keeps
    // failing quickly.
    let stopped = c.stop_requested_path().exists();
    let again = c.record.restart.restarts(exit.code, restarts, stopped) && c.dir.exists();
    if !again {
        if let Some(n) = &net_cfg {
            if let Err(e) = crate::net::detach(n, &c.record.id) {
                tracing::warn!(error = %format!("{e:#}"), "disconnecting the container from the bridge");
            }
            refresh_hosts(&containers, n);
        }
    }
    if let Err(e) = started.cgroup.remove() {
        tracing::warn!(error = %e, "removing the container's cgroup");
    }
    // The container was OOM-killed only if its own first process was.
    let oom = crate::oom::oom_verdict(exit.signal, exit.oom_kills);
    let exit = ExitState {
        oom_killed: oom == crate::oom::OomVerdict::InitKilled,
        ..exit
    };
    // The events first, then the state: whoever sees the container exited (`stop`,
    // `down`) finds its death in the event log. Docker's order: the OOM kill, then the
    // death.
    if oom != crate::oom::OomVerdict::None {
        let killed = match oom {
            crate::oom::OomVerdict::OthersKilled(n) => n,
            _ => exit.oom_kills.max(1),
        };
        crate::events::emit(
            &g.root,
            crate::events::Event::of(crate::events::Kind::Oom, &c)
                .attr("killed", killed)
                .attr("init", oom == crate::oom::OomVerdict::InitKilled),
        );
    }
    crate::events::emit(
        &g.root,
        crate::events::Event::of(crate::events::Kind::Die, &c)
            .attr("exitCode", exit.code)
            .attr("oomKilled", exit.oom_killed),
    );
    finish(&c, &mut st, exit)?;
    if let Some(msg) = oom.message(&c.record.name, c.record.memory_limit.as_deref()) {
        say(&msg);
    }
    if again {
        let streak = if began.elapsed() >= Duration::from_secs(10) {
            0
        } else {
            restarts
        };
        let wait = crate::model::RestartPolicy::backoff(streak);
        if let Some(l) = &log {
            l.line(
                crate::logs::writer::Stream::Stderr,
                &format!(
                    "frun: the container exited (code {}): restarting it in {wait:?} (policy {}, restart {})\n",
                    exit.code,
                    c.record.restart,
                    restarts + 1
                ),
            );
        }
        std::thread::sleep(wait);
        if c.stop_requested_path().exists() || !c.dir.exists() {
            return Ok(code(exit.code));
        }
        // A fresh process image: single-threaded again, as spawning needs, with the
        // same pid (the record's holder stays true).
        use std::os::unix::process::CommandExt;
        let err = g
            .frun_command()?
            .arg("__holder")
            .arg("--restarted")
            .arg(&c.record.id)
            .exec();
        return Err(err).context("restarting the container's holder");
    }
    if c.record.auto_remove {
        containers.remove(&c)?;
    }
    Ok(exit_code(exit.code))
}

/// A file in the container's directory that exists while its handed-over ports are
/// resumed (the last request was `resume`, not `pause`): a holder started again (its
/// restart policy, the supervisor) accepts at once then (see `take_ports`).
fn resumed_marker(c: &Container) -> PathBuf {
    c.dir.join("ports-resumed")
}

/// The published ports of `c`, and whether its forwarder accepts at once: bound now, or
/// (its record says `ports_from`) taken from the holder of the container it replaces,
/// paused until a swap resumes them. When that holder is gone, nobody holds them: bound.
fn take_ports(g: &Global, c: &Container) -> anyhow::Result<(Vec<crate::forward::Bound>, bool)> {
    let publish = &c.record.publish;
    if let Some(from) = c
        .record
        .ports_from
        .as_deref()
        .filter(|_| !publish.is_empty())
    {
        if let Some(bound) = crate::forward::handoff::take(&g.run_root, from, publish)? {
            tracing::info!(from, "published ports taken over");
            let accepting = resumed_marker(c).exists();
            return Ok((bound, accepting));
        }
    }
    Ok((crate::forward::bind_all(publish)?, true))
}

/// The signals to the holder that stop its container.
fn stop_signals() -> signal::SigSet {
    let mut set = signal::SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set
}

fn finish(c: &Container, st: &mut State, exit: ExitState) -> anyhow::Result<()> {
    st.status = Status::Exited;
    st.exit_code = Some(exit.code);
    st.oom_killed = exit.oom_killed;
    st.finished_at = Some(now());
    if c.record.auto_remove {
        c.set_last_state(st)
    } else {
        c.set_state(st)
    }
}

/// Sends the stop signal, waits up to `timeout` seconds, then SIGKILL. Returns once the
/// process is gone (or a zombie awaiting its parent).
/// True when the process had to be killed with SIGKILL.
pub fn stop_pid(pid: i32, stop_signal: i32, timeout: u64) -> bool {
    let Some(w) = crate::pidwatch::Watched::open(pid, None) else {
        return false;
    };
    w.signal(stop_signal);
    if w.wait(Duration::from_secs(timeout)) {
        return false;
    }
    // busybox httpd as pid 1, for one, ignores SIGTERM.
    w.signal(libc::SIGKILL);
    true
}

pub fn wait_exited(c: &Container, timeout: Duration) -> anyhow::Result<State> {
    let start = Instant::now();
    // The holder records the exit and then ends (unless it restarts the container):
    // its end wakes this wait at once; otherwise the state is read again every 10 ms.
    let first = c.state()?;
    let holder = first
        .holder_pid
        .filter(|_| Container::holder_alive(&first))
        .and_then(|pid| crate::pidwatch::Watched::open(pid, first.holder_start));
    loop {
        let st = c.state()?;
        if st.status != Status::Running {
            // The holder records the exit right after reaping; give it that moment.
            if !Container::holder_alive(&st) || c.state()?.finished_at.is_some() {
                return Ok(st);
            }
        }
        if start.elapsed() > timeout {
            bail!(
                "container {} did not exit within {:?}",
                c.record.name,
                timeout
            );
        }
        match &holder {
            Some(h) => {
                h.wait(Duration::from_millis(10));
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Stops a running container: its stop signal, the grace period, SIGKILL; then waits
/// until its holder recorded the exit.
/// Stops a container's process; true when it had to be killed (the grace period passed).
pub fn stop_and_wait(c: &Container, pid: i32, stop_signal: i32, timeout: u64) -> bool {
    let killed = stop_pid(pid, stop_signal, timeout);
    if let Err(e) = wait_exited(c, Duration::from_secs(30)) {
        tracing::warn!(error = %format!("{e:#}"), "waiting for the container to exit");
    }
    killed
}

/// [`end_holder`] of a container, from its state on disk.
pub fn end_holder_of(c: &Container) {
    if let Ok(st) = c.state() {
        end_holder(&st);
    }
}

/// Ends a container's holder if it still lives (one spinning on output or stuck): `rm -f`
/// must leave nothing running.
pub fn end_holder(st: &State) {
    if let (Some(pid), Some(start)) = (st.holder_pid, st.holder_start) {
        if Container::holder_alive(st) {
            if let Some(w) = crate::pidwatch::Watched::open(pid, Some(start)) {
                w.signal(libc::SIGKILL);
                w.wait(Duration::from_secs(5));
            }
        }
    }
}

/// The exit code of a start that failed, as Docker's: 127 when the command does not
/// exist, 126 when it cannot be run, 125 for anything else.
fn start_failure_code(e: &anyhow::Error) -> u8 {
    use frun_runtime::{RuntimeError::Setup, SetupError};
    match e.downcast_ref::<frun_runtime::RuntimeError>() {
        Some(Setup(SetupError::NotFound { .. })) => EXIT_NOT_FOUND,
        Some(Setup(SetupError::Exec { cause, .. })) if cause.errno() == Some(libc::ENOENT) => {
            EXIT_NOT_FOUND
        }
        Some(Setup(SetupError::Exec { .. })) => EXIT_CANNOT_INVOKE,
        _ => EXIT_FRUN_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_failures_map_to_the_shells_codes_by_variant() {
        use frun_runtime::{Cause, RuntimeError, SetupError};
        let code = |e: SetupError| start_failure_code(&RuntimeError::Setup(e).into());
        let arg0 = || "x".to_string();
        assert_eq!(code(SetupError::NotFound { arg0: arg0() }), 127);
        let exec = |n| SetupError::Exec {
            arg0: arg0(),
            cause: Cause::Os(n),
        };
        assert_eq!(code(exec(libc::ENOENT)), 127);
        assert_eq!(code(exec(libc::EACCES)), 126);
        // A missing bind source says "No such file" too: not the command's fault.
        let bind = SetupError::BindSource {
            path: "/nope".into(),
            cause: Cause::Os(libc::ENOENT),
        };
        assert_eq!(code(bind), 125);
        assert_eq!(
            start_failure_code(&anyhow::anyhow!("port 80 is already in use")),
            125
        );
    }
}
