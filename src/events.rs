//! The event log: what happened to containers and stacks, one JSON line per event, in
//! `ROOT/events/events.jsonl` (`frun events` reads it, the supervisor's metrics count
//! from it).
//!
//! Writing is one call, for every part of frun: `crate::events::emit(&g.root, ev)`,
//! where `ev` is built as
//! `Event::new(Kind::Swap).stack("demo").attr("outcome", "ok").attr("duration_seconds", "4.2")`
//! or, for a container, `Event::of(Kind::Start, &container)` (its id, name, image, and
//! its stack and role from its labels). `emit` fills in the time. It never fails its
//! caller and never blocks for long: a failure to log is a warning, because a container
//! must start and a swap must finish whether or not the disk takes one more line.
//! Attributes each kind carries (the metrics read these names):
//! - `start`, `restart` (`restartCount`), `die` (`exitCode`, `oomKilled`), `oom`,
//!   `health_status` (`status`: starting|healthy|unhealthy): a container's, with `image`
//!   and `name`;
//! - `swap`: `outcome` (as `frun history`: deployed|failed|undone|finished),
//!   `duration_seconds` (`duration_ms` in lines of older frun), `image`, `digest`,
//!   `previous_digest`;
//! - `backup`, `restore`: `outcome` (ok for a success; anything else is a failure),
//!   `name` (the backup), `duration_seconds`.
//!
//! Every duration is `duration_seconds`, a decimal number of seconds ([`Event::took`]).
//!
//! Why a file and not the supervisor's memory: holders, the supervisor and one-shot
//! commands (`swap`, `backup`) all emit, and none of them may depend on another being
//! alive. Each line is appended with one `write(2)` on a file opened `O_APPEND`, so
//! concurrent writers never tear or interleave lines. The log is bounded: past
//! [`MAX_SIZE`] the current file becomes `events.jsonl.1` (the previous `.1` goes), under
//! a lock file so that only one writer rotates; a writer that cannot get the lock in a
//! moment appends without rotating rather than wait.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// The current file's name in `ROOT/events/`; the rotated one adds `.1`.
pub const FILE: &str = "events.jsonl";

/// The current file rotates when a line would take it past this size: with the one
/// rotated file kept, the log takes at most twice this (some 8,000 events).
pub const MAX_SIZE: u64 = 1 << 20;

/// An attribute value longer than this is cut (an error message as an attribute must
/// not make one line of the log large).
const MAX_ATTR: usize = 1024;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A container's process started (also after a restart).
    Start,
    /// A container's process ended.
    Die,
    /// The kernel's OOM killer struck in a container.
    Oom,
    /// A container's health changed.
    #[serde(alias = "health")]
    HealthStatus,
    /// A container's restart policy started it again.
    Restart,
    /// A stack's app was swapped (or a swap failed or was rolled back).
    Swap,
    /// A stack's data was backed up.
    Backup,
    /// A stack's data was restored.
    Restore,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Start,
        Kind::Die,
        Kind::Oom,
        Kind::HealthStatus,
        Kind::Restart,
        Kind::Swap,
        Kind::Backup,
        Kind::Restore,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Start => "start",
            Kind::Die => "die",
            Kind::Oom => "oom",
            Kind::HealthStatus => "health_status",
            Kind::Restart => "restart",
            Kind::Swap => "swap",
            Kind::Backup => "backup",
            Kind::Restore => "restore",
        }
    }

    /// Docker's event type: what the event is about.
    pub fn object(self) -> &'static str {
        match self {
            Kind::Swap | Kind::Backup | Kind::Restore => "stack",
            _ => "container",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = EventError;
    fn from_str(s: &str) -> Result<Kind, EventError> {
        let s = if s == "health" { "health_status" } else { s };
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| EventError::Filter {
                filter: format!("event={s}"),
                why: format!(
                    "unknown event; known: {}",
                    Kind::ALL.map(Kind::as_str).join(", ")
                ),
            })
    }
}

/// One event, as stored (one JSON line) and as `frun events --format json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339 with nanoseconds, UTC; `emit` sets it.
    #[serde(default)]
    pub time: String,
    pub kind: Kind,
    /// `container` or `stack` (see [`Kind::object`]).
    #[serde(rename = "type", default)]
    pub object: String,
    /// The container's full id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The container's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default)]
    pub attrs: BTreeMap<String, String>,
}

impl Event {
    pub fn new(kind: Kind) -> Event {
        Event {
            time: String::new(),
            kind,
            object: kind.object().to_string(),
            id: None,
            container: None,
            stack: None,
            role: None,
            attrs: BTreeMap::new(),
        }
    }

    /// An event of container `c`: its id, name and image, its stack and role if a
    /// stack made it.
    pub fn of(kind: Kind, c: &crate::containers::Container) -> Event {
        let r = &c.record;
        let mut ev = Event::new(kind)
            .attr("image", &r.image)
            .attr("name", &r.name);
        ev.id = Some(r.id.clone());
        ev.container = Some(r.name.clone());
        ev.stack = r.labels.get(crate::model::LABEL_STACK).cloned();
        ev.role = r.labels.get(crate::model::LABEL_ROLE).cloned();
        ev
    }

    // Used by the stack-level emitters (swap, backup: issues 12 and 13).
    #[allow(dead_code)]
    pub fn stack(mut self, stack: &str) -> Event {
        self.stack = Some(stack.to_string());
        self
    }

    #[allow(dead_code)]
    pub fn role(mut self, role: &str) -> Event {
        self.role = Some(role.to_string());
        self
    }

    /// How a timed operation that may fail ended: `duration_seconds` since `began`, and
    /// `outcome` `ok`, or `failed` with the `error`.
    pub fn ended<T>(self, began: Instant, r: &anyhow::Result<T>) -> Event {
        let ev = self.took(began.elapsed());
        match r {
            Ok(_) => ev.attr("outcome", "ok"),
            Err(e) => ev.attr("outcome", "failed").attr("error", format!("{e:#}")),
        }
    }

    /// How long the operation took: `duration_seconds`, in seconds to the millisecond.
    pub fn took(self, d: std::time::Duration) -> Event {
        self.attr("duration_seconds", format!("{:.3}", d.as_secs_f64()))
    }

    pub fn attr(mut self, key: &str, value: impl fmt::Display) -> Event {
        let mut v = value.to_string();
        if v.len() > MAX_ATTR {
            let mut end = MAX_ATTR;
            while !v.is_char_boundary(end) {
                end -= 1;
            }
            v.truncate(end);
        }
        self.attrs.insert(key.to_string(), v);
        self
    }

    /// The event's time, if it parses.
    pub fn at(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.time)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// Docker's one-line form: `TIME TYPE ACTION ACTOR (k=v, ...)`.
    pub fn line(&self) -> String {
        let actor = self.id.as_deref().or(self.stack.as_deref()).unwrap_or("-");
        let mut attrs: Vec<String> = Vec::new();
        for (k, v) in [("stack", &self.stack), ("role", &self.role)] {
            if let Some(v) = v {
                attrs.push(format!("{k}={v}"));
            }
        }
        attrs.extend(self.attrs.iter().map(|(k, v)| format!("{k}={v}")));
        crate::containers::sanitize(&format!(
            "{} {} {} {} ({})",
            self.time,
            self.object,
            self.kind,
            actor,
            attrs.join(", ")
        ))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("{op} {path}: {cause}")]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("--filter {filter:?}: {why}")]
    Filter { filter: String, why: String },
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> EventError {
    let path = path.to_path_buf();
    move |cause| EventError::Io { op, path, cause }
}

/// `ROOT/events`.
pub fn dir(root: &Path) -> PathBuf {
    root.join("events")
}

/// Appends `ev` to the event log of state root `root`, stamped with the time now.
/// A failure is logged as a warning, never returned: see the module's doc.
pub fn emit(root: &Path, ev: Event) {
    let kind = ev.kind;
    if let Err(e) = append(&dir(root), ev, MAX_SIZE) {
        tracing::warn!(error = %e, %kind, "writing an event");
    }
}

/// One line onto `dir/events.jsonl` (stamped now if it has no time), rotating it first
/// if the line would pass `max`.
fn append(dir: &Path, mut ev: Event, max: u64) -> Result<(), EventError> {
    if ev.time.is_empty() {
        ev.time = crate::containers::now();
    }
    ev.object = ev.kind.object().to_string();
    let mut line = serde_json::to_vec(&ev).expect("an event serializes");
    line.push(b'\n');
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let path = dir.join(FILE);
    // 1. The lock, if it comes within a moment: whoever holds it may rotate, and
    //    nobody appends to a file being renamed away under it.
    let lock = lock(dir);
    // 2. Rotate if this line would pass the bound (only with the lock).
    if lock.is_some() {
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if size > 0 && size + line.len() as u64 > max {
            let old = dir.join(format!("{FILE}.1"));
            std::fs::rename(&path, &old).map_err(io("rotating", &path))?;
        }
    }
    // 3. One write on an O_APPEND file: the line lands whole, after every other.
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io("opening", &path))?;
    f.write_all(&line).map_err(io("appending to", &path))?;
    drop(lock);
    Ok(())
}

/// The rotation lock (`dir/.lock`), tried for up to 100 ms.
fn lock(dir: &Path) -> Option<std::fs::File> {
    let path = dir.join(".lock");
    let deadline = Instant::now() + Duration::from_millis(100);
    loop {
        match frun_images::fsutil::lock_file(
            &path,
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        ) {
            Ok(l) => return Some(l),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "the event log's lock: appending without rotating");
                return None;
            }
        }
    }
}

/// Which events `frun events` shows: Docker's `--filter KEY=VALUE`, where values of one
/// key are alternatives and different keys must all hold.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    keys: BTreeMap<String, Vec<String>>,
}

/// The keys `--filter` takes.
const FILTER_KEYS: [&str; 6] = ["container", "event", "type", "stack", "role", "image"];

impl Filter {
    pub fn parse(filters: &[String]) -> Result<Filter, EventError> {
        let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in filters {
            let bad = |why: &str| EventError::Filter {
                filter: f.clone(),
                why: why.to_string(),
            };
            let (k, v) = f.split_once('=').ok_or_else(|| bad("expected KEY=VALUE"))?;
            if !FILTER_KEYS.contains(&k) {
                return Err(bad(&format!(
                    "unknown key {k:?}; known: {}",
                    FILTER_KEYS.join(", ")
                )));
            }
            if k == "event" {
                Kind::from_str(v)?;
            }
            if k == "type" && !["container", "stack"].contains(&v) {
                return Err(bad("type is container or stack"));
            }
            keys.entry(k.to_string()).or_default().push(v.to_string());
        }
        Ok(Filter { keys })
    }

    pub fn matches(&self, ev: &Event) -> bool {
        self.keys.iter().all(|(k, vals)| {
            vals.iter().any(|v| match k.as_str() {
                "container" => {
                    ev.container.as_deref() == Some(v)
                        || ev
                            .id
                            .as_deref()
                            .is_some_and(|id| id.starts_with(v.as_str()))
                }
                "event" => Kind::from_str(v).is_ok_and(|k| k == ev.kind),
                "type" => ev.object == *v,
                "stack" => ev.stack.as_deref() == Some(v),
                "role" => ev.role.as_deref() == Some(v),
                "image" => ev.attrs.get("image") == Some(v),
                _ => false,
            })
        })
    }
}

/// Calls `f` for each event in `file` from `offset`, and returns the offset after the
/// last whole line. A line that does not parse (a crash mid-write, an event of a newer
/// frun) is skipped.
fn read_from(file: &mut std::fs::File, offset: u64, f: &mut dyn FnMut(Event)) -> u64 {
    if file.seek(SeekFrom::Start(offset)).is_err() {
        return offset;
    }
    let mut r = BufReader::new(file);
    let mut at = offset;
    let mut line = Vec::new();
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return at,
            Ok(_) if !line.ends_with(b"\n") => return at,
            Ok(n) => {
                at += n as u64;
                match serde_json::from_slice::<Event>(&line) {
                    Ok(ev) => f(ev),
                    Err(e) => tracing::debug!(error = %e, "skipping an event line"),
                }
            }
        }
    }
}

/// Every stored event, oldest first (the rotated file, then the current one; sorted
/// by time, since a writer that could not take the lock may have landed a line in the
/// file being rotated).
#[allow(dead_code)] // The metrics' reader (and the tests) until then.
pub fn read_all(root: &Path) -> Vec<Event> {
    let dir = dir(root);
    let mut out = Vec::new();
    for name in [format!("{FILE}.1"), FILE.to_string()] {
        if let Ok(mut f) = std::fs::File::open(dir.join(name)) {
            read_from(&mut f, 0, &mut |e| out.push(e));
        }
    }
    out.sort_by(|a, b| a.time.cmp(&b.time));
    out
}

/// A reader that goes on where it stopped: the supervisor's metrics count events with
/// it on each scrape, reading only what was appended since (and, after a rotation, the
/// rest of the rotated file first).
#[derive(Debug, Default)]
pub struct Tail {
    /// The inode of the current file when last read, and how far.
    at: Option<(u64, u64)>,
}

impl Tail {
    /// Calls `f` for each event not read before (every stored one the first time).
    pub fn read(&mut self, root: &Path, f: &mut dyn FnMut(Event)) {
        let dir = dir(root);
        let old = dir.join(format!("{FILE}.1"));
        let Ok(mut cur) = std::fs::File::open(dir.join(FILE)) else {
            return;
        };
        let Ok(ino) = cur.metadata().map(|m| m.ino()) else {
            return;
        };
        let from = match self.at {
            Some((i, offset)) if i == ino => offset,
            // 1. Rotated since: the rest of the file we were reading, if it is the
            //    rotated one (two rotations in between lose the one in the middle).
            Some((i, offset)) => {
                if let Ok(mut f1) = std::fs::File::open(&old) {
                    if f1.metadata().is_ok_and(|m| m.ino() == i) {
                        read_from(&mut f1, offset, f);
                    }
                }
                0
            }
            // 2. The first time: the rotated file whole.
            None => {
                if let Ok(mut f1) = std::fs::File::open(&old) {
                    read_from(&mut f1, 0, f);
                }
                0
            }
        };
        let offset = read_from(&mut cur, from, f);
        self.at = Some((ino, offset));
    }
}

/// What `frun events` asks for.
pub struct Query {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub filter: Filter,
}

impl Query {
    fn wants(&self, ev: &Event) -> bool {
        let t = ev.at();
        self.since.is_none_or(|s| t.is_some_and(|t| t >= s))
            && self.until.is_none_or(|u| t.is_some_and(|t| t < u))
            && self.filter.matches(ev)
    }
}

/// `frun events`, as Docker's: the stored events from `--since` on (none without it),
/// then, unless `--until` is already past, new ones as they come until `--until` (or
/// forever). An error from `put` (a closed pipe) ends it with that error.
pub fn watch(
    root: &Path,
    q: &Query,
    mut put: impl FnMut(&Event) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    use rustix::fs::inotify;
    let dir = dir(root);
    let path = dir.join(FILE);
    // 1. Watch first, then open: a line written between the two still wakes the loop.
    std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    let ino = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)?;
    inotify::add_watch(
        &ino,
        &dir,
        inotify::WatchFlags::MODIFY | inotify::WatchFlags::CREATE | inotify::WatchFlags::MOVED_TO,
    )
    .map_err(|e| io("watching", &dir)(e.into()))?;
    let open = || -> Option<(std::fs::File, u64)> {
        let f = std::fs::File::open(&path).ok()?;
        let ino = f.metadata().ok()?.ino();
        Some((f, ino))
    };
    let mut current = open();

    // 2. The past: stored events from --since on (the rotated file, then the current
    //    one up to where following goes on).
    let mut offset = 0;
    let mut past = Vec::new();
    if q.since.is_some() {
        if let Ok(mut f) = std::fs::File::open(dir.join(format!("{FILE}.1"))) {
            read_from(&mut f, 0, &mut |e| past.push(e));
        }
    }
    if let Some((f, _)) = current.as_mut() {
        offset = match q.since {
            Some(_) => read_from(f, 0, &mut |e| past.push(e)),
            None => f.metadata().map(|m| m.len()).unwrap_or(0),
        };
    }
    past.sort_by(|a, b| a.time.cmp(&b.time));
    for ev in past.iter().filter(|e| q.wants(e)) {
        put(ev)?;
    }

    // 3. New events as they come, until --until.
    let mut buf = [0u8; 4096];
    loop {
        let mut failed = None;
        let mut each = |ev: Event| {
            if failed.is_none() && q.wants(&ev) {
                if let Err(e) = put(&ev) {
                    failed = Some(e);
                }
            }
        };
        if let Some((f, _)) = current.as_mut() {
            offset = read_from(f, offset, &mut each);
        }
        // Rotated (or made): the old file is whole, read to its end above; the new one
        // from its start.
        let now_ino = std::fs::metadata(&path).ok().map(|m| m.ino());
        if now_ino.is_some() && now_ino != current.as_ref().map(|c| c.1) {
            current = open();
            offset = 0;
            if let Some((f, _)) = current.as_mut() {
                offset = read_from(f, 0, &mut each);
            }
        }
        if let Some(e) = failed {
            return Err(e.into());
        }
        let left = match q.until {
            Some(u) => match (u - Utc::now()).to_std() {
                Ok(d) if !d.is_zero() => d.min(Duration::from_secs(1)),
                _ => return Ok(()),
            },
            None => Duration::from_secs(1),
        };
        // 4. Sleep until the directory changes, or a second (or --until) passes.
        let mut fds = [rustix::event::PollFd::new(
            &ino,
            rustix::event::PollFlags::IN,
        )];
        let timeout =
            rustix::event::Timespec::try_from(left).expect("a second is a valid timespec");
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        while rustix::io::read(&ino, &mut buf).is_ok_and(|n| n > 0) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: Kind, name: &str) -> Event {
        let mut e = Event::new(kind).attr("image", "img").attr("name", name);
        e.container = Some(name.into());
        e.id = Some(format!("{name}0123456789abcdef"));
        e
    }

    #[test]
    fn emitted_events_read_back_in_order_with_their_fields() {
        let t = tempfile::tempdir().unwrap();
        emit(t.path(), ev(Kind::Start, "web").role("app").stack("s"));
        emit(
            t.path(),
            Event::new(Kind::Swap)
                .stack("s")
                .attr("outcome", "ok")
                .attr("duration_seconds", 1.5),
        );
        let all = read_all(t.path());
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].kind, Kind::Start);
        assert_eq!(all[0].object, "container");
        assert_eq!(all[0].role.as_deref(), Some("app"));
        assert_eq!(all[1].object, "stack");
        assert_eq!(all[1].attrs["duration_seconds"], "1.5");
        assert!(all[0].at().unwrap() <= all[1].at().unwrap());
        let text = std::fs::read_to_string(t.path().join("events").join(FILE)).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.contains(r#""kind":"swap""#), "{text}");
        assert!(
            all[1]
                .line()
                .contains("stack swap s (stack=s, duration_seconds=1.5, outcome=ok)"),
            "{}",
            all[1].line()
        );
    }

    #[test]
    fn the_log_rotates_at_its_bound_and_keeps_one_old_file() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("events");
        for i in 0..300 {
            append(&d, ev(Kind::Die, &format!("c{i}")), 4096).unwrap();
        }
        let size = |n: &str| std::fs::metadata(d.join(n)).unwrap().len();
        assert!(size(FILE) <= 4096);
        assert!(size(&format!("{FILE}.1")) <= 4096);
        assert!(!d.join(format!("{FILE}.2")).exists());
        let all = read_all(t.path());
        // The newest survive, consecutive, ending with the last.
        assert_eq!(all.last().unwrap().container.as_deref(), Some("c299"));
        let first: usize = all[0].container.as_ref().unwrap()[1..].parse().unwrap();
        assert_eq!(first + all.len(), 300);
    }

    /// Eight threads in four processes' worth of files would be the real case; threads
    /// with their own file descriptions (each `append` opens the file) are the same
    /// for the kernel: every line whole, none lost.
    #[test]
    fn concurrent_writers_never_tear_or_lose_lines() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("events");
        let threads: Vec<_> = (0..8)
            .map(|w| {
                let d = d.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let e = ev(Kind::Start, &format!("w{w}-{i}")).attr("pad", "x".repeat(300));
                        append(&d, e, 1 << 30).unwrap();
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        let text = std::fs::read_to_string(d.join(FILE)).unwrap();
        assert_eq!(text.lines().count(), 1600);
        for l in text.lines() {
            serde_json::from_str::<Event>(l).unwrap_or_else(|e| panic!("torn line {l:?}: {e}"));
        }
    }

    #[test]
    fn a_failure_to_log_is_not_the_callers() {
        // The state root is a file: nothing can be written under it.
        let t = tempfile::NamedTempFile::new().unwrap();
        emit(t.path(), ev(Kind::Start, "x"));
        assert!(read_all(t.path()).is_empty());
    }

    #[test]
    fn filters_are_dockers_alternatives_within_a_key_and_all_keys() {
        let f = |s: &[&str]| Filter::parse(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        let start = ev(Kind::Start, "web").role("app");
        let die = ev(Kind::Die, "db");
        let both = f(&["event=start", "event=die"]).unwrap();
        assert!(both.matches(&start) && both.matches(&die));
        let web_dies = f(&["event=die", "container=web"]).unwrap();
        assert!(!web_dies.matches(&start) && !web_dies.matches(&die));
        assert!(f(&["container=web0123"]).unwrap().matches(&start));
        assert!(f(&["role=app", "type=container"]).unwrap().matches(&start));
        assert!(f(&["event=health"])
            .unwrap()
            .matches(&Event::new(Kind::HealthStatus)));
        for bad in ["nope", "colour=red", "event=explode", "type=image"] {
            let e = f(&[bad]).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn watch_prints_the_past_from_since_and_stops_at_until() {
        let t = tempfile::tempdir().unwrap();
        emit(t.path(), ev(Kind::Start, "a"));
        let mid = Utc::now();
        std::thread::sleep(Duration::from_millis(2));
        emit(t.path(), ev(Kind::Die, "a"));
        emit(t.path(), ev(Kind::Start, "b"));
        let names = |since, filter: &[&str]| {
            let q = Query {
                since,
                until: Some(Utc::now()),
                filter: Filter::parse(&filter.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .unwrap(),
            };
            let mut out = Vec::new();
            watch(t.path(), &q, |e| {
                out.push(format!("{} {}", e.kind, e.container.clone().unwrap()));
                Ok(())
            })
            .unwrap();
            out
        };
        assert_eq!(names(None, &[]), Vec::<String>::new());
        assert_eq!(names(Some(mid), &[]), ["die a", "start b"]);
        assert_eq!(
            names(Some(mid - chrono::Duration::seconds(60)), &["event=start"]),
            ["start a", "start b"]
        );
    }

    #[test]
    fn watch_streams_new_events_across_a_rotation() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_path_buf();
        let d = dir(&root);
        append(&d, ev(Kind::Start, "old"), 2048).unwrap();
        // The writer waits for each event to be seen before the next: with one rotated
        // file kept, a watcher two rotations behind would miss one (at the real bound,
        // 1 MiB, that is thousands of events in a second).
        let (seen_tx, seen) = std::sync::mpsc::channel::<()>();
        std::thread::sleep(Duration::from_millis(1));
        let since = Utc::now();
        let writer = std::thread::spawn(move || {
            for i in 0..40 {
                append(&d, ev(Kind::Start, &format!("n{i}")), 2048).unwrap();
                let _ = seen.recv_timeout(Duration::from_secs(10));
            }
        });
        // From a time after "old": what the writer wrote before the watcher opened the
        // file is shown as the past, the rest as it comes.
        // (--until bounds the test if an event were missed.)
        let q = Query {
            since: Some(since),
            until: Some(Utc::now() + chrono::Duration::seconds(30)),
            filter: Filter::default(),
        };
        let mut got = Vec::new();
        let r = watch(&root, &q, |e| {
            got.push(e.container.clone().unwrap());
            let _ = seen_tx.send(());
            if got.len() == 40 {
                return Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "done"));
            }
            Ok(())
        });
        writer.join().unwrap();
        assert!(r.is_err());
        let want: Vec<String> = (0..40).map(|i| format!("n{i}")).collect();
        assert_eq!(got, want);
        assert!(dir(&root).join(format!("{FILE}.1")).exists(), "rotated");
    }
}
