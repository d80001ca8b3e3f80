//! A container's log: where it lives, how it is written, how it is read.
//!
//! The format is Docker's json-file driver's, one JSON object per line
//! (`{"log":"...","stream":"stdout","time":"RFC3339 nanos"}`), so that tools reading
//! Docker's logs read frun's. Three rules come from what broke (issue 15 item 1, issue 14):
//! - The writer never holds more than [`MAX_LINE`] bytes of one stream: a longer line is
//!   cut into entries of 16 KiB, as Docker does, so `cat /dev/zero` in a container cannot
//!   grow the supervisor (it lives outside the container's memory limit).
//! - The log rotates at `max-size`, keeping `max-file` files (`container.log`,
//!   `container.log.1`, ... newest first; `.gz` when compressed), with defaults that fit a
//!   small disk (10 MB × 3). The writer is the only one to rotate, under its lock, so
//!   nothing is lost at the boundary; readers see a rotation whole or not at all
//!   ([`rotations`]).
//! - Logs live outside the container's directory, in `ROOT/logs/<group>/<id>/`, where
//!   `group` is the container's name, or a stack role's (`<stack>-<role>`) so that the
//!   generations of a role sit side by side and outlive a swap (see [`retire`]).
//!
//! The writer is [`writer::LogWriter`], the reader [`reader`]; both are plain file code,
//! unit-tested without root.

pub mod reader;
pub(crate) mod rotations;
pub mod writer;

/// Named points in the writer's rotation and the reader's listing where a unit test acts
/// (a rotation asked for between a reader's listing and its opens). A test registers a
/// hook for its own log directory only, so tests running beside it are not touched;
/// outside unit tests a point is nothing.
#[cfg(test)]
pub(crate) mod points {
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex};

    type Hook = Arc<dyn Fn(&str) + Send + Sync>;
    static HOOKS: Mutex<Vec<(PathBuf, Hook)>> = Mutex::new(Vec::new());

    /// Calls `hook` with the name of each point reached for `dir`, until [`clear`].
    pub fn set(dir: &Path, hook: impl Fn(&str) + Send + Sync + 'static) {
        HOOKS
            .lock()
            .unwrap()
            .push((dir.to_path_buf(), Arc::new(hook)));
    }

    pub fn clear(dir: &Path) {
        HOOKS.lock().unwrap().retain(|(d, _)| d != dir);
    }

    pub fn reached(dir: &Path, point: &str) {
        let hook = HOOKS
            .lock()
            .unwrap()
            .iter()
            .find(|(d, _)| d == dir)
            .map(|(_, h)| h.clone());
        if let Some(h) = hook {
            h(point);
        }
    }
}

#[cfg(not(test))]
pub(crate) mod points {
    #[inline(always)]
    pub fn reached(_dir: &std::path::Path, _point: &str) {}
}

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use writer::LogWriter;

/// Docker's line cut: a line longer than this becomes several entries.
pub const MAX_LINE: usize = 16 * 1024;

/// The log file's name in its directory; rotated ones add `.1`, `.2`, ... (and `.gz`).
pub const LOG_FILE: &str = "container.log";

/// What each generation directory records about its container, for ordering and for
/// `frun logs GROUP` after the container is gone.
pub const META_FILE: &str = "meta.json";

/// Beside the log files: the lock a rotation holds and a listing reader shares, and the
/// count of rotations (see [`rotations`]).
pub const ROTATIONS_FILE: &str = "rotations.lock";

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("--log-opt {0:?}: expected KEY=VALUE (max-size, max-file, compress)")]
    OptSyntax(String),
    #[error("--log-opt {key}={value}: {why}")]
    OptValue {
        key: String,
        value: String,
        why: String,
    },
    #[error("{op} {path}: {cause}")]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("invalid time {0:?}: use RFC 3339 (2026-12-01T10:00:00Z), a Unix time, or a duration such as 10m, 2h or 1h30m")]
    Time(String),
}

pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LogError {
    let path = path.to_path_buf();
    move |cause| LogError::Io { op, path, cause }
}

/// Rotation and placement of one container's log (`--log-opt`, or a stack role's keys).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    /// Rotate when the file would pass this many bytes (`max-size`, default 10m).
    #[serde(default = "default_max_size")]
    pub max_size: u64,
    /// Files kept, the current one included (`max-file`, default 3; 1: truncate in place).
    #[serde(default = "default_max_file")]
    pub max_file: u32,
    /// Gzip rotated files (`compress`, default false as in Docker).
    #[serde(default)]
    pub compress: bool,
    /// The directory under `ROOT/logs/` (default: the container's name). A stack sets
    /// `<stack>-<role>` for every generation of a role.
    #[serde(default)]
    pub group: Option<String>,
    /// Generations whose logs are kept after their container is removed (0: the log goes
    /// with the container, as Docker's).
    #[serde(default)]
    pub keep: u32,
}

fn default_max_size() -> u64 {
    10 << 20
}

fn default_max_file() -> u32 {
    3
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_size: default_max_size(),
            max_file: default_max_file(),
            compress: false,
            group: None,
            keep: 0,
        }
    }
}

impl LogConfig {
    /// From `--log-opt KEY=VALUE` flags (Docker's json-file keys), over the defaults.
    pub fn parse_opts(opts: &[String]) -> Result<LogConfig, LogError> {
        let mut c = LogConfig::default();
        for o in opts {
            let (k, v) = o
                .split_once('=')
                .ok_or_else(|| LogError::OptSyntax(o.clone()))?;
            c.set(k.trim(), v.trim())?;
        }
        Ok(c)
    }

    /// One key, as `--log-opt` or a stack role's `[role.log]` table gives it.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), LogError> {
        let bad = |why: &str| LogError::OptValue {
            key: key.to_string(),
            value: value.to_string(),
            why: why.to_string(),
        };
        match key {
            "max-size" => {
                let n = parse_size(value).ok_or_else(|| {
                    bad("expected a size in bytes with an optional k, m or g suffix")
                })?;
                if n < 4096 {
                    return Err(bad("must be at least 4k"));
                }
                self.max_size = n;
            }
            "max-file" => {
                let n: u32 = value
                    .parse()
                    .map_err(|_| bad("expected a number of files"))?;
                if !(1..=100).contains(&n) {
                    return Err(bad("must be between 1 and 100"));
                }
                self.max_file = n;
            }
            "compress" => {
                self.compress = value.parse().map_err(|_| bad("expected true or false"))?;
            }
            _ => {
                return Err(bad(
                    "unknown key (json-file's are max-size, max-file, compress)",
                ))
            }
        }
        Ok(())
    }
}

/// `10m`, `512k`, `1g`, `4096` (binary multiples, as Docker's units).
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mul) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mul)
}

/// `ROOT/logs/<group>`: every generation of one container name or stack role.
pub fn group_dir(root: &Path, group: &str) -> PathBuf {
    root.join("logs").join(group)
}

/// `ROOT/logs/<group>/<id>`: one container's log files.
pub fn dir(root: &Path, group: &str, id: &str) -> PathBuf {
    group_dir(root, group).join(id)
}

/// What a generation directory says about its container.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Meta {
    pub id: String,
    pub name: String,
    /// RFC 3339; generations sort by it.
    pub created: String,
    /// How many generations of its group are kept after their containers are gone
    /// (its log config's `keep`), so that `frun gc` knows without the container.
    #[serde(default)]
    pub keep: u32,
}

/// The generation directories of a group, oldest first (by their container's creation).
pub fn generations(root: &Path, group: &str) -> Vec<(PathBuf, Meta)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(group_dir(root, group)) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(data) = std::fs::read(p.join(META_FILE)) else {
            continue;
        };
        if let Ok(m) = serde_json::from_slice::<Meta>(&data) {
            out.push((p, m));
        }
    }
    out.sort_by(|a, b| a.1.created.cmp(&b.1.created));
    out
}

/// Called when a container is removed: its logs go with it, unless its config keeps
/// `keep` generations of its group, in which case the oldest removed generations
/// beyond that number go. `live` says whether a container id still exists (those are
/// never removed and do not count).
pub fn retire(
    root: &Path,
    group: &str,
    id: &str,
    keep: u32,
    live: impl Fn(&str) -> bool,
) -> Result<(), LogError> {
    let remove = |p: &Path| match std::fs::remove_dir_all(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("removing", p)(e)),
        _ => Ok(()),
    };
    if keep == 0 {
        remove(&dir(root, group, id))?;
    } else {
        let dead: Vec<PathBuf> = generations(root, group)
            .into_iter()
            .filter(|(_, m)| m.id == id || !live(&m.id))
            .map(|(p, _)| p)
            .collect();
        let excess = dead.len().saturating_sub(keep as usize);
        for p in &dead[..excess] {
            remove(p)?;
        }
    }
    // The group directory goes when it holds nothing more.
    let _ = std::fs::remove_dir(group_dir(root, group));
    Ok(())
}

/// What `frun gc` removes under `ROOT/logs/`: generations whose container is gone
/// (`live` says which ids exist) beyond the keep count their newest generation's meta
/// gives (none kept with 0), oldest first; a generation without a meta (a crash before
/// it was written) whose container is gone; empty group directories. Returns the
/// directories removed and their bytes.
pub fn sweep(root: &Path, live: impl Fn(&str) -> bool) -> Result<Vec<(PathBuf, u64)>, LogError> {
    let mut removed = Vec::new();
    let logs = root.join("logs");
    let Ok(groups) = std::fs::read_dir(&logs) else {
        return Ok(removed);
    };
    for g in groups.flatten() {
        let gdir = g.path();
        if !g.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        // 1. Directories without a meta, of containers that are gone.
        for e in std::fs::read_dir(&gdir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let d = e.path();
            if d.is_dir() && !d.join(META_FILE).exists() && !live(&name) {
                removed.push(remove_counted(&d)?);
            }
        }
        // 2. Generations beyond the group's keep count.
        let gens = generations(root, &g.file_name().to_string_lossy());
        let keep = gens.last().map_or(0, |(_, m)| m.keep) as usize;
        let dead: Vec<&PathBuf> = gens
            .iter()
            .filter(|(_, m)| !live(&m.id))
            .map(|(p, _)| p)
            .collect();
        for p in &dead[..dead.len().saturating_sub(keep)] {
            removed.push(remove_counted(p)?);
        }
        let _ = std::fs::remove_dir(&gdir);
    }
    Ok(removed)
}

/// Removes a directory tree, returning it with the bytes its files took.
fn remove_counted(dir: &Path) -> Result<(PathBuf, u64), LogError> {
    let bytes: u64 = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("removing", dir)(e)),
        _ => Ok((dir.to_path_buf(), bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_opts_parse_like_docker_and_refuse_nonsense() {
        let c = LogConfig::parse_opts(&[
            "max-size=1m".into(),
            "max-file=5".into(),
            "compress=true".into(),
        ])
        .unwrap();
        assert_eq!((c.max_size, c.max_file, c.compress), (1 << 20, 5, true));
        let d = LogConfig::parse_opts(&[]).unwrap();
        assert_eq!((d.max_size, d.max_file, d.compress), (10 << 20, 3, false));
        for bad in [
            "max-size=10x",
            "max-file=0",
            "compress=yes",
            "mode=non-blocking",
            "x",
        ] {
            let e = LogConfig::parse_opts(&[bad.into()])
                .unwrap_err()
                .to_string();
            assert!(e.contains(bad.split('=').next().unwrap()), "{bad}: {e}");
        }
        assert!(LogConfig::parse_opts(&["max-size=99999999999999999999g".into()]).is_err());
    }

    fn make_gen(root: &Path, group: &str, id: &str, created: &str) {
        let d = dir(root, group, id);
        std::fs::create_dir_all(&d).unwrap();
        let m = Meta {
            id: id.into(),
            name: format!("{group}.{id}"),
            created: created.into(),
            keep: 0,
        };
        std::fs::write(d.join(META_FILE), serde_json::to_vec(&m).unwrap()).unwrap();
    }

    #[test]
    fn gc_sweeps_gone_generations_beyond_the_kept_count_and_orphans() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        // A role keeping 2: a, b, c gone, d live.
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            make_gen(root, "s-app", id, &format!("2026-01-0{}T00:00:00Z", i + 1));
            let p = dir(root, "s-app", id).join(META_FILE);
            let mut m: Meta = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            m.keep = 2;
            std::fs::write(&p, serde_json::to_vec(&m).unwrap()).unwrap();
        }
        // A plain container's log left behind (keep 0), and a directory without meta.
        make_gen(root, "web", "x", "2026-01-01T00:00:00Z");
        std::fs::create_dir_all(dir(root, "web", "y")).unwrap();
        std::fs::create_dir_all(dir(root, "live", "z")).unwrap();
        let removed = sweep(root, |id| id == "d" || id == "z").unwrap();
        let mut names: Vec<String> = removed
            .iter()
            .map(|(p, _)| {
                p.strip_prefix(root.join("logs"))
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        names.sort();
        assert_eq!(names, ["s-app/a", "web/x", "web/y"]);
        let left: Vec<String> = generations(root, "s-app")
            .into_iter()
            .map(|(_, m)| m.id)
            .collect();
        assert_eq!(left, ["b", "c", "d"]);
        assert!(!group_dir(root, "web").exists());
        assert!(dir(root, "live", "z").exists());
        assert!(sweep(root, |id| id == "d" || id == "z").unwrap().is_empty());
    }

    #[test]
    fn retire_keeps_the_last_generations_of_a_group() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            make_gen(root, "s-app", id, &format!("2026-01-0{}T00:00:00Z", i + 1));
        }
        // d still runs; c is being removed; keep 2 removed generations: b and c.
        retire(root, "s-app", "c", 2, |id| id == "d").unwrap();
        let left: Vec<String> = generations(root, "s-app")
            .into_iter()
            .map(|(_, m)| m.id)
            .collect();
        assert_eq!(left, ["b", "c", "d"]);
        // A plain container's log goes with it, and the empty group too.
        make_gen(root, "web", "x", "2026-01-01T00:00:00Z");
        retire(root, "web", "x", 0, |_| false).unwrap();
        assert!(!group_dir(root, "web").exists());
    }
}
