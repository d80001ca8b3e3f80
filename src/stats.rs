//! Resource use of one container, read from its cgroup and its network namespace:
//! what `frun stats` shows (and what metrics will export).
//!
//! Three cgroup layouts are met: pure v2 (one tree, `memory.current`, `cpu.stat`,
//! `io.stat`), pure v1 (a tree per controller), and the hybrid of this kind of host (v1
//! controllers plus a cgroup2 mount at `unified` that holds none of them: FACTS.md).
//! Which one holds a container is decided by where its files are, not by guessing from
//! the host: v2 when `<root>/<cgroup>/memory.current` exists, else v1 under
//! `<root>/<controller>/<cgroup>`. The cgroup root and `/proc` are parameters
//! ([`Host`]), so the parsers are tested on fake trees.
//!
//! Numbers follow `docker stats`: memory usage excludes the inactive page cache (what
//! the kernel drops first), a limit of "max" shows the host's memory, CPU % is CPU time
//! over wall time (100% = one CPU), network bytes are the namespace's interfaces but
//! `lo`, block I/O sums every device.

use serde::Serialize;
use std::path::{Path, PathBuf};

/// Where the host's files are.
#[derive(Clone, Debug)]
pub struct Host {
    pub cgroup_root: PathBuf,
    pub proc: PathBuf,
}

impl Default for Host {
    fn default() -> Self {
        Host {
            cgroup_root: "/sys/fs/cgroup".into(),
            proc: "/proc".into(),
        }
    }
}

/// One reading.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// CPU time used by the cgroup, nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use, page cache that can be dropped not counted.
    pub memory_bytes: u64,
    /// The cgroup's limit, or the host's memory without one.
    pub memory_limit_bytes: u64,
    pub pids: u64,
    pub block_read_bytes: u64,
    pub block_write_bytes: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    /// The number of OOM kills in the cgroup (v2 `memory.events`, v1 `memory.oom_control`).
    pub oom_kills: u64,
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

fn num(p: &Path) -> Option<u64> {
    read(p)?.trim().parse().ok()
}

/// `key value` lines (memory.stat, cpu.stat, memory.events).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The host's memory (MemTotal), for a cgroup without a limit.
fn host_memory(proc: &Path) -> u64 {
    read(&proc.join("meminfo"))
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Reads the cgroup `cgroup` (absolute, as the record has it: `/frun/ID`).
pub fn cgroup_sample(host: &Host, cgroup: &Path) -> Sample {
    let rel = cgroup.strip_prefix("/").unwrap_or(cgroup);
    let v2 = host.cgroup_root.join(rel);
    let host_mem = host_memory(&host.proc);
    let mut s = Sample::default();
    if v2.join("memory.current").exists() {
        // cgroup v2.
        let stat = read(&v2.join("memory.stat")).unwrap_or_default();
        let current = num(&v2.join("memory.current")).unwrap_or(0);
        s.memory_bytes = current.saturating_sub(keyed(&stat, "inactive_file").unwrap_or(0));
        s.memory_limit_bytes = match read(&v2.join("memory.max")).as_deref().map(str::trim) {
            Some("max") | None => host_mem,
            Some(v) => v.parse().unwrap_or(host_mem),
        };
        s.cpu_ns = read(&v2.join("cpu.stat"))
            .and_then(|t| keyed(&t, "usage_usec"))
            .map_or(0, |us| us * 1000);
        s.pids = num(&v2.join("pids.current")).unwrap_or(0);
        for line in read(&v2.join("io.stat")).unwrap_or_default().lines() {
            for field in line.split_whitespace().skip(1) {
                match field.split_once('=') {
                    Some(("rbytes", v)) => s.block_read_bytes += v.parse().unwrap_or(0),
                    Some(("wbytes", v)) => s.block_write_bytes += v.parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        s.oom_kills = read(&v2.join("memory.events"))
            .and_then(|t| keyed(&t, "oom_kill"))
            .unwrap_or(0);
    } else {
        // cgroup v1 (pure or hybrid): one directory per controller.
        let c = |controller: &str| host.cgroup_root.join(controller).join(rel);
        let mem = c("memory");
        let stat = read(&mem.join("memory.stat")).unwrap_or_default();
        let usage = num(&mem.join("memory.usage_in_bytes")).unwrap_or(0);
        s.memory_bytes = usage.saturating_sub(keyed(&stat, "total_inactive_file").unwrap_or(0));
        // "No limit" is a huge page-aligned number in v1.
        s.memory_limit_bytes = num(&mem.join("memory.limit_in_bytes"))
            .filter(|l| *l < host_mem || host_mem == 0)
            .unwrap_or(host_mem);
        s.cpu_ns = num(&c("cpuacct").join("cpuacct.usage"))
            .or_else(|| num(&c("cpu,cpuacct").join("cpuacct.usage")))
            .unwrap_or(0);
        s.pids = num(&c("pids").join("pids.current")).unwrap_or(0);
        let blk = c("blkio");
        let io = read(&blk.join("blkio.throttle.io_service_bytes_recursive"))
            .or_else(|| read(&blk.join("blkio.io_service_bytes_recursive")))
            .unwrap_or_default();
        for line in io.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let [_, op, v] = f[..] {
                match op {
                    "Read" => s.block_read_bytes += v.parse().unwrap_or(0),
                    "Write" => s.block_write_bytes += v.parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        s.oom_kills = read(&mem.join("memory.oom_control"))
            .and_then(|t| keyed(&t, "oom_kill"))
            .unwrap_or(0);
    }
    s
}

/// Bytes received and sent on the interfaces of `pid`'s network namespace, `lo` not
/// counted (`/proc/PID/net/dev` is the namespace's view).
pub fn net_bytes(host: &Host, pid: i32) -> (u64, u64) {
    let text = read(&host.proc.join(pid.to_string()).join("net/dev")).unwrap_or_default();
    parse_net_dev(&text)
}

fn parse_net_dev(text: &str) -> (u64, u64) {
    let (mut rx, mut tx) = (0, 0);
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        if f.len() >= 9 {
            rx += f[0];
            tx += f[8];
        }
    }
    (rx, tx)
}

/// A sample of a container: its cgroup, and its network namespace through its pid.
pub fn sample(host: &Host, cgroup: &Path, pid: Option<i32>) -> Sample {
    let mut s = cgroup_sample(host, cgroup);
    if let Some(pid) = pid {
        (s.net_rx_bytes, s.net_tx_bytes) = net_bytes(host, pid);
    }
    s
}

/// CPU % between two samples `wall_ns` apart (100 = one CPU busy).
pub fn cpu_percent(before: &Sample, after: &Sample, wall_ns: u64) -> f64 {
    if wall_ns == 0 {
        return 0.0;
    }
    after.cpu_ns.saturating_sub(before.cpu_ns) as f64 * 100.0 / wall_ns as f64
}

/// The processes of a cgroup (v2 `cgroup.procs`, else v1's under `pids` or `memory`).
pub fn cgroup_pids(host: &Host, cgroup: &Path) -> Vec<i32> {
    let rel = cgroup.strip_prefix("/").unwrap_or(cgroup);
    let candidates = [
        host.cgroup_root.join(rel),
        host.cgroup_root.join("pids").join(rel),
        host.cgroup_root.join("memory").join(rel),
    ];
    for dir in candidates {
        // A v2 directory without memory.current is the hybrid's empty `unified` side.
        if let Some(t) = read(&dir.join("cgroup.procs")) {
            let mut pids: Vec<i32> = t.lines().filter_map(|l| l.trim().parse().ok()).collect();
            if pids.is_empty() {
                continue;
            }
            pids.sort();
            return pids;
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn host(t: &Path) -> Host {
        write(
            &t.join("proc/meminfo"),
            "MemTotal:        2000000 kB\nMemFree: 1 kB\n",
        );
        Host {
            cgroup_root: t.join("cg"),
            proc: t.join("proc"),
        }
    }

    #[test]
    fn v2_files_give_docker_stats_numbers() {
        let t = tempfile::tempdir().unwrap();
        let h = host(t.path());
        let d = t.path().join("cg/frun/abc");
        write(&d.join("memory.current"), "50000000\n");
        write(
            &d.join("memory.stat"),
            "anon 40000000\nfile 10000000\ninactive_file 8000000\n",
        );
        write(&d.join("memory.max"), "max\n");
        write(
            &d.join("cpu.stat"),
            "usage_usec 1500000\nuser_usec 1000000\n",
        );
        write(&d.join("pids.current"), "7\n");
        write(
            &d.join("io.stat"),
            "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2\n8:16 rbytes=1 wbytes=2\n",
        );
        write(
            &d.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        );
        let s = cgroup_sample(&h, Path::new("/frun/abc"));
        assert_eq!(
            s,
            Sample {
                cpu_ns: 1_500_000_000,
                memory_bytes: 42_000_000,
                memory_limit_bytes: 2_000_000 * 1024,
                pids: 7,
                block_read_bytes: 4097,
                block_write_bytes: 8194,
                oom_kills: 1,
                ..Default::default()
            }
        );
        write(&d.join("memory.max"), "67108864\n");
        assert_eq!(
            cgroup_sample(&h, Path::new("/frun/abc")).memory_limit_bytes,
            64 << 20
        );
        write(&d.join("cgroup.procs"), "12\n10\n");
        assert_eq!(cgroup_pids(&h, Path::new("/frun/abc")), [10, 12]);
    }

    #[test]
    fn v1_and_hybrid_files_give_the_same_numbers() {
        let t = tempfile::tempdir().unwrap();
        let h = host(t.path());
        let cg = t.path().join("cg");
        // The hybrid's unified side has the cgroup, empty.
        write(&cg.join("unified/frun/abc/cgroup.procs"), "");
        write(
            &cg.join("memory/frun/abc/memory.usage_in_bytes"),
            "50000000\n",
        );
        write(
            &cg.join("memory/frun/abc/memory.stat"),
            "cache 10\ntotal_inactive_file 8000000\n",
        );
        write(
            &cg.join("memory/frun/abc/memory.limit_in_bytes"),
            "9223372036854771712\n",
        );
        write(
            &cg.join("memory/frun/abc/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        write(&cg.join("cpuacct/frun/abc/cpuacct.usage"), "1500000000\n");
        write(&cg.join("pids/frun/abc/pids.current"), "7\n");
        write(&cg.join("pids/frun/abc/cgroup.procs"), "5\n");
        write(
            &cg.join("blkio/frun/abc/blkio.throttle.io_service_bytes_recursive"),
            "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 1\n8:0 Total 12288\nTotal 12288\n",
        );
        let s = cgroup_sample(&h, Path::new("/frun/abc"));
        assert_eq!(
            s,
            Sample {
                cpu_ns: 1_500_000_000,
                memory_bytes: 42_000_000,
                memory_limit_bytes: 2_000_000 * 1024,
                pids: 7,
                block_read_bytes: 4096,
                block_write_bytes: 8192,
                oom_kills: 2,
                ..Default::default()
            }
        );
        assert_eq!(cgroup_pids(&h, Path::new("/frun/abc")), [5]);
    }

    #[test]
    fn network_bytes_leave_out_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:  100 1 0 0 0 0 0 0  100 1 0 0 0 0 0 0\n  eth0: 5000 10 0 0 0 0 0 0 7000 12 0 0 0 0 0 0\n";
        assert_eq!(parse_net_dev(text), (5000, 7000));
        let a = Sample {
            cpu_ns: 1_000_000_000,
            ..Default::default()
        };
        let b = Sample {
            cpu_ns: 1_500_000_000,
            ..Default::default()
        };
        assert_eq!(cpu_percent(&a, &b, 1_000_000_000), 50.0);
    }
}
