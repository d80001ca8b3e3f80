//! `frun backup`: the numbered steps of one backup of a stack's volumes.
//!
//! The databases are copied first, with the app running (sqlite's online backup), and
//! every other file into a staging directory; then the app is frozen, the volumes
//! walked again and copied again only what changed since (see [`super::precopy`]), and
//! the app thawed; then the archive is written from the staging directory with nobody
//! waiting. A database that appeared between the two walks is
//! copied with its `-wal`/`-journal` while frozen: a frozen app's files are what a
//! crash would leave, which sqlite recovers from.

use anyhow::{bail, Context};
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::archive::{self, Staged};
use super::freeze::{self, Frozen};
use super::precopy::{self, PreCopied};
use super::{stack_dir, AppInfo, FileEntry, Kind, Manifest, Summary, Timings, Verification};
use crate::cli::Global;
use crate::containers::{Container, Containers, Status};
use crate::stack::Stack;

/// How long the app may stay frozen by default.
pub const DEFAULT_FREEZE_MAX: Duration = Duration::from_secs(5);

pub struct Options {
    /// `manual`, `scheduled`, `pre-restore`, `before-swap`.
    pub reason: String,
    pub freeze_max: Duration,
    pub encrypt: super::crypt::Encrypt,
    /// Where the archive is copied once written.
    pub to: Vec<super::remote::Destination>,
    /// More attributes of the `backup` event (a scheduled one: when it was due).
    pub event_attrs: Vec<(String, String)>,
    /// The work nobody waits for at the machine's lowest CPU and I/O priority
    /// ([`super::priority`]): a scheduled backup's.
    pub background: bool,
}

impl Options {
    /// What the stack's `[backup]` section says, for `reason`.
    pub fn from_stack(stack: &Stack, reason: &str) -> Options {
        Options {
            reason: reason.into(),
            freeze_max: stack.backup.freeze_max,
            encrypt: stack.backup.encrypt.clone(),
            to: stack.backup.to.clone(),
            event_attrs: Vec::new(),
            background: reason == "scheduled",
        }
    }
}

/// The stack's running app containers, newest generation last.
pub fn running_apps(g: &Global, stack: &str) -> anyhow::Result<Vec<Container>> {
    let containers = Containers::open(&g.root)?;
    Ok(crate::stack::up::stack_containers(&containers, stack)?
        .into_iter()
        .filter(|c| {
            c.record
                .labels
                .get(crate::model::LABEL_ROLE)
                .map(String::as_str)
                == Some("app")
        })
        .filter(|c| c.state().is_ok_and(|s| s.status == Status::Running))
        .collect())
}

/// A fresh name: `<stack>-YYYYMMDD-HHMMSS`, with `-2`, `-3`... when taken.
fn new_name(dir: &Path, stack: &str) -> String {
    let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
    let base = format!("{stack}-{stamp}");
    let taken = |n: &str| {
        dir.join(format!("{n}{}", super::ARCHIVE_EXT)).exists()
            || dir.join(format!("{n}{}", super::SEALED_EXT)).exists()
            || dir.join(format!("{n}.json")).exists()
    };
    let mut name = base.clone();
    let mut i = 2;
    while taken(&name) {
        name = format!("{base}-{i}");
        i += 1;
    }
    name
}

/// Every entry below `root` (itself first as ""), depth first, names sorted; devices,
/// fifos and sockets are left out (they are not data).
fn walk(root: &Path) -> anyhow::Result<Vec<(String, std::fs::Metadata)>> {
    fn go(dir: &Path, rel: &str, out: &mut Vec<(String, std::fs::Metadata)>) -> anyhow::Result<()> {
        let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for n in names {
            let name = n
                .to_str()
                .with_context(|| format!("{:?} in {}: not a UTF-8 name", n, dir.display()))?;
            let path = dir.join(name);
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                // Gone since the listing (the app deleted it): not part of the backup.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("{}", path.display())),
            };
            let r = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            let ft = meta.file_type();
            if ft.is_dir() {
                out.push((r.clone(), meta));
                go(&path, &r, out)?;
            } else if ft.is_file() || ft.is_symlink() {
                out.push((r, meta));
            } else {
                tracing::warn!(path = %path.display(), "not backed up: not a file, directory or symlink");
            }
        }
        Ok(())
    }
    let meta = std::fs::symlink_metadata(root).with_context(|| format!("{}", root.display()))?;
    let mut out = vec![(String::new(), meta)];
    go(root, "", &mut out)?;
    Ok(out)
}

/// Whether `rel` is a file sqlite keeps beside one of the databases `dbs` (never copied:
/// the online backup has their content).
fn companion(dbs: &BTreeSet<String>, rel: &str) -> bool {
    super::sqlite::COMPANIONS
        .iter()
        .any(|s| rel.strip_suffix(s).is_some_and(|db| dbs.contains(db)))
}

fn entry(rel: &str, kind: Kind, m: &std::fs::Metadata) -> FileEntry {
    FileEntry {
        path: rel.to_string(),
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        mtime: m.mtime(),
        size: 0,
        sha256: None,
        target: None,
        sqlite: false,
    }
}

/// A staging directory that is removed however the backup ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        crate::cleanup::remove_dir_all(&self.0);
    }
}

/// One backup of `stack`'s named volumes, with the stack's lock taken.
/// Retention (`[backup] keep`, `max_age`) is applied once it succeeded; the names it
/// removed come back with the summary.
pub fn create(g: &Global, stack: &Stack, opts: &Options) -> anyhow::Result<(Summary, Vec<String>)> {
    let lock = super::StackLock::take(&g.root, &stack.name)?;
    create_held(g, stack, opts, &lock)
}

/// [`create`], for a caller that took the stack's lock already (a scheduled backup,
/// which checks under it that the backup is still due); the `backup` event is
/// emitted here, whatever the outcome.
pub fn create_held(
    g: &Global,
    stack: &Stack,
    opts: &Options,
    _lock: &super::StackLock,
) -> anyhow::Result<(Summary, Vec<String>)> {
    let t0 = Instant::now();
    let r = (|| {
        super::restore::recover_data(g, &stack.name)?;
        let mut summary = create_locked(g, stack, opts)?;
        // Copies off the machine: the archive, then its summary (which names them).
        let mut failed = Vec::new();
        for d in &opts.to {
            let shipped = (|| -> anyhow::Result<()> {
                d.put(&stack.name, &summary.archive_path(&g.root), &summary.file)?;
                summary.destinations.push(d.to_string());
                summary.save(&g.root)?;
                d.put(
                    &stack.name,
                    &Summary::path(&g.root, &stack.name, &summary.name),
                    &format!("{}.json", summary.name),
                )
            })();
            if let Err(e) = shipped {
                failed.push(format!("{d}: {e:#}"));
            }
        }
        if !failed.is_empty() {
            bail!(
                "backup {} is written here ({}) but was not copied to {}",
                summary.name,
                summary.archive_path(&g.root).display(),
                failed.join("; ")
            );
        }
        // Retention, here and in the destinations.
        let removed = super::apply_retention(
            &g.root,
            &stack.name,
            stack.backup.keep,
            stack.backup.max_age,
        )?;
        for old in &removed {
            for d in &opts.to {
                for f in [old.file.clone(), format!("{}.json", old.name)] {
                    if let Err(e) = d.delete(&stack.name, &f) {
                        tracing::warn!(destination = %d, file = %f, error = %format!("{e:#}"), "removing an old backup");
                    }
                }
            }
        }
        Ok((summary, removed.into_iter().map(|s| s.name).collect()))
    })();
    let mut ev = crate::events::Event::new(crate::events::Kind::Backup)
        .stack(&stack.name)
        .attr("reason", &opts.reason)
        .ended(t0, &r);
    for (k, v) in &opts.event_attrs {
        ev = ev.attr(k, v);
    }
    crate::events::emit(
        &g.root,
        match &r {
            Ok((s, _)) => ev.attr("name", &s.name).attr("size", s.size),
            Err(_) => ev,
        },
    );
    r
}

/// [`create`], for a caller that holds the stack's lock (a restore's safety backup).
pub fn create_locked(g: &Global, stack: &Stack, opts: &Options) -> anyhow::Result<Summary> {
    let t0 = Instant::now();
    freeze::thaw_leftover(&g.root, &stack.name);
    // Keys checked before anything is copied.
    let encryptor = opts.encrypt.encryptor()?;

    // 1. What to back up: the app's named volumes; what runs: the app's containers.
    let volumes = super::stack_volumes(stack);
    if volumes.is_empty() {
        bail!(
            "stack {} has no named volume to back up ([data] volumes = [\"NAME:/path\"])",
            stack.name
        );
    }
    for v in &volumes {
        let d = crate::volumes::data_dir(&g.root, v);
        if !d.is_dir() {
            bail!(
                "volume {v} of stack {} does not exist ({}): `frun up` makes it",
                stack.name,
                d.display()
            );
        }
    }
    let apps = running_apps(g, &stack.name)?;
    let app = apps.last().map(|c| AppInfo {
        container: c.record.name.clone(),
        image: c.record.image.clone(),
        image_digest: c.record.image_digest.clone(),
    });
    let cgroups: Vec<PathBuf> = apps.iter().map(|c| c.record.cgroup.clone()).collect();

    // 2. A name and a staging directory beside the archives.
    let dir = stack_dir(&g.root, &stack.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = new_name(&dir, &stack.name);
    let scratch = Scratch(dir.join(format!(".staging-{name}")));
    crate::cleanup::remove_dir_all(&scratch.0);
    std::fs::create_dir(&scratch.0).with_context(|| format!("creating {}", scratch.0.display()))?;
    let staged_path = |vol: &str, rel: &str| scratch.0.join(vol).join(rel);

    // 3. The databases, while the app runs: sqlite's online backup, each a consistent
    //    copy of one commit. A scheduled backup copies in the background of the
    //    machine when the app's writers do not wait for it (WAL mode), at normal
    //    priority when they do.
    tracing::debug!(phase = "copy", "backup phase");
    let t_sql = Instant::now();
    let mut databases: Vec<BTreeSet<String>> = Vec::new();
    let mut copies: Vec<PathBuf> = Vec::new();
    for v in &volumes {
        let data = crate::volumes::data_dir(&g.root, v);
        let mut dbs = BTreeSet::new();
        for (rel, m) in walk(&data)? {
            if m.file_type().is_file() && super::sqlite::is_database(&data.join(&rel)) {
                let src = data.join(&rel);
                let dst = staged_path(v, &rel);
                std::fs::create_dir_all(dst.parent().expect("below the scratch dir"))?;
                let _bg = (opts.background && super::sqlite::journal_mode(&src)? == "wal")
                    .then(super::priority::Background::enter);
                // On a terminal: a spinner (sqlite's online backup is one step).
                let step = crate::progress::Step::spinner(&format!("database {rel}"));
                match super::sqlite::copy(&src, &dst) {
                    Ok(()) => step.done("copied"),
                    Err(e) => {
                        step.abandon();
                        return Err(e);
                    }
                }
                copies.push(dst);
                dbs.insert(rel);
            }
        }
        databases.push(dbs);
    }
    let sqlite_ms = t_sql.elapsed().as_millis() as u64;

    // 4. Everything else, copied once with the app running; then again, with the app
    //    frozen (bounded) when it runs, only what changed since ([`precopy`]).
    tracing::debug!(phase = "pre-copy", "backup phase");
    let t_pre = Instant::now();
    let mut pre = PreCopied::default();
    for (v, dbs) in volumes.iter().zip(&databases) {
        let data = crate::volumes::data_dir(&g.root, v);
        for (rel, m) in walk(&data)? {
            if m.file_type().is_dir() {
                std::fs::create_dir_all(staged_path(v, &rel))?;
            } else if m.file_type().is_file() && !dbs.contains(&rel) && !companion(dbs, &rel) {
                pre.copy(&data.join(&rel), &staged_path(v, &rel))?;
            }
        }
    }
    let precopy_ms = t_pre.elapsed().as_millis() as u64;
    let mut frozen_ms = 0;
    let mut recopied = 0;
    let mut staged: Vec<(String, Vec<Staged>)> = Vec::new();
    tracing::debug!(phase = "frozen", "backup phase");
    {
        let frozen = if cgroups.is_empty() {
            None
        } else {
            Some(Frozen::freeze(
                &g.root,
                &stack.name,
                &cgroups,
                opts.freeze_max,
            )?)
        };
        // Files the app maps shared and writable change without their times moving.
        let mapped = frozen
            .as_ref()
            .map(|f| precopy::shared_writable_inodes(&f.pids()))
            .unwrap_or_default();
        for (v, dbs) in volumes.iter().zip(&databases) {
            let data = crate::volumes::data_dir(&g.root, v);
            let mut entries = Vec::new();
            if let Some(f) = &frozen {
                f.check("walking the volumes")?;
            }
            for (rel, m) in walk(&data)? {
                let ft = m.file_type();
                if ft.is_dir() {
                    precopy::make_dir(&staged_path(v, &rel))?;
                    entries.push(Staged {
                        entry: entry(&rel, Kind::Dir, &m),
                        content: None,
                    });
                } else if ft.is_symlink() {
                    let mut e = entry(&rel, Kind::Symlink, &m);
                    let target = std::fs::read_link(data.join(&rel))?;
                    e.target = Some(
                        target
                            .to_str()
                            .with_context(|| format!("the link {rel} points at a non-UTF-8 path"))?
                            .to_string(),
                    );
                    entries.push(Staged {
                        entry: e,
                        content: None,
                    });
                } else if dbs.contains(&rel) {
                    let mut e = entry(&rel, Kind::File, &m);
                    e.sqlite = true;
                    entries.push(Staged {
                        entry: e,
                        content: Some(staged_path(v, &rel)),
                    });
                } else if companion(dbs, &rel) {
                    continue;
                } else {
                    let (src, dst) = (data.join(&rel), staged_path(v, &rel));
                    if !pre.still_holds(&src, &dst, &m, &mapped) {
                        freeze::copy_bounded(&src, &dst, frozen.as_ref())?;
                        recopied += 1;
                    }
                    entries.push(Staged {
                        entry: entry(&rel, Kind::File, &m),
                        content: Some(dst),
                    });
                }
            }
            staged.push((v.clone(), entries));
        }
        if let Some(f) = &frozen {
            frozen_ms = f.since.elapsed().as_millis() as u64;
        }
    }
    tracing::debug!(
        pre_copied = pre.len(),
        copied_frozen = recopied,
        frozen_ms,
        "files copied"
    );

    // 5. The app does not wait any more: each copy checked (`PRAGMA integrity_check`)
    //    alongside the archive being written (temp, fsync; renamed only once the checks
    //    passed), then its summary. A scheduled backup's in the machine's background.
    tracing::debug!(phase = "archive", "backup phase");
    let _bg = opts.background.then(super::priority::Background::enter);
    let t_arc = Instant::now();
    let copies_n = copies.len();
    let check = move || -> anyhow::Result<u64> {
        let t = Instant::now();
        for c in &copies {
            super::sqlite::integrity_check(c)?;
        }
        Ok(t.elapsed().as_millis() as u64)
    };
    // Alongside the archive (threads started here inherit the background priority).
    let mut checker = Some(std::thread::spawn(check));
    let mut checked = 0;
    let mut manifest = Manifest {
        format: super::FORMAT,
        stack: stack.name.clone(),
        name: name.clone(),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        frun_version: env!("CARGO_PKG_VERSION").to_string(),
        reason: opts.reason.clone(),
        app: app.clone(),
        volumes: staged
            .iter()
            .map(|(v, es)| super::VolumeManifest {
                name: v.clone(),
                files: es.iter().map(|s| s.entry.clone()).collect(),
            })
            .collect(),
        timings: Timings {
            sqlite_ms,
            precopy_ms,
            frozen_ms,
            frozen_files: recopied,
            ..Default::default()
        },
    };
    let encrypted = encryptor.is_some();
    let ext = if encrypted {
        super::SEALED_EXT
    } else {
        super::ARCHIVE_EXT
    };
    let file = format!("{name}{ext}");
    let joined = |t: std::thread::JoinHandle<anyhow::Result<u64>>| {
        t.join()
            .map_err(|_| anyhow::anyhow!("the integrity check panicked"))?
    };
    let written = archive::write(&dir.join(&file), &mut manifest, &staged, encryptor, || {
        checked = joined(checker.take().expect("joined once"))?;
        Ok(if copies_n > 0 {
            ", integrity_check ok".into()
        } else {
            String::new()
        })
    });
    if let Some(t) = checker.take() {
        // The archive failed first: the check ends before its copies are removed.
        let _ = joined(t);
    }
    let written = written?;
    drop(scratch);
    tracing::debug!(phase = "done", "backup phase");
    let timings = Timings {
        sqlite_ms,
        precopy_ms,
        frozen_ms,
        frozen_files: recopied,
        check_ms: checked,
        archive_ms: t_arc.elapsed().as_millis() as u64,
        total_ms: t0.elapsed().as_millis() as u64,
    };
    let files = manifest.volumes.iter().flat_map(|v| &v.files);
    let summary = Summary {
        name,
        stack: stack.name.clone(),
        created: manifest.created.clone(),
        reason: opts.reason.clone(),
        file,
        size: written.size,
        sha256: written.sha256,
        files: files.clone().filter(|f| f.kind == Kind::File).count(),
        databases: files.clone().filter(|f| f.sqlite).count(),
        data_bytes: files.map(|f| f.size).sum(),
        app_image_digest: app.map(|a| a.image_digest),
        encrypted,
        verification: Verification::Written,
        verified_at: Some(manifest.created.clone()),
        error: None,
        destinations: Vec::new(),
        timings,
    };
    summary.save(&g.root)?;
    tracing::info!(name = %summary.name, size = summary.size, ms = summary.timings.total_ms, "backup written");
    Ok(summary)
}
