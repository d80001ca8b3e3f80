//! A running container's cgroup from the outside: `pause` and `resume` (the freezer),
//! `update` (new limits), `events` (what it uses: the same reading as `frun stats`).

use anyhow::{bail, Context};
use oci_spec::runtime::{LinuxPidsBuilder, LinuxResources};
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use super::state::{OciContainer, OciStatus};
use super::{EventsArgs, Global, UpdateArgs};

pub fn pause(g: &Global, id: &str) -> anyhow::Result<ExitCode> {
    let c = OciContainer::load(&g.root, id)?;
    match c.status() {
        OciStatus::Running => {}
        OciStatus::Paused => bail!("container {id} is already paused"),
        other => bail!("container {id} is not running: {}", other.as_str()),
    }
    c.cgroup()?.freeze()?;
    std::fs::write(c.paused_mark(), b"")
        .with_context(|| format!("writing {:?}", c.paused_mark()))?;
    Ok(ExitCode::SUCCESS)
}

pub fn resume(g: &Global, id: &str) -> anyhow::Result<ExitCode> {
    let c = OciContainer::load(&g.root, id)?;
    match c.status() {
        OciStatus::Paused => {}
        other => bail!("container {id} is not paused: {}", other.as_str()),
    }
    c.cgroup()?.thaw()?;
    std::fs::remove_file(c.paused_mark())
        .with_context(|| format!("removing {:?}", c.paused_mark()))?;
    Ok(ExitCode::SUCCESS)
}

/// A size as frun's own flags take it (`512`, `64k`, `100m`, `1g`: one range-checked
/// parser, `crate::limits`), or `-1` for no limit (runc's).
fn bytes(flag: &str, v: &str) -> anyhow::Result<i64> {
    if v.trim() == "-1" {
        return Ok(-1);
    }
    Ok(crate::limits::parse_size(&format!("--{flag}"), v)? as i64)
}

/// The new resources: `-r FILE` (`-` for stdin: what containerd's shim and podman
/// pass) as the base, each flag over it.
fn requested(a: &UpdateArgs) -> anyhow::Result<LinuxResources> {
    let mut r = match a.resources.as_deref() {
        None => LinuxResources::default(),
        Some(path) => {
            let mut data = Vec::new();
            if path == "-" {
                std::io::stdin()
                    .read_to_end(&mut data)
                    .context("reading the resources from stdin")?;
            } else {
                data = std::fs::read(path).with_context(|| format!("reading {path:?}"))?;
            }
            serde_json::from_slice(&data)
                .with_context(|| format!("parsing the resources {path:?}"))?
        }
    };
    let mut mem = r.memory().unwrap_or_default();
    let mut mem_set = r.memory().is_some();
    for (flag, v, set) in [
        ("memory", &a.memory, 0),
        ("memory-swap", &a.memory_swap, 1),
        ("memory-reservation", &a.memory_reservation, 2),
    ] {
        let Some(v) = v else { continue };
        let n = bytes(flag, v)?;
        mem_set = true;
        match set {
            0 => mem.set_limit(Some(n)),
            1 => mem.set_swap(Some(n)),
            _ => mem.set_reservation(Some(n)),
        };
    }
    if mem_set {
        r.set_memory(Some(mem));
    }
    let cpu_flags = a.cpu_shares.is_some()
        || a.cpu_quota.is_some()
        || a.cpu_period.is_some()
        || a.cpuset_cpus.is_some()
        || a.cpuset_mems.is_some();
    if cpu_flags {
        let mut cpu = r.cpu().clone().unwrap_or_default();
        if a.cpu_shares.is_some() {
            cpu.set_shares(a.cpu_shares);
        }
        if a.cpu_quota.is_some() {
            cpu.set_quota(a.cpu_quota);
        }
        if a.cpu_period.is_some() {
            cpu.set_period(a.cpu_period);
        }
        if a.cpuset_cpus.is_some() {
            cpu.set_cpus(a.cpuset_cpus.clone());
        }
        if a.cpuset_mems.is_some() {
            cpu.set_mems(a.cpuset_mems.clone());
        }
        r.set_cpu(Some(cpu));
    }
    if let Some(v) = &a.pids_limit {
        // The OCI's "no limit" is 0 or below.
        let limit = crate::limits::parse_pids_limit("--pids-limit", v)?.unwrap_or(0);
        r.set_pids(Some(LinuxPidsBuilder::default().limit(limit).build()?));
    }
    Ok(r)
}

pub fn update(g: &Global, a: &UpdateArgs) -> anyhow::Result<ExitCode> {
    let c = OciContainer::load(&g.root, &a.id)?;
    if c.status() == OciStatus::Stopped {
        bail!("container {} is not running", a.id);
    }
    let r = requested(a)?;
    if r == LinuxResources::default() {
        return Ok(ExitCode::SUCCESS);
    }
    c.cgroup()?
        .update(&r)
        .with_context(|| format!("updating the resources of {}", a.id))?;
    Ok(ExitCode::SUCCESS)
}

/// One `events` line, in runc's shape (`{"type":"stats","id":..,"data":{..}}`), with the
/// figures of frun's own `frun stats` (`crate::stats`: one reading for both): CPU time,
/// memory in use without the inactive page cache (as `docker stats`), its limit (the
/// host's memory without one), processes, block I/O, and the network namespace's bytes.
fn stats_event(c: &OciContainer) -> serde_json::Value {
    let s = crate::stats::sample(
        &crate::stats::Host::default(),
        &c.saved.cgroup,
        Some(c.saved.pid),
    );
    serde_json::json!({
        "type": "stats",
        "id": c.saved.id,
        "data": {
            "cpu": {"usage": {"total": s.cpu_ns}},
            "memory": {
                "usage": {"usage": s.memory_bytes, "limit": s.memory_limit_bytes},
                "oom_kills": s.oom_kills,
            },
            "pids": {"current": s.pids},
            "blkio": {"read_bytes": s.block_read_bytes, "write_bytes": s.block_write_bytes},
            "network": {"rx_bytes": s.net_rx_bytes, "tx_bytes": s.net_tx_bytes},
        },
    })
}

pub fn events(g: &Global, a: &EventsArgs) -> anyhow::Result<ExitCode> {
    let interval = duration(&a.interval)?;
    loop {
        let c = OciContainer::load(&g.root, &a.id)?;
        if c.status() == OciStatus::Stopped {
            bail!("container {} is not running", a.id);
        }
        let line = stats_event(&c);
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
        if a.stats {
            return Ok(ExitCode::SUCCESS);
        }
        drop(out);
        std::thread::sleep(interval.max(Duration::from_millis(10)));
    }
}

/// `5s`, `100ms`, `1m`, or plain seconds (runc's `--interval` takes Go durations).
fn duration(v: &str) -> anyhow::Result<Duration> {
    let t = v.trim();
    let (num, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: f64 = num
        .parse()
        .with_context(|| format!("--interval {v:?}: expected e.g. 5s"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => bail!("--interval {v:?}: unit ms, s, m or h"),
    };
    if secs <= 0.0 || !secs.is_finite() {
        bail!("--interval {v:?}: must be above 0");
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(bytes("memory", "512").unwrap(), 512);
        assert_eq!(bytes("memory", "64k").unwrap(), 65536);
        assert_eq!(bytes("memory", "100M").unwrap(), 100 << 20);
        assert_eq!(bytes("memory", "1g").unwrap(), 1 << 30);
        assert_eq!(bytes("memory", "-1").unwrap(), -1);
        assert!(bytes("memory", "lots").is_err());
        assert!(bytes("memory", "-5").is_err());
        assert_eq!(duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(duration("2").unwrap(), Duration::from_secs(2));
        assert!(duration("0s").is_err());
        assert!(duration("5y").is_err());
    }
}
