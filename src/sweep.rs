//! What `frun gc` sweeps beside the image store: what a kill left of containers, and the
//! temp files of frun's atomic writes.
//!
//! A container is made in a fixed order (see `Containers::create`): its directory, its
//! state (`created`), then its record (`frun.json`), which makes it exist for every
//! command. A kill before the record leaves a directory no command lists; a kill of the
//! creator or the holder before the container ran leaves a record in `created` that
//! nobody will ever start; a kill of the holder of an `--rm` container leaves it there
//! once it exits. All three are swept here, but only when no process works on them:
//! the creator and the holder keep a shared `flock` on the container's `hold` file for
//! as long as they live (the kernel lets go of it when they die, however they die), and
//! this takes it exclusively. A container that ran is swept only if it asked for that
//! (`--rm`): otherwise its record is what `ps`, `logs` and `rm` show the user.
//!
//! Temp files are `.NAME.tmp-PID` (see `frun_images::fsutil`): swept when PID is not a
//! live process or the file is older than this boot (its pid may name a new process),
//! in the directories where frun writes its own state (never in volumes'
//! data or a container's upper directory: those are the user's files).

use anyhow::Context;
use frun_images::fsutil::lock_file;
use rustix::fs::FlockOperation;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::cli::Global;
use crate::containers::{Container, Containers, Status};

/// The file in a container's directory that its creator and holder keep locked.
const HOLD: &str = "hold";

/// Locks held by this process until it exits (a creator holds each container it made).
static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// Marks the container in `dir` as worked on by this process, until it exits.
pub fn hold(dir: &Path) -> anyhow::Result<()> {
    let path = dir.join(HOLD);
    let f = lock_file(&path, FlockOperation::LockShared)
        .with_context(|| format!("locking {path:?}"))?;
    HELD.lock().unwrap_or_else(|e| e.into_inner()).push(f);
    Ok(())
}

/// The lock on `dir`'s hold file if no process holds it (released on drop). While it is
/// kept, no holder starts the container: a starting one waits for it (`frun cp` to a
/// stopped container's files keeps it so).
pub fn abandoned(dir: &Path) -> Option<File> {
    lock_file(&dir.join(HOLD), FlockOperation::NonBlockingLockExclusive).ok()
}

/// One container directory `gc` removed.
#[derive(Debug, serde::Serialize)]
pub struct SweptContainer {
    pub id: String,
    /// Its name, when its record was there to say it.
    pub name: Option<String>,
    /// `no record`, `created, never started` or `--rm, exited after its holder died`.
    pub why: &'static str,
    pub bytes: u64,
}

/// What [`sweep`] removed.
#[derive(Debug, Default, serde::Serialize)]
pub struct Swept {
    pub containers: Vec<SweptContainer>,
    pub temp_files: u64,
    /// Bytes of everything removed (containers' directories and logs, temp files).
    pub bytes: u64,
}

/// Sweeps abandoned containers and dead writers' temp files.
pub fn sweep(g: &Global) -> anyhow::Result<Swept> {
    let containers = Containers::open(&g.root)?;
    let mut out = Swept::default();
    // 1. Containers, under the lock that creation takes: no directory is half made
    //    while this looks.
    {
        let _lock = containers.lock()?;
        let dir = g.root.join("containers");
        for e in std::fs::read_dir(&dir).with_context(|| format!("listing {dir:?}"))? {
            let e = e?;
            if !e.file_type()?.is_dir() {
                continue;
            }
            let path = e.path();
            let Some(_held) = abandoned(&path) else {
                continue;
            };
            let id = e.file_name().to_string_lossy().into_owned();
            if !path.join("frun.json").exists() {
                let bytes = frun_images::store::dir_size(&path);
                std::fs::remove_dir_all(&path).with_context(|| format!("removing {path:?}"))?;
                out.bytes += bytes;
                out.containers.push(SweptContainer {
                    id,
                    name: None,
                    why: "no record",
                    bytes,
                });
                continue;
            }
            let Ok(c) = Containers::load_dir(&path) else {
                continue; // a record that does not parse is the user's to look at
            };
            // Never started, or `--rm` and ended while nobody held it: its holder would
            // have removed it, had it lived.
            let why = match c.state() {
                Ok(st) if Container::holder_alive(&st) => continue,
                Ok(st) if st.status == Status::Created => "created, never started",
                Ok(st) if st.status == Status::Exited && c.record.auto_remove => {
                    "--rm, exited after its holder died"
                }
                _ => continue,
            };
            let logs = c.log_dir();
            let before = frun_images::store::dir_size(&path) + frun_images::store::dir_size(&logs);
            crate::commands::remove_container(g, &containers, &c)?;
            let bytes = before.saturating_sub(frun_images::store::dir_size(&logs));
            out.bytes += bytes;
            out.containers.push(SweptContainer {
                id,
                name: Some(c.record.name.clone()),
                why,
                bytes,
            });
        }
    }
    // 2. Temp files of writers that died, where frun keeps its own state.
    let booted = boot_time();
    for dir in state_dirs(&g.root) {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = temp_writer(&name) else {
                continue;
            };
            let Ok(meta) = e.metadata() else { continue };
            if !meta.is_file() || writer_alive(pid, meta.modified().ok(), booted) {
                continue;
            }
            let path = e.path();
            std::fs::remove_file(&path).with_context(|| format!("removing {path:?}"))?;
            out.temp_files += 1;
            out.bytes += meta.len();
        }
    }
    // 3. What holders of removed containers left in the run root (a holder killed with
    //    -9 cannot remove its control socket or its ports report): counted with the
    //    temp files. Only for containers that are gone: a stopped one's files are
    //    replaced by its next start.
    let ports = g.run_root.join("ports");
    for e in std::fs::read_dir(&ports).into_iter().flatten().flatten() {
        let path = e.path();
        let Some(id) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
            continue;
        };
        let is_id = id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_id || g.root.join("containers").join(&id).exists() {
            continue;
        }
        let Ok(meta) = e.metadata() else { continue };
        std::fs::remove_file(&path).with_context(|| format!("removing {path:?}"))?;
        out.temp_files += 1;
        out.bytes += meta.len();
    }
    Ok(out)
}

/// Whether the writer of a temp file (its pid, its modification time) may still be
/// writing it: its pid lives, and the file is not older than this boot (`booted`).
fn writer_alive(pid: i32, modified: Option<SystemTime>, booted: Option<SystemTime>) -> bool {
    let before_boot = matches!((modified, booted), (Some(m), Some(b)) if m < b);
    !before_boot && crate::containers::pid_start(pid).is_some()
}

/// When this boot began (`btime` of /proc/stat).
fn boot_time() -> Option<SystemTime> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let secs = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// The pid in a temp file's name `.NAME.tmp-PID`.
fn temp_writer(name: &str) -> Option<i32> {
    let rest = name.strip_prefix('.')?;
    let (_, pid) = rest.rsplit_once(".tmp-")?;
    pid.parse().ok().filter(|p: &i32| *p > 0)
}

/// The directories of frun's own state files (not the image store's: it sweeps its own).
fn state_dirs(root: &Path) -> Vec<PathBuf> {
    let subdirs = |d: PathBuf| -> Vec<PathBuf> {
        std::fs::read_dir(&d)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect()
    };
    let mut out = vec![
        root.join("containers"),
        root.join("network"),
        root.join("volumes"),
    ];
    out.extend(subdirs(root.join("containers")));
    // A volume's record is beside its `_data`, never inside it.
    out.extend(subdirs(root.join("volumes")));
    for s in subdirs(root.join("stacks")) {
        out.push(s.join("proxy/conf.d"));
        out.push(s);
    }
    for group in subdirs(root.join("logs")) {
        out.extend(subdirs(group.clone()));
        out.push(group);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_files_name_their_writer() {
        assert_eq!(temp_writer(".state.json.tmp-4242"), Some(4242));
        assert_eq!(temp_writer(".a.tmp-b.tmp-7"), Some(7));
        assert_eq!(temp_writer("state.json.tmp-4242"), None);
        assert_eq!(temp_writer(".state.json"), None);
        assert_eq!(temp_writer(".x.tmp-"), None);
        assert_eq!(temp_writer(".x.tmp-0"), None);
    }

    /// After a reboot a temp file's pid may name a new process: a file older than the
    /// boot is a dead writer's, whatever lives under its pid now.
    #[test]
    fn a_temp_file_from_before_the_boot_has_no_living_writer() {
        let me = std::process::id() as i32;
        let booted = boot_time().expect("btime in /proc/stat");
        let now = SystemTime::now();
        assert!(writer_alive(me, Some(now), Some(booted)));
        let before = booted - std::time::Duration::from_secs(60);
        assert!(!writer_alive(me, Some(before), Some(booted)));
        assert!(!writer_alive(i32::MAX, Some(now), Some(booted)));
        // Without times to compare, the pid decides.
        assert!(writer_alive(me, None, None));
    }

    #[test]
    fn a_held_container_is_not_abandoned_until_its_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        // Another process's shared lock, as a creator's: a separate open file.
        let theirs = lock_file(&dir.path().join(HOLD), FlockOperation::LockShared).unwrap();
        assert!(abandoned(dir.path()).is_none());
        drop(theirs);
        assert!(abandoned(dir.path()).is_some());
    }
}
