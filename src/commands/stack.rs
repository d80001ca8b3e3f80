//! `up`, `down`, `status`, `systemd-unit`: thin doors to [`crate::stack`] and
//! [`crate::supervise`].

use std::io::Write;
use std::process::ExitCode;

use crate::cli::{DownArgs, Format, Global, RollbackArgs, StackArgs, StatusArgs, SwapArgs};
use crate::containers::{Container, Containers, Status};
use crate::stack::{history as stack_history, swap as stack_swap, up as stack_up, Stack};

pub fn up(g: &Global, args: StackArgs) -> anyhow::Result<ExitCode> {
    let stack = Stack::load(&args.file, &g.root)?;
    let changes = stack_up::up(g, &stack, args.format == Format::Json)?;
    if let Some(addr) = stack.metrics {
        crate::metrics::ensure_served(g, addr)?;
    }
    match args.format {
        Format::Json => {
            println!("{}", serde_json::to_string_pretty(&changes)?);
        }
        Format::Table => {
            for c in &changes {
                println!("{:<6} {:<30} {}", c.role, c.container, c.action);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn down(g: &Global, args: DownArgs) -> anyhow::Result<ExitCode> {
    let stack = Stack::load(&args.file, &g.root)?;
    for r in stack_up::down(g, &stack, args.volumes)? {
        println!("{r}");
    }
    Ok(ExitCode::SUCCESS)
}

/// How long ago an RFC 3339 time was, as `3m12s`.
fn since(t: Option<&str>) -> Option<String> {
    let t = chrono::DateTime::parse_from_rfc3339(t?).ok()?;
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    Some(since_secs(secs))
}

/// One row of `status` (and `ps`): what a user asks of a container.
pub fn describe(c: &Container) -> serde_json::Value {
    describe_observed(c, c.observe().ok())
}

/// [`describe`] of a state and holder liveness observed together
/// ([`Container::observe`]).
pub fn describe_observed(
    c: &Container,
    observed: Option<(crate::containers::State, bool)>,
) -> serde_json::Value {
    let (st, holder) = match observed {
        Some((st, holder)) => (Some(st), holder),
        None => (None, false),
    };
    let running = st.as_ref().is_some_and(|s| s.status == Status::Running);
    let status = match &st {
        Some(s) if s.status == Status::Running && !holder => "running (holder lost)".to_string(),
        Some(s) if s.status == Status::Exited && holder => "restarting".to_string(),
        Some(s) if s.status == Status::Exited => format!("exited ({})", s.exit_code.unwrap_or(-1)),
        Some(s) => s.status.to_string(),
        None => "unknown".into(),
    };
    let health = c
        .record
        .health
        .as_ref()
        .map(|_| {
            crate::supervise::read_health(c)
                .map(|h| h.status.to_string())
                .unwrap_or_else(|| "starting".into())
        })
        .filter(|_| running);
    serde_json::json!({
        "role": c.record.labels.get(crate::model::LABEL_ROLE),
        "stack": c.record.labels.get(crate::model::LABEL_STACK),
        "name": c.record.name,
        "id": c.record.id,
        "image": c.record.image,
        "image_digest": c.record.image_digest,
        "status": status,
        "health": health,
        "uptime": st.as_ref().filter(|_| running).and_then(|s| since(s.started_at.as_deref())),
        "restarts": st.as_ref().map_or(0, |s| s.restart_count),
        "address": c.record.network.as_ref().map(|n| n.ip.to_string()),
        "ports": c.record.publish.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
    })
}

pub fn status(g: &Global, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let stack = Stack::load(&args.file, &g.root)?;
    let containers = Containers::open(&g.root)?;
    // The scheduled backups' state rides on the app's rows (the rows stay containers).
    let backup = crate::backup::schedule::status(&g.root, &stack.name, &stack.backup);
    let rows: Vec<serde_json::Value> = stack_up::stack_containers(&containers, &stack.name)?
        .iter()
        .map(|c| {
            let mut r = describe(c);
            if let (Some(b), Some("app")) = (&backup, r["role"].as_str()) {
                r["backup"] = b.clone();
            }
            r
        })
        .collect();
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &rows)?;
            writeln!(out)?;
        }
        Format::Table => {
            writeln!(
                out,
                "{:<6}  {:<22}  {:<19}  {:<10}  {:<9}  {:<8}  {:<8}  {:<14}  PORTS",
                "ROLE",
                "CONTAINER",
                "IMAGE DIGEST",
                "STATUS",
                "HEALTH",
                "UPTIME",
                "RESTARTS",
                "ADDRESS"
            )?;
            let s = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
            for r in rows {
                let digest = s(&r["image_digest"]);
                let digest = digest.get(..19).unwrap_or(&digest).to_string();
                let ports: Vec<String> = r["ports"]
                    .as_array()
                    .map(|a| a.iter().map(s).collect())
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{:<6}  {:<22}  {:<19}  {:<10}  {:<9}  {:<8}  {:<8}  {:<14}  {}",
                    s(&r["role"]),
                    crate::containers::sanitize(&s(&r["name"])),
                    digest,
                    s(&r["status"]),
                    s(&r["health"]),
                    s(&r["uptime"]),
                    r["restarts"],
                    s(&r["address"]),
                    ports.join(", ")
                )?;
            }
            if let Some(b) = &backup {
                writeln!(out, "{}", backup_line(b))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `Backups: every 24h; last ok 3h2m ago (bk-20261202-031500); next in 20h58m`, or the
/// failure with its error.
fn backup_line(b: &serde_json::Value) -> String {
    let s = |k: &str| b[k].as_str().map(str::to_string);
    let until = |t: Option<String>| -> Option<String> {
        let t = chrono::DateTime::parse_from_rfc3339(&t?).ok()?;
        let secs = (t.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
        Some(if secs <= 0 {
            "due now".into()
        } else {
            format!("in {}", since_secs(secs))
        })
    };
    let mut parts = vec![match b["every"].as_u64() {
        Some(e) => format!("Backups: every {}", since_secs(e as i64)),
        None => "Backups: not scheduled".to_string(),
    }];
    match s("outcome").as_deref() {
        Some("failed") => parts.push(format!(
            "LAST SCHEDULED BACKUP FAILED{} ({} in a row): {}",
            since(s("last_attempt").as_deref()).map_or(String::new(), |a| format!(" {a} ago")),
            b["failures"],
            crate::containers::sanitize(&s("error").unwrap_or_default())
        )),
        Some("running") => parts.push("one runs now".into()),
        _ => {}
    }
    if let Some(ok) = s("last_success") {
        parts.push(format!(
            "last ok {} ago ({})",
            since(Some(&ok)).unwrap_or_else(|| "-".into()),
            s("last_backup").unwrap_or_default()
        ));
    }
    if b["every"].is_u64() {
        if let Some(n) = until(s("next_due")) {
            parts.push(format!("next {n}"));
        }
    }
    parts.join("; ")
}

/// Seconds as `42s`, `3m12s`, `5h2m`.
fn since_secs(s: i64) -> String {
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

pub fn swap(g: &Global, args: SwapArgs) -> anyhow::Result<ExitCode> {
    let stack = Stack::load(&args.file, &g.root)?;
    let opts = stack_swap::Options {
        image: args.image,
        force: args.force,
        drain_timeout: drain(&args.drain_timeout)?,
        rollback: false,
        quiet: false,
    };
    report(stack_swap::swap(g, &stack, &opts)?, args.format)
}

pub fn rollback(g: &Global, args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let stack = Stack::load(&args.file, &g.root)?;
    let opts = stack_swap::Options {
        image: None,
        force: false,
        drain_timeout: drain(&args.drain_timeout)?,
        rollback: true,
        quiet: false,
    };
    report(stack_swap::swap(g, &stack, &opts)?, args.format)
}

fn drain(s: &str) -> anyhow::Result<std::time::Duration> {
    crate::stack::parse_duration(s).map_err(|e| anyhow::anyhow!("--drain-timeout: {e}"))
}

/// A swap's result: JSON for scripts, a line for people; non-zero when it failed.
fn report(r: stack_swap::Report, format: Format) -> anyhow::Result<ExitCode> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&r)?),
        Format::Table => match r.outcome.as_str() {
            "deployed" => println!(
                "{} {} -> {} ({}) in {} ms",
                r.how,
                short(r.previous_digest.as_deref().unwrap_or("-")),
                short(&r.digest),
                r.container.as_deref().unwrap_or("-"),
                r.total_ms
            ),
            "unchanged" => println!("unchanged: {} runs {}", r.stack, short(&r.digest)),
            _ => {}
        },
    }
    if let Some(e) = &r.error {
        eprintln!(
            "frun: error: {} failed; the old app serves on and nothing new is left: {e}",
            r.how
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn short(d: &str) -> String {
    let hex = d.strip_prefix("sha256:").unwrap_or(d);
    hex.get(..12).unwrap_or(hex).to_string()
}

pub fn history(g: &Global, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let stack = Stack::load(&args.file, &g.root)?;
    let entries = stack_history::load(&g.root, &stack.name)?;
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &entries)?;
            writeln!(out)?;
        }
        Format::Table => {
            writeln!(
                out,
                "{:<20}  {:<8}  {:<9}  {:<12}  {:<16}  {:<40}  STEPS (ms)",
                "TIME", "HOW", "OUTCOME", "DIGEST", "CONTAINER", "IMAGE"
            )?;
            for e in entries.iter().rev() {
                let steps: Vec<String> = e
                    .steps
                    .iter()
                    .map(|s| format!("{} {}", s.step, s.ms))
                    .collect();
                writeln!(
                    out,
                    "{:<20}  {:<8}  {:<9}  {:<12}  {:<16}  {:<40}  {}",
                    e.time.get(..19).unwrap_or(&e.time),
                    e.how,
                    e.outcome.to_string(),
                    short(&e.digest),
                    e.container.as_deref().unwrap_or("-"),
                    crate::containers::sanitize(&e.reference),
                    steps.join(", ")
                )?;
                if let Some(m) = &e.message {
                    writeln!(out, "    {}", crate::containers::sanitize(m))?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn systemd_unit(g: &Global) -> anyhow::Result<ExitCode> {
    print!("{}", crate::supervise::systemd_unit(g));
    Ok(ExitCode::SUCCESS)
}
