//! `backup`, `restore`, `backups`: thin doors to [`crate::backup`].

use std::io::Write;
use std::process::ExitCode;

use crate::backup::{self, human_size};
use crate::cli::{BackupArgs, BackupsArgs, Format, Global, RestoreArgs};
use crate::stack::Stack;

pub fn backup(g: &Global, args: BackupArgs) -> anyhow::Result<ExitCode> {
    let stack = Stack::load(&args.file, &g.root)?;
    let freeze_max = match &args.freeze_max {
        Some(s) => {
            crate::stack::parse_duration(s).map_err(|e| anyhow::anyhow!("--freeze-max: {e}"))?
        }
        None => backup::create::DEFAULT_FREEZE_MAX,
    };
    let s = backup::create::create(
        g,
        &stack,
        &backup::create::Options {
            reason: "manual".into(),
            freeze_max,
        },
    )?;
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &s)?;
            writeln!(out)?;
        }
        Format::Table => writeln!(
            out,
            "{}  {} ({} files, {} databases, {} of data) in {} ms, app frozen {} ms: {}",
            s.name,
            human_size(s.size),
            s.files,
            s.databases,
            human_size(s.data_bytes),
            s.timings.total_ms,
            s.timings.frozen_ms,
            s.archive_path(&g.root).display()
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

pub fn restore(g: &Global, args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let stack = Stack::load(&args.file, &g.root)?;
    let summary = backup::find(&g.root, &stack.name, &args.name)?;
    let r = backup::restore::restore(
        g,
        &stack,
        &summary,
        &backup::restore::Options {
            safety_backup: !args.no_safety_backup,
            quiet: args.format == Format::Json,
        },
    )?;
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &r)?;
            writeln!(out)?;
        }
        Format::Table => {
            writeln!(
                out,
                "Restored {} into {} ({} files, {} databases)",
                r.backup,
                r.volumes.join(", "),
                r.files,
                r.databases
            )?;
            if let Some(s) = &r.safety_backup {
                writeln!(out, "Safety backup of the data before: {s}")?;
            }
            match &r.app {
                Some(a) => writeln!(out, "App running: {a}")?,
                None => writeln!(out, "The app was not running: `frun up` starts it")?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `3m`, `2h`, `5d` since an RFC 3339 time.
fn age(t: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(t) else {
        return "-".into();
    };
    let s = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

pub fn backups(g: &Global, args: BackupsArgs) -> anyhow::Result<ExitCode> {
    let stack = Stack::load(&args.file, &g.root)?;
    let all = backup::list(&g.root, &stack.name)?;
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            let rows: Vec<serde_json::Value> = all
                .iter()
                .map(|s| {
                    let mut v = serde_json::to_value(s).unwrap_or_default();
                    v["path"] = s.archive_path(&g.root).display().to_string().into();
                    v
                })
                .collect();
            serde_json::to_writer_pretty(&mut out, &rows)?;
            writeln!(out)?;
        }
        Format::Table => {
            writeln!(
                out,
                "{:<36}  {:<6}  {:>9}  {:<11}  {:<9}  DESTINATION",
                "NAME", "AGE", "SIZE", "REASON", "VERIFIED"
            )?;
            for s in &all {
                let mut dest = vec!["local".to_string()];
                dest.extend(s.destinations.iter().cloned());
                writeln!(
                    out,
                    "{:<36}  {:<6}  {:>9}  {:<11}  {:<9}  {}",
                    s.name,
                    age(&s.created),
                    human_size(s.size),
                    s.reason,
                    s.verification.to_string(),
                    dest.join(", ")
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
