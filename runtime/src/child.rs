//! The container's first process, between `fork` and `execve`: namespaces, root
//! filesystem, then the process itself (limits, user, capabilities, no_new_privs,
//! seccomp, file descriptors, working directory). Any failure is written to the error
//! pipe for the parent to report; success is the pipe closing on `execve`.
//!
//! Order matters and follows runc: rlimits and oom_score_adj while still privileged;
//! the user switch with KEEPCAPS so that the capability sets can be set afterwards;
//! no_new_privs before seccomp (loading a filter needs it, or CAP_SYS_ADMIN); seccomp
//! last, so that only `execve` runs under it; fds closed before the `chdir` so that a
//! working directory of `/proc/self/fd/N` cannot reach a host directory (CVE-2024-21626).

use nix::sched::CloneFlags;
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{LinuxNamespaceType, PosixRlimitType, Process, Spec};
use seccompiler::BpfProgram;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Cause, SetupError};
use crate::rootfs::{self, RootfsSource};

type R<T> = Result<T, SetupError>;

/// Reports `err` on the error pipe (as data: the parent reads back the same variant)
/// and exits: the end of a failed child.
pub(crate) fn fail(errors: &OwnedFd, err: SetupError) -> ! {
    if let Ok(f) = errors.try_clone() {
        let _ = std::fs::File::from(f).write_all(&err.to_wire());
    }
    // SAFETY: _exit skips atexit handlers and destructors, which belong to the parent
    // process this one was forked from.
    unsafe { libc::_exit(127) }
}

/// Waits for the parent's go-ahead (it has put this process into the cgroup).
pub(crate) fn wait_for_parent(sync: &OwnedFd) -> R<()> {
    let mut byte = [0u8; 1];
    let waited = |e: std::io::Error| SetupError::WaitForParent { cause: e.into() };
    std::fs::File::from(sync.try_clone().map_err(waited)?)
        .read_exact(&mut byte)
        .map_err(waited)
}

pub(crate) struct ChildArgs<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a RootfsSource,
    pub mountpoint: &'a Path,
    pub seccomp: &'a [BpfProgram],
    pub sync: OwnedFd,
    pub errors: OwnedFd,
    /// The start gate fd ([`crate::SpawnOptions::start_gate`]), if any.
    pub gate: Option<i32>,
    /// The console socket ([`crate::SpawnOptions::console_socket`]), if any.
    pub console: Option<i32>,
    /// In a new user namespace: the socket the parent sends its premade mounts over.
    pub userns_mounts: Option<i32>,
    /// The sysctls to write once in the new namespaces (see [`crate::sysctl`]).
    pub sysctl: &'a [crate::sysctl::Sysctl],
    /// Fds 3 to 3+N-1 stay open for the container's program (`--preserve-fds`).
    pub preserve_fds: u32,
    /// Stop before `pivot_root` for the parent's hooks ([`crate::SpawnOptions::before_pivot`]).
    pub hook_sync: bool,
}

/// Never returns: `execve`s the container's process or exits 127 after reporting.
pub(crate) fn run(args: ChildArgs<'_>) -> ! {
    match setup(&args) {
        Ok(never) => match never {},
        Err(e) => fail(&args.errors, e),
    }
}

fn setup(a: &ChildArgs<'_>) -> R<std::convert::Infallible> {
    let spec = a.spec;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| SetupError::spec("process", "missing"))?;

    // 1. Wait until the parent has put this process into the cgroup: everything from
    //    here on is accounted and limited.
    wait_for_parent(&a.sync)?;

    // 1b. In a new user namespace (the parent has written its maps by now): become its
    //     root, take the mounts the parent made, and note this process's cgroups while
    //     /proc/self/cgroup still shows them from the host's side (for binding them in,
    //     since cgroup v1 cannot be mounted in a user namespace).
    let userns = match a.userns_mounts {
        Some(sock) => {
            // SAFETY: the child's own copy of its end of the socket pair, used once.
            let sock = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(sock) };
            let premade = crate::userns::recv_mounts(&sock)?;
            drop(sock);
            let read = |p: &str| {
                std::fs::read_to_string(p).map_err(|e| SetupError::Read {
                    path: p.into(),
                    cause: e.into(),
                })
            };
            Some(crate::userns::Userns {
                premade: premade.into(),
                cgroups: read("/proc/self/cgroup")?,
                mountinfo: read("/proc/self/mountinfo")?,
                host_paths: Default::default(),
                sysfs_premade: crate::userns::parent_makes_sysfs(spec),
            })
        }
        None => None,
    };

    // 2. A session of its own: the terminal's Ctrl-C goes to frun, which stops the
    //    container properly, not straight to a pid 1 that may ignore it.
    let _ = nix::unistd::setsid();

    // 3. Namespaces: join those given by path, create the others (the pid namespace was
    //    made by the parent, since it applies to children only).
    let linux = spec.linux().clone().unwrap_or_default();
    let mut unshare = CloneFlags::empty();
    let mut new_net = false;
    for ns in linux.namespaces().iter().flatten() {
        let flag = match ns.typ() {
            LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
            LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
            LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
            LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
            LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
            LinuxNamespaceType::Pid | LinuxNamespaceType::User | LinuxNamespaceType::Time => {
                continue
            }
        };
        match ns.path() {
            // In a new user namespace, the parent joined those for the clone.
            Some(_) if a.userns_mounts.is_some() => {}
            Some(path) => {
                let f = std::fs::File::open(path).map_err(|e| SetupError::OpenNamespace {
                    path: path.clone(),
                    cause: e.into(),
                })?;
                nix::sched::setns(&f, flag).map_err(|e| SetupError::JoinNamespace {
                    what: format!("{path:?}"),
                    cause: e.into(),
                })?;
            }
            None => {
                unshare |= flag;
                new_net |= flag == CloneFlags::CLONE_NEWNET;
            }
        }
    }
    nix::sched::unshare(unshare).map_err(|e| SetupError::Unshare { cause: e.into() })?;
    if new_net {
        loopback_up()?;
    }

    // 3b. In a user namespace, this process still acts on files as the host's root
    //     (its ids are not mapped yet), which the container's root will not be: open
    //     the host paths to mount (the mount point, bind sources in private
    //     directories) now, then become the namespace's root.
    let mut userns = userns;
    if let Some(u) = userns.as_mut() {
        u.host_paths = crate::userns::open_host_paths(spec, a.rootfs, a.mountpoint)?;
        let root = |id: &str| {
            let id = id.to_string();
            move |e: nix::errno::Errno| SetupError::BecomeRoot {
                id,
                cause: e.into(),
            }
        };
        nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .map_err(root("gid"))?;
        nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .map_err(root("uid"))?;
    }

    // 3c. linux.sysctl, through the host's /proc/sys while it is still reachable: what
    //     a namespaced key shows is the writer's namespace's (the new ones, by now).
    crate::sysctl::apply(a.sysctl)?;

    // 4. The root filesystem, in the new mount namespace; without one (the spec may
    //    leave the runtime's), the bundle's directory becomes the root by chroot alone,
    //    with nothing mounted (checked by `spawn`).
    let has_mount_ns = linux
        .namespaces()
        .iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::Mount);
    if has_mount_ns {
        let root = rootfs::prepare(spec, a.rootfs, a.mountpoint, userns)?;
        // 4b. The parent's hooks (prestart, createRuntime, createContainer) run now: the
        //     mounts are made, the old root is still there for them.
        if a.hook_sync {
            wait_for_hooks(a)?;
        }
        rootfs::pivot(&root)?;
        drop(root);
        rootfs::finish(spec)?;
        // Last: masking binds /dev/null, which an unbindable /dev refuses.
        rootfs::set_root_propagation(spec)?;
    } else {
        if a.hook_sync {
            wait_for_hooks(a)?;
        }
        rootfs::chroot(a.rootfs)?;
    }
    if let Some(h) = spec.hostname() {
        nix::unistd::sethostname(h).map_err(|e| SetupError::Hostname {
            hostname: h.clone(),
            cause: e.into(),
        })?;
    }

    if let (Some(socket), true) = (a.console, process.terminal().unwrap_or(false)) {
        let size = process
            .console_size()
            .as_ref()
            .map(|s| (s.height() as u32, s.width() as u32));
        crate::console::setup(socket, size)?;
    }

    exec_process_gated(
        process,
        a.seccomp,
        a.errors.as_raw_fd(),
        a.gate,
        a.preserve_fds,
    )
}

/// Tells the parent that the set-up reached the point where hooks run (a NUL byte on
/// the error pipe, which no error report starts with), then waits for its go-ahead.
fn wait_for_hooks(a: &ChildArgs<'_>) -> R<()> {
    let sync = |e: std::io::Error| SetupError::HookSync { cause: e.into() };
    std::fs::File::from(a.errors.try_clone().map_err(sync)?)
        .write_all(&[0])
        .map_err(sync)?;
    let mut byte = [0u8; 1];
    std::fs::File::from(a.sync.try_clone().map_err(sync)?)
        .read_exact(&mut byte)
        .map_err(sync)
}

/// Turns this process into the container's process: limits, user, capabilities,
/// no_new_privs, seccomp, file descriptors, working directory, `execve`. Shared by the
/// first process and by `exec`. `keep_fd` is the error pipe.
pub(crate) fn exec_process(
    process: &Process,
    seccomp: &[BpfProgram],
    keep_fd: i32,
    preserve_fds: u32,
) -> R<std::convert::Infallible> {
    exec_process_gated(process, seccomp, keep_fd, None, preserve_fds)
}

/// [`exec_process`], stopping at a start gate (if given) once everything but
/// no_new_privs, seccomp and `execve` is done: the error pipe `keep_fd` is closed (the
/// parent reads EOF: set-up succeeded), then one byte from `gate` lets it go on.
pub(crate) fn exec_process_gated(
    process: &Process,
    seccomp: &[BpfProgram],
    keep_fd: i32,
    gate: Option<i32>,
    preserve_fds: u32,
) -> R<std::convert::Infallible> {
    // 5. The process: limits while still privileged.
    for rl in process.rlimits().iter().flatten() {
        set_rlimit(rl.typ(), rl.soft(), rl.hard())?;
    }
    if let Some(adj) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string()).map_err(|e| {
            SetupError::OomScoreAdj {
                value: adj,
                cause: e.into(),
            }
        })?;
    }
    let user = process.user();
    let umask = user.umask().unwrap_or(0o022);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
        umask as libc::mode_t,
    ));

    // 6. The executable, found before privileges go (PATH of the container's env).
    let env: Vec<String> = process.env().clone().unwrap_or_default();
    let argv: Vec<String> = process.args().clone().unwrap_or_default();
    let arg0 = argv
        .first()
        .ok_or_else(|| SetupError::spec("process.args", "empty"))?;
    let exe = find_executable(arg0, &env)?;

    // 6b. Without no_new_privs, loading a seccomp filter takes CAP_SYS_ADMIN, which
    //     goes with the user switch: load it now (runc's order). The rest of the set-up
    //     then runs under it, as it does in runc.
    let nnp = process.no_new_privileges().unwrap_or(false);
    if !nnp {
        load_seccomp(seccomp)?;
    }

    // 7. User and groups, keeping capabilities across the switch.
    let caps_spec = process.capabilities().clone();
    if let Some(c) = &caps_spec {
        let keep = to_caps(c.bounding());
        for cap in caps::all() {
            if !keep.contains(&cap) {
                caps::drop(None, caps::CapSet::Bounding, cap).map_err(|e| {
                    SetupError::DropBounding {
                        cap: cap.to_string(),
                        cause: e.into(),
                    }
                })?;
            }
        }
    }
    let keepcaps = |e: nix::errno::Errno| SetupError::KeepCaps { cause: e.into() };
    nix::sys::prctl::set_keepcaps(true).map_err(keepcaps)?;
    let groups: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&groups).map_err(|e| SetupError::SetGroups {
        gids: groups.iter().map(|g| g.as_raw()).collect(),
        cause: e.into(),
    })?;
    let gid = Gid::from_raw(user.gid());
    let uid = Uid::from_raw(user.uid());
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| SetupError::SetGid {
        gid: gid.as_raw(),
        cause: e.into(),
    })?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| SetupError::SetUid {
        uid: uid.as_raw(),
        cause: e.into(),
    })?;
    nix::sys::prctl::set_keepcaps(false).map_err(keepcaps)?;
    if let Some(c) = &caps_spec {
        let failed = |set: String| {
            move |e: caps::errors::CapsError| SetupError::Capabilities {
                set,
                cause: e.into(),
            }
        };
        let set = |set: caps::CapSet, which: &Option<oci_spec::runtime::Capabilities>| -> R<()> {
            caps::set(None, set, &to_caps(which)).map_err(failed(format!("{set:?}")))
        };
        set(caps::CapSet::Effective, c.effective())?;
        set(caps::CapSet::Permitted, c.permitted())?;
        set(caps::CapSet::Inheritable, c.inheritable())?;
        caps::clear(None, caps::CapSet::Ambient).map_err(failed("Ambient".into()))?;
        for cap in to_caps(c.ambient()) {
            caps::raise(None, caps::CapSet::Ambient, cap)
                .map_err(failed(format!("Ambient ({cap})")))?;
        }
    }

    // 8. File descriptors: only stdio and the error pipe survive; then the working
    //    directory, which must resolve inside the container.
    close_fds_except(&[Some(keep_fd), gate], preserve_fds)?;
    let cwd = PathBuf::from(process.cwd());
    if !cwd.is_absolute() {
        return Err(SetupError::RelativeWorkingDir { path: cwd });
    }
    let in_cwd = |e: Cause| SetupError::WorkingDir {
        path: cwd.clone(),
        cause: e,
    };
    std::env::set_current_dir(&cwd).map_err(|e| in_cwd(e.into()))?;
    let real = nix::unistd::getcwd().map_err(|e| in_cwd(e.into()))?;
    if !real.is_absolute() || real.as_os_str().as_bytes().starts_with(b"(unreachable)") {
        return Err(SetupError::WorkingDirOutside { path: cwd });
    }

    let c = |s: &[u8]| {
        CString::new(s).map_err(|_| SetupError::NulByte {
            value: String::from_utf8_lossy(s).into_owned(),
        })
    };
    let argv_c = argv
        .iter()
        .map(|s| c(s.as_bytes()))
        .collect::<R<Vec<_>>>()?;
    let env_c = env.iter().map(|s| c(s.as_bytes())).collect::<R<Vec<_>>>()?;
    let exe_c = c(exe.as_os_str().as_bytes())?;

    // The start gate: set-up is done and reported; wait for the go-ahead. A failure
    // after it has nobody to report to but the container's stderr.
    let Some(gate) = gate else {
        return finish_exec(nnp, seccomp, &exe_c, &argv_c, &env_c, arg0);
    };
    wait_at_gate(keep_fd, gate);
    let Err(e) = finish_exec(nnp, seccomp, &exe_c, &argv_c, &env_c, arg0);
    let _ = writeln!(std::io::stderr(), "frun: starting the container: {e}");
    // SAFETY: as in `fail`.
    unsafe { libc::_exit(127) }
}

/// 9. Signals as a new process has them, no_new_privs, then seccomp (unless loaded
///    early, without no_new_privs): nothing after this but execve.
fn finish_exec(
    nnp: bool,
    seccomp: &[BpfProgram],
    exe: &CString,
    argv: &[CString],
    env: &[CString],
    arg0: &str,
) -> R<std::convert::Infallible> {
    reset_signals()?;
    if nnp {
        nix::sys::prctl::set_no_new_privs()
            .map_err(|e| SetupError::NoNewPrivs { cause: e.into() })?;
        load_seccomp(seccomp)?;
    }
    let e = nix::unistd::execve(exe, argv, env).unwrap_err();
    Err(SetupError::Exec {
        arg0: arg0.to_string(),
        cause: e.into(),
    })
}

fn load_seccomp(seccomp: &[BpfProgram]) -> R<()> {
    for prog in seccomp {
        crate::seccomp::load(prog).map_err(|e| SetupError::LoadSeccomp { cause: e.into() })?;
    }
    Ok(())
}

/// Default dispositions and an empty mask: an ignored signal and the mask survive
/// `execve`, and frun's are not the container's. Rust ignores SIGPIPE in every binary (so
/// `yes | head` in a container got EPIPE instead of dying of it); glibc's posix_spawn
/// leaves its internal signals 32 and 33 ignored in the spawned program; frun's holder blocks
/// SIGINT, SIGTERM and SIGHUP to turn them into a stop.
fn reset_signals() -> R<()> {
    /// The kernel's `struct sigaction` (x86-64, arm64): glibc's `sigaction` refuses to
    /// touch its internal signals, so the system call is made directly.
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: libc::c_ulong,
        restorer: usize,
        mask: u64,
    }
    let default = KernelSigaction {
        handler: 0, // SIG_DFL
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in (1..=64).filter(|s| *s != libc::SIGKILL && *s != libc::SIGSTOP) {
        // SAFETY: `default` is a valid kernel sigaction (SIG_DFL: no handler code runs in
        // this process), the old action is not asked for, 8 is the kernel's sigset size.
        let r = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &default as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            )
        };
        if r != 0 {
            return Err(SetupError::ResetSignal {
                signal: sig,
                cause: Cause::last_os_error(),
            });
        }
    }
    let none = nix::sys::signal::SigSet::empty();
    nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&none), None)
        .map_err(|e| SetupError::SignalMask { cause: e.into() })
}

fn to_caps(
    set: &Option<oci_spec::runtime::Capabilities>,
) -> std::collections::HashSet<caps::Capability> {
    set.iter()
        .flatten()
        .filter_map(|c| {
            let name = serde_json::to_value(c).ok()?;
            name.as_str()?.parse::<caps::Capability>().ok()
        })
        .collect()
}

/// Sets an rlimit; a hard limit above the current one (which needs CAP_SYS_RESOURCE,
/// missing on some hosts) is clamped to it rather than failing the container.
fn set_rlimit(typ: PosixRlimitType, soft: u64, hard: u64) -> R<()> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let res = match typ {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    };
    let failed = |limit: String| {
        move |e: nix::errno::Errno| SetupError::Rlimit {
            limit,
            cause: e.into(),
        }
    };
    match setrlimit(res, soft, hard) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EPERM) => {
            let (_, cur_hard) = getrlimit(res).map_err(failed(format!("{typ:?} (getrlimit)")))?;
            let hard = hard.min(cur_hard);
            setrlimit(res, soft.min(hard), hard).map_err(failed(format!("{typ:?}")))
        }
        Err(e) => Err(failed(format!("{typ:?} {soft}/{hard}"))(e)),
    }
}

/// `arg0` if it has a slash, else the first executable file of that name on the
/// container's PATH.
fn find_executable(arg0: &str, env: &[String]) -> R<PathBuf> {
    if arg0.contains('/') {
        // An absolute path is checked now, as runc does, so that a missing command fails
        // the set-up (OCI `create`) rather than only the `execve` after `start`. A
        // relative one depends on the working directory, set later.
        if arg0.starts_with('/') {
            nix::unistd::access(arg0, nix::unistd::AccessFlags::X_OK).map_err(|e| {
                SetupError::Exec {
                    arg0: arg0.to_string(),
                    cause: e.into(),
                }
            })?;
        }
        return Ok(PathBuf::from(arg0));
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(arg0);
        if nix::unistd::access(&candidate, nix::unistd::AccessFlags::X_OK).is_ok()
            && candidate.metadata().map(|m| m.is_file()).unwrap_or(false)
        {
            return Ok(candidate);
        }
    }
    Err(SetupError::NotFound {
        arg0: arg0.to_string(),
    })
}

/// Closes the error pipe (set-up succeeded), then blocks until one byte comes through
/// `gate`. Any other outcome ends the process: nobody is waiting for an error report
/// any more.
fn wait_at_gate(errors: i32, gate: i32) {
    // SAFETY: `errors` is this process's own copy of the error pipe, not used again.
    unsafe { libc::close(errors) };
    let mut byte = 0u8;
    loop {
        // SAFETY: reads at most one byte into a local.
        let n = unsafe { libc::read(gate, (&mut byte as *mut u8).cast(), 1) };
        if n == 1 {
            break;
        }
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        // SAFETY: _exit, as in `fail`: nothing of the parent's to clean up here.
        unsafe { libc::_exit(1) }
    }
    // SAFETY: the gate fd is not used again.
    unsafe { libc::close(gate) };
}

/// Closes every fd but stdio, the `preserve` fds from 3 on, and those in `keep`.
fn close_fds_except(keep: &[Option<i32>], preserve: u32) -> R<()> {
    let close = |from: u32, to: u32| -> R<()> {
        if from > to {
            return Ok(());
        }
        // SAFETY: close_range only closes descriptors; the ones this process still
        // needs (stdio and `keep`) are outside the range.
        let r = unsafe { libc::syscall(libc::SYS_close_range, from, to, 0) };
        if r != 0 {
            return Err(SetupError::CloseFds {
                cause: Cause::last_os_error(),
            });
        }
        Ok(())
    };
    let mut keep: Vec<u32> = keep.iter().flatten().map(|&fd| fd as u32).collect();
    keep.sort_unstable();
    let mut from = 3u32.saturating_add(preserve);
    for fd in keep {
        if fd >= from {
            close(from, fd.saturating_sub(1))?;
            from = fd + 1;
        }
    }
    close(from, u32::MAX)
}

/// Brings up `lo` in a new network namespace, as Docker's `--network none` has it.
fn loopback_up() -> R<()> {
    // SAFETY: plain socket/ioctl calls on a zeroed ifreq whose name fits its buffer.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(SetupError::Loopback {
                cause: Cause::last_os_error(),
            });
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut ok = libc::ioctl(s, libc::SIOCGIFFLAGS, &mut req) == 0;
        if ok {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            ok = libc::ioctl(s, libc::SIOCSIFFLAGS, &req) == 0;
        }
        let err = std::io::Error::last_os_error();
        libc::close(s);
        if !ok {
            return Err(SetupError::Loopback { cause: err.into() });
        }
    }
    Ok(())
}
