//! Running another process in a running container (`frun exec`, the OCI `exec`): join
//! its namespaces and cgroup, then become a process like its first one.
//!
//! CVE-2019-5736: while this process is visible inside the container (after joining its
//! pid namespace, before `execve`), its `/proc/PID/exe` is frun itself. It is made
//! non-dumpable first, so that the container's root, without CAP_SYS_PTRACE, cannot open
//! that link, let alone write through it.

use nix::sched::CloneFlags;
use nix::unistd::ForkResult;
use oci_spec::runtime::{LinuxSeccomp, Process};
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::cgroup::Cgroup;
use crate::child;
use crate::error::{RuntimeError, SetupError};
use crate::spawn::{handshake, pipe, threads, Started, Stdio};

/// Optional parts of [`exec_with`].
#[derive(Default)]
pub struct ExecOptions {
    /// As [`crate::SpawnOptions::console_socket`]: with `process.terminal`, a pty of the
    /// container's devpts as stdio, its master end sent over this socket.
    pub console_socket: Option<std::os::fd::OwnedFd>,
    /// Fds 3 to 3+N-1 of this process stay open in the new one (`--preserve-fds`).
    pub preserve_fds: u32,
}

/// Starts `process` inside the container whose first process is `pid`.
pub fn exec(
    pid: i32,
    cgroup: &Path,
    process: &Process,
    seccomp: Option<&LinuxSeccomp>,
    stdio: Stdio,
) -> Result<Started, RuntimeError> {
    exec_with(pid, cgroup, process, seccomp, stdio, ExecOptions::default())
}

/// [`exec`] with options.
pub fn exec_with(
    pid: i32,
    cgroup: &Path,
    process: &Process,
    seccomp: Option<&LinuxSeccomp>,
    stdio: Stdio,
    opts: ExecOptions,
) -> Result<Started, RuntimeError> {
    if threads() != 1 {
        return Err(RuntimeError::NotSingleThreaded { op: "exec" });
    }
    let seccomp = match seccomp {
        Some(p) => crate::seccomp::compile(p)?,
        None => Vec::new(),
    };
    let cgroup = Cgroup::open(cgroup)?;
    // v1: the process moves itself into the container's cgroup (see `crate::cgroup`).
    let self_join = cgroup.prepare(None)?;
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| RuntimeError::sys("prctl(PR_SET_DUMPABLE)", e))?;
    // Open every namespace before joining any: joining the mount namespace changes what
    // /proc means.
    let mut nss = Vec::new();
    for (name, flag) in [
        ("cgroup", CloneFlags::CLONE_NEWCGROUP),
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ] {
        let path = format!("/proc/{pid}/ns/{name}");
        let f = std::fs::File::open(&path).map_err(|e| RuntimeError::ContainerGone {
            path: path.clone().into(),
            cause: e,
        })?;
        nss.push((f, flag));
    }
    // A container in a user namespace of its own: joined last, once every other
    // namespace has been joined with the host's privileges (a network namespace the
    // host made belongs to the host's user namespace).
    let userns = format!("/proc/{pid}/ns/user");
    let theirs = std::fs::File::open(&userns).map_err(|e| RuntimeError::ContainerGone {
        path: userns.clone().into(),
        cause: e,
    })?;
    let same = |a: &std::fs::File, b: &std::fs::File| -> bool {
        use std::os::unix::fs::MetadataExt;
        match (a.metadata(), b.metadata()) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        }
    };
    let open_own = |path: &str| {
        std::fs::File::open(path).map_err(|e| RuntimeError::OpenNamespace {
            path: path.into(),
            cause: e,
        })
    };
    let ours = open_own("/proc/self/ns/user")?;
    if !same(&theirs, &ours) {
        nss.push((theirs, CloneFlags::CLONE_NEWUSER));
    }
    // This process's own pid namespace, to go back to after the fork: with its
    // children's namespace left at the container's, it could not start threads.
    let own_pidns = open_own("/proc/self/ns/pid")?;
    let path = format!("/proc/{pid}/ns/pid");
    let pidns = std::fs::File::open(&path).map_err(|e| RuntimeError::ContainerGone {
        path: path.clone().into(),
        cause: e,
    })?;
    nix::sched::setns(&pidns, CloneFlags::CLONE_NEWPID).map_err(|e| {
        RuntimeError::JoinNamespace {
            what: path,
            cause: e.into(),
        }
    })?;
    let (sync_r, sync_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    // SAFETY: single-threaded (checked above).
    match unsafe { nix::unistd::fork() }.map_err(|e| RuntimeError::sys("fork", e))? {
        ForkResult::Child => {
            drop(sync_w);
            drop(err_r);
            for (fd, target) in [(stdio.stdin, 0), (stdio.stdout, 1), (stdio.stderr, 2)] {
                if let Some(fd) = fd {
                    // SAFETY: dup2 onto a stdio number.
                    unsafe { libc::dup2(fd.as_raw_fd(), target) };
                }
            }
            let r = (|| -> Result<std::convert::Infallible, SetupError> {
                if let Some(j) = &self_join {
                    j.join()?;
                }
                drop(self_join);
                child::wait_for_parent(&sync_r)?;
                let _ = nix::unistd::setsid();
                for (f, flag) in &nss {
                    nix::sched::setns(f, *flag).map_err(|e| SetupError::JoinNamespace {
                        what: format!("{flag:?}"),
                        cause: e.into(),
                    })?;
                }
                drop(nss);
                if let (Some(socket), true) = (
                    opts.console_socket.as_ref(),
                    process.terminal().unwrap_or(false),
                ) {
                    let size = process
                        .console_size()
                        .as_ref()
                        .map(|s| (s.height() as u32, s.width() as u32));
                    crate::console::setup(socket.as_raw_fd(), size)?;
                }
                child::exec_process(process, &seccomp, err_w.as_raw_fd(), opts.preserve_fds)
            })();
            match r {
                Ok(never) => match never {},
                Err(e) => child::fail(&err_w, e),
            }
        }
        ForkResult::Parent { child } => {
            let _ = nix::sched::setns(&own_pidns, CloneFlags::CLONE_NEWPID);
            drop(sync_r);
            drop(err_w);
            drop(stdio);
            drop(opts);
            let add = self_join.is_none().then_some(&cgroup);
            drop(self_join);
            handshake(child, add, None, sync_w, err_r)?;
            Ok(Started {
                pid: child.as_raw(),
                cgroup,
            })
        }
    }
}
