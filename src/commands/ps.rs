//! `frun ps`: containers as Docker lists them: COMMAND as it runs (the image's when the
//! run gave none), PORTS as `127.0.0.1:8080->80/tcp`, `-q`, `--filter name=|status=|
//! label=`, and in JSON the address, ports, uptime and health.
//!
//! Labels and restart counts are read from the record's and state's JSON, so that
//! fields other parts of frun add to them (a stack's labels) are found without this
//! file knowing their types.

use anyhow::bail;
use frun_images::escape_controls;
use std::io::Write;
use std::process::ExitCode;

use crate::cli::{Format, Global, PsArgs};
use crate::containers::{Container, Containers, State, Status};

/// One `--filter KEY=VALUE`, as Docker's `ps` takes them.
#[derive(Debug, PartialEq)]
enum Filter {
    /// Part of the name.
    Name(String),
    Status(String),
    /// `label=KEY` (present) or `label=KEY=VALUE`.
    Label(String, Option<String>),
}

fn parse_filter(s: &str) -> anyhow::Result<Filter> {
    let Some((k, v)) = s.split_once('=') else {
        bail!("--filter {s:?}: expected KEY=VALUE (name, status or label)");
    };
    Ok(match k {
        "name" => Filter::Name(v.to_string()),
        "status" => match v {
            "created" | "running" | "exited" => Filter::Status(v.to_string()),
            _ => bail!("--filter status={v}: expected created, running or exited"),
        },
        "label" => match v.split_once('=') {
            Some((k, v)) => Filter::Label(k.to_string(), Some(v.to_string())),
            None => Filter::Label(v.to_string(), None),
        },
        _ => bail!("--filter {s:?}: unknown key {k:?} (name, status or label)"),
    })
}

fn labels(c: &Container) -> serde_json::Map<String, serde_json::Value> {
    serde_json::to_value(&c.record)
        .ok()
        .and_then(|v| v.get("labels").and_then(|l| l.as_object().cloned()))
        .unwrap_or_default()
}

fn matches(f: &Filter, c: &Container, st: &State) -> bool {
    match f {
        Filter::Name(n) => c.record.name.contains(n.as_str()),
        Filter::Status(s) => st.status.to_string() == *s,
        Filter::Label(k, v) => {
            let l = labels(c);
            match (l.get(k), v) {
                (Some(_), None) => true,
                (Some(have), Some(want)) => have.as_str() == Some(want.as_str()),
                _ => false,
            }
        }
    }
}

/// The command as it runs: the spec's process arguments.
fn command(c: &Container) -> Vec<String> {
    c.spec()
        .ok()
        .and_then(|s| s.process().clone())
        .and_then(|p| p.args().clone())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| c.record.command.clone())
}

fn uptime(st: &State) -> Option<i64> {
    if st.status != Status::Running {
        return None;
    }
    let t = chrono::DateTime::parse_from_rfc3339(st.started_at.as_deref()?).ok()?;
    Some((chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds())
}

/// The COMMAND column: the command, its control characters (and bidi overrides) escaped
/// as everywhere frun shows foreign text, cut to 20 characters.
fn table_command(args: &[String]) -> String {
    let cmd = escape_controls(&args.join(" ")).into_owned();
    if cmd.chars().count() > 20 {
        return cmd.chars().take(19).collect::<String>() + "…";
    }
    cmd
}

pub fn ps(g: &Global, args: PsArgs) -> anyhow::Result<ExitCode> {
    // 1. Flags first.
    let filters = args
        .filter
        .iter()
        .map(|f| parse_filter(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // 2. The containers, as their states read now.
    let containers = Containers::open(&g.root)?;
    let mut rows = Vec::new();
    for c in containers.list()? {
        // The state and the holder's liveness of one moment (see Container::observe).
        let Ok((st, holder)) = c.observe() else {
            continue;
        };
        // A status filter asks for stopped ones too, as Docker's.
        let wants_stopped = filters.iter().any(|f| matches!(f, Filter::Status(_)));
        if !args.all && !wants_stopped && st.status != Status::Running {
            continue;
        }
        if filters.iter().all(|f| matches(f, &c, &st)) {
            rows.push((c, st, holder));
        }
    }
    let mut out = std::io::stdout().lock();
    if args.quiet {
        for (c, _, _) in &rows {
            writeln!(out, "{}", c.short_id())?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    match args.format {
        Format::Json => {
            let described: Vec<serde_json::Value> = rows
                .iter()
                .map(|(c, st, holder)| {
                    super::stack::describe_observed(c, Some((st.clone(), *holder)))
                })
                .collect();
            let v: Vec<serde_json::Value> = rows
                .iter()
                .enumerate()
                .map(|(i, (c, st, holder))| {
                    let state = serde_json::to_value(st).unwrap_or_default();
                    serde_json::json!({
                        "id": c.record.id,
                        "name": c.record.name,
                        "image": c.record.image,
                        "image_digest": c.record.image_digest,
                        "command": command(c),
                        "created": c.record.created,
                        "status": st.status,
                        "pid": st.pid.filter(|_| st.status == Status::Running),
                        "exit_code": st.exit_code,
                        "oom_killed": st.oom_killed,
                        "started_at": st.started_at,
                        "finished_at": st.finished_at,
                        "uptime_seconds": uptime(st),
                        "address": c.record.network.as_ref().map(|n| n.ip.to_string()),
                        "ports": c.record.publish.iter().map(super::inspect::port).collect::<Vec<_>>(),
                        "labels": labels(c),
                        "restarts": state.get("restart_count").cloned().unwrap_or(0.into()),
                        // What a user reads: a running container whose holder is gone
                        // (liveness checked, not assumed), one about to restart.
                        "state": described[i]["status"],
                        // none without a health check; starting, healthy, unhealthy
                        "health": described[i]["health"],
                        "holder_alive": holder,
                        "role": c.record.labels.get(crate::model::LABEL_ROLE),
                        "stack": c.record.labels.get(crate::model::LABEL_STACK),
                    })
                })
                .collect();
            serde_json::to_writer_pretty(&mut out, &v)?;
            writeln!(out)?;
        }
        Format::Table => {
            writeln!(
                out,
                "{:<12}  {:<30}  {:<22}  {:<20}  {:<26}  NAME",
                "ID", "IMAGE", "COMMAND", "STATUS", "PORTS"
            )?;
            for (c, st, holder) in rows {
                // Docker's "Up 2 minutes (healthy)": the health after the status.
                let d = super::stack::describe_observed(&c, Some((st, holder)));
                let mut status = d["status"].as_str().unwrap_or("unknown").to_string();
                if let Some(h) = d["health"].as_str() {
                    status = format!("{status} ({h})");
                }
                let cmd = table_command(&command(&c));
                let ports: Vec<String> =
                    c.record.publish.iter().map(super::inspect::port).collect();
                writeln!(
                    out,
                    "{:<12}  {:<30}  {:<22}  {:<20}  {:<26}  {}",
                    c.short_id(),
                    escape_controls(&c.record.image),
                    format!("\"{cmd}\""),
                    status,
                    ports.join(", "),
                    escape_controls(&c.record.name)
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_as_dockers_and_refuse_unknown_keys() {
        assert_eq!(
            parse_filter("name=web").unwrap(),
            Filter::Name("web".into())
        );
        assert_eq!(
            parse_filter("label=frun.role=app").unwrap(),
            Filter::Label("frun.role".into(), Some("app".into()))
        );
        assert_eq!(
            parse_filter("label=x").unwrap(),
            Filter::Label("x".into(), None)
        );
        assert!(parse_filter("status=paused").is_err());
        assert!(parse_filter("ancestor=x")
            .unwrap_err()
            .to_string()
            .contains("ancestor"));
        assert!(parse_filter("name").is_err());
    }

    #[test]
    fn table_command_escapes_terminal_controls() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // An escape sequence and a right-to-left override from an image's Cmd.
        let shown = table_command(&args(&["\u{1b}[2J", "\u{202e}x"]));
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\u{202e}'),
            "{shown}"
        );
        assert!(shown.starts_with("\\u{1b}[2J"), "{shown}");
        assert_eq!(
            table_command(&args(&["sh", "-c", "sleep 1"])),
            "sh -c sleep 1"
        );
        let long = table_command(&args(&["x"; 30]));
        assert_eq!(long.chars().count(), 20);
        assert!(long.ends_with('…'));
    }
}
