//! `pull`, `images`, `rmi`, `gc`, `login`: the image store from the command line.

use anyhow::{bail, Context};
use frun_images::{error_chain, escape_controls, ImageRef, Platform, PullOptions, Store};
use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::sync::Arc;

use crate::cli::{Format, Global, LoginArgs, PullArgs};
use crate::progress::TerminalProgress;

pub fn open_store(g: &Global) -> anyhow::Result<Store> {
    Ok(Store::open(&g.root)?)
}

pub fn pull(g: &Global, args: PullArgs) -> anyhow::Result<ExitCode> {
    let image: ImageRef = args.image.parse()?;
    let max = crate::limits::parse_size("--max-layer-size", &args.max_layer_size)?;
    let record = pull_with(g, &image, args.platform.as_deref(), args.quiet, max, None)?;
    if !args.quiet {
        println!(
            "{} {} {} {}",
            escape_controls(&record.reference),
            record.repo_digest(),
            record.platform,
            human_size(record.size)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Pulls `image` (for `run`, which pulls what is missing).
pub fn pull_record(
    g: &Global,
    image: &ImageRef,
    platform: Option<&str>,
    quiet: bool,
) -> anyhow::Result<frun_images::ImageRecord> {
    let max = match std::env::var("FRUN_MAX_LAYER_SIZE") {
        Ok(v) => crate::limits::parse_size("FRUN_MAX_LAYER_SIZE", &v)?,
        Err(_) => PullOptions::default().max_layer_size,
    };
    pull_with(g, image, platform, quiet, max, None)
}

/// [`pull_record`] with credentials given explicitly (a stack role's `registry_auth`).
pub fn pull_record_with_auth(
    g: &Global,
    image: &ImageRef,
    auth: Option<frun_images::Auth>,
    quiet: bool,
) -> anyhow::Result<frun_images::ImageRecord> {
    let max = match std::env::var("FRUN_MAX_LAYER_SIZE") {
        Ok(v) => crate::limits::parse_size("FRUN_MAX_LAYER_SIZE", &v)?,
        Err(_) => PullOptions::default().max_layer_size,
    };
    pull_with(g, image, None, quiet, max, auth)
}

fn pull_with(
    g: &Global,
    image: &ImageRef,
    platform: Option<&str>,
    quiet: bool,
    max_layer_size: u64,
    auth: Option<frun_images::Auth>,
) -> anyhow::Result<frun_images::ImageRecord> {
    let mut registry = super::registry_config(g);
    registry.auth = auth;
    let opts = PullOptions {
        platform: match platform {
            Some(p) => p.parse::<Platform>()?,
            None => Platform::host(),
        },
        platform_explicit: platform.is_some(),
        registry,
        max_layer_size,
        retry_window: match std::env::var("FRUN_RETRY_WINDOW") {
            Ok(v) => std::time::Duration::from_secs(
                v.parse()
                    .with_context(|| format!("FRUN_RETRY_WINDOW={v:?}: expected seconds"))?,
            ),
            Err(_) => PullOptions::default().retry_window,
        },
        ..PullOptions::default()
    };
    let store = Arc::new(open_store(g)?);
    let show = !quiet && std::io::stderr().is_terminal();
    let progress: Arc<dyn frun_images::Progress> = if show {
        Arc::new(TerminalProgress::new())
    } else {
        Arc::new(frun_images::NoProgress)
    };
    let rt = super::runtime()?;
    let record = rt.block_on(frun_images::pull(store, image, &opts, progress))?;
    rt.shutdown_background();
    Ok(record)
}

pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

pub fn list(g: &Global, format: Format) -> anyhow::Result<ExitCode> {
    let store = open_store(g)?;
    let images = store.images()?;
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            let rows: Vec<serde_json::Value> = images
                .iter()
                .map(|i| {
                    serde_json::json!({
                        "reference": i.reference,
                        "digest": i.repo_digest().to_string(),
                        "manifest_digest": i.manifest_digest.to_string(),
                        "config_digest": i.config_digest.to_string(),
                        "platform": i.platform.to_string(),
                        "size": i.size,
                        "layers": i.layers.len(),
                        "pulled_at": i.pulled_at,
                    })
                })
                .collect();
            serde_json::to_writer_pretty(&mut out, &rows)?;
            writeln!(out)?;
        }
        Format::Table => {
            // images.json is a file on disk: what it says is escaped like foreign text.
            let width = images
                .iter()
                .map(|i| escape_controls(&i.reference).chars().count())
                .max()
                .unwrap_or(0)
                .max(9);
            writeln!(
                out,
                "{:<width$}  {:<19}  {:<14}  {:>8}",
                "REFERENCE", "DIGEST", "PLATFORM", "SIZE"
            )?;
            for i in &images {
                writeln!(
                    out,
                    "{:<width$}  {:<19}  {:<14}  {:>8}",
                    escape_controls(&i.reference),
                    format!("sha256:{}", &i.repo_digest().hex()[..12]),
                    i.platform.to_string(),
                    human_size(i.size)
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rmi(g: &Global, images: &[String]) -> anyhow::Result<ExitCode> {
    let store = open_store(g)?;
    let _lock = store.lock_exclusive()?;
    let mut failed = false;
    for key in images {
        // A reference is normalized first (`alpine` -> docker.io/library/alpine:latest);
        // anything else may be a digest or its prefix.
        let found = match key.parse::<ImageRef>() {
            Ok(r) => store
                .find_image(&r.to_string())
                .or_else(|_| store.find_image(key)),
            Err(_) => store.find_image(key),
        };
        match found.and_then(|rec| store.remove_image(&rec.reference)) {
            Ok(rec) => println!("Untagged: {}", escape_controls(&rec.reference)),
            Err(e) => {
                eprintln!("frun: error: {}", escape_controls(&error_chain(&e)));
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `frun gc`: first what a kill left of containers and of frun's own writes (see
/// `crate::sweep`), then the image store: what no image and no container uses, and
/// what interrupted pulls left. It says what it removed and how many bytes that freed.
pub fn gc(g: &Global, format: Format) -> anyhow::Result<ExitCode> {
    // 1. Containers first: the layers of one swept here are then free to go.
    let swept = crate::sweep::sweep(g)?;
    let store = open_store(g)?;
    // 2. Layers of existing containers stay, whatever happened to their images.
    let containers = crate::containers::Containers::open(&g.root)?;
    let keep = containers
        .list()?
        .into_iter()
        .flat_map(|c| c.record.layers)
        .collect();
    let stats = store.gc(&keep)?;
    // 3. Logs of containers that are gone, beyond what their role keeps.
    let ids: std::collections::HashSet<String> = containers
        .list()?
        .into_iter()
        .map(|c| c.record.id)
        .collect();
    let logs = crate::logs::sweep(&g.root, |id| ids.contains(id))?;
    let log_bytes: u64 = logs.iter().map(|(_, b)| b).sum();
    let bytes = stats.bytes + swept.bytes + log_bytes;
    match format {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "blobs": stats.blobs,
                "layers": stats.layers,
                "partial": stats.partial,
                "corrupt": stats.corrupt,
                "containers": swept.containers,
                "temp_files": swept.temp_files,
                "log_dirs": logs.len(),
                "bytes": bytes,
            })
        ),
        Format::Table => {
            for c in &swept.containers {
                println!(
                    "removed container {} ({}): {}, {}",
                    &c.id[..c.id.len().min(12)],
                    c.name
                        .as_deref()
                        .map(crate::containers::sanitize)
                        .unwrap_or_else(|| "no name".into()),
                    c.why,
                    human_size(c.bytes)
                );
            }
            for d in &stats.corrupt {
                println!("removed corrupt blob {d}: pull its image again");
            }
            println!(
                "removed {} blobs, {} layers, {} leftovers of interrupted pulls, {} abandoned containers and {} temp files, {} old log directories: {} freed",
                stats.blobs,
                stats.layers,
                stats.partial,
                swept.containers.len(),
                swept.temp_files,
                logs.len(),
                human_size(bytes)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn login(g: &Global, args: LoginArgs) -> anyhow::Result<ExitCode> {
    let password = match (args.password, args.password_stdin) {
        (Some(p), false) => p,
        (None, true) => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the password from standard input")?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        _ => bail!("give the password with --password-stdin (or --password)"),
    };
    if password.is_empty() {
        bail!("empty password");
    }
    let cfg = super::registry_config(g);
    let rt = super::runtime()?;
    let path = rt.block_on(cfg.login(args.server.as_deref(), &args.username, &password))?;
    println!("Login Succeeded (credentials saved in {})", path.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_500_000), "1.5MB");
    }
}
