//! `backup`, `restore`, `backups`: thin doors to [`crate::backup`].

use std::io::Write;
use std::process::ExitCode;

use crate::backup::{self, human_size};
use crate::cli::{BackupArgs, BackupsArgs, Format, Global, RestoreArgs};
use crate::stack::Stack;

pub fn backup(g: &Global, args: BackupArgs) -> anyhow::Result<ExitCode> {
    let stack = Stack::load(&args.file, &g.root)?;
    crate::progress::show_steps(args.format == Format::Table);
    if args.scheduled {
        return scheduled(g, &stack, args.format);
    }
    let mut opts = backup::create::Options::from_stack(&stack, "manual");
    if let Some(s) = &args.freeze_max {
        opts.freeze_max =
            crate::stack::parse_duration(s).map_err(|e| anyhow::anyhow!("--freeze-max: {e}"))?;
    }
    if !args.recipients.is_empty() || args.passphrase_file.is_some() {
        for r in &args.recipients {
            backup::crypt::parse_recipient(r)
                .map_err(|e| anyhow::anyhow!("--recipient {r:?}: {e}"))?;
        }
        opts.encrypt = backup::crypt::Encrypt {
            recipients: args.recipients.clone(),
            passphrase_file: args.passphrase_file.clone(),
        };
    }
    if !args.to.is_empty() {
        opts.to = args
            .to
            .iter()
            .map(|d| d.parse().map_err(|e| anyhow::anyhow!("--to: {e}")))
            .collect::<anyhow::Result<_>>()?;
    }
    let (s, removed) = backup::create::create(g, &stack, &opts)?;
    print_made(g, &s, &removed, args.format)?;
    Ok(ExitCode::SUCCESS)
}

/// `frun backup --scheduled` (the supervisor's child): see [`backup::schedule`].
fn scheduled(g: &Global, stack: &Stack, format: Format) -> anyhow::Result<ExitCode> {
    use backup::schedule::{self, Ran};
    match schedule::run(g, stack)? {
        Ran::Done(s, removed) => {
            print_made(g, &s, &removed, format)?;
            Ok(ExitCode::SUCCESS)
        }
        Ran::NotDue(at) => {
            eprintln!(
                "frun: the scheduled backup of stack {} is not due until {}",
                stack.name,
                schedule::rfc3339(at)
            );
            Ok(ExitCode::from(schedule::EXIT_NOT_DUE))
        }
        Ran::Busy => {
            eprintln!(
                "frun: an up, swap or restore of stack {} runs: the scheduled backup steps aside",
                stack.name
            );
            Ok(ExitCode::from(schedule::EXIT_BUSY))
        }
    }
}

/// What a backup made: its summary (and what retention removed).
fn print_made(
    g: &Global,
    s: &backup::Summary,
    removed: &[String],
    format: Format,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            let mut v = serde_json::to_value(s)?;
            v["removed"] = serde_json::to_value(removed)?;
            serde_json::to_writer_pretty(&mut out, &v)?;
            writeln!(out)?;
        }
        Format::Table => {
            writeln!(
                out,
                "{}  {} ({} files, {} databases, {} of data{}) in {} ms, app frozen {} ms ({} copied frozen): {}",
                s.name,
                human_size(s.size),
                s.files,
                s.databases,
                human_size(s.data_bytes),
                if s.encrypted { ", encrypted" } else { "" },
                s.timings.total_ms,
                s.timings.frozen_ms,
                match s.timings.frozen_files {
                    1 => "1 file".to_string(),
                    n => format!("{n} files"),
                },
                s.archive_path(&g.root).display()
            )?;
            for r in removed {
                writeln!(out, "Removed {r} (retention)")?;
            }
        }
    }
    Ok(())
}

pub fn restore(g: &Global, args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let stack = Stack::load(&args.file, &g.root)?;
    crate::progress::show_steps(args.format == Format::Table);
    let summary = match &args.from {
        Some(from) => {
            let d: backup::remote::Destination =
                from.parse().map_err(|e| anyhow::anyhow!("--from: {e}"))?;
            backup::remote::fetch(&g.root, &stack.name, &d, &args.name)?
        }
        None => backup::find(&g.root, &stack.name, &args.name)?,
    };
    let r = backup::restore::restore(
        g,
        &stack,
        &summary,
        &backup::restore::Options {
            safety_backup: !args.no_safety_backup,
            quiet: args.format == Format::Json,
            decrypt: backup::crypt::Decrypt {
                identity_file: args.identity.or(stack.backup.decrypt.identity_file.clone()),
                passphrase_file: args.passphrase_file.or(stack
                    .backup
                    .decrypt
                    .passphrase_file
                    .clone()),
            },
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

/// A duration as `24h`, `90m`, `30s`.
fn humantime(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s >= 86400 && s % 86400 == 0 => format!("{}d", s / 86400),
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
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
    if let Some(from) = &args.from {
        return remote_backups(g, &stack, from, args.format);
    }
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
            if let Some(every) = stack.backup.every {
                writeln!(
                    out,
                    "Scheduled: every {} (jitter up to {}) by frun supervise",
                    humantime(every),
                    humantime(stack.backup.jitter)
                )?;
            }
            // The last scheduled attempt, as `frun status` tells it.
            if let Some(b) = backup::schedule::status(&g.root, &stack.name, &stack.backup) {
                let s = |k: &str| b[k].as_str().unwrap_or("-").to_string();
                match b["outcome"].as_str() {
                    Some("failed") => writeln!(
                        out,
                        "Last scheduled backup FAILED ({} in a row, {}): {}",
                        b["failures"],
                        s("last_attempt"),
                        crate::containers::sanitize(&s("error"))
                    )?,
                    Some(o) => writeln!(out, "Last scheduled backup: {o} ({})", s("last_attempt"))?,
                    None => {}
                }
                if stack.backup.every.is_some() {
                    writeln!(out, "Next due: {}", s("next_due"))?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `frun backups --from DEST`: what a destination holds, and whether this machine has it.
fn remote_backups(
    g: &Global,
    stack: &Stack,
    from: &str,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let d: backup::remote::Destination =
        from.parse().map_err(|e| anyhow::anyhow!("--from: {e}"))?;
    let local: Vec<String> = backup::list(&g.root, &stack.name)?
        .into_iter()
        .map(|s| s.name)
        .collect();
    let rows: Vec<serde_json::Value> = backup::remote::backups_in(&d, &stack.name)?
        .into_iter()
        .map(|(name, f)| {
            serde_json::json!({
                "name": name,
                "file": f.name,
                "size": f.size,
                "destination": d.to_string(),
                "encrypted": f.name.ends_with(backup::SEALED_EXT),
                "here": local.contains(&name),
            })
        })
        .collect();
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &rows)?;
            writeln!(out)?;
        }
        Format::Table => {
            writeln!(
                out,
                "{:<36}  {:>9}  {:<5}  DESTINATION",
                "NAME", "SIZE", "HERE"
            )?;
            for r in &rows {
                writeln!(
                    out,
                    "{:<36}  {:>9}  {:<5}  {}",
                    r["name"].as_str().unwrap_or(""),
                    human_size(r["size"].as_u64().unwrap_or(0)),
                    if r["here"] == true { "yes" } else { "no" },
                    d
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
