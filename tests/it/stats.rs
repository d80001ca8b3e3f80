//! `stats`, `top`, `inspect` and `cp` against a container doing known work, checked
//! against the cgroup's files and the kernel's own counters read at the same moment.

use crate::common::*;
use crate::logs::{container, image, wait_for, wait_status};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn stats_json(f: &Frun, name: &str) -> Value {
    let v: Value =
        serde_json::from_str(&f.ok(&["stats", "--no-stream", "--format", "json", name])).unwrap();
    v.as_array().unwrap()[0].clone()
}

/// A cgroup file of the container (v2 if the container's cgroup is there, else v1).
fn cg_file(f: &Frun, id: &str, controller: &str, file: &str) -> Option<String> {
    let rel = format!("{}/{id}", f.cgroup_parent.trim_start_matches('/'));
    let v2 = Path::new("/sys/fs/cgroup").join(&rel).join(file);
    let v1 = Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(&rel)
        .join(file);
    std::fs::read_to_string(v2)
        .or_else(|_| std::fs::read_to_string(v1))
        .ok()
}

fn keyed(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} ")))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// eth0's rx and tx bytes in the namespace of `pid`.
fn net_dev(pid: i64) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("eth0:"))
        .unwrap_or_else(|| panic!("no eth0 in {text}"));
    let f: Vec<u64> = line
        .split_once(':')
        .unwrap()
        .1
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    (f[0], f[8])
}

#[test]
fn stats_and_top_match_the_cgroup_and_the_kernel_counters() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let subnet = f
        .envs
        .iter()
        .find(|(k, _)| k == "FRUN_SUBNET")
        .unwrap()
        .1
        .clone();
    let gateway = subnet.replace(".0/24", ".1");
    // Known work: 5 pings of 1000 bytes to the bridge, then 40 MiB allocated and held.
    let id = f.ok(&[
        "run",
        "-d",
        "--name",
        "work",
        "--memory",
        "128m",
        &image(&reg, "checker"),
        "sh",
        "-c",
        &format!("ping -c 5 -i 0.2 -s 1000 {gateway} >/dev/null; exec checker alloc 40 300"),
    ]);
    let id = id.trim().to_string();
    wait_for(60, "40 MiB allocated", || {
        let o = f.run(&["logs", "--tail", "1", "work"]);
        String::from_utf8_lossy(&o.stdout)
            .contains("\"allocated_mb\":40")
            .then_some(())
    });
    let pid = container(&f, "work").unwrap()["pid"].as_i64().unwrap();
    let s = stats_json(&f, "work");
    let (rx, tx) = net_dev(pid);

    // Memory: what the cgroup says, page cache that can go not counted.
    let (usage, inactive) = match cg_file(&f, &id, "memory", "memory.current") {
        Some(cur) => (
            cur.trim().parse::<u64>().unwrap(),
            keyed(
                &cg_file(&f, &id, "memory", "memory.stat").unwrap(),
                "inactive_file",
            ),
        ),
        None => (
            cg_file(&f, &id, "memory", "memory.usage_in_bytes")
                .unwrap()
                .trim()
                .parse()
                .unwrap(),
            keyed(
                &cg_file(&f, &id, "memory", "memory.stat").unwrap(),
                "total_inactive_file",
            ),
        ),
    };
    let mem = s["memory_bytes"].as_u64().unwrap();
    eprintln!("stats: {s}");
    assert!(mem >= 40 << 20, "40 MiB allocated, stats says {mem}");
    assert!(mem < 128 << 20, "{mem}");
    let cgroup_says = usage - inactive;
    assert!(
        mem.abs_diff(cgroup_says) < 4 << 20,
        "stats {mem} vs cgroup {cgroup_says}"
    );
    assert_eq!(s["memory_limit_bytes"], 128u64 << 20);
    let pct = s["memory_percent"].as_f64().unwrap();
    assert!((pct - mem as f64 * 100.0 / (128u64 << 20) as f64).abs() < 0.01);
    // Network: the namespace's counters; the pings went out and came back.
    assert_eq!(
        (
            s["net_rx_bytes"].as_u64().unwrap(),
            s["net_tx_bytes"].as_u64().unwrap()
        ),
        (rx, tx)
    );
    assert!(tx >= 5 * 1000 && rx >= 5 * 1000, "rx {rx} tx {tx}");
    // Pids and CPU time.
    assert_eq!(s["pids"], 1, "one process: checker after exec");
    let cpu_now: u64 = match cg_file(&f, &id, "memory", "memory.current") {
        Some(_) => keyed(&cg_file(&f, &id, "cpu", "cpu.stat").unwrap(), "usage_usec") * 1000,
        None => cg_file(&f, &id, "cpuacct", "cpuacct.usage")
            .unwrap()
            .trim()
            .parse()
            .unwrap(),
    };
    let cpu = s["cpu_ns"].as_u64().unwrap();
    assert!(cpu > 0 && cpu <= cpu_now, "stats {cpu} vs cgroup {cpu_now}");
    assert!(s["cpu_percent"].as_f64().unwrap() >= 0.0);
    // The table has the container's row.
    let table = f.ok(&["stats", "--no-stream"]);
    assert!(
        table.contains("MEM USAGE / LIMIT") && table.contains(&id[..12]),
        "{table}"
    );

    // top: the container's one process, as the host sees it.
    let top = f.ok(&["top", "work"]);
    let row = top.lines().nth(1).unwrap_or_else(|| panic!("{top}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], pid.to_string(), "{top}");
    assert!(row.ends_with("checker alloc 40 300"), "{top}");
    f.ok(&["rm", "-f", "work"]);
    assert!(f
        .fails(&["stats", "--no-stream", "work"])
        .contains("no such container"));
}

#[test]
fn inspect_shows_container_image_and_volume() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let img = image(&reg, "checker");
    f.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "127.0.0.1:18080:80",
        "-v",
        "data:/data",
        &img,
        "sleep",
        "300",
    ]);
    let ps = wait_status(&f, "web", "running");
    let v: Value = serde_json::from_str(&f.ok(&["inspect", "web"])).unwrap();
    let c = &v[0];
    assert_eq!(c["name"], "web");
    assert_eq!(c["running"], true);
    assert_eq!(c["state"]["pid"], ps["pid"]);
    assert_eq!(c["command"], serde_json::json!(["sleep", "300"]));
    assert_eq!(c["ports"], serde_json::json!(["127.0.0.1:18080->80/tcp"]));
    assert!(c["address"].as_str().unwrap().starts_with("10.89."));
    assert!(c["uptime_seconds"].as_i64().unwrap() >= 0);
    assert_eq!(c["record"]["image_digest"].as_str().unwrap().len(), 71);
    assert_eq!(c["health"], Value::Null, "no health check, no health");
    let data = f.root().join("volumes/data/_data");
    assert!(c["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["destination"] == "/data" && m["source"] == data.to_str().unwrap()));
    let v: Value = serde_json::from_str(&f.ok(&["inspect", &img, "data"])).unwrap();
    assert!(v[0]["config"]["rootfs"]["diff_ids"].is_array(), "{}", v[0]);
    assert_eq!(v[1]["name"], "data");
    assert_eq!(v[1]["used_by"], serde_json::json!(["web"]));
    // ps: ports as Docker prints them, the command as it runs, filters and -q.
    f.ok(&["run", "-d", "--name", "dflt", "--network", "none", &img]);
    wait_status(&f, "dflt", "exited");
    let table = f.ok(&["ps", "-a"]);
    let web = table
        .lines()
        .find(|l| l.ends_with(" web"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        web.contains("127.0.0.1:18080->80/tcp") && web.contains("\"sleep 300\""),
        "{web}"
    );
    let dflt = table.lines().find(|l| l.ends_with(" dflt")).unwrap();
    assert!(
        dflt.contains("\"/usr/local/bin/chec"),
        "the image's command: {dflt}"
    );
    let ps: Value = serde_json::from_str(&f.ok(&["ps", "--format", "json"])).unwrap();
    assert_eq!(ps.as_array().unwrap().len(), 1);
    assert_eq!(
        ps[0]["ports"],
        serde_json::json!(["127.0.0.1:18080->80/tcp"])
    );
    assert_eq!(ps[0]["address"], c["address"]);
    assert!(ps[0]["uptime_seconds"].as_i64().unwrap() >= 0);
    let ids = |flags: &[&str]| {
        let mut a = vec!["ps", "-q"];
        a.extend_from_slice(flags);
        f.ok(&a)
    };
    let web_id = &c["id"].as_str().unwrap()[..12];
    assert_eq!(ids(&[]), format!("{web_id}\n"));
    assert_eq!(ids(&["-a", "--filter", "name=we"]), format!("{web_id}\n"));
    let exited = ids(&["--filter", "status=exited"]);
    assert_eq!(exited.lines().count(), 1);
    assert_ne!(exited.trim(), web_id);
    assert_eq!(ids(&["-a", "--filter", "label=frun.role"]), "");
    assert!(f
        .fails(&["ps", "--filter", "colour=red"])
        .contains("colour"));
    f.ok(&["rm", "dflt"]);
    let err = f.fails(&["inspect", "nothing-here"]);
    assert!(
        err.contains("no such container, image or volume: nothing-here"),
        "{err}"
    );
    f.ok(&["rm", "-f", "web"]);
}

#[test]
fn cp_copies_both_ways_and_symlinks_in_the_container_never_reach_the_host() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    // Links planted by the container: absolute and relative, pointing "out".
    f.ok(&[
        "run",
        "-d",
        "--name",
        "box",
        "--network",
        "none",
        &image(&reg, "checker"),
        "sh",
        "-c",
        "mkdir -p /srv/d/sub && echo in-box > /srv/d/a && echo deep > /srv/d/sub/b && ln -s /etc /srv/d/etc-link && ln -s / /tmp/root-link && ln -s ../../../../../../.. /tmp/up-link && touch /tmp/ready && exec sleep 300",
    ]);
    wait_status(&f, "box", "running");
    wait_for(30, "the links", || {
        let o = f.run(&["exec", "box", "test", "-e", "/tmp/ready"]);
        o.status.success().then_some(())
    });
    let host = f.dir.path().join("host");
    std::fs::create_dir(&host).unwrap();

    // Out: a file, and a directory (links copied as links).
    f.ok(&["cp", "box:/srv/d/a", host.join("a").to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(host.join("a")).unwrap(), "in-box\n");
    f.ok(&["cp", "box:/srv/d", host.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(host.join("d/sub/b")).unwrap(),
        "deep\n"
    );
    assert_eq!(
        std::fs::read_link(host.join("d/etc-link")).unwrap(),
        PathBuf::from("/etc")
    );

    // The links resolve inside the container: its /etc/passwd, not the host's.
    let image_passwd = "app:x:1000:";
    for via in [
        "box:/tmp/root-link/etc/passwd",
        "box:/tmp/up-link/etc/passwd",
    ] {
        let to = host.join("passwd");
        f.ok(&["cp", via, to.to_str().unwrap()]);
        let got = std::fs::read_to_string(&to).unwrap();
        let hosts = std::fs::read_to_string("/etc/passwd").unwrap();
        assert!(got.contains(image_passwd), "{via}: {got}");
        assert_ne!(got, hosts, "{via} reached the host's file");
    }

    // In: a file and a directory; through a link, still inside the container.
    let src = host.join("in.txt");
    std::fs::write(&src, "from-host\n").unwrap();
    f.ok(&["cp", src.to_str().unwrap(), "box:/srv/"]);
    let out = f.ok(&["exec", "box", "cat", "/srv/in.txt"]);
    assert_eq!(out, "from-host\n");
    let marker = format!("frun-cp-escape-{}", std::process::id());
    f.ok(&[
        "cp",
        src.to_str().unwrap(),
        &format!("box:/tmp/up-link/tmp/{marker}"),
    ]);
    assert!(
        !Path::new("/tmp").join(&marker).exists(),
        "written on the host"
    );
    let out = f.ok(&["exec", "box", "cat", &format!("/tmp/{marker}")]);
    assert_eq!(out, "from-host\n", "written in the container's /tmp");
    f.ok(&["cp", host.join("d").to_str().unwrap(), "box:/srv/copy"]);
    let out = f.ok(&["exec", "box", "cat", "/srv/copy/sub/b"]);
    assert_eq!(out, "deep\n");
    // A link planted where a file goes is not written through.
    f.ok(&[
        "exec",
        "box",
        "ln",
        "-s",
        "/tmp/target-of-link",
        "/srv/planted",
    ]);
    let err = f.fails(&["cp", src.to_str().unwrap(), "box:/srv/planted"]);
    assert!(err.contains("planted"), "{err}");

    f.ok(&["rm", "-f", "box"]);
    let err = f.fails(&["cp", "box:/etc/passwd", host.to_str().unwrap()]);
    assert!(err.contains("no such container"), "{err}");
}
