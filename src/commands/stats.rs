//! `frun stats` and `frun top`: a container's resource use and processes, through
//! `crate::stats`.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::cli::{Format, Global, StatsArgs, TopArgs};
use crate::containers::{Container, Containers, Status};
use crate::stats::{self, Host, Sample};

use super::images::human_size;

/// The running containers named (all running ones without names).
fn targets(g: &Global, keys: &[String]) -> anyhow::Result<Vec<(Container, i32)>> {
    let containers = Containers::open(&g.root)?;
    let mut out = Vec::new();
    if keys.is_empty() {
        for c in containers.list()? {
            if let Ok(st) = c.state() {
                if let (Status::Running, Some(pid)) = (st.status, st.pid) {
                    out.push((c, pid));
                }
            }
        }
    } else {
        for k in keys {
            let c = containers.find(k)?;
            let st = c.state()?;
            match (st.status, st.pid) {
                (Status::Running, Some(pid)) => out.push((c, pid)),
                _ => anyhow::bail!("container {} is not running", c.record.name),
            }
        }
    }
    Ok(out)
}

/// One row of `stats`, as `--format json` prints it.
#[derive(serde::Serialize)]
struct Row {
    id: String,
    name: String,
    cpu_percent: f64,
    memory_percent: f64,
    #[serde(flatten)]
    sample: Sample,
}

fn rows(host: &Host, cs: &[(Container, i32)], before: &[Sample], wall: Duration) -> Vec<Row> {
    cs.iter()
        .zip(before)
        .map(|((c, pid), b)| {
            let s = stats::sample(host, &c.record.cgroup, Some(*pid));
            let mem_pct = if s.memory_limit_bytes > 0 {
                s.memory_bytes as f64 * 100.0 / s.memory_limit_bytes as f64
            } else {
                0.0
            };
            Row {
                id: c.record.id.clone(),
                name: c.record.name.clone(),
                cpu_percent: stats::cpu_percent(b, &s, wall.as_nanos() as u64),
                memory_percent: mem_pct,
                sample: s,
            }
        })
        .collect()
}

fn print(out: &mut impl Write, rows: &[Row], format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer(&mut *out, rows)?;
            writeln!(out)?;
        }
        Format::Table => {
            writeln!(
                out,
                "{:<12}  {:<20}  {:>7}  {:>21}  {:>6}  {:>19}  {:>19}  {:>5}",
                "CONTAINER ID",
                "NAME",
                "CPU %",
                "MEM USAGE / LIMIT",
                "MEM %",
                "NET I/O",
                "BLOCK I/O",
                "PIDS"
            )?;
            for r in rows {
                let s = &r.sample;
                writeln!(
                    out,
                    "{:<12}  {:<20}  {:>6.2}%  {:>21}  {:>5.2}%  {:>19}  {:>19}  {:>5}",
                    &r.id[..12],
                    crate::containers::sanitize(&r.name),
                    r.cpu_percent,
                    format!(
                        "{} / {}",
                        human_size(s.memory_bytes),
                        human_size(s.memory_limit_bytes)
                    ),
                    r.memory_percent,
                    format!(
                        "{} / {}",
                        human_size(s.net_rx_bytes),
                        human_size(s.net_tx_bytes)
                    ),
                    format!(
                        "{} / {}",
                        human_size(s.block_read_bytes),
                        human_size(s.block_write_bytes)
                    ),
                    s.pids
                )?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// `frun stats`: a reading each second (CPU % over that second), as `docker stats`;
/// `--no-stream` prints one reading (CPU % over half a second) and exits.
pub fn stats(g: &Global, args: StatsArgs) -> anyhow::Result<ExitCode> {
    let host = Host::default();
    let cs = targets(g, &args.containers)?;
    let mut before: Vec<Sample> = cs
        .iter()
        .map(|(c, pid)| stats::sample(&host, &c.record.cgroup, Some(*pid)))
        .collect();
    let mut at = Instant::now();
    let interval = if args.no_stream {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(1)
    };
    let mut out = std::io::stdout().lock();
    loop {
        std::thread::sleep(interval);
        let wall = at.elapsed();
        at = Instant::now();
        let rows = rows(&host, &cs, &before, wall);
        if !args.no_stream && args.format == Format::Table {
            // Clear the screen and go home, as docker stats redraws.
            write!(out, "\x1b[2J\x1b[H")?;
        }
        print(&mut out, &rows, args.format)?;
        if args.no_stream {
            return Ok(ExitCode::SUCCESS);
        }
        before = rows.into_iter().map(|r| r.sample).collect();
    }
}

/// `frun top CONTAINER`: the processes in the container's cgroup, as `ps -ef` columns.
pub fn top(g: &Global, args: TopArgs) -> anyhow::Result<ExitCode> {
    let host = Host::default();
    let containers = Containers::open(&g.root)?;
    let c = containers.find(&args.container)?;
    if c.state()?.status != Status::Running {
        anyhow::bail!("container {} is not running", c.record.name);
    }
    let ticks = rustix::param::clock_ticks_per_second().max(1);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<8}  {:<8}  {:<8}  {:>10}  CMD",
        "UID", "PID", "PPID", "TIME"
    )?;
    for pid in stats::cgroup_pids(&host, &c.record.cgroup) {
        let dir = host.proc.join(pid.to_string());
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let comm = stat[stat.find('(').map_or(0, |p| p + 1)..close].to_string();
        let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // Fields after the name: state(0) ppid(1) ... utime(11) stime(12).
        let secs = (field(11) + field(12)) / ticks;
        let uid = std::fs::read_to_string(dir.join("status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|v| v.split_whitespace().next().map(str::to_string))
            })
            .unwrap_or_default();
        let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        let cmd = if cmdline.is_empty() {
            format!("[{comm}]")
        } else {
            cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        writeln!(
            out,
            "{:<8}  {:<8}  {:<8}  {:>10}  {}",
            uid,
            pid,
            field(1),
            format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60),
            crate::containers::sanitize(&cmd)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
