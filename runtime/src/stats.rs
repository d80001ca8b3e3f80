//! What a container uses, read from its cgroup: CPU time, memory, processes. One
//! reading for `frun-oci events --stats` and for frun's own `stats`, so that the two show
//! the same figures.
//!
//! Read straight from the files (v1: `cpuacct.*`, `memory.*`, `pids.*` in their
//! hierarchies; v2: `cpu.stat`, `memory.*`, `pids.*`): libcgroups' v1 statistics walk
//! every controller, hugetlb included, which a hybrid host does not mount as v1.

use std::path::Path;

use crate::cgroup::Cgroup;

/// One reading. A figure the host does not offer is `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// CPU time used, in nanoseconds: in all, in user mode, in the kernel.
    pub cpu_total_ns: Option<u64>,
    pub cpu_user_ns: Option<u64>,
    pub cpu_kernel_ns: Option<u64>,
    /// Memory charged to the cgroup, page cache included, in bytes.
    pub memory_usage: Option<u64>,
    /// Of that, inactive page cache, which the kernel reclaims first (Docker's `docker
    /// stats` subtracts it: `memory_usage - memory_inactive_file` is what it shows).
    pub memory_inactive_file: Option<u64>,
    /// The most ever charged (v1 always; v2 from kernel 5.19's `memory.peak`).
    pub memory_max_usage: Option<u64>,
    /// The limit; `None` for none.
    pub memory_limit: Option<u64>,
    pub pids_current: Option<u64>,
    /// The limit; `None` for none.
    pub pids_limit: Option<u64>,
}

/// `max` or a number (v1's "no limit" is a huge number: kept as it is).
fn limit(text: Option<String>) -> Option<u64> {
    let t = text?;
    let t = t.trim();
    if t == "max" {
        return None;
    }
    t.parse().ok()
}

fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok()
}

fn num(dir: &Path, file: &str) -> Option<u64> {
    read(dir, file)?.trim().parse().ok()
}

/// The value of `key` in a `key value` file (`memory.stat`, `cpu.stat`, ...).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

impl Cgroup {
    /// Reads the cgroup's CPU, memory and pids figures.
    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        if self.is_v2() {
            let Some(dir) = self.dir_for("") else {
                return s;
            };
            if let Some(cpu) = read(&dir, "cpu.stat") {
                let us = |k| keyed(&cpu, k).map(|v| v * 1000);
                s.cpu_total_ns = us("usage_usec");
                s.cpu_user_ns = us("user_usec");
                s.cpu_kernel_ns = us("system_usec");
            }
            s.memory_usage = num(&dir, "memory.current");
            s.memory_max_usage = num(&dir, "memory.peak");
            s.memory_limit = limit(read(&dir, "memory.max"));
            s.memory_inactive_file =
                read(&dir, "memory.stat").and_then(|t| keyed(&t, "inactive_file"));
            s.pids_current = num(&dir, "pids.current");
            s.pids_limit = limit(read(&dir, "pids.max"));
            return s;
        }
        if let Some(dir) = self.dir_for("cpuacct") {
            s.cpu_total_ns = num(&dir, "cpuacct.usage");
            if let Some(stat) = read(&dir, "cpuacct.stat") {
                // In USER_HZ ticks, 100 a second on Linux.
                let ns = |k| keyed(&stat, k).map(|v| v * 10_000_000);
                s.cpu_user_ns = ns("user");
                s.cpu_kernel_ns = ns("system");
            }
        }
        if let Some(dir) = self.dir_for("memory") {
            s.memory_usage = num(&dir, "memory.usage_in_bytes");
            s.memory_max_usage = num(&dir, "memory.max_usage_in_bytes");
            s.memory_limit = num(&dir, "memory.limit_in_bytes");
            s.memory_inactive_file =
                read(&dir, "memory.stat").and_then(|t| keyed(&t, "total_inactive_file"));
        }
        if let Some(dir) = self.dir_for("pids") {
            s.pids_current = num(&dir, "pids.current");
            s.pids_limit = limit(read(&dir, "pids.max"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_files_and_limits() {
        let t = "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n";
        assert_eq!(keyed(t, "user_usec"), Some(1000));
        assert_eq!(keyed(t, "nope"), None);
        assert_eq!(limit(Some("max\n".into())), None);
        assert_eq!(limit(Some("4096\n".into())), Some(4096));
    }
}
