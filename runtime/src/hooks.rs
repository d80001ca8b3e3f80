//! OCI hooks: programs the spec names, run at points of a container's life with its
//! state (JSON) on stdin. This module runs one hook, in the runtime's namespaces or in
//! the container's; *when* each kind runs and what its failure means is the caller's
//! (frun-oci's lifecycle), as the runtime-spec lays it down.
//!
//! The state is given as a memory file on stdin and the hook's output goes to another,
//! read once it has exited: with pipes, a large state that the hook does not read, or
//! output that nobody reads while waiting, would stall both sides past any timeout. The
//! wait is on a pidfd with the hook's `timeout`; a hook past it is killed.

use nix::sched::CloneFlags;
use oci_spec::runtime::Hook;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Where a hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookNamespaces {
    /// The runtime's own (prestart, createRuntime, poststart, poststop).
    Runtime,
    /// Those of the container whose process has this pid (createContainer,
    /// startContainer): its mount namespace (so paths are the container's once it has
    /// pivoted), pid, network, IPC, UTS, cgroup and user namespaces.
    Container(i32),
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The OS error is in the message, not a `source()`: `{err:#}` prints it once.
    #[error("hook {path:?}: {op}: {cause}")]
    Io {
        path: PathBuf,
        op: &'static str,
        cause: std::io::Error,
    },
    #[error("hook {path:?}: timed out after {secs} s (killed){output}")]
    Timeout {
        path: PathBuf,
        secs: i64,
        output: String,
    },
    #[error("hook {path:?}: {status}{output}")]
    Failed {
        path: PathBuf,
        status: std::process::ExitStatus,
        output: String,
    },
    #[error("hook {path:?}: timeout must be above 0, not {secs}")]
    BadTimeout { path: PathBuf, secs: i64 },
}

/// Runs `hook` with `state` on its stdin and waits for it (at most its `timeout`).
pub fn run(hook: &Hook, state: &[u8], ns: HookNamespaces) -> Result<(), HookError> {
    let path = hook.path().clone();
    let io = |op: &'static str| {
        let path = path.clone();
        move |cause: std::io::Error| HookError::Io {
            path: path.clone(),
            op,
            cause,
        }
    };
    if let Some(secs) = hook.timeout() {
        if secs <= 0 {
            return Err(HookError::BadTimeout { path, secs });
        }
    }

    // 1. The command: argv as given (args[0] is argv[0]), only the hook's environment.
    let args = hook.args().clone().unwrap_or_default();
    let mut cmd = Command::new(&path);
    if let Some(a0) = args.first() {
        cmd.arg0(a0);
    }
    cmd.args(args.iter().skip(1)).env_clear();
    for e in hook.env().iter().flatten() {
        match e.split_once('=') {
            Some((k, v)) => cmd.env(k, v),
            None => cmd.env(e, ""),
        };
    }
    let out = rustix::fs::memfd_create(c"frun-hook-output", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| io("making its output file")(e.into()))?;
    let out_file = std::fs::File::from(out);
    let mut state_file = std::fs::File::from(
        rustix::fs::memfd_create(c"frun-hook-state", rustix::fs::MemfdFlags::CLOEXEC)
            .map_err(|e| io("making its state file")(e.into()))?,
    );
    state_file
        .write_all(state)
        .and_then(|()| state_file.rewind())
        .map_err(io("writing its state file"))?;
    cmd.stdin(state_file)
        .stdout(out_file.try_clone().map_err(io("dup"))?)
        .stderr(out_file.try_clone().map_err(io("dup"))?);

    // 2. The container's namespaces: opened now, joined between fork and exec (so the
    //    hook's path is looked up in the container's mount namespace). The pid namespace
    //    applies to children only: this process enters it for the spawn, then goes back.
    let mut own_pidns = None;
    // Open until the spawn is done.
    let mut joins: Vec<(OwnedFd, CloneFlags)> = Vec::new();
    if let HookNamespaces::Container(pid) = ns {
        let open =
            |name: &str| std::fs::File::open(format!("/proc/{pid}/ns/{name}")).map(OwnedFd::from);
        for (name, flag) in [
            ("cgroup", CloneFlags::CLONE_NEWCGROUP),
            ("ipc", CloneFlags::CLONE_NEWIPC),
            ("uts", CloneFlags::CLONE_NEWUTS),
            ("net", CloneFlags::CLONE_NEWNET),
            ("mnt", CloneFlags::CLONE_NEWNS),
        ] {
            joins.push((
                open(name).map_err(io("opening the container's namespaces"))?,
                flag,
            ));
        }
        let theirs = open("user").map_err(io("opening the container's user namespace"))?;
        let ours =
            std::fs::File::open("/proc/self/ns/user").map_err(io("opening /proc/self/ns/user"))?;
        if !same_file(&theirs, &ours) {
            joins.push((theirs, CloneFlags::CLONE_NEWUSER));
        }
        let raw: Vec<(i32, CloneFlags)> = joins.iter().map(|(f, c)| (f.as_raw_fd(), *c)).collect();
        // SAFETY: the closure runs between fork and exec and only makes system calls
        // (setns, chdir) on fds and a static string that live until the spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                for (fd, flag) in &raw {
                    if libc::setns(*fd, flag.bits()) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if libc::chdir(c"/".as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        own_pidns = Some(
            std::fs::File::open("/proc/self/ns/pid").map_err(io("opening /proc/self/ns/pid"))?,
        );
        let pidns = std::fs::File::open(format!("/proc/{pid}/ns/pid"))
            .map_err(io("opening the container's pid namespace"))?;
        nix::sched::setns(&pidns, CloneFlags::CLONE_NEWPID)
            .map_err(|e| io("joining the container's pid namespace")(e.into()))?;
    }
    let spawned = cmd.spawn();
    drop(joins);
    if let Some(own) = &own_pidns {
        // Going back to a namespace this process was in: nothing refuses it.
        nix::sched::setns(own, CloneFlags::CLONE_NEWPID)
            .expect("returning to the own pid namespace");
    }
    let mut child = spawned.map_err(io("starting"))?;

    // 3. The wait.
    let timeout = hook.timeout().map(|s| Duration::from_secs(s as u64));
    let status = match wait(&mut child, timeout).map_err(io("waiting"))? {
        Some(st) => st,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HookError::Timeout {
                path,
                secs: hook.timeout().unwrap_or(0),
                output: output(out_file),
            });
        }
    };
    if !status.success() {
        return Err(HookError::Failed {
            path,
            status,
            output: output(out_file),
        });
    }
    Ok(())
}

fn same_file(a: &impl AsFd, b: &impl AsFd) -> bool {
    match (rustix::fs::fstat(a), rustix::fs::fstat(b)) {
        (Ok(a), Ok(b)) => a.st_ino == b.st_ino && a.st_dev == b.st_dev,
        _ => false,
    }
}

/// The hook's output, for an error message: ": " and its last 2 KiB, or nothing.
fn output(mut f: std::fs::File) -> String {
    let mut buf = Vec::new();
    let _ = f.rewind();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let start = text.len().saturating_sub(2048);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    format!(": {}", &text[start..])
}

/// Waits for `child` for at most `timeout` (forever without one): `None` on timeout.
fn wait(
    child: &mut std::process::Child,
    timeout: Option<Duration>,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    let Some(timeout) = timeout else {
        return child.wait().map(Some);
    };
    // SAFETY: pidfd_open takes a pid and flags; the fd it returns is owned here.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd from pidfd_open, owned by nobody else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut fds = [nix::poll::PollFd::new(
            pidfd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        match nix::poll::poll(
            &mut fds,
            nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX),
        ) {
            Ok(0) => return Ok(None),
            Ok(_) => return child.wait().map(Some),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(v: serde_json::Value) -> Hook {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_hook_gets_the_state_on_stdin_its_args_and_only_its_env() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let h = hook(serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("cat > {0}; echo \"$0 $1 $X ${{HOME:-none}}\" >> {0}", out.display()), "zero", "one"],
            "env": ["X=ex"],
        }));
        run(&h, b"{\"id\":\"c\"}", HookNamespaces::Runtime).unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "{\"id\":\"c\"}zero one ex none\n"
        );
    }

    #[test]
    fn failures_say_how_with_the_hooks_output() {
        let h = hook(serde_json::json!({
            "path": "/bin/sh", "args": ["sh", "-c", "echo nope >&2; exit 3"],
        }));
        let e = run(&h, b"{}", HookNamespaces::Runtime).unwrap_err();
        assert!(matches!(e, HookError::Failed { .. }), "{e}");
        assert!(e.to_string().ends_with(": nope"), "{e}");

        let h = hook(serde_json::json!({
            "path": "/bin/sh", "args": ["sh", "-c", "echo started; exec sleep 100"], "timeout": 1,
        }));
        let e = run(&h, b"{}", HookNamespaces::Runtime).unwrap_err();
        assert!(matches!(e, HookError::Timeout { secs: 1, .. }), "{e}");
        assert!(e.to_string().contains("started"), "{e}");

        let h = hook(serde_json::json!({"path": "/bin/true", "timeout": 0}));
        assert!(matches!(
            run(&h, b"{}", HookNamespaces::Runtime),
            Err(HookError::BadTimeout { secs: 0, .. })
        ));
        let h = hook(serde_json::json!({"path": "/no/such/hook"}));
        let e = run(&h, b"{}", HookNamespaces::Runtime).unwrap_err();
        assert!(matches!(e, HookError::Io { op: "starting", .. }), "{e}");
        // The OS error once, as `{err:#}` prints the chain.
        let all = crate::error::chain(&e);
        assert_eq!(all.matches("No such file or directory").count(), 1, "{all}");
    }

    #[test]
    fn a_hook_that_does_not_read_its_stdin_is_no_failure() {
        let h = hook(serde_json::json!({"path": "/bin/true"}));
        run(&h, &vec![b'x'; 1 << 20], HookNamespaces::Runtime).unwrap();
    }
}
