//! The supervisor's part of scheduled backups (`[backup] every`): which recorded stack
//! has one due, a `frun backup --scheduled` child started for it, reaped without
//! blocking the loop, killed past a timeout, and its failure told in the log.
//!
//! The backup runs in a child, not in the supervisor: the supervisor stays one small
//! thread that answers the CLI and probes health while a backup copies gigabytes or
//! waits on an upload, and a backup that hangs is killed without taking the supervisor
//! with it. The due times and outcomes live on disk (see [`crate::backup::schedule`]),
//! which the child writes under the stack's lock, so a restarted supervisor picks up
//! where the killed one was, and two children for the same due time make one backup.

use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::backup::config::BackupConfig;
use crate::backup::schedule;
use crate::cli::Global;

/// How often the stacks' files are read again (a changed `[backup]` takes effect then).
const RESCAN: Duration = Duration::from_secs(2);

/// A scheduled backup's child is killed past this long: `[backup] timeout` (default:
/// its `every`, kept between 10 minutes and 6 hours).
fn timeout(cfg: &BackupConfig) -> Duration {
    cfg.timeout
}

/// A running `frun backup --scheduled`.
struct Child {
    pid: i32,
    spawned: DateTime<Utc>,
    deadline: Instant,
    killed: bool,
}

/// What the loop keeps per stack with a schedule.
struct Entry {
    file: PathBuf,
    cfg: BackupConfig,
    due: Option<DateTime<Utc>>,
    /// Not before this (a child that stepped aside for a swap).
    retry_at: Option<Instant>,
    child: Option<Child>,
}

#[derive(Default)]
pub struct Scheduler {
    stacks: HashMap<String, Entry>,
    last_scan: Option<Instant>,
    /// The last error of a stack file that could not be read, logged once per change.
    broken: HashMap<String, String>,
    /// Each stack file's `[backup]` as last read, and the file's identity then: a file
    /// is parsed again only when it changed (the supervisor stays small: no TOML
    /// parsing in its steady loop, see trim.rs).
    read: HashMap<String, (FileId, Option<BackupConfig>)>,
}

/// A stack file as last read: its path and [`super::FileStamp`].
type FileId = (PathBuf, super::FileStamp);

fn log_path(root: &Path, stack: &str) -> PathBuf {
    crate::backup::stack_dir(root, stack).join("scheduled.log")
}

impl Scheduler {
    /// One turn of the loop: the stacks' files read again now and then, a child started
    /// for each stack whose backup is due, a child past its timeout killed.
    pub fn tick(&mut self, g: &Global) {
        if self.last_scan.is_none_or(|t| t.elapsed() >= RESCAN) {
            self.scan(g);
            self.last_scan = Some(Instant::now());
        }
        let now = Utc::now();
        for (stack, e) in self.stacks.iter_mut() {
            if let Some(c) = &mut e.child {
                if !c.killed && Instant::now() > c.deadline {
                    tracing::warn!(
                        stack,
                        pid = c.pid,
                        timeout_s = timeout(&e.cfg).as_secs(),
                        "scheduled backup took too long: killing it"
                    );
                    if let Some(pid) = rustix::process::Pid::from_raw(c.pid) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                    c.killed = true;
                }
                continue;
            }
            if e.retry_at.is_some_and(|t| Instant::now() < t) {
                continue;
            }
            if e.due.is_some_and(|d| d <= now) {
                e.retry_at = None;
                // Taken before the child runs: any attempt it records is later.
                let spawned = Utc::now();
                match spawn(g, stack, &e.file) {
                    Ok(pid) => {
                        tracing::info!(stack, pid, "scheduled backup started");
                        e.child = Some(Child {
                            pid,
                            spawned,
                            deadline: Instant::now() + timeout(&e.cfg),
                            killed: false,
                        });
                    }
                    Err(err) => {
                        let err = format!("starting frun backup: {err:#}");
                        tracing::warn!(stack, error = %err, "scheduled backup failed");
                        lost(g, stack, e, 0, Utc::now(), &err);
                    }
                }
            }
        }
    }

    /// The recorded stacks (`ROOT/stacks/<s>/stack.json`, as `frun up` wrote them) with
    /// a `[backup] every`, and when each is due.
    fn scan(&mut self, g: &Global) {
        let mut seen = Vec::new();
        let dir = g.root.join("stacks");
        for d in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = d.file_name().to_string_lossy().into_owned();
            let Some(file) = std::fs::read(d.path().join("stack.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["file"].as_str().map(PathBuf::from))
            else {
                continue;
            };
            let id = super::stamp(&file).map(|st| (file.clone(), st));
            let cached = self
                .read
                .get(&name)
                .filter(|(was, _)| id.as_ref() == Some(was))
                .map(|(_, cfg)| cfg.clone());
            let backup = match cached {
                Some(cfg) => cfg,
                None => match crate::stack::Stack::load(&file, &g.root) {
                    Ok(s) if s.name == name => {
                        self.broken.remove(&name);
                        let cfg = s.backup.every.is_some().then_some(s.backup);
                        if let Some(id) = id {
                            self.read.insert(name.clone(), (id, cfg.clone()));
                        }
                        cfg
                    }
                    Ok(_) => None,
                    Err(e) => {
                        // Its schedule stays as it was (a file being edited is read again).
                        let e = format!("{e:#}");
                        if self.broken.get(&name) != Some(&e) {
                            tracing::warn!(stack = name, error = %e, "reading the stack file for its backup schedule");
                            self.broken.insert(name.clone(), e);
                        }
                        seen.push(name);
                        continue;
                    }
                },
            };
            let Some(backup) = backup else { continue };
            seen.push(name.clone());
            let due = schedule::due(&g.root, &name, &backup);
            let e = self.stacks.entry(name.clone()).or_insert_with(|| {
                tracing::info!(
                    stack = name,
                    every_s = backup.every.unwrap_or_default().as_secs(),
                    next_due = %due.map(schedule::rfc3339).unwrap_or_default(),
                    "scheduling backups of the stack"
                );
                Entry {
                    file: file.clone(),
                    cfg: backup.clone(),
                    due,
                    retry_at: None,
                    child: None,
                }
            });
            e.file = file;
            e.cfg = backup;
            e.due = due;
        }
        // A stack gone (`frun down`) or without a schedule now: forgotten once its child
        // (if any) ended.
        self.stacks.retain(|name, e| {
            let keep = seen.contains(name) || e.child.is_some();
            if !keep {
                tracing::info!(stack = name, "no more scheduled backups of the stack");
            }
            keep
        });
    }

    /// A child ended (`code`: its exit code, 128 + signal when killed): `false` when it
    /// was not a scheduled backup's.
    pub fn reaped(&mut self, g: &Global, pid: i32, code: i32) -> bool {
        let Some((stack, e)) = self
            .stacks
            .iter_mut()
            .find(|(_, e)| e.child.as_ref().is_some_and(|c| c.pid == pid))
        else {
            return false;
        };
        let child = e.child.take().expect("found by its child");
        match code {
            0 => {
                let st = schedule::load(&g.root, stack).unwrap_or_default();
                tracing::info!(
                    stack,
                    backup = st.last_backup.as_deref().unwrap_or("-"),
                    next_due = st.next_due.as_deref().unwrap_or("-"),
                    "scheduled backup made"
                );
            }
            c if c == schedule::EXIT_NOT_DUE as i32 => {
                tracing::debug!(stack, "scheduled backup not due (made already)");
            }
            c if c == schedule::EXIT_BUSY as i32 => {
                tracing::info!(
                    stack,
                    retry_s = schedule::BUSY_RETRY.as_secs(),
                    "scheduled backup stepped aside for an up, swap or restore of the stack"
                );
                e.retry_at = Some(Instant::now() + schedule::BUSY_RETRY);
            }
            c => {
                // A child killed while the app was frozen left it frozen: thawed, unless
                // another backup holds the stack (it thaws what it froze).
                if c > 128 {
                    thaw_if_free(&g.root, stack);
                }
                let err = if child.killed {
                    format!(
                        "killed after {} s (the timeout of a scheduled backup)",
                        timeout(&e.cfg).as_secs()
                    )
                } else {
                    last_error(&log_path(&g.root, stack))
                        .unwrap_or_else(|| format!("frun backup exited with {c}"))
                };
                match lost(g, stack, e, pid, child.spawned, &err) {
                    // The child recorded its own failure (and emitted its event).
                    None => {
                        let st = schedule::load(&g.root, stack).unwrap_or_default();
                        tracing::warn!(
                            stack,
                            error = st.error.as_deref().unwrap_or(&err),
                            failures = st.failures,
                            next_due = st.next_due.as_deref().unwrap_or("-"),
                            "scheduled backup failed"
                        );
                    }
                    Some(st) => {
                        tracing::warn!(stack, error = %err, failures = st.failures, next_due = st.next_due.as_deref().unwrap_or("-"), "scheduled backup failed");
                    }
                }
            }
        }
        e.due = schedule::due(&g.root, stack, &e.cfg);
        true
    }
}

/// Records an attempt that ended without its outcome on disk (and its event); the
/// state written, `None` when the child had recorded it.
fn lost(
    g: &Global,
    stack: &str,
    e: &mut Entry,
    pid: i32,
    spawned: DateTime<Utc>,
    err: &str,
) -> Option<schedule::State> {
    match schedule::record_lost(&g.root, stack, &e.cfg, pid, spawned, err) {
        Ok(Some(st)) => {
            crate::events::emit(
                &g.root,
                crate::events::Event::new(crate::events::Kind::Backup)
                    .stack(stack)
                    .attr("reason", "scheduled")
                    .attr("outcome", "failed")
                    .attr("error", err),
            );
            e.due = schedule::due(&g.root, stack, &e.cfg);
            Some(st)
        }
        Ok(None) => None,
        Err(err) => {
            tracing::warn!(stack, error = %format!("{err:#}"), "recording a failed scheduled backup");
            // Not recorded: not started again at once either.
            e.retry_at = Some(Instant::now() + timeout(&e.cfg).min(Duration::from_secs(60)));
            None
        }
    }
}

/// `frun backup --scheduled -f FILE`, its output in `ROOT/backups/<stack>/scheduled.log`.
fn spawn(g: &Global, stack: &str, file: &Path) -> anyhow::Result<i32> {
    use anyhow::Context;
    let log = log_path(&g.root, stack);
    std::fs::create_dir_all(log.parent().expect("a stack directory"))?;
    let out = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let child = g
        .frun_command()?
        .arg("backup")
        .arg("--scheduled")
        .arg("-f")
        .arg(file)
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .context("starting frun backup --scheduled")?;
    // Reaped by the loop's waitpid (see `reaped`), not through the handle.
    Ok(child.id() as i32)
}

/// The child's error: the last `frun: error:` line of its output.
fn last_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix("frun: error: "))
        .map(str::to_string)
}

/// Thaws what a killed backup left frozen, if no other backup holds the stack's lock.
fn thaw_if_free(root: &Path, stack: &str) {
    let lock = crate::backup::stack_dir(root, stack).join("lock");
    if let Ok(_l) =
        frun_images::fsutil::lock_file(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
    {
        crate::backup::freeze::thaw_leftover(root, stack);
    }
}
