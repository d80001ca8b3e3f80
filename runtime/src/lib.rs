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
pub mod cleanup;
mod console;
mod error;
mod exec;
pub mod fault;
pub mod fdpass;
mod freezer;
pub mod hooks;
pub mod needs;
pub mod probe;
pub mod rootfs;
pub mod seccomp;
mod source;
mod spawn;
pub mod spec;
pub mod sysctl;
#[doc(hidden)]
pub mod testing;
mod userns;

pub use error::{Cause, RuntimeError, SetupError};
pub use exec::{exec, exec_with, ExecOptions};
pub use rootfs::RootfsSource;
pub use spawn::{
    spawn, spawn_with, wait, BeforePivot, ExitState, SpawnConfig, SpawnOptions, Started, Stdio,
};

/// Whether the calling process has a single thread, as [`spawn`] and [`exec`] need.
pub fn single_threaded() -> bool {
    spawn::threads() == 1
}
