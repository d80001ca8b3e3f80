//! Backups of a stack's data volumes: `frun backup`, `frun restore`, `frun backups`.
//!
//! A backup is one archive file (tar, compressed with zstd) holding every file of the
//! stack's named volumes and, last, a `manifest.json` (stack, volumes, the app's image
//! digest at the time, sha256 and size per file, timings). It is consistent while the
//! app runs: sqlite databases (found by their header, WAL mode included) are copied
//! with sqlite's online backup API and checked with `PRAGMA integrity_check` on the
//! copy ([`sqlite`]); every other file is copied while the app's cgroup is frozen, for
//! a bounded time ([`freeze`]): once before, with the app running, and while frozen
//! only what changed since ([`precopy`]). The archive is written to a temp file, fsynced and
//! renamed ([`archive`]); beside it a small `NAME.json` says what `frun backups`
//! lists without opening the archive.
//!
//! A restore ([`restore`]) verifies the whole archive into a staging directory beside
//! each volume's `_data` before it touches anything, keeps a safety backup of the
//! current data, stops the app, and swaps each volume in with one `renameat2(EXCHANGE)`.
//! Its phase is persisted, so a `kill -9` anywhere leaves the old or the new data and
//! the next `frun up` (or restore, or backup) finishes or undoes it.
//!
//! Libraries: sqlite and libzstd compiled into frun (rusqlite's `bundled`, zstd-sys's
//! vendored source), rather than the system's shared libraries: every process of frun
//! maps the shared libraries it links, and the holders and the supervisor, which never
//! back up anything, paid 150 KB PSS each for them (issue 11's footprint; the C sources
//! add about half a minute to a clean build). libzstd rather than ruzstd's pure-Rust
//! encoder, which compressed a 228 MB database at 58 MB/s where libzstd's level 1 takes
//! 0.38 s of CPU (ten times less; the benchmark's target is a backup within twice a
//! plain copy's time).

pub mod archive;
pub mod config;
pub mod create;
pub mod crypt;
pub mod freeze;
pub mod precopy;
pub mod priority;
pub mod remote;
pub mod restore;
pub mod schedule;
pub mod sqlite;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The version of the archive layout this frun writes and reads.
pub const FORMAT: u32 = 1;

/// What archive files end with: plain, and sealed with age.
pub const ARCHIVE_EXT: &str = ".tar.zst";
pub const SEALED_EXT: &str = ".tar.zst.age";

/// The backup name of an archive file name.
pub fn name_of(file: &str) -> Option<&str> {
    if file.starts_with('.') {
        return None;
    }
    file.strip_suffix(SEALED_EXT)
        .or_else(|| file.strip_suffix(ARCHIVE_EXT))
}

/// `ROOT/backups/<stack>`: archives, their summaries, the lock and restore journal.
pub fn stack_dir(root: &Path, stack: &str) -> PathBuf {
    root.join("backups").join(stack)
}

/// A file, directory or symlink of a volume, as the manifest lists it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Dir,
    File,
    Symlink,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// Relative to the volume's root; "" is the root itself.
    pub path: String,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Copied with sqlite's online backup API and checked with integrity_check.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sqlite: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct VolumeManifest {
    pub name: String,
    pub files: Vec<FileEntry>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct AppInfo {
    pub container: String,
    pub image: String,
    pub image_digest: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Timings {
    /// Copying the sqlite databases with the online backup API (app running).
    pub sqlite_ms: u64,
    /// Copying the other files once with the app running.
    #[serde(default)]
    pub precopy_ms: u64,
    /// How long the app was frozen (0: nothing to copy frozen, or no app running).
    pub frozen_ms: u64,
    /// The files copied while frozen: new, or changed since their copy before the freeze.
    #[serde(default)]
    pub frozen_files: u64,
    /// `PRAGMA integrity_check` of the copies (while the archive is written).
    #[serde(default)]
    pub check_ms: u64,
    /// Checking the copies and writing the archive (compression, checksums, fsync).
    pub archive_ms: u64,
    pub total_ms: u64,
}

/// `manifest.json`, the last entry of every archive.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Manifest {
    pub format: u32,
    pub stack: String,
    pub name: String,
    pub created: String,
    pub frun_version: String,
    /// Why it was made: `manual`, `scheduled`, `pre-restore`, `before-swap`.
    pub reason: String,
    pub app: Option<AppInfo>,
    pub volumes: Vec<VolumeManifest>,
    pub timings: Timings,
}

/// How far an archive has been checked.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Verification {
    /// Written and checked (every database's copy passed integrity_check) by `backup`.
    Written,
    /// Read back whole: checksums and integrity_check passed.
    Verified,
    /// Read back and refused (the reason is in `error`).
    Failed,
}

impl std::fmt::Display for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verification::Written => "written",
            Verification::Verified => "verified",
            Verification::Failed => "FAILED",
        })
    }
}

/// `NAME.json` beside an archive: what `frun backups` shows without opening it.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Summary {
    pub name: String,
    pub stack: String,
    pub created: String,
    pub reason: String,
    /// The archive's file name (in the stack's backup directory).
    pub file: String,
    /// Size and sha256 of the archive file itself.
    pub size: u64,
    pub sha256: String,
    pub files: usize,
    pub databases: usize,
    /// Bytes of the volumes' files (uncompressed).
    pub data_bytes: u64,
    pub app_image_digest: Option<String>,
    #[serde(default)]
    pub encrypted: bool,
    pub verification: Verification,
    pub verified_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Where copies were sent besides this machine.
    #[serde(default)]
    pub destinations: Vec<String>,
    pub timings: Timings,
}

impl Summary {
    pub fn path(root: &Path, stack: &str, name: &str) -> PathBuf {
        stack_dir(root, stack).join(format!("{name}.json"))
    }

    pub fn archive_path(&self, root: &Path) -> PathBuf {
        stack_dir(root, &self.stack).join(&self.file)
    }

    pub fn save(&self, root: &Path) -> anyhow::Result<()> {
        let path = Summary::path(root, &self.stack, &self.name);
        frun_images::fsutil::write_atomic(&path, &serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// The backups of a stack on this machine, oldest first: every archive, with its
/// summary (one whose summary is missing, as after a crash between the two renames,
/// is listed from the archive's name with an unknown verification).
pub fn list(root: &Path, stack: &str) -> anyhow::Result<Vec<Summary>> {
    let dir = stack_dir(root, stack);
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(name) = name_of(&file) else {
            continue;
        };
        let summary = std::fs::read(Summary::path(root, stack, name))
            .ok()
            .and_then(|b| serde_json::from_slice::<Summary>(&b).ok());
        let summary = match summary {
            Some(s) => s,
            None => {
                let meta = e.metadata()?;
                let created = meta
                    .modified()
                    .map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339())
                    .unwrap_or_default();
                Summary {
                    name: name.to_string(),
                    stack: stack.to_string(),
                    created,
                    reason: "unknown".into(),
                    file: file.clone(),
                    size: meta.len(),
                    sha256: String::new(),
                    files: 0,
                    databases: 0,
                    data_bytes: 0,
                    app_image_digest: None,
                    encrypted: file.ends_with(SEALED_EXT),
                    verification: Verification::Failed,
                    verified_at: None,
                    error: Some("no summary beside the archive: verify it with a restore".into()),
                    destinations: Vec::new(),
                    timings: Timings::default(),
                }
            }
        };
        out.push(summary);
    }
    out.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
    Ok(out)
}

/// The backup `name` of a stack, or its newest one for `latest` (safety backups made
/// by a restore are never `latest`).
pub fn find(root: &Path, stack: &str, name: &str) -> anyhow::Result<Summary> {
    let all = list(root, stack)?;
    let found = if name == "latest" {
        all.into_iter().rev().find(|s| s.reason != "pre-restore")
    } else {
        all.into_iter().find(|s| s.name == name)
    };
    found.with_context(|| {
        format!(
            "no backup {name:?} of stack {stack} in {} (frun backups lists them)",
            stack_dir(root, stack).display()
        )
    })
}

/// One backup or restore of a stack at a time: an exclusive lock on
/// `ROOT/backups/<stack>/lock`, waited for.
pub struct StackLock {
    _lock: std::fs::File,
}

impl StackLock {
    pub fn take(root: &Path, stack: &str) -> anyhow::Result<StackLock> {
        let dir = stack_dir(root, stack);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("lock");
        let lock = frun_images::fsutil::lock_exclusive(&path)
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(StackLock { _lock: lock })
    }
}

/// Retention after a successful backup: a backup is removed when it is not among the
/// newest `keep`, or older than `max_age`; the newest is never removed. Returns what
/// was removed.
pub fn apply_retention(
    root: &Path,
    stack: &str,
    keep: Option<usize>,
    max_age: Option<std::time::Duration>,
) -> anyhow::Result<Vec<Summary>> {
    if keep.is_none() && max_age.is_none() {
        return Ok(Vec::new());
    }
    let all = list(root, stack)?;
    let now = chrono::Utc::now();
    let mut removed = Vec::new();
    let n = all.len();
    for (i, s) in all.iter().enumerate() {
        let from_newest = n - 1 - i;
        if from_newest == 0 {
            continue;
        }
        let too_many = keep.is_some_and(|k| from_newest >= k);
        let too_old = max_age.is_some_and(|m| {
            chrono::DateTime::parse_from_rfc3339(&s.created)
                .ok()
                .and_then(|t| (now - t.with_timezone(&chrono::Utc)).to_std().ok())
                .is_some_and(|age| age > m)
        });
        if too_many || too_old {
            let archive = s.archive_path(root);
            std::fs::remove_file(&archive)
                .or_else(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .with_context(|| format!("removing {}", archive.display()))?;
            crate::cleanup::remove_file(Summary::path(root, stack, &s.name));
            tracing::info!(name = %s.name, "backup removed by retention");
            removed.push(s.clone());
        }
    }
    if !removed.is_empty() {
        frun_images::fsutil::sync_dir(&stack_dir(root, stack))?;
    }
    Ok(removed)
}

/// The named volumes of a stack's app, in the file's order.
pub fn stack_volumes(stack: &crate::stack::Stack) -> Vec<String> {
    stack
        .app
        .desc
        .volumes
        .iter()
        .filter(|v| v.is_named())
        .map(|v| v.source.clone())
        .collect()
}

/// Sizes as `12.3 MB`.
pub fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

/// For `frun swap` (owned by the swap work; it calls this before it starts the new
/// app): a backup with reason `before-swap` when the stack's `[backup] before_swap` is
/// true, `None` otherwise. An error should stop the swap: the data it would run on is
/// not backed up.
#[allow(dead_code)] // the API `frun swap` calls; see /work/coord/backup.md
pub fn before_swap(
    g: &crate::cli::Global,
    stack: &crate::stack::Stack,
) -> anyhow::Result<Option<Summary>> {
    if !stack.backup.before_swap {
        return Ok(None);
    }
    let (s, _) = create::create(g, stack, &create::Options::from_stack(stack, "before-swap"))?;
    Ok(Some(s))
}
