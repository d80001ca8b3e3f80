//! Pausing a container: every process of its cgroup frozen (the OCI `pause`/`resume`).
//! v1 has a `freezer` hierarchy (`freezer.state`: THAWED, FREEZING, FROZEN); v2 has
//! `cgroup.freeze` in every cgroup and reports the outcome in `cgroup.events`.
//!
//! Freezing is not instant: a task in the middle of a system call freezes when it gets
//! out of it, and the kernel shows FREEZING (v1) or `frozen 0` (v2) until every task is
//! frozen. As runc does, the write is repeated until the state settles, and a cgroup
//! that will not freeze (a task stuck in an uninterruptible sleep) is thawed again and
//! reported, not left half-frozen.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::cgroup::{err, Cgroup};
use crate::RuntimeError;

/// How long a freeze may take before it is given up (runc's is about as long).
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

impl Cgroup {
    /// Freezes every process in the cgroup, and returns once they are all frozen.
    pub fn freeze(&self) -> Result<(), RuntimeError> {
        let dir = self.freezer_dir()?;
        let deadline = Instant::now() + FREEZE_TIMEOUT;
        loop {
            if self.is_v2() {
                write(&dir, "cgroup.freeze", "1")?;
            } else {
                write(&dir, "freezer.state", "FROZEN")?;
            }
            if self.frozen() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.thaw();
                return Err(err(
                    self.path(),
                    "freezing: the processes did not all freeze",
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Lets the processes of a frozen cgroup run again.
    pub fn thaw(&self) -> Result<(), RuntimeError> {
        let dir = self.freezer_dir()?;
        if self.is_v2() {
            write(&dir, "cgroup.freeze", "0")
        } else {
            write(&dir, "freezer.state", "THAWED")
        }
    }

    /// Whether the cgroup is (entirely) frozen. A cgroup without a freezer is not.
    pub fn frozen(&self) -> bool {
        let Ok(dir) = self.freezer_dir() else {
            return false;
        };
        if self.is_v2() {
            let events = std::fs::read_to_string(dir.join("cgroup.events")).unwrap_or_default();
            events.lines().any(|l| l.trim() == "frozen 1")
        } else {
            std::fs::read_to_string(dir.join("freezer.state"))
                .map(|s| s.trim() == "FROZEN")
                .unwrap_or(false)
        }
    }

    fn freezer_dir(&self) -> Result<std::path::PathBuf, RuntimeError> {
        self.dir_for("freezer").ok_or_else(|| {
            err(
                self.path(),
                "no freezer: the v1 freezer hierarchy is not mounted",
            )
        })
    }
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), RuntimeError> {
    let path = dir.join(file);
    std::fs::write(&path, value).map_err(|e| err(&path, format!("writing {value:?}: {e}")))
}
