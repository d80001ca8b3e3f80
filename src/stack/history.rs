//! The deployment history of a stack's app: `ROOT/stacks/<stack>/history.json`, one
//! entry per change of the app's image (by `frun up`, `frun swap` or `frun rollback`),
//! successful or not, newest last.
//!
//! It is what `frun history` lists, what `frun rollback` reads to find the previous
//! good image (in the store already, by digest: no registry needed), and what `frun up`
//! reads to keep the image a swap deployed rather than go back to the stack file's.
//! Written whole, temp + fsync + rename: a crash leaves the old list or the new one.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// At most this many entries are kept (the oldest go first).
const KEEP: usize = 100;

/// How a deployment ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The new app serves; the old one is gone.
    Deployed,
    /// Refused or failed before the switch: the old app serves on, nothing new is left.
    Failed,
    /// Interrupted (frun killed) before the switch, undone by the next frun.
    Undone,
    /// Interrupted after the switch, finished by the next frun.
    Finished,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Deployed => "deployed",
            Outcome::Failed => "failed",
            Outcome::Undone => "undone",
            Outcome::Finished => "finished",
        })
    }
}

impl Outcome {
    /// The app image of this entry is the one that serves (or served) afterwards.
    pub fn serves(self) -> bool {
        matches!(self, Outcome::Deployed | Outcome::Finished)
    }
}

/// One step's duration, for the history and `--format json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepTime {
    pub step: String,
    pub ms: u64,
}

/// One deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// RFC 3339.
    pub time: String,
    /// `up`, `swap`, `rollback`.
    pub how: String,
    /// The reference as the user named it (normalized), e.g. `docker.io/family/app:v2`.
    pub reference: String,
    /// The same image pinned by digest (`name@sha256:...`): what the container runs and
    /// what a rollback starts again.
    pub pinned: String,
    /// The image's manifest digest.
    pub digest: String,
    /// The digest it replaced, if any.
    #[serde(default)]
    pub previous_digest: Option<String>,
    /// The stack file's app image when this was deployed: while the file still says
    /// the same, `frun up` keeps this deployment's image.
    pub file_image: String,
    pub outcome: Outcome,
    /// The new app container, when one was started.
    #[serde(default)]
    pub container: Option<String>,
    /// Why it failed, what the next frun did, or that the old app had to be killed.
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub steps: Vec<StepTime>,
}

pub fn path(root: &Path, stack: &str) -> PathBuf {
    super::stack_dir(root, stack).join("history.json")
}

/// The entries, oldest first; none when there is no history yet.
pub fn load(root: &Path, stack: &str) -> anyhow::Result<Vec<Entry>> {
    let p = path(root, stack);
    match std::fs::read(&p) {
        Ok(data) => serde_json::from_slice(&data).with_context(|| format!("reading {p:?}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {p:?}")),
    }
}

/// Appends `entry` (temp + fsync + rename of the whole list).
pub fn append(root: &Path, stack: &str, entry: Entry) -> anyhow::Result<()> {
    let mut all = load(root, stack)?;
    all.push(entry);
    let drop = all.len().saturating_sub(KEEP);
    all.drain(..drop);
    let p = path(root, stack);
    std::fs::create_dir_all(p.parent().expect("a stack directory"))
        .with_context(|| format!("creating the directory of {p:?}"))?;
    frun_images::fsutil::write_atomic(&p, &serde_json::to_vec_pretty(&all)?)
        .with_context(|| format!("writing {p:?}"))
}

/// The deployment that serves now: the newest whose image served afterwards.
pub fn current(entries: &[Entry]) -> Option<&Entry> {
    entries.iter().rev().find(|e| e.outcome.serves())
}

/// What `rollback` goes back to: the newest serving deployment before the current one
/// with another digest.
pub fn previous(entries: &[Entry]) -> Option<&Entry> {
    let cur = current(entries)?;
    entries
        .iter()
        .rev()
        .filter(|e| e.outcome.serves())
        .find(|e| e.digest != cur.digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(digest: &str, outcome: Outcome) -> Entry {
        Entry {
            time: "2026-12-02T03:00:00Z".into(),
            how: "swap".into(),
            reference: format!("r/{digest}"),
            pinned: format!("r@{digest}"),
            digest: digest.into(),
            previous_digest: None,
            file_image: "r:v1".into(),
            outcome,
            container: None,
            message: None,
            steps: Vec::new(),
        }
    }

    #[test]
    fn previous_skips_failures_and_the_current_digest() {
        let h = vec![
            entry("a", Outcome::Deployed),
            entry("b", Outcome::Finished),
            entry("c", Outcome::Failed),
            entry("b", Outcome::Deployed),
            entry("d", Outcome::Undone),
        ];
        assert_eq!(current(&h).unwrap().digest, "b");
        assert_eq!(previous(&h).unwrap().digest, "a");
        assert!(previous(&h[..2]).is_some_and(|e| e.digest == "a"));
        assert!(previous(&h[..1]).is_none());
        assert!(current(&[]).is_none());
    }

    #[test]
    fn append_keeps_the_newest_and_writes_whole_lists() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..(KEEP + 5) {
            append(dir.path(), "s", entry(&format!("d{i}"), Outcome::Deployed)).unwrap();
        }
        let all = load(dir.path(), "s").unwrap();
        assert_eq!(all.len(), KEEP);
        assert_eq!(all.last().unwrap().digest, format!("d{}", KEEP + 4));
        assert_eq!(all[0].digest, "d5");
        assert!(load(dir.path(), "other").unwrap().is_empty());
    }
}
