//! Starting a container: the parent's half of the handshake with [`crate::child`].
//!
//! 1. validate the spec and compile seccomp (errors before anything exists);
//! 2. new pid namespace for the children of this process, then fork;
//! 3. put the child into its cgroup and apply limits, then let it go on;
//! 4. read the error pipe: EOF means `execve` happened, a message means set-up failed.

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use crate::cgroup::Cgroup;
use crate::child::{self, ChildArgs};
use crate::error::{RuntimeError, SetupError};
use crate::rootfs::RootfsSource;

/// What to start.
pub struct SpawnConfig {
    pub spec: Spec,
    pub rootfs: RootfsSource,
    /// An empty directory to mount the root filesystem on (inside the container's mount
    /// namespace only).
    pub mountpoint: PathBuf,
    /// Absolute cgroup path, e.g. `/frun/<id>`.
    pub cgroup: PathBuf,
}

/// Optional parts of [`spawn_with`].
#[derive(Default)]
pub struct SpawnOptions {
    /// A start gate (the OCI `create`/`start` split): with one, the container's process
    /// does every step of its set-up (namespaces, mounts, cgroup, user, capabilities,
    /// working directory), then reports success, so that [`spawn_with`] returns, and
    /// blocks reading this fd. One byte read lets it go on to no_new_privs, seccomp and
    /// `execve`; EOF or an error makes it exit (status 1) without running anything.
    pub start_gate: Option<OwnedFd>,
    /// A connected unix socket (the OCI `--console-socket`): when `process.terminal` is
    /// set, the container's process gets a pty from its own devpts as stdio and
    /// controlling terminal, and the pty's master end is sent over this socket.
    pub console_socket: Option<OwnedFd>,
    /// Fds 3 to 3+N-1 of this process stay open for the container's program
    /// (the OCI `--preserve-fds N`).
    pub preserve_fds: u32,
    /// Called with the container's pid once its namespaces and mounts are made and
    /// before `pivot_root` (or `chroot`): where the OCI `prestart`, `createRuntime` and
    /// `createContainer` hooks run. An error stops the start: the process is killed,
    /// the cgroup removed. Without it, the start makes no extra round trip.
    pub before_pivot: Option<BeforePivot>,
}

/// See [`SpawnOptions::before_pivot`].
pub type BeforePivot = Box<dyn FnMut(i32) -> Result<(), Box<dyn std::error::Error + Send + Sync>>>;

/// The container's stdio; `None` inherits this process's.
#[derive(Default)]
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// A running container.
pub struct Started {
    pub pid: i32,
    pub cgroup: Cgroup,
}

/// How a container's first process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExitState {
    /// The exit code, or 128 + the signal that killed it (the shell's convention).
    pub code: i32,
    pub signal: Option<i32>,
    /// The kernel's OOM killer struck in the container's cgroup (this process or
    /// another: see `oom_kills` and the signal to tell).
    pub oom_killed: bool,
    /// How many processes the OOM killer killed in the cgroup (v2 `memory.events`, v1
    /// `memory.oom_control`).
    #[serde(default)]
    pub oom_kills: u64,
}

pub(crate) fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:").map(|v| v.trim().parse().ok()))
                .flatten()
        })
        .unwrap_or(0)
}

/// Starts the container and returns once its process has been `execve`d.
///
/// Must be called from a single-threaded process: it forks, and the child goes on to
/// allocate and make system calls that a fork of a multi-threaded process may not.
pub fn spawn(cfg: &SpawnConfig, stdio: Stdio) -> Result<Started, RuntimeError> {
    spawn_with(cfg, stdio, SpawnOptions::default())
}

/// [`spawn`] with options. With a start gate it returns once the set-up is done and the
/// process waits at the gate (see [`SpawnOptions::start_gate`]), not after `execve`.
pub fn spawn_with(
    cfg: &SpawnConfig,
    stdio: Stdio,
    mut opts: SpawnOptions,
) -> Result<Started, RuntimeError> {
    if threads() != 1 {
        return Err(RuntimeError::NotSingleThreaded { op: "spawn" });
    }
    let spec = &cfg.spec;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| RuntimeError::spec("process", "missing"))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(RuntimeError::spec("process.args", "empty"));
    }
    let linux = spec.linux().clone().unwrap_or_default();
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    let uid_maps = linux.uid_mappings().clone().unwrap_or_default();
    let gid_maps = linux.gid_mappings().clone().unwrap_or_default();
    let new_userns = match namespaces
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::User)
    {
        Some(ns) if ns.path().is_some() => {
            return Err(RuntimeError::spec(
                "linux.namespaces[user].path",
                "joining an existing user namespace is not supported",
            ))
        }
        Some(_) => {
            crate::userns::check_mappings(&uid_maps, &gid_maps)?;
            true
        }
        None if !uid_maps.is_empty() || !gid_maps.is_empty() => {
            return Err(RuntimeError::spec(
                "linux.uidMappings/gidMappings",
                "given but linux.namespaces has no user namespace",
            ))
        }
        None => false,
    };
    if !new_userns {
        if let Some(m) = spec
            .mounts()
            .iter()
            .flatten()
            .find(|m| crate::userns::wants_idmap(m))
        {
            return Err(RuntimeError::spec(
                format!("mounts[{:?}]", m.destination()),
                "idmapped mounts need a user namespace",
            ));
        }
    }
    let sysctl = crate::sysctl::validate(spec)?;
    if !namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Mount)
    {
        no_mount_namespace(spec, &cfg.rootfs, new_userns)?;
    }
    let seccomp = match linux.seccomp() {
        Some(profile) => crate::seccomp::compile(profile)?,
        None => Vec::new(),
    };
    let cgroup = Cgroup::open(&cfg.cgroup)?;
    // v1: the cgroup is made and limited now; the child moves itself in (see
    // `crate::cgroup`). v2: the parent adds the child after the clone.
    let self_join = match cgroup.prepare(linux.resources().as_ref()) {
        Ok(j) => j,
        Err(e) => {
            crate::cleanup::logged("removing the cgroup of the failed start", cgroup.remove());
            return Err(e);
        }
    };
    crate::fault::reached(crate::fault::SpawnStep::CgroupMade.name());

    let (sync_r, sync_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    // The parent's mounts for a container in a new user namespace go over this.
    let mounts_sock = if new_userns {
        Some(
            nix::sys::socket::socketpair(
                nix::sys::socket::AddressFamily::Unix,
                nix::sys::socket::SockType::SeqPacket,
                None,
                nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            )
            .map_err(|e| RuntimeError::sys("socketpair", e))?,
        )
    } else {
        None
    };
    // A new pid namespace comes from clone(CLONE_NEWPID): unshare(CLONE_NEWPID) would
    // leave this process unable to start threads, which frun's holder needs for logs.
    let mut clone_flags = CloneFlags::empty();
    if let Some(ns) = namespaces
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Pid)
    {
        match ns.path() {
            Some(path) => {
                let f = std::fs::File::open(path).map_err(|e| RuntimeError::OpenNamespace {
                    path: path.clone(),
                    cause: e,
                })?;
                nix::sched::setns(&f, CloneFlags::CLONE_NEWPID).map_err(|e| {
                    RuntimeError::JoinNamespace {
                        what: format!("{path:?}"),
                        cause: e.into(),
                    }
                })?;
            }
            None => clone_flags |= CloneFlags::CLONE_NEWPID,
        }
    }
    // The user namespace comes with the clone too, so that the pid namespace (and every
    // namespace the child makes) belongs to it: /proc can only be mounted by a process
    // privileged over the pid namespace's owner.
    // Namespaces to join by path (a network namespace made by frun's bridge, say) are
    // owned by this side's user namespace, which the child may not act in once it is in
    // its own: this process joins them for the clone to pass on, and goes back after.
    let mut rejoin = Vec::new();
    if new_userns {
        clone_flags |= CloneFlags::CLONE_NEWUSER;
        for ns in namespaces.iter() {
            let Some(path) = ns.path() else { continue };
            let (name, flag) = match ns.typ() {
                LinuxNamespaceType::Network => ("net", CloneFlags::CLONE_NEWNET),
                LinuxNamespaceType::Ipc => ("ipc", CloneFlags::CLONE_NEWIPC),
                LinuxNamespaceType::Uts => ("uts", CloneFlags::CLONE_NEWUTS),
                LinuxNamespaceType::Cgroup => ("cgroup", CloneFlags::CLONE_NEWCGROUP),
                other => {
                    return Err(RuntimeError::spec(
                        format!("linux.namespaces[{other:?}].path"),
                        "joining it by path is not supported with a new user namespace",
                    ))
                }
            };
            let open = |path: PathBuf| {
                std::fs::File::open(&path)
                    .map_err(|cause| RuntimeError::OpenNamespace { path, cause })
            };
            let own = open(format!("/proc/self/ns/{name}").into())?;
            let target = open(path.clone())?;
            rejoin.push((own, target, flag, path.clone()));
        }
    }
    let restore = |joined: &[(std::fs::File, std::fs::File, CloneFlags, PathBuf)]| {
        for (own, _, flag, _) in joined {
            // Going back to a namespace this process was in: nothing to refuse it.
            nix::sched::setns(own, *flag).expect("returning to this process's namespace");
        }
    };
    for (i, (_, target, flag, path)) in rejoin.iter().enumerate() {
        if let Err(e) = nix::sched::setns(target, *flag) {
            restore(&rejoin[..i]);
            return Err(RuntimeError::JoinNamespace {
                what: format!("{path:?}"),
                cause: e.into(),
            });
        }
    }
    // sysfs, made here while in the container's network namespace (see
    // `parent_makes_sysfs`).
    let sysfs: Result<std::collections::VecDeque<OwnedFd>, SetupError> =
        if new_userns && crate::userns::parent_makes_sysfs(spec) {
            spec.mounts()
                .iter()
                .flatten()
                .filter(|m| m.typ().as_deref() == Some("sysfs"))
                .map(crate::userns::detached_sysfs)
                .collect()
        } else {
            Ok(Default::default())
        };
    let sysfs = match sysfs {
        Ok(s) => s,
        Err(e) => {
            restore(&rejoin);
            return Err(e.into());
        }
    };

    let (parent_sync, parent_err) = (sync_w.as_raw_fd(), err_r.as_raw_fd());
    let gate = opts.start_gate.as_ref().map(|g| g.as_raw_fd());
    let console = opts.console_socket.as_ref().map(|c| c.as_raw_fd());
    let preserve_fds = opts.preserve_fds;
    let mut before_pivot = opts.before_pivot.take();
    let hook_sync = before_pivot.is_some();
    let parent_sock = mounts_sock.as_ref().map(|(p, _)| p.as_raw_fd());
    let child_sock = mounts_sock.as_ref().map(|(_, c)| c.as_raw_fd());
    let mut stdio = Some(stdio);
    let child_main = Box::new(|| -> isize {
        // SAFETY: these are the parent's ends of the pipes, copied into this process's
        // fd table by clone; closing the copies leaves the parent's open.
        unsafe {
            libc::close(parent_sync);
            libc::close(parent_err);
            if let Some(fd) = parent_sock {
                libc::close(fd);
            }
        }
        if let Some(Err(e)) = self_join.as_ref().map(|j| j.join()) {
            child::fail(&err_w, e);
        }
        let stdio = stdio.take().unwrap_or_default();
        for (fd, target) in [(stdio.stdin, 0), (stdio.stdout, 1), (stdio.stderr, 2)] {
            if let Some(fd) = fd {
                // SAFETY: dup2 onto a stdio number; `fd` is closed before exec.
                unsafe { libc::dup2(fd.as_raw_fd(), target) };
            }
        }
        child::run(ChildArgs {
            spec,
            rootfs: &cfg.rootfs,
            mountpoint: &cfg.mountpoint,
            seccomp: &seccomp,
            sync: sync_r.try_clone().expect("dup sync pipe"),
            errors: err_w.try_clone().expect("dup error pipe"),
            gate,
            console,
            userns_mounts: child_sock,
            sysctl: &sysctl,
            preserve_fds,
            hook_sync,
        })
    });
    // The child runs on this stack until it execs: room for the set-up's allocations.
    let mut stack = vec![0u8; 8 << 20];
    // SAFETY: single-threaded (checked above), no CLONE_VM: the child gets a copy of
    // this address space, as with fork, and runs `child_main` on `stack` in that copy.
    let child =
        unsafe { nix::sched::clone(child_main, &mut stack, clone_flags, Some(libc::SIGCHLD)) }
            .map_err(|e| RuntimeError::sys("clone", e));
    restore(&rejoin);
    let child = child?;
    crate::fault::reached(crate::fault::SpawnStep::Cloned.name());
    drop(stack);
    drop(stdio);
    drop(opts);
    drop(sync_r);
    drop(err_w);
    let parent_sock = mounts_sock.map(|(p, c)| {
        drop(c);
        p
    });
    if let Some(sock) = parent_sock {
        let made = prepare_userns(child, spec, &cfg.rootfs, sysfs, &uid_maps, &gid_maps, &sock);
        if let Err(e) = made {
            let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
            let _ = waitpid(child, None);
            crate::cleanup::logged("removing the cgroup of the failed start", cgroup.remove());
            return Err(e);
        }
    }
    let add = self_join.is_none().then_some(&cgroup);
    drop(self_join);
    let hooks = before_pivot.as_mut().map(|f| f as &mut dyn FnMut(i32) -> _);
    if let Err(e) = handshake_with(child, add, linux.resources().as_ref(), sync_w, err_r, hooks) {
        // The cgroup was made for this container alone.
        crate::cleanup::logged("removing the cgroup of the failed start", cgroup.remove());
        return Err(e);
    }
    Ok(Started {
        pid: child.as_raw(),
        cgroup,
    })
}

/// The parent's half of a start in a new user namespace, before the child goes on: its
/// uid and gid maps, then the mounts it could not make itself, sent over `sock`.
fn prepare_userns(
    child: Pid,
    spec: &Spec,
    rootfs: &RootfsSource,
    sysfs: std::collections::VecDeque<OwnedFd>,
    uid_maps: &[oci_spec::runtime::LinuxIdMapping],
    gid_maps: &[oci_spec::runtime::LinuxIdMapping],
    sock: &OwnedFd,
) -> Result<(), RuntimeError> {
    crate::userns::write_maps(child.as_raw(), uid_maps, gid_maps)?;
    let path = format!("/proc/{child}/ns/user");
    let userns = std::fs::File::open(&path).map_err(|cause| RuntimeError::OpenNamespace {
        path: path.into(),
        cause,
    })?;
    let fds = crate::userns::premade_mounts(rootfs, spec, sysfs, &userns, uid_maps, gid_maps)?;
    Ok(crate::userns::send_mounts(sock, &fds)?)
}

/// The parent's half of a start: put `child` into `cgroup` (with `resources`) unless it
/// joins by itself (`None`), let it go on, and read its verdict from the error pipe (EOF:
/// it got as far as it should). On failure the child is killed and reaped.
pub(crate) fn handshake(
    child: Pid,
    cgroup: Option<&Cgroup>,
    resources: Option<&oci_spec::runtime::LinuxResources>,
    sync_w: OwnedFd,
    err_r: OwnedFd,
) -> Result<(), RuntimeError> {
    handshake_with(child, cgroup, resources, sync_w, err_r, None)
}

type HookFn<'a> = &'a mut dyn FnMut(i32) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// [`handshake`], running `hooks` when the child stops for them (a NUL byte on the
/// error pipe, see `child::wait_for_hooks`) and then letting it go on.
fn handshake_with(
    child: Pid,
    cgroup: Option<&Cgroup>,
    resources: Option<&oci_spec::runtime::LinuxResources>,
    sync_w: OwnedFd,
    err_r: OwnedFd,
    mut hooks: Option<HookFn<'_>>,
) -> Result<(), RuntimeError> {
    let fail = |e: RuntimeError| {
        let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
        let _ = waitpid(child, None);
        e
    };
    if let Some(cgroup) = cgroup {
        cgroup.add(child.as_raw(), resources).map_err(fail)?;
    }
    // A child that failed before reading this (joining its cgroup) has reported why.
    let mut sync = std::fs::File::from(sync_w);
    let sent = sync.write_all(b"1");
    let mut err = std::fs::File::from(err_r);
    let mut msg = Vec::new();
    if let Some(hooks) = hooks.as_mut() {
        let mut first = [0u8; 1];
        if err.read(&mut first).unwrap_or(0) == 1 {
            if first[0] == 0 {
                if let Err(e) = hooks(child.as_raw()) {
                    return Err(fail(RuntimeError::Hook(e)));
                }
                sync.write_all(b"2")
                    .map_err(|e| fail(RuntimeError::sys("resuming after the hooks", e)))?;
            } else {
                msg.push(first[0]);
            }
        }
    }
    let _ = err.read_to_end(&mut msg);
    if !msg.is_empty() {
        return Err(fail(SetupError::from_wire(&msg).into()));
    }
    sent.map_err(|e| fail(RuntimeError::sys("starting the process", e)))
}

/// What a container that keeps the runtime's mount namespace can have: its root is the
/// bundle's directory, entered by `chroot`, and nothing is mounted, since a mount made
/// there would be made in the runtime's (the host's) namespace and outlive the container
/// (runc makes them; frun refuses).
fn no_mount_namespace(
    spec: &Spec,
    rootfs: &RootfsSource,
    new_userns: bool,
) -> Result<(), RuntimeError> {
    let refuse = |field: &str| {
        Err(RuntimeError::spec(
            field,
            "not possible without a mount namespace (linux.namespaces has no mount): it \
             would be made in the runtime's own mount namespace",
        ))
    };
    if !matches!(rootfs, RootfsSource::Dir(_)) {
        return refuse("root (an overlay root filesystem)");
    }
    if new_userns {
        return refuse("linux.namespaces[user]");
    }
    if let Some(m) = spec.mounts().iter().flatten().next() {
        return refuse(&format!("mounts[] (the first on {:?})", m.destination()));
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        return refuse("root.readonly");
    }
    let linux = spec.linux().clone().unwrap_or_default();
    if linux.masked_paths().iter().flatten().next().is_some() {
        return refuse("linux.maskedPaths");
    }
    if linux.readonly_paths().iter().flatten().next().is_some() {
        return refuse("linux.readonlyPaths");
    }
    if linux.rootfs_propagation().is_some() {
        return refuse("linux.rootfsPropagation");
    }
    Ok(())
}

pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), RuntimeError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| RuntimeError::sys("pipe", e))
}

/// Waits for the container's first process and says how it ended.
pub fn wait(started: &Started) -> Result<ExitState, RuntimeError> {
    loop {
        match waitpid(Pid::from_raw(started.pid), None) {
            Ok(WaitStatus::Exited(_, code)) => {
                let oom_kills = started.cgroup.oom_kills();
                return Ok(ExitState {
                    code,
                    signal: None,
                    oom_killed: oom_kills > 0,
                    oom_kills,
                });
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                let oom_kills = started.cgroup.oom_kills();
                return Ok(ExitState {
                    code: 128 + sig as i32,
                    signal: Some(sig as i32),
                    oom_killed: oom_kills > 0,
                    oom_kills,
                });
            }
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(RuntimeError::sys("waiting for the container", e)),
        }
    }
}
