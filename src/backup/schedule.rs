//! Scheduled backups (`[backup] every`, `jitter`): when one is due, and what the last
//! one did, kept on disk in `ROOT/backups/<stack>/schedule.json`.
//!
//! The supervisor decides that a backup is due and starts `frun backup --scheduled`
//! as a child; the child is the authority: under the stack's backup lock it checks
//! again that the backup is still due, records the attempt (its start, its pid and the
//! next due time: start + `every` + a random part of `jitter`) before it copies
//! anything, and its outcome after. So a supervisor that is killed and restarted
//! neither loses a due backup (the due time is on disk) nor doubles one (a second
//! child finds it not due any more). Each write is temp + fsync + rename.
//!
//! Lock order, as everywhere: the stack's change lock (`swap::lock`) first, then the
//! backup lock. A scheduled backup only *tries* the change lock: while a `frun up`,
//! swap or restore runs it steps aside (exit [`EXIT_BUSY`]) and the supervisor tries
//! again a little later, rather than wait inside a swap's window (whose own backup,
//! `before_swap`, takes the backup lock).

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::config::BackupConfig;
use crate::cli::Global;
use crate::stack::Stack;

/// `frun backup --scheduled` exit code: a swap, `up` or restore of the stack runs;
/// the supervisor retries after [`BUSY_RETRY`].
pub const EXIT_BUSY: u8 = 75;
/// `frun backup --scheduled` exit code: not due (another attempt did it already).
pub const EXIT_NOT_DUE: u8 = 3;
/// How long the supervisor waits before it tries again a backup that stepped aside.
pub const BUSY_RETRY: Duration = Duration::from_secs(5);

/// How the last finished attempt ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Failed,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
        })
    }
}

/// An attempt under way: the child's pid and when it began.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Running {
    pub pid: i32,
    pub since: String,
}

/// `schedule.json`.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct State {
    /// The `every` the due time was computed with (a changed file recomputes it).
    pub every_secs: u64,
    /// When the last attempt began (RFC 3339).
    pub last_attempt: Option<String>,
    /// How the last finished attempt ended, and its error.
    pub outcome: Option<Outcome>,
    pub error: Option<String>,
    /// The last success: when, and the backup it made.
    pub last_success: Option<String>,
    pub last_backup: Option<String>,
    /// Failed attempts since the last success.
    #[serde(default)]
    pub failures: u32,
    /// When the next one is due (RFC 3339).
    pub next_due: Option<String>,
    /// Set while an attempt runs.
    pub running: Option<Running>,
}

pub fn path(root: &Path, stack: &str) -> PathBuf {
    super::stack_dir(root, stack).join("schedule.json")
}

/// The stack's schedule state; `None` before the first attempt (or when unreadable:
/// a damaged file is treated as no state, so the schedule starts over rather than stop).
pub fn load(root: &Path, stack: &str) -> Option<State> {
    let p = path(root, stack);
    let bytes = std::fs::read(&p).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(path = %p.display(), error = %e, "unreadable schedule state: starting over");
            None
        }
    }
}

pub fn save(root: &Path, stack: &str, st: &State) -> anyhow::Result<()> {
    let p = path(root, stack);
    std::fs::create_dir_all(p.parent().expect("a stack directory"))?;
    frun_images::fsutil::write_atomic(&p, &serde_json::to_vec_pretty(st)?)
        .with_context(|| format!("writing {}", p.display()))
}

fn parse_time(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A random duration in `[0, max]` (std's per-process random hash keys: no crate for it).
fn random_up_to(max: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    if max.is_zero() {
        return Duration::ZERO;
    }
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    let frac = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
    max.mul_f64(frac)
}

/// The next due time after an attempt that began at `began`.
pub fn next_after(began: DateTime<Utc>, cfg: &BackupConfig) -> DateTime<Utc> {
    let every = cfg.every.unwrap_or_default();
    began + to_chrono(every + random_up_to(cfg.jitter))
}

/// When the stack's next scheduled backup is due; `None` when it has no schedule.
/// Before the first attempt: `every` after the newest backup (made by hand or before a
/// swap), or now when there is none.
pub fn due(root: &Path, stack: &str, cfg: &BackupConfig) -> Option<DateTime<Utc>> {
    let every = cfg.every?;
    let now = Utc::now();
    if let Some(st) = load(root, stack) {
        let last = st.last_attempt.as_deref().and_then(parse_time);
        if st.every_secs != every.as_secs() {
            // The file's `every` changed: counted from the last attempt anew.
            return Some(last.map_or(now, |t| t + to_chrono(every)));
        }
        if let Some(t) = st.next_due.as_deref().and_then(parse_time) {
            return Some(t);
        }
        if let Some(t) = last {
            return Some(t + to_chrono(every));
        }
    }
    let newest = super::list(root, stack)
        .ok()?
        .into_iter()
        .rev()
        .find(|s| s.reason != "pre-restore")
        .and_then(|s| parse_time(&s.created));
    Some(newest.map_or(now, |t| t + to_chrono(every)))
}

/// What `frun backup --scheduled` did.
pub enum Ran {
    /// A backup was made (its summary, and what retention removed).
    Done(Box<super::Summary>, Vec<String>),
    /// Not due yet: another attempt made it.
    NotDue(DateTime<Utc>),
    /// A swap, `up` or restore of the stack holds its change lock.
    Busy,
}

/// `frun backup --scheduled`: one scheduled backup of `stack` if it is due, its
/// attempt and outcome recorded in `schedule.json`.
pub fn run(g: &Global, stack: &Stack) -> anyhow::Result<Ran> {
    // 1. The change lock, tried (a swap runs: step aside), then the backup lock.
    let Some(_change) = crate::stack::swap::try_lock(&g.root, &stack.name) else {
        return Ok(Ran::Busy);
    };
    let lock = super::StackLock::take(&g.root, &stack.name)?;

    // 2. Still due? (A supervisor killed after it started a child starts another.)
    let cfg = &stack.backup;
    let Some(due) = due(&g.root, &stack.name, cfg) else {
        anyhow::bail!("stack {} has no [backup] every", stack.name);
    };
    let now = Utc::now();
    if due > now {
        return Ok(Ran::NotDue(due));
    }

    // 3. The attempt recorded before anything is copied: the next due time is set.
    let mut st = load(&g.root, &stack.name).unwrap_or_default();
    st.every_secs = cfg.every.unwrap_or_default().as_secs();
    st.last_attempt = Some(rfc3339(now));
    st.next_due = Some(rfc3339(next_after(now, cfg)));
    st.running = Some(Running {
        pid: std::process::id() as i32,
        since: rfc3339(now),
    });
    save(&g.root, &stack.name, &st)?;

    // 4. The backup (its event says `reason=scheduled`), then its outcome.
    let mut opts = super::create::Options::from_stack(stack, "scheduled");
    opts.event_attrs = vec![("due".into(), rfc3339(due)), ("began".into(), rfc3339(now))];
    let r = super::create::create_held(g, stack, &opts, &lock);
    st.running = None;
    match &r {
        Ok((s, _)) => {
            st.outcome = Some(Outcome::Ok);
            st.error = None;
            st.failures = 0;
            st.last_success = Some(s.created.clone());
            st.last_backup = Some(s.name.clone());
        }
        Err(e) => {
            st.outcome = Some(Outcome::Failed);
            st.error = Some(format!("{e:#}"));
            st.failures += 1;
        }
    }
    save(&g.root, &stack.name, &st)?;
    let (s, removed) = r?;
    Ok(Ran::Done(Box::new(s), removed))
}

/// For the supervisor: an attempt of `pid` ended without recording its outcome (it was
/// killed, timed out, or failed before it took the lock): recorded as failed with
/// `error`, and a next due time set if the attempt had not set one. Returns the state
/// written, or `None` when the child had recorded its outcome itself.
pub fn record_lost(
    root: &Path,
    stack: &str,
    cfg: &BackupConfig,
    pid: i32,
    spawned: DateTime<Utc>,
    error: &str,
) -> anyhow::Result<Option<State>> {
    let mut st = load(root, stack).unwrap_or_default();
    let began = st.last_attempt.as_deref().and_then(parse_time);
    let ours_running = st.running.as_ref().is_some_and(|r| r.pid == pid);
    // (Times are kept to the millisecond.)
    let spawned = chrono::SubsecRound::trunc_subsecs(spawned, 3);
    let recorded = !ours_running && began.is_some_and(|t| t >= spawned);
    if recorded {
        return Ok(None);
    }
    let now = Utc::now();
    if !ours_running {
        // It never began: this is its attempt.
        st.last_attempt = Some(rfc3339(now));
        st.next_due = Some(rfc3339(next_after(now, cfg)));
    }
    st.every_secs = cfg.every.unwrap_or_default().as_secs();
    st.running = None;
    st.outcome = Some(Outcome::Failed);
    st.error = Some(error.to_string());
    st.failures += 1;
    save(root, stack, &st)?;
    Ok(Some(st))
}

/// What `frun status` shows of a stack's scheduled backups (`None`: no schedule and
/// no attempt yet).
pub fn status(root: &Path, stack: &str, cfg: &BackupConfig) -> Option<serde_json::Value> {
    let st = load(root, stack);
    if cfg.every.is_none() && st.is_none() {
        return None;
    }
    let st = st.unwrap_or_default();
    // An attempt whose process is gone without an outcome was interrupted.
    let running = st.running.as_ref().filter(|r| {
        rustix::process::Pid::from_raw(r.pid)
            .is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
    });
    let (outcome, error) = match (&st.running, running) {
        (_, Some(_)) => (Some("running".to_string()), st.error.clone()),
        (Some(r), None) => (
            Some("failed".to_string()),
            Some(format!(
                "the attempt begun at {} (pid {}) ended without an outcome (killed?)",
                r.since, r.pid
            )),
        ),
        (None, None) => (st.outcome.map(|o| o.to_string()), st.error.clone()),
    };
    Some(serde_json::json!({
        "every": cfg.every.map(|d| d.as_secs()),
        "last_attempt": st.last_attempt,
        "outcome": outcome,
        "error": error,
        "failures": st.failures,
        "last_success": st.last_success,
        "last_backup": st.last_backup,
        "next_due": due(root, stack, cfg).map(rfc3339),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(every: u64, jitter: u64) -> BackupConfig {
        BackupConfig {
            every: Some(Duration::from_secs(every)),
            jitter: Duration::from_secs(jitter),
            ..Default::default()
        }
    }

    #[test]
    fn the_next_due_time_is_every_plus_at_most_the_jitter() {
        let t = Utc::now();
        for _ in 0..100 {
            let n = next_after(t, &cfg(60, 10));
            assert!(n >= t + chrono::Duration::seconds(60), "{n}");
            assert!(n <= t + chrono::Duration::seconds(70), "{n}");
        }
        assert_eq!(
            next_after(t, &cfg(60, 0)),
            t + chrono::Duration::seconds(60)
        );
    }

    #[test]
    fn due_times_come_from_the_state_and_a_lost_attempt_is_recorded_once() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        // No state, no backup: due now; no schedule: never.
        assert!(due(r, "s", &cfg(60, 0)).unwrap() <= Utc::now());
        assert!(due(r, "s", &BackupConfig::default()).is_none());
        // An attempt that never recorded itself (it failed before the lock).
        let spawned = Utc::now();
        let st = record_lost(r, "s", &cfg(60, 0), 42, spawned, "boom")
            .unwrap()
            .expect("recorded by the supervisor");
        assert_eq!(st.outcome, Some(Outcome::Failed));
        assert_eq!(st.failures, 1);
        let d = due(r, "s", &cfg(60, 0)).unwrap();
        assert!(d > spawned + chrono::Duration::seconds(59), "{d}");
        // The same child seen again (or one that recorded its own): left as it is.
        assert!(record_lost(r, "s", &cfg(60, 0), 42, spawned, "boom")
            .unwrap()
            .is_none());
        // A changed `every` counts from the last attempt anew.
        let d2 = due(r, "s", &cfg(3600, 0)).unwrap();
        assert!(d2 > d + chrono::Duration::seconds(3000), "{d2}");
        // A killed child that recorded its start: failed, its next due time kept.
        let mut st = load(r, "s").unwrap();
        st.running = Some(Running {
            pid: 7,
            since: rfc3339(Utc::now()),
        });
        save(r, "s", &st).unwrap();
        let st2 = record_lost(r, "s", &cfg(60, 0), 7, Utc::now(), "killed")
            .unwrap()
            .unwrap();
        assert_eq!(st2.next_due, st.next_due);
        assert!(st2.running.is_none());
        assert_eq!(st2.failures, 2);
    }
}
