//! Prometheus metrics, served by the supervisor on an address the user opts into
//! (`[metrics] listen = "127.0.0.1:9464"` in a stack file, or `frun supervise --metrics
//! ADDR`; off by default), as the text exposition format on `GET /metrics`.
//!
//! Where each number comes from, read at scrape time (nothing is sampled in between):
//! - per container (running ones): CPU seconds, memory, pids and network bytes from its
//!   cgroup and namespace (`crate::stats`, as `frun stats`), restarts from its state,
//!   OOM kills from the event log (past lives) plus its cgroup (this life), health from
//!   the supervisor's own checks;
//! - per published port: the counters of the forwarder in the container's holder (not
//!   in the supervisor: a swap retargets ports, but the holder relays). The holder
//!   writes them, when they changed and at most once a second, to
//!   `RUN_ROOT/ports/<id>.json` ([`report_ports`]); a scrape reads that file. Cheaper
//!   than a socket per holder and no per-connection cost: the forwarder only bumps
//!   atomics. The price is up to a second of staleness;
//! - swaps and backups: the event log (`crate::events`), read incrementally by a
//!   [`crate::events::Tail`], so they appear as soon as `swap` and `backup` emit.
//!
//! Names follow Prometheus' conventions: `frun_` prefix, base units (seconds, bytes),
//! `_total` on counters, HELP and TYPE once per family, label values escaped.
//!
//! The server lives in the supervisor's single-threaded loop: accepts are non-blocking
//! and a client gets 500 ms to send its request, so a stuck scraper delays health checks
//! by at most that.

use anyhow::Context;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::containers::{Container, Containers, Status};
use crate::events::{Event, Kind, Tail};
use crate::forward::{PortCounters, Snapshot};
use crate::supervise::health;

/// `RUN_ROOT/ports/<id>.json`: the holder's report of its published ports.
pub fn ports_path(run_root: &Path, id: &str) -> PathBuf {
    run_root.join("ports").join(format!("{id}.json"))
}

/// The holder's writer of [`ports_path`]; stopped (and the file removed) with the
/// container's ports.
pub struct PortsReport {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    path: PathBuf,
}

/// Writes the snapshot of `ports` to `path` when it changed, at most once a second,
/// on a thread of its own, until [`PortsReport::stop`].
pub fn report_ports(path: PathBuf, ports: Vec<(String, Arc<PortCounters>)>) -> PortsReport {
    let stop = Arc::new(AtomicBool::new(false));
    let (stop2, path2) = (stop.clone(), path.clone());
    let thread = std::thread::Builder::new()
        .name("frun-ports".into())
        .spawn(move || {
            let mut last: Option<Vec<Snapshot>> = None;
            loop {
                let now: Vec<Snapshot> = ports.iter().map(|(p, c)| c.snapshot(p)).collect();
                if last.as_ref() != Some(&now) {
                    if let Err(e) = write_ports(&path2, &now) {
                        tracing::debug!(error = %format!("{e:#}"), "writing the ports' counters");
                    }
                    last = Some(now);
                }
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::park_timeout(Duration::from_secs(1));
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
            }
        })
        .ok();
    PortsReport { stop, thread, path }
}

fn write_ports(path: &Path, snap: &[Snapshot]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {dir:?}"))?;
    }
    // Runtime state (gone with a reboot, as the ports are): no fsync.
    frun_images::fsutil::write_replace(path, &serde_json::to_vec(snap)?)
        .with_context(|| format!("writing {path:?}"))
}

impl PortsReport {
    /// Ends the writer and removes the file: the ports are closed.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        crate::cleanup::remove_file(&self.path);
    }
}

fn read_ports(run_root: &Path, id: &str) -> Vec<Snapshot> {
    std::fs::read(ports_path(run_root, id))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_default()
}

/// What the event log has told so far (since this supervisor started reading it).
#[derive(Default)]
struct FromEvents {
    /// OOM kills per container id, of its lives that ended.
    oom_kills: HashMap<String, u64>,
    /// (stack, outcome) to count.
    swaps: BTreeMap<(String, String), u64>,
    /// stack to (sum of seconds, count).
    swap_seconds: BTreeMap<String, (f64, u64)>,
    backups: BTreeMap<(String, String), u64>,
    restores: BTreeMap<(String, String), u64>,
    /// stack to the Unix time of its last successful backup.
    last_backup: BTreeMap<String, f64>,
}

impl FromEvents {
    fn take(&mut self, ev: Event) {
        let stack = ev.stack.clone().unwrap_or_default();
        let outcome = || {
            ev.attrs
                .get("outcome")
                .cloned()
                .unwrap_or_else(|| "ok".into())
        };
        match ev.kind {
            Kind::Oom => {
                if let Some(id) = &ev.id {
                    let n = ev
                        .attrs
                        .get("killed")
                        .and_then(|k| k.parse().ok())
                        .unwrap_or(1);
                    *self.oom_kills.entry(id.clone()).or_default() += n;
                }
            }
            Kind::Swap => {
                *self.swaps.entry((stack.clone(), outcome())).or_default() += 1;
                // `duration_seconds`, or `duration_ms` as `frun swap` wrote it once.
                let secs = |k: &str, scale: f64| {
                    ev.attrs
                        .get(k)
                        .and_then(|d| d.parse::<f64>().ok())
                        .map(|d| d / scale)
                };
                if let Some(d) = secs("duration_seconds", 1.0).or(secs("duration_ms", 1000.0)) {
                    let e = self.swap_seconds.entry(stack).or_default();
                    e.0 += d;
                    e.1 += 1;
                }
            }
            Kind::Backup => {
                let outcome = outcome();
                if ["ok", "done", "success", "succeeded"].contains(&outcome.as_str()) {
                    if let Some(t) = ev.at() {
                        let secs = t.timestamp() as f64 + t.timestamp_subsec_nanos() as f64 / 1e9;
                        let last = self.last_backup.entry(stack.clone()).or_default();
                        *last = last.max(secs);
                    }
                }
                *self.backups.entry((stack, outcome)).or_default() += 1;
            }
            Kind::Restore => {
                *self.restores.entry((stack, outcome())).or_default() += 1;
            }
            _ => {}
        }
    }
}

/// A sample: a name suffix (`_sum`, `_count` of a summary, else empty), labels, value.
type Sample = (String, Vec<(&'static str, String)>, f64);

/// A port's values, each with a `direction` label or none.
type PortValues = Vec<(Option<&'static str>, f64)>;

/// The text exposition format, family by family.
#[derive(Default)]
struct Exposition {
    out: String,
}

/// A label value as the format wants it: `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

impl Exposition {
    /// HELP and TYPE of one family, then its samples (`suffix` for a summary's parts).
    fn family(&mut self, name: &str, kind: &str, help: &str, samples: &[Sample]) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        for (suffix, labels, v) in samples {
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let value = if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
                format!("{}", *v as i64)
            } else {
                format!("{v}")
            };
            let _ = if labels.is_empty() {
                writeln!(self.out, "{name}{suffix} {value}")
            } else {
                writeln!(self.out, "{name}{suffix}{{{}}} {value}", labels.join(","))
            };
        }
    }
}

/// One running container's numbers.
struct Row {
    labels: Vec<(&'static str, String)>,
    sample: crate::stats::Sample,
    restarts: u32,
    oom_kills: u64,
    started: Option<f64>,
    health: Option<health::Status>,
    ports: Vec<Snapshot>,
}

fn container_labels(c: &Container) -> Vec<(&'static str, String)> {
    let l = &c.record.labels;
    vec![
        ("container", c.record.name.clone()),
        (
            "role",
            l.get(crate::model::LABEL_ROLE).cloned().unwrap_or_default(),
        ),
        (
            "stack",
            l.get(crate::model::LABEL_STACK)
                .cloned()
                .unwrap_or_default(),
        ),
    ]
}

/// The metrics text for these rows and event counts.
fn render(rows: &[Row], ev: &FromEvents) -> String {
    let mut x = Exposition::default();
    let per = |f: &dyn Fn(&Row) -> f64| -> Vec<Sample> {
        rows.iter()
            .map(|r| (String::new(), r.labels.clone(), f(r)))
            .collect()
    };
    x.family(
        "frun_container_cpu_seconds_total",
        "counter",
        "CPU time the container's cgroup used.",
        &per(&|r| r.sample.cpu_ns as f64 / 1e9),
    );
    x.family(
        "frun_container_memory_bytes",
        "gauge",
        "Memory in use, inactive page cache not counted (as docker stats).",
        &per(&|r| r.sample.memory_bytes as f64),
    );
    x.family(
        "frun_container_memory_limit_bytes",
        "gauge",
        "The container's memory limit, or the host's memory without one.",
        &per(&|r| r.sample.memory_limit_bytes as f64),
    );
    x.family(
        "frun_container_pids",
        "gauge",
        "Processes in the container.",
        &per(&|r| r.sample.pids as f64),
    );
    x.family(
        "frun_container_network_receive_bytes_total",
        "counter",
        "Bytes received on the container's interfaces (lo not counted).",
        &per(&|r| r.sample.net_rx_bytes as f64),
    );
    x.family(
        "frun_container_network_transmit_bytes_total",
        "counter",
        "Bytes sent on the container's interfaces (lo not counted).",
        &per(&|r| r.sample.net_tx_bytes as f64),
    );
    x.family(
        "frun_container_oom_kills_total",
        "counter",
        "Processes of the container killed by the kernel's OOM killer, across restarts.",
        &per(&|r| r.oom_kills as f64),
    );
    x.family(
        "frun_container_restarts_total",
        "counter",
        "Times the restart policy started the container again.",
        &per(&|r| r.restarts as f64),
    );
    let started: Vec<_> = rows
        .iter()
        .filter_map(|r| Some((String::new(), r.labels.clone(), r.started?)))
        .collect();
    x.family(
        "frun_container_start_time_seconds",
        "gauge",
        "When the container's current process started, Unix time.",
        &started,
    );
    let mut health_rows = Vec::new();
    for r in rows {
        let Some(h) = r.health else { continue };
        for s in [
            health::Status::Starting,
            health::Status::Healthy,
            health::Status::Unhealthy,
        ] {
            let mut l = r.labels.clone();
            l.push(("status", s.to_string()));
            health_rows.push((String::new(), l, if s == h { 1.0 } else { 0.0 }));
        }
    }
    x.family(
        "frun_container_health_status",
        "gauge",
        "1 for the container's current health (starting, healthy, unhealthy), 0 for the others.",
        &health_rows,
    );
    // Published ports.
    let port_rows = |f: &dyn Fn(&Snapshot) -> PortValues| {
        let mut out = Vec::new();
        for r in rows {
            for p in &r.ports {
                for (dir, v) in f(p) {
                    let mut l = r.labels.clone();
                    l.push(("port", p.port.clone()));
                    if let Some(d) = dir {
                        l.push(("direction", d.to_string()));
                    }
                    out.push((String::new(), l, v));
                }
            }
        }
        out
    };
    x.family(
        "frun_port_connections_open",
        "gauge",
        "Connections (UDP: client flows) open through a published port.",
        &port_rows(&|p| vec![(None, p.open as f64)]),
    );
    x.family(
        "frun_port_connections_accepted_total",
        "counter",
        "Connections (UDP: client flows) a published port accepted.",
        &port_rows(&|p| vec![(None, p.accepted as f64)]),
    );
    x.family(
        "frun_port_connections_failed_total",
        "counter",
        "Connections a published port accepted but could not relay to the container.",
        &port_rows(&|p| vec![(None, p.failed as f64)]),
    );
    x.family(
        "frun_port_bytes_total",
        "counter",
        "Bytes relayed by a published port: in from clients, out to clients.",
        &port_rows(&|p| {
            vec![
                (Some("in"), p.bytes_in as f64),
                (Some("out"), p.bytes_out as f64),
            ]
        }),
    );
    // Stacks: from the event log.
    let by_outcome = |m: &BTreeMap<(String, String), u64>| -> Vec<Sample> {
        m.iter()
            .map(|((s, o), n)| {
                (
                    String::new(),
                    vec![("stack", s.clone()), ("outcome", o.clone())],
                    *n as f64,
                )
            })
            .collect()
    };
    x.family(
        "frun_swaps_total",
        "counter",
        "App swaps of a stack, by outcome as frun history tells it (deployed, failed, undone, finished).",
        &by_outcome(&ev.swaps),
    );
    let mut swap_secs = Vec::new();
    for (s, (sum, n)) in &ev.swap_seconds {
        swap_secs.push(("_sum".to_string(), vec![("stack", s.clone())], *sum));
        swap_secs.push(("_count".to_string(), vec![("stack", s.clone())], *n as f64));
    }
    x.family(
        "frun_swap_duration_seconds",
        "summary",
        "How long swaps took, from start to the old app stopped.",
        &swap_secs,
    );
    x.family(
        "frun_backups_total",
        "counter",
        "Backups of a stack's data, by outcome.",
        &by_outcome(&ev.backups),
    );
    x.family(
        "frun_restores_total",
        "counter",
        "Restores of a stack's data, by outcome.",
        &by_outcome(&ev.restores),
    );
    let last: Vec<_> = ev
        .last_backup
        .iter()
        .map(|(s, t)| (String::new(), vec![("stack", s.clone())], *t))
        .collect();
    x.family(
        "frun_backup_last_success_timestamp_seconds",
        "gauge",
        "When the stack's last successful backup finished, Unix time.",
        &last,
    );
    x.out
}

/// The supervisor's metrics endpoints (one per address asked for) and what they read.
#[derive(Default)]
pub struct Server {
    listeners: Vec<(SocketAddr, TcpListener)>,
    tail: Tail,
    events: FromEvents,
}

impl Server {
    /// Serves on `addr` too (nothing to do if it does already).
    pub fn listen(&mut self, addr: SocketAddr) -> anyhow::Result<()> {
        if self.listeners.iter().any(|(a, _)| *a == addr) {
            return Ok(());
        }
        let l = TcpListener::bind(addr)
            .with_context(|| format!("serving metrics on {addr}: binding it"))?;
        l.set_nonblocking(true)?;
        tracing::info!(%addr, "serving metrics");
        self.listeners.push((addr, l));
        Ok(())
    }

    /// Answers every waiting scrape.
    pub fn serve(
        &mut self,
        root: &Path,
        run_root: &Path,
        containers: &Containers,
        health: &dyn Fn(&str) -> Option<health::Status>,
    ) {
        let mut waiting = Vec::new();
        for (_, l) in &self.listeners {
            while let Ok((s, _)) = l.accept() {
                waiting.push(s);
            }
        }
        if waiting.is_empty() {
            return;
        }
        let mut body = None;
        for s in waiting {
            let _ = s.set_nonblocking(false);
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
            let answer = match request(&s) {
                Some(Request::Read { path, head }) if path == "/metrics" => {
                    let text =
                        body.get_or_insert_with(|| self.text(root, run_root, containers, health));
                    http(200, "OK", METRICS_TYPE, text, head)
                }
                Some(Request::Read { head, .. }) => {
                    http(404, "Not Found", "text/plain", "try /metrics\n", head)
                }
                Some(Request::Other) => http(
                    405,
                    "Method Not Allowed\r\nAllow: GET, HEAD",
                    "text/plain",
                    "GET /metrics\n",
                    false,
                ),
                None => http(400, "Bad Request", "text/plain", "GET /metrics\n", false),
            };
            let _ = (&s).write_all(answer.as_bytes());
        }
    }

    /// The metrics now.
    fn text(
        &mut self,
        root: &Path,
        run_root: &Path,
        containers: &Containers,
        health: &dyn Fn(&str) -> Option<health::Status>,
    ) -> String {
        let events = &mut self.events;
        self.tail.read(root, &mut |e| events.take(e));
        let host = crate::stats::Host::default();
        let mut rows = Vec::new();
        for c in containers.list().unwrap_or_default() {
            let Ok(st) = c.state() else { continue };
            if st.status != Status::Running {
                continue;
            }
            let sample = crate::stats::sample(&host, &c.record.cgroup, st.pid);
            let started = st
                .started_at
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp() as f64 + t.timestamp_subsec_nanos() as f64 / 1e9);
            rows.push(Row {
                labels: container_labels(&c),
                oom_kills: self
                    .events
                    .oom_kills
                    .get(&c.record.id)
                    .copied()
                    .unwrap_or(0)
                    + sample.oom_kills,
                sample,
                restarts: st.restart_count,
                started,
                health: c
                    .record
                    .health
                    .as_ref()
                    .map(|_| health(&c.record.id).unwrap_or(health::Status::Starting)),
                ports: read_ports(run_root, &c.record.id),
            });
        }
        // Forget the OOM counts of containers that are gone.
        let ids: std::collections::HashSet<String> = containers
            .list()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.record.id)
            .collect();
        self.events.oom_kills.retain(|id, _| ids.contains(id));
        render(&rows, &self.events)
    }
}

const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a scraper asked for.
#[derive(Debug, PartialEq)]
enum Request {
    /// `GET` (or `HEAD`: the same head, no body) of a path, its query left out.
    Read { path: String, head: bool },
    /// Any other method: answered 405 with what is allowed.
    Other,
}

/// The request line of a request, read within the socket's timeout (`None`: not HTTP).
fn request(s: &std::net::TcpStream) -> Option<Request> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        match (&*s).read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut first = text.lines().next()?.split_whitespace();
    let (method, target) = (first.next()?, first.next()?);
    let path = target.split('?').next().unwrap_or(target).to_string();
    match method {
        "GET" => Some(Request::Read { path, head: false }),
        "HEAD" => Some(Request::Read { path, head: true }),
        _ => Some(Request::Other),
    }
}

/// An HTTP/1.1 answer; for `HEAD` the head alone (its Content-Length that of the body).
fn http(code: u16, reason: &str, ctype: &str, body: &str, head: bool) -> String {
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        if head { "" } else { body }
    )
}

/// The addresses of `[metrics] listen` in the stacks `frun up` recorded (the supervisor
/// serves them from its start, after a boot too).
pub fn recorded(root: &Path) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root.join("stacks"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(rec) = std::fs::read(e.path().join("stack.json")) else {
            continue;
        };
        let Some(file) = serde_json::from_slice::<serde_json::Value>(&rec)
            .ok()
            .and_then(|v| v["file"].as_str().map(PathBuf::from))
        else {
            continue;
        };
        match crate::stack::Stack::load(&file, root) {
            Ok(s) => out.extend(s.metrics),
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %format!("{e:#}"), "reading a recorded stack for its metrics address")
            }
        }
    }
    out
}

/// `frun up` of a stack with `[metrics] listen`: the supervisor serves it (unless
/// something answers there already: the supervisor, after a boot).
pub fn ensure_served(g: &crate::cli::Global, addr: SocketAddr) -> anyhow::Result<()> {
    if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
        return Ok(());
    }
    let answer = crate::supervise::request(&g.run_root, &format!("metrics {addr}"))?;
    match answer.strip_prefix("error: ") {
        Some(e) => anyhow::bail!("{e}"),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, role: &str) -> Row {
        Row {
            labels: vec![
                ("container", name.into()),
                ("role", role.into()),
                ("stack", "s".into()),
            ],
            sample: crate::stats::Sample {
                cpu_ns: 1_500_000_000,
                memory_bytes: 4096,
                ..Default::default()
            },
            restarts: 2,
            oom_kills: 1,
            started: Some(1.7e9),
            health: Some(health::Status::Healthy),
            ports: vec![Snapshot {
                port: "127.0.0.1:8080:80/tcp".into(),
                open: 1,
                accepted: 3,
                failed: 0,
                bytes_in: 10,
                bytes_out: 20,
            }],
        }
    }

    #[test]
    fn families_have_help_and_type_once_and_escaped_labels() {
        let mut ev = FromEvents::default();
        let swap = |outcome: &str, d: &str| {
            let mut e = Event::new(Kind::Swap)
                .stack("s")
                .attr("outcome", outcome)
                .attr("duration_seconds", d);
            e.time = "2026-12-01T10:00:00Z".into();
            e
        };
        ev.take(swap("ok", "2.5"));
        let mut ms = swap("failed", "0");
        ms.attrs.remove("duration_seconds");
        ms.attrs.insert("duration_ms".into(), "1000".into());
        ev.take(ms);
        let mut b = Event::new(Kind::Backup).stack("s").attr("outcome", "ok");
        b.time = "2026-12-01T10:00:00.5Z".into();
        ev.take(b);
        let text = render(&[row("a\"b", "app"), row("p", "proxy")], &ev);
        for l in [
            r#"frun_container_cpu_seconds_total{container="a\"b",role="app",stack="s"} 1.5"#,
            r#"frun_container_memory_bytes{container="p",role="proxy",stack="s"} 4096"#,
            r#"frun_container_health_status{container="p",role="proxy",stack="s",status="healthy"} 1"#,
            r#"frun_container_health_status{container="p",role="proxy",stack="s",status="unhealthy"} 0"#,
            r#"frun_port_bytes_total{container="p",role="proxy",stack="s",port="127.0.0.1:8080:80/tcp",direction="out"} 20"#,
            r#"frun_swaps_total{stack="s",outcome="failed"} 1"#,
            r#"frun_swap_duration_seconds_sum{stack="s"} 3.5"#,
            r#"frun_swap_duration_seconds_count{stack="s"} 2"#,
            r#"frun_backup_last_success_timestamp_seconds{stack="s"} 1796119200.5"#,
        ] {
            assert!(text.lines().any(|x| x == l), "no {l} in\n{text}");
        }
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let mut names: Vec<&str> = types.iter().map(|l| l.split(' ').nth(2).unwrap()).collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "a family twice");
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            assert!(
                names.iter().any(|f| name == *f
                    || name
                        .strip_prefix(f)
                        .is_some_and(|s| s == "_sum" || s == "_count")),
                "{l}: no TYPE"
            );
        }
    }

    #[test]
    fn the_ports_report_is_written_on_change_and_removed_at_stop() {
        let t = tempfile::tempdir().unwrap();
        let path = ports_path(t.path(), "abc");
        let c = Arc::new(PortCounters::default());
        let r = report_ports(path.clone(), vec![("p".into(), c.clone())]);
        let read = || read_ports(t.path(), "abc");
        for _ in 0..500 {
            if !read().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(read()[0].accepted, 0);
        drop(c.accept());
        PortCounters::add(&c.bytes_in, 7);
        for _ in 0..500 {
            if read()[0].bytes_in == 7 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            (read()[0].accepted, read()[0].open, read()[0].bytes_in),
            (1, 0, 7)
        );
        r.stop();
        assert!(!path.exists());
    }

    #[test]
    fn get_and_head_are_answered_and_other_methods_told_what_is_allowed() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let read = |path: &str, head| {
            Some(Request::Read {
                path: path.into(),
                head,
            })
        };
        for (req, want) in [
            (
                "GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n",
                read("/metrics", false),
            ),
            ("HEAD /metrics HTTP/1.1\r\n\r\n", read("/metrics", true)),
            ("POST /metrics HTTP/1.1\r\n\r\n", Some(Request::Other)),
            ("\r\n\r\n", None),
        ] {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.write_all(req.as_bytes()).unwrap();
            let (s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            assert_eq!(request(&s), want, "{req:?}");
        }
        // HEAD: GET's head, with the body's length, and no body.
        let get = http(200, "OK", METRICS_TYPE, "a 1\n", false);
        let head = http(200, "OK", METRICS_TYPE, "a 1\n", true);
        assert_eq!(get.strip_suffix("a 1\n"), Some(head.as_str()));
        assert!(head.contains("Content-Length: 4\r\n"), "{head}");
    }
}
