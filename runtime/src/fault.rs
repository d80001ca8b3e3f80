//! Fault injection for tests: a process started with `FRUN_TEST_STOP_AT=<step>` kills
//! itself with SIGKILL when it reaches that named step, as a crash, the OOM killer or a
//! `kill -9` would at exactly that point. With `FRUN_TEST_STOP_MARK=<file>` it first
//! appends the step's name to that file, so that a test knows the step was reached
//! (a step never reached would make its test pass without testing anything).
//!
//! The mechanism lives here, in the lowest crate, so that the runtime's own steps can
//! use it; frun names its steps in an enum (`frun __steps` lists them all) and so does
//! the runtime ([`SpawnStep`]): a test that iterates over the list covers a new step
//! without being changed. Without the variable a step costs one cached lookup.

use std::io::Write;
use std::sync::OnceLock;

/// The variable that names the step to stop at.
pub const STOP_AT: &str = "FRUN_TEST_STOP_AT";
/// The variable that names the file a stopping process appends its step to.
pub const STOP_MARK: &str = "FRUN_TEST_STOP_MARK";

/// The runtime's steps of a start ([`crate::spawn`]), in the calling process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpawnStep {
    /// The container's cgroup exists (and is limited); no process yet.
    CgroupMade,
    /// The container's first process exists, before the handshake lets it go on.
    Cloned,
}

impl SpawnStep {
    pub const ALL: &'static [SpawnStep] = &[SpawnStep::CgroupMade, SpawnStep::Cloned];

    pub fn name(self) -> &'static str {
        match self {
            SpawnStep::CgroupMade => "spawn.cgroup-made",
            SpawnStep::Cloned => "spawn.cloned",
        }
    }
}

fn stop_at() -> Option<&'static str> {
    static STEP: OnceLock<Option<String>> = OnceLock::new();
    STEP.get_or_init(|| std::env::var(STOP_AT).ok().filter(|s| !s.is_empty()))
        .as_deref()
}

/// Called at the named step: kills this process there if the test asked for it.
pub fn reached(step: &str) {
    if stop_at() != Some(step) {
        return;
    }
    if let Some(mark) = std::env::var_os(STOP_MARK) {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(mark)
        {
            let _ = writeln!(f, "{step} {}", std::process::id());
        }
    }
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    // SIGKILL cannot be caught; nothing runs after it is delivered.
    loop {
        std::thread::park();
    }
}
