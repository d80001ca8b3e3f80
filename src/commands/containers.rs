//! `run`, `ps`, `stop`, `rm`, `exec`, `logs`, and the hidden `__shim` that supervises
//! one container.
//!
//! `frun run` prepares the container (image, spec, directory) and re-executes frun as
//! `frun __shim ID`: a fresh, single-threaded process, safe to fork the container from
//! (the CLI may have started threads to pull). The shim starts the container, keeps its
//! logs when detached, forwards Ctrl-C and SIGTERM as a proper stop, records how it
//! ended, and removes what `--rm` asks to. In the foreground the CLI waits for the shim
//! and exits with the container's code.

use anyhow::{bail, Context};
use frun_runtime::{ExitState, RootfsSource, SpawnConfig, Stdio};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use super::exit_code;
use super::images::open_store;
use crate::cli::{ExecArgs, Global, RmArgs, RunArgs, StopArgs};
use crate::containers::{now, pid_start, Container, Containers, State, Status};
use crate::limits;
use crate::model::Description;
use crate::runspec;

/// Exit codes of `run` for failures before the command runs, as Docker's.
const EXIT_FRUN_ERROR: u8 = 125;
const EXIT_CANNOT_INVOKE: u8 = 126;
const EXIT_NOT_FOUND: u8 = 127;

/// What the shim of a detached container prints once the container runs.
const SHIM_STARTED: &str = "started";

fn code(c: i32) -> ExitCode {
    ExitCode::from(c.clamp(0, 255) as u8)
}

/// `frun run`: a failure before the container's command runs (a bad flag, an unknown
/// user, an image for another platform, a name in use) exits 125, as Docker's does, so
/// that a caller can tell it from the command's own exit code.
pub fn run(g: &Global, args: RunArgs) -> anyhow::Result<ExitCode> {
    match run_container(g, args) {
        Ok(code) => Ok(code),
        Err(e) => {
            if let Some(f) = e.downcast_ref::<StartFailed>() {
                eprint!("{}", f.message);
                return Ok(code(f.code));
            }
            eprintln!("frun: error: {e:#}");
            Ok(ExitCode::from(EXIT_FRUN_ERROR))
        }
    }
}

fn run_container(g: &Global, args: RunArgs) -> anyhow::Result<ExitCode> {
    // 1. Flags to a validated description, before anything exists.
    let d = Description::from_run(&args)?;
    // 2. The container: image, record, network, spec.
    let c = crate::model::create(g, &d, args.quiet)?;
    // 3. Its holder starts and supervises it: in this very process for a foreground
    //    run, which saves starting frun a second time, unless something made it
    //    multi-threaded (a pull does) and so unfit to fork a container; in a new
    //    process otherwise (a detached run must outlive this command).
    if !args.detach && frun_runtime::single_threaded() {
        return Ok(shim(g, &c.record.id, false).unwrap_or_else(|e| {
            // As `frun __shim` would end.
            eprintln!("frun: error: {e:#}");
            ExitCode::FAILURE
        }));
    }
    if args.detach {
        start_detached(g, &c)?;
        println!("{}", c.record.id);
        return Ok(ExitCode::SUCCESS);
    }
    let mut child = shim_command(g, &c.record.id)?
        .spawn()
        .context("starting the container's holder")?;
    // Ctrl-C reaches the shim too (same process group); it stops the container, and
    // this process waits for the exit code instead of dying first.
    // SAFETY: replacing the disposition of SIGINT/SIGTERM with SIG_IGN has no handler.
    unsafe {
        let _ = signal::signal(Signal::SIGINT, signal::SigHandler::SigIgn);
    }
    let status = child.wait()?;
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => exit_code(c),
        (None, Some(s)) => exit_code(128 + s),
        _ => ExitCode::FAILURE,
    })
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

/// `frun __shim ID` as a command, born with the stop signals blocked.
fn shim_command(g: &Global, id: &str) -> anyhow::Result<Command> {
    let mut cmd = g.frun_command()?;
    for _ in 0..g.verbose {
        cmd.arg("--verbose");
    }
    cmd.arg("__shim").arg(id);
    use std::os::unix::process::CommandExt;
    // SAFETY: sigprocmask is async-signal-safe and changes only the child's mask. The shim
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

/// Starts a created container under a holder of its own (`frun __shim`, in a session of
/// its own: it outlives this command), and returns once the container runs.
pub fn start_detached(g: &Global, c: &Container) -> anyhow::Result<()> {
    let mut cmd = shim_command(g, &c.record.id)?;
    // The shim says "started" on its stdout once the container runs, then lets go of
    // both pipes; if it cannot start the container it says why on stderr and exits.
    // The state file cannot tell: with --rm a container that exits at once is gone
    // before anyone could read it.
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe; the shim outlives this command.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the container's holder")?;
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
    if said.lines().any(|l| l == SHIM_STARTED) {
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

/// The host's resolvers; a local stub (127.0.0.53 of systemd-resolved) is useless in a
/// network namespace of its own, so its upstream list is used instead.
pub fn host_resolv_conf() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let main = read("/etc/resolv.conf");
    let is_stub = |text: &str| {
        text.lines()
            .filter_map(|l| l.strip_prefix("nameserver"))
            .any(|ns| ns.trim().starts_with("127."))
    };
    if is_stub(&main) {
        let upstream = read("/run/systemd/resolve/resolv.conf");
        if !upstream.is_empty() && !is_stub(&upstream) {
            return upstream;
        }
        return main
            .lines()
            .filter(|l| !l.trim_start().starts_with("nameserver") || !is_stub(l))
            .map(|l| format!("{l}\n"))
            .collect();
    }
    main
}

/// `frun __shim ID`: start the container and supervise it until it exits.
pub fn shim(g: &Global, id: &str, restarted: bool) -> anyhow::Result<ExitCode> {
    // Ctrl-C, SIGTERM and SIGHUP stop the container; until it runs they wait, blocked.
    // Blocked first, in the only thread: every thread started later inherits the mask,
    // so none of them can take such a signal and die of it, leaving the container
    // running without its supervisor. (The container's process unblocks them.)
    let set = stop_signals();
    set.thread_block()?;
    let containers = Containers::open(&g.root)?;
    let c = containers.find(id)?;
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
        let _ = std::fs::remove_file(c.stop_requested_path());
    }
    let store = open_store(g)?;
    let mut spec = c.spec()?;
    if c.record.tty && !c.record.detached {
        // The caller's window size, set before the container's process starts.
        if let Some(mut p) = spec.process().clone() {
            p.set_console_size(crate::tty::console_size());
            spec.set_process(Some(p));
        }
    }
    // The overlay as recorded at creation; a record from before that was recorded
    // gets it from its layers.
    let lower: Vec<PathBuf> = if c.record.lower_dirs.is_empty() {
        c.record
            .layers
            .iter()
            .rev()
            .map(|d| store.layer_path(d))
            .collect()
    } else {
        c.record.lower_dirs.clone()
    };
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
    // Published ports are bound before the start, so that a taken port fails it.
    let spawned = crate::forward::bind_all(&c.record.publish).and_then(|bound| {
        let opts = frun_runtime::SpawnOptions {
            console_socket: console_theirs,
            ..Default::default()
        };
        Ok((frun_runtime::spawn_with(&cfg, stdio, opts)?, bound))
    });
    let (started, bound) = match spawned {
        Ok(s) => s,
        Err(e) => {
            if let Some(n) = &net_cfg {
                cleanup(
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
                cleanup("removing the container's state", containers.remove(&c));
            }
            eprintln!("frun: error: {msg}");
            return Ok(ExitCode::from(exit));
        }
    };
    let mut st = State::created();
    st.status = Status::Running;
    st.pid = Some(started.pid);
    st.pid_start = pid_start(started.pid);
    st.shim_pid = Some(std::process::id() as i32);
    st.shim_start = pid_start(std::process::id() as i32);
    st.started_at = Some(now());
    st.restart_count = restarts;
    c.set_state(&st)?;
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
        writeln!(out, "{SHIM_STARTED}")?;
        out.flush()?;
        drop(out);
        // From here on the shim's own messages (the forwarder's "target refused", a
        // failed clean-up) go to `shim.log` in the container's directory.
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?;
        let own_log_path = c.dir.join("shim.log");
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
    // Ctrl-C, SIGTERM, SIGHUP to the shim (blocked since it started) become a stop of
    // the container.
    let pid = started.pid;
    let (stop_signal, timeout) = (c.record.stop_signal, c.record.stop_timeout);
    let marker = c.stop_requested_path();
    std::thread::spawn(move || {
        if set.wait().is_ok() {
            // A stop asked of the holder is a stop by the user: no restart follows.
            let _ = std::fs::write(&marker, b"");
            stop_pid(pid, stop_signal, timeout);
        }
    });

    // The forwarder: host ports to the container's address, in this process; it
    // connects from inside the container's network namespace (see forward.rs).
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
            Some(crate::forward::start(bound, ip, netns, say.clone())?)
        }
        _ => None,
    };

    // What the ports carry, for the supervisor's metrics (see crate::metrics).
    let ports_report = forwarder.as_ref().map(|f| {
        crate::metrics::report_ports(
            crate::metrics::ports_path(&g.run_root, &c.record.id),
            f.counters(),
        )
    });

    let exit = frun_runtime::wait(&started)?;
    // The published ports close with the container: a client is refused from now on,
    // instead of being accepted and dropped.
    if let Some(f) = forwarder {
        f.stop();
    }
    if let Some(r) = ports_report {
        r.stop();
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
            .arg("__shim")
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

/// The signals to the shim that stop its container.
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
fn stop_pid(pid: i32, stop_signal: i32, timeout: u64) {
    let start = pid_start(pid);
    if start.is_none() {
        return;
    }
    let sig = Signal::try_from(stop_signal).unwrap_or(Signal::SIGTERM);
    let _ = signal::kill(Pid::from_raw(pid), sig);
    let deadline = Instant::now() + Duration::from_secs(timeout);
    while Instant::now() < deadline {
        if pid_start(pid) != start {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // busybox httpd as pid 1, for one, ignores SIGTERM.
    let _ = signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
}

fn wait_exited(c: &Container, timeout: Duration) -> anyhow::Result<State> {
    let start = Instant::now();
    loop {
        let st = c.state()?;
        if st.status != Status::Running {
            // The shim records the exit right after reaping; give it that moment.
            let shim_alive = st.shim_pid.is_some_and(|p| pid_start(p).is_some());
            if !shim_alive || c.state()?.finished_at.is_some() {
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
        std::thread::sleep(Duration::from_millis(10));
    }
}

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

/// Stops a running container: its stop signal, the grace period, SIGKILL; then waits
/// until its holder recorded the exit.
pub fn stop_and_wait(c: &Container, pid: i32, stop_signal: i32, timeout: u64) {
    stop_pid(pid, stop_signal, timeout);
    if let Err(e) = wait_exited(c, Duration::from_secs(30)) {
        tracing::warn!(error = %format!("{e:#}"), "waiting for the container to exit");
    }
}

/// [`end_holder`] of a container, from its state on disk.
pub fn end_holder_of(c: &Container) {
    if let Ok(st) = c.state() {
        end_holder(&st);
    }
}

/// Ends a container's holder if it still lives (one spinning on output or stuck): `rm -f`
/// must leave nothing running.
fn end_holder(st: &State) {
    if let (Some(pid), Some(start)) = (st.shim_pid, st.shim_start) {
        if pid_start(pid) == Some(start) {
            let _ = signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            for _ in 0..500 {
                if pid_start(pid) != Some(start) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
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
            let _ = std::fs::write(c.stop_requested_path(), b"");
            if let Some(pid) = st.pid.filter(|_| st.status == Status::Running) {
                stop_pid(pid, Signal::SIGKILL as i32, 0);
                let _ = wait_exited(&c, Duration::from_secs(5));
            }
            end_holder(&c.state().unwrap_or(st));
        }
        // The shim of an --rm container may be removing it right now.
        if c.dir.exists() {
            remove_container(g, containers, &c)?;
        }
        Ok(())
    })
}

pub fn exec(g: &Global, args: ExecArgs) -> anyhow::Result<ExitCode> {
    let containers = Containers::open(&g.root)?;
    let c = containers.find(&args.container)?;
    let st = c.state()?;
    if st.status != Status::Running {
        bail!("container {} is not running", c.record.name);
    }
    let pid = st.pid.context("running container without a pid")?;
    let spec = c.spec()?;
    let mut process = spec
        .process()
        .clone()
        .context("the container's spec has no process")?;
    if args.command.is_empty() {
        bail!("no command given");
    }
    process.set_args(Some(args.command.clone()));
    process.set_env(Some(runspec::merge_env(
        process.env().clone().unwrap_or_default(),
        &args.env,
    )?));
    if let Some(w) = &args.workdir {
        process.set_cwd(PathBuf::from(w));
    }
    if let Some(u) = &args.user {
        // Names are looked up in the running container's own files, as Docker does
        // (resolved inside its root: a symlinked /etc/passwd cannot point out of it).
        let root = [PathBuf::from(format!("/proc/{pid}/root"))];
        let (uid, gid, extra) = runspec::resolve_user(
            u,
            runspec::read_image_file(&root, "etc/passwd").as_deref(),
            runspec::read_image_file(&root, "etc/group").as_deref(),
        )
        .with_context(|| format!("--user {u:?}"))?;
        let user = oci_spec::runtime::UserBuilder::default()
            .uid(uid)
            .gid(gid)
            .additional_gids(extra)
            .build()?;
        process.set_user(user);
    }
    process.set_terminal(Some(args.tty));
    process.set_console_size(None);
    if args.tty {
        process.set_console_size(crate::tty::console_size());
        crate::tty::block_winch()?;
        let mut env = process.env().clone().unwrap_or_default();
        if !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        process.set_env(Some(env));
    }
    let (console, console_theirs) = match args.tty {
        true => {
            let (ours, theirs) = crate::tty::console_pair()?;
            (Some(ours), Some(theirs))
        }
        false => (None, None),
    };
    let stdio = match (args.tty, args.interactive) {
        (false, false) => Stdio {
            stdin: Some(std::fs::File::open("/dev/null")?.into()),
            ..Default::default()
        },
        _ => Stdio::default(),
    };
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
    let started = frun_runtime::exec_with(
        pid,
        &c.record.cgroup,
        &process,
        seccomp.as_ref(),
        stdio,
        frun_runtime::ExecOptions {
            preserve_fds: 0,
            console_socket: console_theirs,
        },
    )?;
    // SAFETY: ignoring SIGINT installs no handler; the exec'd process has its own session.
    unsafe {
        let _ = signal::signal(Signal::SIGINT, signal::SigHandler::SigIgn);
    }
    let relay = match &console {
        Some(sock) => Some(crate::tty::relay(
            crate::tty::recv_master(sock)?,
            args.interactive,
        )?),
        None => None,
    };
    let exit = frun_runtime::wait(&started)?;
    if let Some(r) = relay {
        r.finish();
    }
    Ok(exit_code(exit.code))
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

/// A clean-up step after a failure, or one nothing waits on: its failure is logged
/// (with what it was), never dropped silently; the caller reports the original error.
fn cleanup<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) {
    if let Err(e) = r {
        tracing::warn!("clean-up: {what}: {e:#}");
    }
}

/// A container's `/etc/hosts`: itself, and every container on its bridge by name.
pub fn hosts_file(c: &Container, net: &crate::net::NetConfig) -> String {
    let hostname = &c.record.id[..12];
    let mut s = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_string();
    match &c.record.network {
        Some(n) => {
            s.push_str(&format!("{}\t{hostname}\n", n.ip));
            s.push_str(&crate::net::hosts_entries(net).unwrap_or_default());
        }
        None => s.push_str(&format!("127.0.1.1\t{hostname} {}\n", c.record.name)),
    }
    s
}

/// Rewrites, in place (a bind-mounted file must keep its inode), the hosts file of every
/// container on the bridge, so that they find a container that just came or went.
pub fn refresh_hosts(containers: &Containers, net: &crate::net::NetConfig) {
    let Ok(all) = containers.list() else { return };
    for c in all.iter().filter(|c| c.record.network.is_some()) {
        let path = c.dir.join("hosts");
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
        {
            cleanup(
                &format!("refreshing {path:?}"),
                f.write_all(hosts_file(c, net).as_bytes()),
            );
        }
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
