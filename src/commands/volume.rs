//! `frun volume ls|create|inspect|rm|prune`, over `crate::volumes`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::{Format, Global, VolumeCommand};
use crate::containers::Containers;

/// Every container with the host paths its spec mounts: who uses which volume.
pub fn users(g: &Global) -> anyhow::Result<Vec<(String, Vec<PathBuf>)>> {
    let containers = Containers::open(&g.root)?;
    let mut out = Vec::new();
    for c in containers.list()? {
        let Ok(spec) = c.spec() else { continue };
        let paths = spec
            .mounts()
            .iter()
            .flatten()
            .filter_map(|m| m.source().clone())
            .collect();
        out.push((c.record.name.clone(), paths));
    }
    Ok(out)
}

pub fn volume(g: &Global, cmd: VolumeCommand) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match cmd {
        VolumeCommand::Ls { format, quiet } => {
            let all = crate::volumes::list(&g.root, &users(g)?)?;
            if quiet {
                for v in &all {
                    writeln!(out, "{}", v.name)?;
                }
            } else if format == Format::Json {
                serde_json::to_writer_pretty(&mut out, &all)?;
                writeln!(out)?;
            } else {
                writeln!(out, "{:<30}  {:<25}  USED BY", "VOLUME NAME", "CREATED")?;
                for v in &all {
                    let created = v.created.get(..19).unwrap_or(&v.created);
                    writeln!(
                        out,
                        "{:<30}  {:<25}  {}",
                        v.name,
                        created,
                        v.used_by.join(",")
                    )?;
                }
            }
        }
        VolumeCommand::Create { name } => {
            crate::volumes::create(&g.root, &name, &[], None)?;
            writeln!(out, "{name}")?;
        }
        VolumeCommand::Inspect { names } => {
            let users = users(g)?;
            let all = names
                .iter()
                .map(|n| crate::volumes::describe(&g.root, n, &users))
                .collect::<Result<Vec<_>, _>>()?;
            serde_json::to_writer_pretty(&mut out, &all)?;
            writeln!(out)?;
        }
        VolumeCommand::Rm { names } => {
            let users = users(g)?;
            let mut failed = false;
            for n in &names {
                match crate::volumes::remove(&g.root, n, &users) {
                    Ok(()) => writeln!(out, "{n}")?,
                    Err(e) => {
                        eprintln!("frun: error: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                return Ok(ExitCode::FAILURE);
            }
        }
        VolumeCommand::Prune { force: _ } => {
            let (names, bytes) = crate::volumes::prune(&g.root, &users(g)?)?;
            if !names.is_empty() {
                writeln!(out, "Deleted Volumes:")?;
                for n in &names {
                    writeln!(out, "{n}")?;
                }
                writeln!(out)?;
            }
            writeln!(
                out,
                "Total reclaimed space: {}",
                super::images::human_size(bytes)
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
