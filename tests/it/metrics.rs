//! The supervisor's Prometheus metrics (`[metrics] listen`), scraped over HTTP and read
//! with a real text-format parser (Python's `prometheus_client.parser`): a stack whose
//! app publishes a port, known requests through it, and the numbers checked against
//! the bytes the test itself sent and received, the cgroup's own counters, the
//! supervisor's health and the event log.

use crate::common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;

/// One HTTP exchange: what was sent and what came back (to the close).
fn exchange(addr: &str, request: &str) -> Result<(usize, Vec<u8>), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    s.read_to_end(&mut got).map_err(|e| e.to_string())?;
    Ok((request.len(), got))
}

/// `GET path` on the metrics address: status line and body.
fn scrape(addr: &str, path: &str) -> (String, String) {
    let (_, got) = exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .unwrap_or_else(|e| panic!("scraping {addr}: {e}"));
    let text = String::from_utf8(got).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// The families as `prometheus_client.parser` reads them: name, type, samples (name,
/// labels, value). A text it cannot parse fails the test.
fn parse(text: &str) -> Vec<Value> {
    const PY: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "help": f.documentation,
                "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]})
print(json.dumps(out))
"#;
    // Debian's python3, where python3-prometheus-client installs (not a pyenv's first
    // in PATH).
    let mut child = std::process::Command::new("/usr/bin/python3")
        .args(["-c", PY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/packages/test.txt)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused the metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The value of the sample `name` whose labels include `labels`.
fn value(families: &[Value], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families
        .iter()
        .flat_map(|f| f["samples"].as_array().unwrap())
        .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][k] == *v))
        .and_then(|s| s["value"].as_f64())
}

fn family<'a>(families: &'a [Value], name: &str) -> &'a Value {
    families
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no family {name}"))
}

/// CPU nanoseconds of a container's cgroup, from the kernel's own file.
fn cgroup_cpu_ns(f: &Frun, id: &str) -> u64 {
    let rel = format!("{}/{id}", f.cgroup_parent.trim_start_matches('/'));
    let root = Path::new("/sys/fs/cgroup");
    if let Ok(t) = std::fs::read_to_string(root.join(&rel).join("cpu.stat")) {
        if let Some(us) = t
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            return us * 1000;
        }
    }
    for c in ["cpuacct", "cpu,cpuacct"] {
        if let Ok(t) = std::fs::read_to_string(root.join(c).join(&rel).join("cpuacct.usage")) {
            return t.trim().parse().unwrap();
        }
    }
    panic!("no CPU accounting for {rel}")
}

#[test]
fn the_supervisor_serves_metrics_a_real_parser_reads_with_the_right_numbers() {
    let Some(reg) = registry() else { return };
    let f = Frun::new().checked();
    // 1. A stack: the app publishes a port itself, has a health check, and asks for
    //    metrics.
    let (port, mport) = (free_port(), free_port());
    let dir = f.dir.path().join("stack");
    std::fs::create_dir_all(dir.join("www")).unwrap();
    let page = "x".repeat(1000) + "\n";
    std::fs::write(dir.join("www/index.html"), &page).unwrap();
    let file = dir.join("frun.toml");
    std::fs::write(
        &file,
        format!(
            r#"name = "met"

[app]
image = "{reg}/test/busybox"
port = 8080
command = ["httpd", "-f", "-p", "8080", "-h", "/www"]
ports = ["127.0.0.1:{port}:8080"]
stop_grace = "1s"

[app.health]
tcp = true
interval = "200ms"

[data]
volumes = ["{www}:/www:ro"]

[metrics]
listen = "127.0.0.1:{mport}"
"#,
            www = dir.join("www").display()
        ),
    )
    .unwrap();
    let out = f.run(&["up", "-f", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}\nsupervisor:\n{}",
        text(&out.stderr),
        read_or_empty(&f.dir.path().join("run/supervise.log"))
    );
    let maddr = format!("127.0.0.1:{mport}");
    let addr = format!("127.0.0.1:{port}");
    let app = [("role", "app"), ("stack", "met")];

    // 2. Healthy, as the supervisor's metrics say.
    wait_for(30, "the app healthy in the metrics", || {
        let fams = parse(&scrape(&maddr, "/metrics").1);
        let mut l = app.to_vec();
        l.push(("status", "healthy"));
        (value(&fams, "frun_container_health_status", &l) == Some(1.0)).then_some(())
    });

    // 3. Known traffic through the published port: 5 requests, every byte counted.
    let (mut sent, mut received) = (0u64, 0u64);
    for i in 0..5 {
        let (n, got) = eventually(|| {
            exchange(
                &addr,
                &format!("GET /index.html?{i} HTTP/1.0\r\nHost: x\r\n\r\n"),
            )
        });
        assert!(String::from_utf8_lossy(&got).ends_with(&page));
        sent += n as u64;
        received += got.len() as u64;
    }
    // The holder reports within a second; the connections close right after the
    // client saw the end.
    let (status, text) = wait_for(30, "the port's counters", || {
        let (status, text) = scrape(&maddr, "/metrics");
        let fams = parse(&text);
        let l = &app[..];
        (value(&fams, "frun_port_connections_accepted_total", l) == Some(5.0)
            && value(&fams, "frun_port_connections_open", l) == Some(0.0))
        .then_some((status, text))
    });
    assert_eq!(status, "HTTP/1.1 200 OK");
    let fams = parse(&text);
    let port_label = format!("127.0.0.1:{port}:8080/tcp");
    let p = |dir: &str| {
        let mut l = app.to_vec();
        l.extend([("port", port_label.as_str()), ("direction", dir)]);
        value(&fams, "frun_port_bytes_total", &l)
    };
    assert_eq!(p("in"), Some(sent as f64), "{text}");
    assert_eq!(p("out"), Some(received as f64), "{text}");
    assert_eq!(
        value(&fams, "frun_port_connections_failed_total", &app),
        Some(0.0)
    );

    // 4. Types and help as the conventions want them.
    for (name, ty) in [
        ("frun_container_cpu_seconds", "counter"),
        ("frun_container_memory_bytes", "gauge"),
        ("frun_container_oom_kills", "counter"),
        ("frun_container_restarts", "counter"),
        ("frun_container_health_status", "gauge"),
        ("frun_port_connections_open", "gauge"),
        ("frun_port_bytes", "counter"),
    ] {
        let fam = family(&fams, name);
        assert_eq!(fam["type"], ty, "{fam}");
        assert!(!fam["help"].as_str().unwrap().is_empty(), "{fam}");
    }
    assert_eq!(
        value(&fams, "frun_container_restarts_total", &app),
        Some(0.0)
    );
    assert_eq!(
        value(&fams, "frun_container_oom_kills_total", &app),
        Some(0.0)
    );

    // 5. CPU and memory against the cgroup, read just before and after a scrape.
    let ps: Vec<Value> = serde_json::from_str(&f.ok(&["ps", "--format", "json"])).unwrap();
    let id = ps
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with("met-app"))
        .and_then(|c| c["id"].as_str())
        .expect("the app")
        .to_string();
    let before = cgroup_cpu_ns(&f, &id);
    let fams = parse(&scrape(&maddr, "/metrics").1);
    let after = cgroup_cpu_ns(&f, &id);
    let cpu = value(&fams, "frun_container_cpu_seconds_total", &app).unwrap();
    assert!(
        before as f64 / 1e9 <= cpu + 1e-9 && cpu <= after as f64 / 1e9 + 1e-9,
        "{before} <= {cpu} s <= {after}"
    );
    let mem = value(&fams, "frun_container_memory_bytes", &app).unwrap();
    assert!(mem > 0.0, "{mem}");

    // 6. A swap as `frun swap` tells it (one event line of its shape): counted by
    //    outcome, its duration summed.
    let events = f.root().join("events/events.jsonl");
    let line = r#"{"time":"2026-12-01T10:00:00Z","kind":"swap","type":"stack","stack":"met","role":"app","attrs":{"outcome":"deployed","duration_ms":"2500"}}"#;
    let mut ev = std::fs::OpenOptions::new()
        .append(true)
        .open(&events)
        .unwrap();
    writeln!(ev, "{line}").unwrap();
    let fams = parse(&scrape(&maddr, "/metrics").1);
    assert_eq!(
        value(
            &fams,
            "frun_swaps_total",
            &[("stack", "met"), ("outcome", "deployed")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&fams, "frun_swap_duration_seconds_sum", &[("stack", "met")]),
        Some(2.5)
    );

    // 7. A backup as `frun backup` tells it: its end is the last success.
    let line = r#"{"time":"2026-12-01T11:00:00.25Z","kind":"backup","type":"stack","stack":"met","attrs":{"reason":"manual","outcome":"ok","duration_seconds":"1.500"}}"#;
    writeln!(ev, "{line}").unwrap();
    let fams = parse(&scrape(&maddr, "/metrics").1);
    assert_eq!(
        value(
            &fams,
            "frun_backup_last_success_timestamp_seconds",
            &[("stack", "met")]
        ),
        Some(1796122800.25)
    );

    // 8. Only /metrics is served; HEAD has GET's head and no body; other methods are
    //    told what is allowed.
    assert_eq!(
        scrape(&maddr, "/other").0,
        "HTTP/1.1 404 Not Found",
        "another path"
    );
    let (_, got) = exchange(&maddr, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let got = String::from_utf8(got).unwrap();
    let (head, body) = got.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(head.contains("Content-Length: "), "{got}");
    assert_eq!(body, "", "a HEAD answer has no body");
    let (_, got) = exchange(&maddr, "POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let got = String::from_utf8(got).unwrap();
    assert!(
        got.starts_with("HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\n"),
        "{got}"
    );
    f.ok(&["down", "-f", file.to_str().unwrap()]);
}

#[test]
fn metrics_are_off_unless_asked_and_a_taken_address_is_told() {
    let Some(reg) = registry() else { return };
    let f = Frun::new().checked();
    let mport = free_port();
    let file = f.dir.path().join("stack/frun.toml");
    let write = |metrics: &str| {
        write_stack_file(
            &f,
            &format!(
                "name = \"off\"\n\n[app]\nimage = \"{reg}/test/busybox\"\ncommand = [\"sleep\", \"600\"]\nstop_grace = \"1s\"\n{metrics}"
            ),
        );
    };
    // 1. Without [metrics]: the supervisor runs and has no TCP socket at all.
    write("");
    f.ok(&["up", "-f", file.to_str().unwrap()]);
    let pid: i32 = {
        let mut s =
            std::os::unix::net::UnixStream::connect(f.dir.path().join("run/supervise.sock"))
                .unwrap();
        writeln!(s, "ping").unwrap();
        let mut a = String::new();
        s.read_to_string(&mut a).unwrap();
        a.trim().strip_prefix("pong ").unwrap().parse().unwrap()
    };
    let tcp = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap()
        + &std::fs::read_to_string(format!("/proc/{pid}/net/tcp6")).unwrap_or_default();
    let tcp_inodes: Vec<&str> = tcp
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(9))
        .collect();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        let link = std::fs::read_link(e.path()).unwrap_or_default();
        let link = link.to_string_lossy();
        if let Some(inode) = link
            .strip_prefix("socket:[")
            .and_then(|r| r.strip_suffix(']'))
        {
            assert!(
                !tcp_inodes.contains(&inode),
                "the supervisor has a TCP socket without [metrics]:\n{tcp}"
            );
        }
    }
    // 2. An address another socket holds: `up` says so, naming it.
    let holder = bound_not_listening(mport);
    write(&format!("\n[metrics]\nlisten = \"127.0.0.1:{mport}\"\n"));
    let err = f.fails(&["up", "-f", file.to_str().unwrap()]);
    assert!(
        err.contains(&format!("serving metrics on 127.0.0.1:{mport}")),
        "{err}"
    );
    // 3. Free again: the same supervisor serves it.
    drop(holder);
    f.ok(&["up", "-f", file.to_str().unwrap()]);
    let (status, body) = scrape(&format!("127.0.0.1:{mport}"), "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let fams = parse(&body);
    assert!(value(&fams, "frun_container_memory_bytes", &[("stack", "off")]).is_some());
    f.ok(&["down", "-f", file.to_str().unwrap()]);
}

/// A TCP socket bound to 127.0.0.1:`port` but not listening (and without
/// SO_REUSEADDR): a connect there is refused, a bind fails with "address in use".
fn bound_not_listening(port: u16) -> rustix::fd::OwnedFd {
    use rustix::net::{bind, socket, AddressFamily, SocketType};
    let s = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    bind(&s, &addr).unwrap();
    s
}
