//! The runtime's errors: one variant per failing operation, each carrying the path,
//! spec field or id it concerns and the cause.
//!
//! Two types, because a start fails in two places. [`RuntimeError`] is what the
//! calling process sees: a refused spec, a cgroup, a namespace it could not open, a
//! system call of its own. [`SetupError`] is a failed step of the container's set-up,
//! which mostly runs in the container's process between `fork` and `execve`: that
//! process writes it to the error pipe as JSON and exits, and the parent reads it back
//! as the same variant (`RuntimeError::Setup`). So callers decide by variant, never by
//! message text: frun's `run` maps [`SetupError::NotFound`] and [`SetupError::Exec`] to
//! the shell's 127 and 126. The parent's own part of a user-namespace set-up (the mounts
//! it makes for the container) reports `SetupError` too, being steps of the same set-up.
//!
//! A cause that crossed the pipe is a [`Cause`], an errno where there is one: an
//! `io::Error` does not serialize.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::seccomp::SeccompError;

impl From<SeccompError> for RuntimeError {
    fn from(e: SeccompError) -> RuntimeError {
        RuntimeError::Seccomp(e)
    }
}

/// What the calling process of [`crate::spawn`] or [`crate::exec`] reports.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// `spawn` and `exec` fork, which a multi-threaded process may not.
    #[error("{op} must run in a single-threaded process (frun re-executes itself for this)")]
    NotSingleThreaded { op: &'static str },
    /// The spec asks for something invalid or unsupported; `field` names it.
    #[error("invalid container config: {field}: {reason}")]
    Spec { field: String, reason: String },
    /// The seccomp error is in the message, not a `source()` (no `#[from]`): `{err:#}`
    /// prints it once.
    #[error("invalid container config: linux.seccomp: {0}")]
    Seccomp(SeccompError),
    #[error("cgroup {path:?}: {reason}")]
    Cgroup { path: PathBuf, reason: String },
    /// A namespace of the spec (`linux.namespaces[].path`) or of a running container.
    #[error("opening namespace {path:?}: {cause}")]
    OpenNamespace {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("joining namespace {what}: {cause}")]
    JoinNamespace {
        /// The path joined, or the namespace's kind when the path is this process's own.
        what: String,
        cause: std::io::Error,
    },
    /// `exec`: the container's namespaces are gone with its first process.
    #[error("opening {path:?} (is the container running?): {cause}")]
    ContainerGone {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("writing {path:?}: {cause}")]
    WriteIdMap {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// A system call of the calling process that concerns no path: pipe, clone, fork,
    /// prctl, waitpid.
    #[error("{op}: {cause}")]
    Sys {
        op: &'static str,
        cause: std::io::Error,
    },
    /// A step of the container's set-up failed (see the module documentation).
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Sysctl(#[from] crate::sysctl::SysctlError),
    /// A hook run before the pivot ([`crate::SpawnOptions::before_pivot`]) failed.
    #[error("{0}")]
    Hook(Box<dyn std::error::Error + Send + Sync>),
}

impl RuntimeError {
    pub(crate) fn sys(op: &'static str, e: impl Into<std::io::Error>) -> RuntimeError {
        RuntimeError::Sys {
            op,
            cause: e.into(),
        }
    }

    pub(crate) fn spec(field: impl Into<String>, reason: impl Into<String>) -> RuntimeError {
        RuntimeError::Spec {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Why a set-up step failed: the errno where the failure was a system call's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cause {
    Os(i32),
    Other(String),
}

impl Cause {
    /// The errno, if the cause was one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Cause::Os(n) => Some(*n),
            Cause::Other(_) => None,
        }
    }

    /// The calling thread's last OS error.
    pub(crate) fn last_os_error() -> Cause {
        std::io::Error::last_os_error().into()
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::Os(n) => std::io::Error::from_raw_os_error(*n).fmt(f),
            Cause::Other(s) => f.write_str(s),
        }
    }
}

impl From<std::io::Error> for Cause {
    fn from(e: std::io::Error) -> Cause {
        match e.raw_os_error() {
            Some(n) => Cause::Os(n),
            None => Cause::Other(e.to_string()),
        }
    }
}

impl From<nix::errno::Errno> for Cause {
    fn from(e: nix::errno::Errno) -> Cause {
        Cause::Os(e as i32)
    }
}

impl From<rustix::io::Errno> for Cause {
    fn from(e: rustix::io::Errno) -> Cause {
        Cause::Os(e.raw_os_error())
    }
}

impl From<caps::errors::CapsError> for Cause {
    fn from(e: caps::errors::CapsError) -> Cause {
        Cause::Other(e.to_string())
    }
}

/// A failed step of the container's set-up, sent from the container's process to the
/// parent over the error pipe (see the module documentation). The cause is part of the
/// message rather than an error `source`: it is data, and callers print `{e}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum SetupError {
    #[error("invalid container config: {field}: {reason}")]
    Spec { field: String, reason: String },
    #[error("joining the cgroup {path:?}: {cause}")]
    JoinCgroup { path: PathBuf, cause: Cause },
    #[error("waiting for the cgroup: {cause}")]
    WaitForParent { cause: Cause },
    #[error("reading {path:?}: {cause}")]
    Read { path: PathBuf, cause: Cause },

    // Namespaces.
    #[error("opening namespace {path:?}: {cause}")]
    OpenNamespace { path: PathBuf, cause: Cause },
    #[error("joining namespace {what}: {cause}")]
    JoinNamespace { what: String, cause: Cause },
    #[error("creating namespaces: {cause}")]
    Unshare { cause: Cause },
    #[error("bringing up lo: {cause}")]
    Loopback { cause: Cause },
    #[error("becoming root of the user namespace ({id}): {cause}")]
    BecomeRoot { id: String, cause: Cause },
    #[error("setting sysctl {key}={value:?}: {cause}")]
    Sysctl {
        key: String,
        value: String,
        cause: Cause,
    },
    /// The stop before the pivot for the parent's hooks (`SpawnOptions::before_pivot`).
    #[error("waiting for the hooks: {cause}")]
    HookSync { cause: Cause },

    // Mounts the parent makes for a container in a user namespace, and passing them.
    #[error("chown {path:?}: {cause}")]
    Chown { path: PathBuf, cause: Cause },
    #[error("cloning the mount of {path:?}: {cause}")]
    CloneMount { path: PathBuf, cause: Cause },
    /// The filesystem (or kernel) refused an idmapped mount: `frun info`'s words for it.
    #[error("{0}")]
    Idmap(crate::needs::Missing),
    #[error("overlay option {key}={value}: {cause}")]
    OverlayOption {
        key: String,
        value: String,
        cause: Cause,
    },
    #[error("mount on {destination:?}: {reason}")]
    PremadeMount {
        destination: PathBuf,
        reason: String,
    },
    /// The kernel refused overlayfs over the idmapped layers (`--uidmap`): `frun info`'s
    /// words for it.
    #[error("{0}")]
    IdmappedOverlay(crate::needs::Missing),
    #[error("passing mounts to the container: {cause}")]
    SendMounts { cause: Cause },
    #[error("receiving mounts from the parent: {reason}")]
    ReceiveMounts { reason: String },
    #[error("{what}: the parent sent no mount for it")]
    NoPremadeMount { what: String },

    // The root filesystem.
    #[error("opening {path:?}: {cause}")]
    OpenHostPath { path: PathBuf, cause: Cause },
    #[error("an image without layers has no root filesystem")]
    NoLayers,
    #[error("chdir {path:?}: {cause}")]
    Chdir { path: PathBuf, cause: Cause },
    /// A mount failed; `what` names it and its target.
    #[error("{what}: {cause}")]
    Mount { what: String, cause: Cause },
    #[error("opening {path:?} in the container: {cause}")]
    Open { path: PathBuf, cause: Cause },
    #[error("resolving {path:?} in the container: {cause}")]
    Resolve { path: PathBuf, cause: Cause },
    #[error("creating {path:?} in the container: {cause}")]
    Create { path: PathBuf, cause: Cause },
    #[error("mount destination {path:?} is not absolute")]
    RelativeDestination { path: PathBuf },
    #[error("bind mount on {destination:?} has no source")]
    NoBindSource { destination: PathBuf },
    #[error("bind mount source {path:?}: {cause}")]
    BindSource { path: PathBuf, cause: Cause },
    #[error("refusing to mount {fstype} on {destination:?}: it is not a directory in the image (a symlink?)")]
    NotADirectory {
        fstype: String,
        destination: PathBuf,
    },
    #[error("device {path:?}: {reason}")]
    Device { path: PathBuf, reason: String },
    #[error("/dev/null is not the null device: refusing to mask paths with it")]
    NullNotNull,
    /// A volume on `/dev` (where frun makes no nodes) without the null device.
    #[error("the container has no /dev/null to mask paths with (a volume on /dev must hold the null device, 1:3)")]
    NoNullToMask,
    #[error("pivot_root: {cause}")]
    PivotRoot { cause: Cause },
    #[error("chroot {path:?}: {cause}")]
    Chroot { path: PathBuf, cause: Cause },
    #[error("working directory {path:?}: {cause}")]
    MakeWorkingDir {
        path: PathBuf,
        cause: Box<SetupError>,
    },
    #[error("setting hostname {hostname:?}: {cause}")]
    Hostname { hostname: String, cause: Cause },
    /// A step of giving the process its terminal (`process.terminal`).
    #[error("{op}: {cause}")]
    Console { op: String, cause: Cause },

    // The process.
    #[error("setrlimit {limit}: {cause}")]
    Rlimit { limit: String, cause: Cause },
    #[error("setting oom_score_adj {value}: {cause}")]
    OomScoreAdj { value: i32, cause: Cause },
    #[error("dropping {cap} from the bounding set: {cause}")]
    DropBounding { cap: String, cause: Cause },
    #[error("keepcaps: {cause}")]
    KeepCaps { cause: Cause },
    #[error("setgroups {gids:?}: {cause}")]
    SetGroups { gids: Vec<u32>, cause: Cause },
    #[error("setgid {gid}: {cause}")]
    SetGid { gid: u32, cause: Cause },
    #[error("setuid {uid}: {cause}")]
    SetUid { uid: u32, cause: Cause },
    #[error("setting {set} capabilities: {cause}")]
    Capabilities { set: String, cause: Cause },
    #[error("closing inherited file descriptors: {cause}")]
    CloseFds { cause: Cause },
    #[error("working directory {path:?} is not absolute")]
    RelativeWorkingDir { path: PathBuf },
    #[error("working directory {path:?}: {cause}")]
    WorkingDir { path: PathBuf, cause: Cause },
    #[error("working directory {path:?} is outside the container")]
    WorkingDirOutside { path: PathBuf },
    #[error("{value:?} contains a NUL byte")]
    NulByte { value: String },
    #[error("resetting signal {signal}: {cause}")]
    ResetSignal { signal: i32, cause: Cause },
    #[error("clearing the signal mask: {cause}")]
    SignalMask { cause: Cause },
    #[error("no_new_privs: {cause}")]
    NoNewPrivs { cause: Cause },
    #[error("loading the seccomp filter: {cause}")]
    LoadSeccomp { cause: Cause },
    /// `process.args[0]` has no slash and is on no directory of the container's PATH.
    #[error("exec {arg0:?}: executable file not found in $PATH")]
    NotFound { arg0: String },
    /// `process.args[0]` could not be executed (the shell's 126, or 127 for ENOENT).
    #[error("exec {arg0:?}: {cause}")]
    Exec { arg0: String, cause: Cause },

    /// The error pipe held something that is not a `SetupError`.
    #[error("the container's process reported: {0}")]
    Unreadable(String),
}

impl SetupError {
    pub(crate) fn spec(field: impl Into<String>, reason: impl Into<String>) -> SetupError {
        SetupError::Spec {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn mount(what: &str, cause: impl Into<Cause>) -> SetupError {
        SetupError::Mount {
            what: what.to_string(),
            cause: cause.into(),
        }
    }

    /// The bytes the container's process writes to the error pipe.
    pub(crate) fn to_wire(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|e| format!("{self} ({e})").into_bytes())
    }

    /// What the parent reads back from the error pipe.
    pub(crate) fn from_wire(bytes: &[u8]) -> SetupError {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| SetupError::Unreadable(String::from_utf8_lossy(bytes).into_owned()))
    }
}

/// `e` and its sources joined as anyhow's `{err:#}` prints them (tests check that a
/// cause is said once).
#[cfg(test)]
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut all = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        all.push_str(": ");
        all.push_str(&s.to_string());
        next = s.source();
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setup_error_crosses_the_pipe_as_the_same_variant() {
        let sent = SetupError::Exec {
            arg0: "/bin/x".into(),
            cause: Cause::Os(libc::EACCES),
        };
        let got = SetupError::from_wire(&sent.to_wire());
        assert_eq!(got, sent);
        assert_eq!(
            got.to_string(),
            "exec \"/bin/x\": Permission denied (os error 13)"
        );
        let nested = SetupError::MakeWorkingDir {
            path: "/w".into(),
            cause: Box::new(SetupError::Create {
                path: "/w".into(),
                cause: Cause::Os(libc::EROFS),
            }),
        };
        assert_eq!(SetupError::from_wire(&nested.to_wire()), nested);
    }

    #[test]
    fn text_that_is_not_a_setup_error_is_kept_whole() {
        assert_eq!(
            SetupError::from_wire(b"panicked at child.rs"),
            SetupError::Unreadable("panicked at child.rs".into())
        );
    }

    #[test]
    fn an_os_error_is_told_once_along_the_error_chain() {
        // The io::Error is part of the message, not also its `source()`: a chain
        // printer (anyhow's `{:#}`, frun's error_chain) must not say it twice.
        let e = RuntimeError::sys("pipe", std::io::Error::from_raw_os_error(libc::EMFILE));
        assert!(std::error::Error::source(&e).is_none());
        let text = e.to_string();
        assert_eq!(text.matches("Too many open files").count(), 1, "{text}");
        let e = RuntimeError::OpenNamespace {
            path: "/proc/1/ns/net".into(),
            cause: std::io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert!(std::error::Error::source(&e).is_none());
        let e: RuntimeError = SeccompError::Filter("no such syscall frob".into()).into();
        let all = chain(&e);
        assert_eq!(all.matches("frob").count(), 1, "{all}");
    }
}
