//! `create`, `start`, `run`, `state`, `kill`, `delete`, `list`, `ps`, `features`.
//! (`pause`, `resume`, `update` and `events` are in `resources.rs`.)

use crate::containers::parse_signal;
use anyhow::{bail, Context};
use frun_runtime::{RootfsSource, SpawnConfig, SpawnOptions, Started, Stdio};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::hooks::{self, Kind};
use super::state::{cgroup_path, validate_id, write_pid_file, OciContainer, OciStatus, Saved};
use super::{warn, CreateArgs, Global, RunArgs};
use crate::commands::exit_code;
use crate::containers::now;
use crate::containers::pid_start;

/// What `create` and `run` have checked and written before anything starts.
struct Prepared {
    id: String,
    dir: PathBuf,
    spec: Spec,
    bundle: PathBuf,
    rootfs: PathBuf,
    cgroup: PathBuf,
    /// Connected to --console-socket when the process wants a terminal.
    console: Option<std::os::fd::OwnedFd>,
    preserve_fds: u32,
}

/// Connects to the caller's console socket (only when the process wants a terminal).
pub(super) fn console_socket(
    path: Option<&Path>,
    terminal: bool,
) -> anyhow::Result<Option<std::os::fd::OwnedFd>> {
    match (path, terminal) {
        (Some(p), true) => {
            let s = std::os::unix::net::UnixStream::connect(p)
                .with_context(|| format!("connecting to the console socket {p:?}"))?;
            Ok(Some(s.into()))
        }
        _ => Ok(None),
    }
}

/// Validates the bundle and makes the state directory (which claims the id).
fn prepare(g: &Global, a: &CreateArgs) -> anyhow::Result<Prepared> {
    validate_id(&a.id)?;
    let bundle =
        std::fs::canonicalize(&a.bundle).with_context(|| format!("bundle {:?}", a.bundle))?;
    let config = bundle.join("config.json");
    let data = std::fs::read(&config).with_context(|| format!("reading {config:?}"))?;
    let mut spec: Spec =
        serde_json::from_slice(&data).with_context(|| format!("parsing {config:?}"))?;
    if let Some(mut process) = spec.process().clone() {
        super::compat::drop_unraisable_ambient(g, &mut process);
        spec.set_process(Some(process));
    }
    let process = spec
        .process()
        .as_ref()
        .context("config.json has no process")?;
    if process.terminal().unwrap_or(false) && a.console_socket.is_none() {
        bail!("process.terminal is true but no --console-socket was given");
    }
    let console = console_socket(
        a.console_socket.as_deref(),
        process.terminal().unwrap_or(false),
    )?;
    let root = spec.root().as_ref().context("config.json has no root")?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    let rootfs =
        std::fs::canonicalize(&rootfs).with_context(|| format!("root filesystem {rootfs:?}"))?;
    if !rootfs.is_dir() {
        bail!("root filesystem {rootfs:?} is not a directory");
    }
    let cgroup = cgroup_path(
        spec.linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().as_ref())
            .and_then(|p| p.to_str()),
        &a.id,
    )?;
    std::fs::create_dir_all(&g.root).with_context(|| format!("state root {:?}", g.root))?;
    let dir = OciContainer::dir_of(&g.root, &a.id);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("container with id exists: {}", a.id)
        }
        Err(e) => return Err(e).with_context(|| format!("creating {dir:?}")),
    }
    let r = frun_images::fsutil::write_replace(&dir.join("config.json"), &data);
    if let Err(e) = r {
        let undone = std::fs::remove_dir_all(&dir).with_context(|| format!("removing {dir:?}"));
        return Err(beside(e.into(), undone));
    }
    Ok(Prepared {
        id: a.id.clone(),
        dir,
        spec,
        bundle,
        rootfs,
        cgroup,
        console,
        preserve_fds: a.preserve_fds,
    })
}

/// Starts the container's process (waiting at `gate` if given) and records it.
fn launch(
    g: &Global,
    p: &mut Prepared,
    gate: Option<std::os::fd::OwnedFd>,
) -> anyhow::Result<Started> {
    let cfg = SpawnConfig {
        spec: p.spec.clone(),
        // The bundle's rootfs is bind-mounted onto itself, inside the container's mount
        // namespace only.
        rootfs: RootfsSource::Dir(p.rootfs.clone()),
        mountpoint: p.rootfs.clone(),
        cgroup: p.cgroup.clone(),
    };
    const AT_CREATE: [Kind; 3] = [Kind::Prestart, Kind::CreateRuntime, Kind::CreateContainer];
    let before_pivot: Option<frun_runtime::BeforePivot> =
        hooks::any(&p.spec, &AT_CREATE).then(|| {
            let (g, id, bundle, spec) = (g.clone(), p.id.clone(), p.bundle.clone(), p.spec.clone());
            Box::new(move |pid: i32| {
                let state = hooks::State {
                    id: &id,
                    pid,
                    bundle: &bundle,
                    spec: &spec,
                };
                hooks::run(&g, &state, &AT_CREATE).map_err(|e| format!("{e:#}").into())
            }) as frun_runtime::BeforePivot
        });
    let opts = SpawnOptions {
        start_gate: gate,
        console_socket: p.console.take(),
        preserve_fds: p.preserve_fds,
        before_pivot,
    };
    let started = match frun_runtime::spawn_with(&cfg, Stdio::default(), opts) {
        Ok(s) => s,
        Err(e) => {
            // A hook failed: the container is gone; the spec's lifecycle goes on with
            // poststop.
            if matches!(e, frun_runtime::RuntimeError::Hook(_)) {
                poststop(g, &p.id, &p.bundle, &p.spec);
            }
            return Err(e.into());
        }
    };
    let wants_oom_off = p
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.disable_oom_killer())
        .unwrap_or(false);
    if wants_oom_off && started.cgroup.is_v2() {
        warn(
            g,
            "linux.resources.memory.disableOOMKiller: cgroup v2 has no switch for it; \
             the OOM killer stays on",
        );
    }
    let annotations = p
        .spec
        .annotations()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let saved = Saved {
        id: p.id.clone(),
        bundle: p.bundle.clone(),
        rootfs: p.rootfs.clone(),
        pid: started.pid,
        pid_start: pid_start(started.pid),
        boot_id: crate::containers::this_boot().map(str::to_string),
        cgroup: p.cgroup.clone(),
        created: now(),
        annotations,
        hooks: p.spec.hooks().is_some(),
    };
    if let Err(e) = OciContainer::save(&p.dir, &saved) {
        return Err(beside(e, kill_and_remove(&started)));
    }
    Ok(started)
}

/// `err`, with the failure of the clean-up after it (if it failed) said beside it:
/// what could not be undone is never dropped silently.
fn beside(err: anyhow::Error, cleanup: anyhow::Result<()>) -> anyhow::Error {
    match cleanup {
        Ok(()) => err,
        Err(c) => anyhow::anyhow!("{err:#} (and the clean-up after it failed: {c:#})"),
    }
}

/// Kills and reaps a container's process that is still ours (a start that failed after
/// the spawn), and removes its cgroup. The kill and the reap can only fail when the
/// process is gone already; the cgroup's removal can fail for real.
fn kill_and_remove(started: &Started) -> anyhow::Result<()> {
    let _ = signal::kill(Pid::from_raw(started.pid), Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(Pid::from_raw(started.pid), None);
    Ok(started.cgroup.remove()?)
}

/// Undoes `prepare` after a failure.
fn abandon(p: &Prepared) -> anyhow::Result<()> {
    std::fs::remove_dir_all(&p.dir).with_context(|| format!("removing {:?}", p.dir))
}

pub fn create(g: &Global, a: &CreateArgs) -> anyhow::Result<ExitCode> {
    let mut p = prepare(g, a)?;
    let r = (|| {
        let gate = make_gate(&p.dir)?;
        let started = launch(g, &mut p, Some(gate))?;
        if let Some(pf) = &a.pid_file {
            if let Err(e) = write_pid_file(pf, started.pid) {
                return Err(beside(e, kill_and_remove(&started)));
            }
        }
        Ok(())
    })();
    if let Err(e) = r {
        return Err(beside(e, abandon(&p)));
    }
    // The process lives on, waiting at the gate; it becomes the child of the caller's
    // subreaper once this process exits.
    Ok(ExitCode::SUCCESS)
}

pub fn start(g: &Global, id: &str) -> anyhow::Result<ExitCode> {
    let c = OciContainer::load(&g.root, id)?;
    match c.status() {
        OciStatus::Created => {}
        OciStatus::Running | OciStatus::Paused => {
            bail!("cannot start an already running container")
        }
        OciStatus::Stopped => bail!("cannot start a container that has stopped"),
    }
    let spec = if c.saved.hooks { Some(c.spec()?) } else { None };
    // startContainer hooks, in the container's namespaces, before its program runs: a
    // failure destroys the container (and runs poststop), as the spec has it.
    if let Some(spec) = &spec {
        let state = hooks::State {
            id,
            pid: c.saved.pid,
            bundle: &c.saved.bundle,
            spec,
        };
        if let Err(e) = hooks::run(g, &state, &[Kind::StartContainer]) {
            if let Err(d) = destroy(g, &c) {
                warn(g, &format!("destroying {id} after the failed hook: {d:#}"));
            }
            poststop(g, id, &c.saved.bundle, spec);
            return Err(e);
        }
    }
    release(&c)?;
    if let Some(spec) = &spec {
        let state = hooks::State {
            id,
            pid: c.saved.pid,
            bundle: &c.saved.bundle,
            spec,
        };
        hooks::run(g, &state, &[Kind::Poststart])?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the poststop hooks (warnings only: the container is gone already).
fn poststop(g: &Global, id: &str, bundle: &Path, spec: &Spec) {
    let state = hooks::State {
        id,
        pid: 0,
        bundle,
        spec,
    };
    // The runtime spec: a failing poststop hook is a warning; the delete goes on.
    crate::cleanup::logged(
        "the poststop hooks",
        hooks::run(g, &state, &[Kind::Poststop]),
    );
}

/// Opens the start gate: one byte into the FIFO, which is then removed.
fn release(c: &OciContainer) -> anyhow::Result<()> {
    let id = &c.saved.id;
    let fifo = c.fifo();
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&fifo)
    {
        Ok(f) => f,
        // No reader: the waiting process is gone.
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            bail!("container {id} is not running: its process exited before start")
        }
        Err(e) => return Err(e).with_context(|| format!("opening {fifo:?}")),
    };
    f.write_all(b"0").context("releasing the container")?;
    drop(f);
    std::fs::remove_file(&fifo).with_context(|| format!("removing {fifo:?}"))?;
    Ok(())
}

pub fn run(g: &Global, a: &RunArgs) -> anyhow::Result<ExitCode> {
    let mut p = prepare(g, &a.create)?;
    // startContainer hooks run between set-up and the program: through the start gate,
    // as create + start. Without them, straight through (no gate, no FIFO).
    let gated = hooks::any(&p.spec, &[Kind::StartContainer]);
    let launched = (|| {
        let gate = if gated {
            Some(make_gate(&p.dir)?)
        } else {
            None
        };
        launch(g, &mut p, gate)
    })();
    let started = match launched {
        Ok(s) => s,
        Err(e) => return Err(beside(e, abandon(&p))),
    };
    if let Some(pf) = &a.create.pid_file {
        if let Err(e) = write_pid_file(pf, started.pid) {
            let e = beside(e, kill_and_remove(&started));
            return Err(beside(e, abandon(&p)));
        }
    }
    if gated {
        // `start`'s work: hooks, gate, poststart. On failure the container is gone.
        start(g, &p.id)?;
    } else if hooks::any(&p.spec, &[Kind::Poststart]) {
        let state = hooks::State {
            id: &p.id,
            pid: started.pid,
            bundle: &p.bundle,
            spec: &p.spec,
        };
        hooks::run(g, &state, &[Kind::Poststart])?;
    }
    if a.create.detach {
        return Ok(ExitCode::SUCCESS);
    }
    let exit = wait_forwarding_signals(&started)?;
    if !a.keep {
        if let Err(e) = started.cgroup.remove() {
            warn(g, &format!("removing cgroup {:?}: {e}", p.cgroup));
        }
        if let Err(e) = abandon(&p) {
            warn(g, &format!("{e:#}"));
        }
        poststop(g, &p.id, &p.bundle, &p.spec);
    }
    Ok(exit_code(exit.code))
}

/// The start gate: a FIFO the waiting process holds open read-write (so opening it
/// never blocks); `start` writes one byte into it.
fn make_gate(dir: &Path) -> anyhow::Result<std::os::fd::OwnedFd> {
    let fifo = dir.join("exec.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .with_context(|| format!("mkfifo {fifo:?}"))?;
    let gate = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(&fifo)
        .with_context(|| format!("opening {fifo:?}"))?;
    Ok(gate.into())
}

/// The pid that [`forward`] passes signals on to.
static FORWARD_TO: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = FORWARD_TO.load(std::sync::atomic::Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Waits for `started` (a child of this process), passing on the signals a foreground
/// runtime gets (Ctrl-C, SIGTERM, ...) to it, as runc does. A signal handler, not a
/// thread: after joining a container's pid namespace (`exec`) no thread can be made.
pub(super) fn wait_forwarding_signals(
    started: &Started,
) -> anyhow::Result<frun_runtime::ExitState> {
    FORWARD_TO.store(started.pid, std::sync::atomic::Ordering::SeqCst);
    let action = signal::SigAction::new(
        signal::SigHandler::Handler(forward),
        signal::SaFlags::SA_RESTART,
        signal::SigSet::empty(),
    );
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
    ] {
        // SAFETY: the handler only reads an atomic and calls kill.
        unsafe { signal::sigaction(s, &action) }?;
    }
    Ok(frun_runtime::wait(started)?)
}

pub fn state(g: &Global, id: &str) -> anyhow::Result<ExitCode> {
    let c = OciContainer::load(&g.root, id)?;
    println!("{}", serde_json::to_string_pretty(&c.state_json())?);
    Ok(ExitCode::SUCCESS)
}

pub fn kill(g: &Global, id: &str, sig: Option<&str>, all: bool) -> anyhow::Result<ExitCode> {
    let c = OciContainer::load(&g.root, id)?;
    let sig = parse_signal(sig.unwrap_or("SIGTERM"))?;
    if all {
        let cg = c.cgroup()?;
        for pid in cg.pids() {
            let _ = signal::kill(Pid::from_raw(pid), sig);
        }
        if c.alive() {
            let _ = signal::kill(Pid::from_raw(c.saved.pid), sig);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if c.status() == OciStatus::Stopped {
        bail!("container not running");
    }
    match signal::kill(Pid::from_raw(c.saved.pid), sig) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(nix::errno::Errno::ESRCH) => bail!("container not running"),
        Err(e) => Err(e).context("sending the signal"),
    }
}

pub fn delete(g: &Global, id: &str, force: bool) -> anyhow::Result<ExitCode> {
    validate_id(id)?;
    let c = match OciContainer::load(&g.root, id) {
        Ok(c) => c,
        Err(e) => {
            // A create that died half-way leaves a directory without state.json; a host
            // crash may leave it empty (it is written without fsync), and took the
            // container's processes and cgroups with it.
            let dir = OciContainer::dir_of(&g.root, id);
            let no_state = std::fs::metadata(dir.join("state.json")).map_or(true, |m| m.len() == 0);
            if dir.is_dir() && no_state {
                std::fs::remove_dir_all(&dir).with_context(|| format!("removing {dir:?}"))?;
                return Ok(ExitCode::SUCCESS);
            }
            if force {
                return Ok(ExitCode::SUCCESS);
            }
            return Err(e);
        }
    };
    // The spec: deleting a container that is not stopped MUST fail and leave it as it
    // is. runc and crun delete (kill) a created one anyway; --force is for that.
    match c.status() {
        OciStatus::Stopped => {}
        _ if force => {}
        other => {
            bail!(
                "cannot delete container {id} that is not stopped: {} (use --force)",
                other.as_str()
            )
        }
    }
    let spec = if c.saved.hooks { c.spec().ok() } else { None };
    destroy(g, &c)?;
    if let Some(spec) = &spec {
        poststop(g, id, &c.saved.bundle, spec);
    }
    Ok(ExitCode::SUCCESS)
}

/// Kills whatever is left, removes the cgroup and the state directory.
fn destroy(g: &Global, c: &OciContainer) -> anyhow::Result<()> {
    let cg = c.cgroup()?;
    if c.alive() {
        let _ = signal::kill(Pid::from_raw(c.saved.pid), Signal::SIGKILL);
    }
    for pid in cg.pids() {
        let _ = signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    // A paused container's processes die only once thawed.
    if c.paused_mark().exists() || cg.frozen() {
        crate::cleanup::logged("thawing the container's cgroup", cg.thaw());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.alive() {
        if Instant::now() > deadline {
            bail!(
                "container {}: process {} did not die",
                c.saved.id,
                c.saved.pid
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut last = None;
    for _ in 0..100 {
        match cg.remove() {
            Ok(()) => {
                last = None;
                break;
            }
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some(e) = last {
        warn(g, &format!("removing cgroup {:?}: {e}", c.saved.cgroup));
    }
    std::fs::remove_dir_all(&c.dir).with_context(|| format!("removing {:?}", c.dir))?;
    Ok(())
}

fn all_containers(root: &Path) -> Vec<OciContainer> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Ok(c) = OciContainer::load(root, &name) {
            out.push(c);
        }
    }
    out.sort_by(|a, b| a.saved.created.cmp(&b.saved.created));
    out
}

pub fn list(g: &Global, format: &str, quiet: bool) -> anyhow::Result<ExitCode> {
    let all = all_containers(&g.root);
    let mut out = std::io::stdout().lock();
    if quiet {
        for c in &all {
            writeln!(out, "{}", c.saved.id)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    match format {
        "json" => {
            let v: Vec<serde_json::Value> = all.iter().map(|c| c.state_json()).collect();
            writeln!(out, "{}", serde_json::Value::Array(v))?;
        }
        "table" => {
            writeln!(out, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER")?;
            for c in &all {
                let s = c.state_json();
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\troot",
                    c.saved.id,
                    s["pid"],
                    c.status().as_str(),
                    c.saved.bundle.display(),
                    c.saved.created
                )?;
            }
        }
        other => bail!("invalid format {other:?}: table or json"),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn ps(g: &Global, id: &str, format: &str) -> anyhow::Result<ExitCode> {
    let c = OciContainer::load(&g.root, id)?;
    let pids = c.cgroup()?.pids();
    match format {
        "json" => println!("{}", serde_json::to_string(&pids)?),
        "table" => {
            println!("PID");
            for p in pids {
                println!("{p}");
            }
        }
        other => bail!("invalid format {other:?}: table or json"),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn features() -> anyhow::Result<ExitCode> {
    let v = serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": super::state::OCI_VERSION,
        "hooks": Kind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>(),
        "mountOptions": ["ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec",
            "sync", "dirsync", "noatime", "nodiratime", "relatime", "strictatime", "bind",
            "rbind", "private", "rprivate", "shared", "rshared", "slave", "rslave",
            "unbindable", "runbindable"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "uts"],
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {"enabled": true},
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
        },
    });
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(ExitCode::SUCCESS)
}
