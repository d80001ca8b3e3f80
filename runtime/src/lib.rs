//! The runtime room of frun: it turns an OCI runtime-spec `config.json` and a root
//! filesystem description into a running, isolated process. It knows nothing of
//! registries or stacks.
//!
//! Process model: [`spawn`] runs in a small single-threaded process (frun re-executes
//! itself for this, never forking a multi-threaded one). It creates the cgroup, forks the
//! container's first process into new namespaces, and returns once that process has
//! `execve`d — or with the error the child reported through a pipe. The mount namespace
//! belongs to the container alone: the overlay root is mounted inside it, so when the
//! container's last process exits, every mount goes with it.

pub mod cgroup;
mod child;
mod console;
mod exec;
pub mod fdpass;
mod freezer;
pub mod hooks;
pub mod rootfs;
pub mod seccomp;
mod spawn;
pub mod spec;
pub mod stats;
pub mod sysctl;
mod userns;

pub use exec::{exec, exec_with, ExecOptions};
pub use rootfs::RootfsSource;
pub use spawn::{
    spawn, spawn_with, wait, BeforePivot, ExitState, SpawnConfig, SpawnOptions, Started, Stdio,
};

/// Whether the calling process has a single thread, as [`spawn`] and [`exec`] need.
pub fn single_threaded() -> bool {
    spawn::threads() == 1
}

/// Everything that can go wrong while starting a container, named after the step.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid container config: {0}")]
    Config(String),
    #[error("cgroup {path:?}: {reason}")]
    Cgroup {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("{op}: {source}")]
    Sys {
        op: String,
        #[source]
        source: std::io::Error,
    },
    /// The container's set-up failed inside its namespaces, before `execve`.
    #[error("{0}")]
    Child(String),
    #[error(transparent)]
    Sysctl(#[from] crate::sysctl::SysctlError),
    /// A hook run before the pivot ([`crate::SpawnOptions::before_pivot`]) failed.
    #[error("{0}")]
    Hook(Box<dyn std::error::Error + Send + Sync>),
}

impl RuntimeError {
    pub(crate) fn sys(op: impl Into<String>, e: impl Into<std::io::Error>) -> RuntimeError {
        RuntimeError::Sys {
            op: op.into(),
            source: e.into(),
        }
    }
}
