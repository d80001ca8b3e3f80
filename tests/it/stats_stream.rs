//! `frun stats` streaming (as `docker stats` without `--no-stream`): one reading after
//! another, each checked against the cgroup's own files read right after it arrives,
//! and a change in the container (more memory taken, on the test's signal) seen in a
//! later reading. Nothing here counts seconds: the test waits for what it expects.

use crate::common::*;
use crate::logs::image;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

/// A file of the container's cgroup: v2 if there, else the v1 controller's.
fn cg(f: &Frun, id: &str, controller: &str, v2: &str, v1: &str) -> String {
    let rel = format!("{}/{id}", f.cgroup_parent.trim_start_matches('/'));
    let root = Path::new("/sys/fs/cgroup");
    std::fs::read_to_string(root.join(&rel).join(v2))
        .or_else(|_| std::fs::read_to_string(root.join(controller).join(&rel).join(v1)))
        .unwrap_or_else(|e| panic!("{v2}/{v1} of {rel}: {e}"))
}

fn keyed(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} ")))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Memory in use as the cgroup says it, inactive page cache not counted.
fn cgroup_memory(f: &Frun, id: &str) -> u64 {
    let usage: u64 = cg(f, id, "memory", "memory.current", "memory.usage_in_bytes")
        .trim()
        .parse()
        .unwrap();
    let stat = cg(f, id, "memory", "memory.stat", "memory.stat");
    usage - keyed(&stat, "inactive_file").max(keyed(&stat, "total_inactive_file"))
}

fn cgroup_cpu_ns(f: &Frun, id: &str) -> u64 {
    let rel = format!("{}/{id}", f.cgroup_parent.trim_start_matches('/'));
    let root = Path::new("/sys/fs/cgroup");
    match std::fs::read_to_string(root.join(&rel).join("cpu.stat")) {
        Ok(t) => keyed(&t, "usage_usec") * 1000,
        Err(_) => cg(f, id, "cpuacct", "-", "cpuacct.usage")
            .trim()
            .parse()
            .unwrap(),
    }
}

#[test]
fn stats_streams_readings_that_match_the_cgroup_and_follow_a_change() {
    let Some(reg) = registry() else { return };
    let f = Frun::new().checked();
    let ctl = f.dir.path().join("ctl");
    std::fs::create_dir_all(&ctl).unwrap();
    let id = f
        .ok(&[
            "run",
            "-d",
            "--name",
            "grow",
            "--memory",
            "128m",
            "-v",
            &format!("{}:/ctl", ctl.display()),
            &image(&reg, "checker"),
            "sh",
            "-c",
            "checker alloc 16 600 > /ctl/first & while [ ! -e /ctl/go ]; do sleep 0.05; done; exec checker alloc 48 600",
        ])
        .trim()
        .to_string();
    wait_for(60, "16 MiB held", || {
        read_or_empty(&ctl.join("first"))
            .contains("\"allocated_mb\":16")
            .then_some(())
    });
    let mut stats = f
        .command(&["stats", "--format", "json", "grow"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(stats.stdout.take().unwrap()).lines();
    let mut next = || -> Value {
        let l = lines.next().expect("a reading").unwrap();
        let v: Value = serde_json::from_str(&l).unwrap();
        v.as_array().unwrap()[0].clone()
    };
    // 1. Readings while 16 MiB are held: each matches the cgroup read right after it,
    //    CPU time never goes back.
    let mut last_cpu = 0;
    for _ in 0..3 {
        let r = next();
        assert_eq!(r["id"], id.as_str());
        let (mem, cpu) = (
            r["memory_bytes"].as_u64().unwrap(),
            r["cpu_ns"].as_u64().unwrap(),
        );
        let (cg_mem, cg_cpu) = (cgroup_memory(&f, &id), cgroup_cpu_ns(&f, &id));
        assert!((16 << 20..40 << 20).contains(&mem), "{r}");
        assert!(
            mem.abs_diff(cg_mem) < 4 << 20,
            "stats {mem} vs cgroup {cg_mem}"
        );
        assert!(
            last_cpu <= cpu && cpu <= cg_cpu,
            "{last_cpu} <= {cpu} <= {cg_cpu}"
        );
        assert_eq!(r["memory_limit_bytes"], 128u64 << 20);
        last_cpu = cpu;
    }
    // 2. The container takes 48 MiB more: a later reading shows it, still matching.
    std::fs::write(ctl.join("go"), "").unwrap();
    let mut seen = 0;
    let r = loop {
        let r = next();
        seen += 1;
        assert!(seen < 120, "no reading showed the 64 MiB: {r}");
        if r["memory_bytes"].as_u64().unwrap() >= 64 << 20 {
            break r;
        }
    };
    let (mem, cpu) = (
        r["memory_bytes"].as_u64().unwrap(),
        r["cpu_ns"].as_u64().unwrap(),
    );
    let cg_mem = cgroup_memory(&f, &id);
    assert!(
        mem.abs_diff(cg_mem) < 4 << 20,
        "stats {mem} vs cgroup {cg_mem}"
    );
    assert!(last_cpu <= cpu && cpu <= cgroup_cpu_ns(&f, &id));
    assert_eq!(
        r["pids"], 2,
        "the first checker, and the second exec'd by sh: {r}"
    );
    // 3. Still streaming: ended by its caller, as docker stats is.
    assert!(stats.try_wait().unwrap().is_none());
    stats.kill().unwrap();
    stats.wait().unwrap();
    f.ok(&["rm", "-f", "grow"]);
}
