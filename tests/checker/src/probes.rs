//! "can": privileged operations, each tried in a forked child so that nothing changes in the
//! checker itself. Every value is "ok", an errno name ("EPERM"), or "signal SIGSYS" when the
//! child was killed (e.g. by a seccomp filter).

use crate::report::{hostname, temp_dir};
use crate::util::{last_errno_name, ok_or_errno, Fields};
use serde_json::Value;
use std::ffi::CString;
use std::path::Path;

fn errno() -> i32 {
    match std::io::Error::last_os_error().raw_os_error() {
        Some(e) if e > 0 && e < 255 => e,
        _ => 255,
    }
}

/// 0 when rc is not -1, else errno.
fn rc(rc: libc::c_long) -> i32 {
    if rc == -1 {
        errno()
    } else {
        0
    }
}

fn signal_name(s: i32) -> String {
    match s {
        libc::SIGSYS => "SIGSYS".into(),
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGABRT => "SIGABRT".into(),
        libc::SIGBUS => "SIGBUS".into(),
        libc::SIGTERM => "SIGTERM".into(),
        n => format!("{n}"),
    }
}

/// Runs probe in a forked child; probe returns 0 or an errno.
pub fn in_child(probe: impl FnOnce() -> i32) -> Result<Value, String> {
    // SAFETY: the checker is single-threaded; the child only makes syscalls and _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", last_errno_name()));
    }
    if pid == 0 {
        let code = probe();
        // SAFETY: leave the child without running any destructor or atexit handler.
        unsafe { libc::_exit(code) }
    }
    let mut st = 0;
    loop {
        // SAFETY: st is a valid int to fill.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r == pid {
            break;
        }
        if r < 0 && errno() != libc::EINTR {
            return Err(format!("waitpid: {}", last_errno_name()));
        }
    }
    if libc::WIFEXITED(st) {
        match libc::WEXITSTATUS(st) {
            255 => Err("probe failed without an errno".into()),
            c => Ok(ok_or_errno(c).into()),
        }
    } else if libc::WIFSIGNALED(st) {
        Ok(format!("signal {}", signal_name(libc::WTERMSIG(st))).into())
    } else {
        Err(format!("wait status {st:#x}"))
    }
}

pub fn can(f: &mut Fields) {
    // SAFETY: getpid/getppid cannot fail.
    let (pid, ppid) = unsafe { (libc::getpid(), libc::getppid()) };

    // mount a tmpfs on a fresh directory under /tmp (or /mnt), unmount it at once
    let (target, remove) = match temp_dir("mnt") {
        Some(t) => (Some(t), true),
        None if Path::new("/mnt").is_dir() => (CString::new("/mnt").ok(), false),
        None => (None, false),
    };
    match &target {
        Some(t) => f.set(
            "mount_tmpfs",
            in_child(|| {
                // SAFETY: valid NUL-terminated strings; a null data pointer is allowed.
                let r = unsafe {
                    libc::mount(
                        c"none".as_ptr(),
                        t.as_ptr(),
                        c"tmpfs".as_ptr(),
                        0,
                        std::ptr::null(),
                    )
                };
                if r != 0 {
                    return errno();
                }
                // SAFETY: t is the mount point we just mounted on.
                unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) };
                0
            }),
        ),
        None => f.set(
            "mount_tmpfs",
            Err("no directory to mount on (/tmp not writable, no /mnt)".into()),
        ),
    }
    if let (Some(t), true) = (&target, remove) {
        // SAFETY: t is the empty directory temp_dir made.
        unsafe { libc::rmdir(t.as_ptr()) };
    }

    // mknod /tmp/... c 1 3, removed at once
    let node = CString::new(format!("/tmp/.frun-checker-mknod-{pid}")).expect("no NUL");
    f.set(
        "mknod_char",
        in_child(|| {
            // SAFETY: node is a valid path.
            let r =
                unsafe { libc::mknod(node.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 3)) };
            if r != 0 {
                return errno();
            }
            // SAFETY: node is the node we just made.
            unsafe { libc::unlink(node.as_ptr()) };
            0
        }),
    );

    // SAFETY: chroot("/") in the child changes nothing visible to anyone else.
    f.set(
        "chroot",
        in_child(|| rc(unsafe { libc::chroot(c"/".as_ptr()) } as libc::c_long)),
    );

    // sethostname to the current name (no visible change even when it succeeds)
    match hostname() {
        Ok(h) => f.set(
            "set_hostname",
            in_child(|| {
                // SAFETY: h is valid for h.len() bytes.
                rc(unsafe { libc::sethostname(h.as_ptr().cast(), h.len()) } as libc::c_long)
            }),
        ),
        Err(e) => f.set("set_hostname", Err(format!("uname: {e}"))),
    }

    // PTRACE_SEIZE: same permission check as PTRACE_ATTACH but no SIGSTOP; the tracer
    // (the child) exits at once, which detaches.
    f.set(
        "ptrace_attach_ppid",
        in_child(|| {
            // SAFETY: PTRACE_SEIZE with null addr/data.
            rc(unsafe {
                libc::ptrace(
                    libc::PTRACE_SEIZE,
                    ppid,
                    std::ptr::null_mut::<libc::c_void>(),
                    std::ptr::null_mut::<libc::c_void>(),
                )
            })
        }),
    );

    // kexec_load with 1000 segments (> KEXEC_SEGMENT_MAX): EPERM when not permitted,
    // EINVAL when permitted (the kernel checks permission first); nothing gets loaded.
    f.set(
        "kexec_load",
        in_child(|| {
            // SAFETY: invalid on purpose; the kernel rejects it before reading any memory.
            rc(unsafe {
                libc::syscall(
                    libc::SYS_kexec_load,
                    0 as libc::c_ulong,
                    1000 as libc::c_ulong,
                    std::ptr::null::<libc::c_void>(),
                    0 as libc::c_ulong,
                )
            })
        }),
    );

    f.set(
        "unshare_user",
        // SAFETY: only the child moves to a new user namespace.
        in_child(|| rc(unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER) })),
    );

    // KEYCTL_GET_KEYRING_ID (0) of KEY_SPEC_SESSION_KEYRING (-3), create = 0
    f.set(
        "keyctl",
        in_child(|| {
            // SAFETY: plain integer arguments.
            rc(unsafe {
                libc::syscall(
                    libc::SYS_keyctl,
                    0 as libc::c_int,
                    -3 as libc::c_int,
                    0 as libc::c_int,
                )
            })
        }),
    );

    f.set(
        "raw_socket",
        in_child(|| {
            // SAFETY: plain integer arguments; the fd is closed right away.
            let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
            if s < 0 {
                return errno();
            }
            // SAFETY: s is our socket.
            unsafe { libc::close(s) };
            0
        }),
    );
}
