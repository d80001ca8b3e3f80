//! `frun restore`: verify, keep a safety backup, stop the app, swap the volumes in by
//! rename, start the app; and the recovery of a restore that was killed.
//!
//! Each volume's new content is extracted into `ROOT/volumes/<v>/_restore`, beside its
//! `_data` (same filesystem), and checked whole (checksums, manifest, integrity_check)
//! before anything live is touched. The swap of a volume is one
//! `renameat2(_restore, _data, RENAME_EXCHANGE)`: `_data` is the old tree or the new one
//! at every instant, never a mix of files. The restore's phase is kept in
//! `ROOT/backups/<stack>/restore.json` (temp + fsync + rename), with the inode of each
//! new tree, so that [`recover_data`] knows, for each volume, which tree `_data` is:
//!
//! | phase      | a kill leaves          | recovery                                   |
//! |------------|------------------------|--------------------------------------------|
//! | `staging`  | old data, partial new  | removes the staged trees (undo)            |
//! | `stopping` | old data, app stopped  | removes the staged trees (undo)            |
//! | `swapping` | some volumes swapped   | swaps the rest (finish), then as `cleaning`|
//! | `cleaning` | new data, old trees    | removes the old trees                      |
//!
//! So several volumes end all old or all new. `frun up`, `frun backup` and `frun
//! restore` run the recovery first; `frun up` then starts the app.

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{stack_dir, Summary};
use crate::cli::Global;
use crate::stack::Stack;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Staging,
    Stopping,
    Swapping,
    Cleaning,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Staging => "staging",
            Phase::Stopping => "stopping",
            Phase::Swapping => "swapping",
            Phase::Cleaning => "cleaning",
        })
    }
}

#[derive(Serialize, Deserialize, Clone, Debug)]
struct JournalVolume {
    name: String,
    /// The inode of the new tree (0 while staging).
    new_ino: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
struct Journal {
    backup: String,
    phase: Phase,
    volumes: Vec<JournalVolume>,
    started: String,
}

fn journal_path(root: &Path, stack: &str) -> PathBuf {
    stack_dir(root, stack).join("restore.json")
}

fn save(root: &Path, stack: &str, j: &Journal) -> anyhow::Result<()> {
    let p = journal_path(root, stack);
    frun_images::fsutil::write_atomic(&p, &serde_json::to_vec_pretty(j)?)
        .with_context(|| format!("writing {}", p.display()))?;
    tracing::info!(stack, phase = %j.phase, backup = %j.backup, "restore phase");
    Ok(())
}

fn staging_dir(root: &Path, volume: &str) -> PathBuf {
    crate::volumes::volumes_dir(root)
        .join(volume)
        .join("_restore")
}

fn ino(p: &Path) -> Option<u64> {
    std::fs::symlink_metadata(p).ok().map(|m| m.ino())
}

/// `_restore` and `_data` of a volume exchanged atomically (or, with no `_data`, a plain
/// rename), and the exchange made durable.
fn exchange(root: &Path, volume: &str) -> anyhow::Result<()> {
    let new = staging_dir(root, volume);
    let data = crate::volumes::data_dir(root, volume);
    let r = if data.exists() {
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &new,
            rustix::fs::CWD,
            &data,
            rustix::fs::RenameFlags::EXCHANGE,
        )
    } else {
        rustix::fs::rename(&new, &data)
    };
    r.with_context(|| format!("swapping {} and {}", new.display(), data.display()))?;
    frun_images::fsutil::sync_dir(data.parent().expect("a volume's directory"))?;
    Ok(())
}

/// A test hook: `FRUN_TEST_STOP_AT=restore.<point>` makes this process SIGKILL itself there, as
/// a `kill -9` at that instant would.
fn test_kill_point(point: &str) {
    // The one test hook of frun (`crate::fault`): `FRUN_TEST_STOP_AT=restore.<point>`.
    frun_runtime::fault::reached(&format!("restore.{point}"));
}

/// Finishes or undoes a restore of `stack` that did not end (see the module's table).
/// The caller holds the stack's lock.
pub fn recover_data(g: &Global, stack: &str) -> anyhow::Result<()> {
    let path = journal_path(&g.root, stack);
    let Ok(data) = std::fs::read(&path) else {
        return Ok(());
    };
    let mut j: Journal =
        serde_json::from_slice(&data).with_context(|| format!("reading {}", path.display()))?;
    match j.phase {
        Phase::Staging | Phase::Stopping => {
            for v in &j.volumes {
                let s = staging_dir(&g.root, &v.name);
                if s.exists() {
                    std::fs::remove_dir_all(&s)
                        .with_context(|| format!("removing {}", s.display()))?;
                }
            }
            tracing::warn!(stack, backup = %j.backup, phase = %j.phase, "an interrupted restore was undone: the data is as it was before it");
            eprintln!(
                "frun: an interrupted restore of {} ({}) was undone: the data is as it was before it",
                j.backup, j.phase
            );
        }
        Phase::Swapping | Phase::Cleaning => {
            if j.phase == Phase::Swapping {
                for v in &j.volumes {
                    if ino(&crate::volumes::data_dir(&g.root, &v.name)) == Some(v.new_ino) {
                        continue;
                    }
                    if ino(&staging_dir(&g.root, &v.name)) != Some(v.new_ino) {
                        bail!(
                            "recovering the restore of {}: volume {} has neither the old nor the new tree where {} says (look at {})",
                            j.backup,
                            v.name,
                            path.display(),
                            crate::volumes::volumes_dir(&g.root).join(&v.name).display()
                        );
                    }
                    exchange(&g.root, &v.name)?;
                }
                j.phase = Phase::Cleaning;
                save(&g.root, stack, &j)?;
            }
            clean(g, stack, &j)?;
            tracing::warn!(stack, backup = %j.backup, "an interrupted restore was finished: the data is the backup's");
            eprintln!(
                "frun: an interrupted restore of {} was finished: the data is the backup's",
                j.backup
            );
        }
    }
    crate::cleanup::remove_file(&path);
    frun_images::fsutil::sync_dir(path.parent().expect("the stack's backup dir"))?;
    Ok(())
}

/// Removes the old trees (now in `_restore`) of every swapped volume.
fn clean(g: &Global, _stack: &str, j: &Journal) -> anyhow::Result<()> {
    for v in &j.volumes {
        let s = staging_dir(&g.root, &v.name);
        if ino(&crate::volumes::data_dir(&g.root, &v.name)) == Some(v.new_ino) && s.exists() {
            std::fs::remove_dir_all(&s).with_context(|| format!("removing {}", s.display()))?;
        }
    }
    Ok(())
}

/// Recovery for `frun up`: a frozen app thawed, an interrupted restore finished or undone.
pub fn recover(g: &Global, stack: &str) -> anyhow::Result<()> {
    if !stack_dir(&g.root, stack).exists() {
        return Ok(());
    }
    let _lock = super::StackLock::take(&g.root, stack)?;
    super::freeze::thaw_leftover(&g.root, stack);
    recover_data(g, stack)
}

pub struct Options {
    pub safety_backup: bool,
    pub quiet: bool,
    pub decrypt: super::crypt::Decrypt,
}

/// What a restore did.
#[derive(Serialize, Debug)]
pub struct Restored {
    pub backup: String,
    pub volumes: Vec<String>,
    pub files: usize,
    pub databases: usize,
    pub safety_backup: Option<String>,
    /// The app container started on the restored data (none if it was not running).
    pub app: Option<String>,
}

/// Removes the staged trees of a refused or failed restore, and its journal.
fn abandon(g: &Global, stack: &str, volumes: &[String]) {
    for v in volumes {
        crate::cleanup::remove_dir_all(staging_dir(&g.root, v));
    }
    crate::cleanup::remove_file(journal_path(&g.root, stack));
}

/// `frun restore`, with its event (outcome, backup, duration).
pub fn restore(
    g: &Global,
    stack: &Stack,
    summary: &Summary,
    opts: &Options,
) -> anyhow::Result<Restored> {
    let t0 = std::time::Instant::now();
    let r = restore_steps(g, stack, summary, opts);
    crate::events::emit(
        &g.root,
        crate::events::Event::new(crate::events::Kind::Restore)
            .stack(&stack.name)
            .attr("name", &summary.name)
            .ended(t0, &r),
    );
    r
}

/// `frun restore`: the numbered steps.
fn restore_steps(
    g: &Global,
    stack: &Stack,
    summary: &Summary,
    opts: &Options,
) -> anyhow::Result<Restored> {
    let say = |s: &str| {
        if !opts.quiet {
            eprintln!("{s}");
        }
    };
    // No swap or up of the stack meanwhile (swap's lock first: a swap takes the backup
    // lock inside its own, for its backup before the swap), and no other backup.
    let swap_lock = crate::stack::swap::lock(&g.root, &stack.name)?;
    let lock = super::StackLock::take(&g.root, &stack.name)?;
    super::freeze::thaw_leftover(&g.root, &stack.name);
    recover_data(g, &stack.name)?;
    let volumes = super::stack_volumes(stack);
    let archive = summary.archive_path(&g.root);

    // 1. Verify: the whole archive extracted beside each volume and checked, nothing
    //    live touched. A refusal removes what was extracted.
    let mut journal = Journal {
        backup: summary.name.clone(),
        phase: Phase::Staging,
        volumes: volumes
            .iter()
            .map(|v| JournalVolume {
                name: v.clone(),
                new_ino: 0,
            })
            .collect(),
        started: chrono::Utc::now().to_rfc3339(),
    };
    save(&g.root, &stack.name, &journal)?;
    say(&format!("Verifying {} ...", summary.name));
    // Volumes that did not exist are made (empty) to stage beside; a refusal removes them.
    let created = std::cell::RefCell::new(Vec::<String>::new());
    let verified = (|| {
        let (manifest, roots) = super::archive::extract(
            &archive,
            Some(&summary.sha256),
            &opts.decrypt,
            |v| {
                if !volumes.iter().any(|x| x == v) {
                    bail!(
                    "the backup holds volume {v}, which stack {} does not have ([data] volumes: {})",
                    stack.name,
                    volumes.join(", ")
                );
                }
                let vdir = crate::volumes::volumes_dir(&g.root).join(v);
                if !vdir.join("_data").exists() {
                    crate::volumes::create(&g.root, v, &[], None)?;
                    created.borrow_mut().push(v.to_string());
                }
                let s = staging_dir(&g.root, v);
                if s.exists() {
                    std::fs::remove_dir_all(&s)?;
                }
                Ok(s)
            },
        )?;
        if manifest.stack != stack.name {
            bail!(
                "the backup is of stack {}, not {}",
                manifest.stack,
                stack.name
            );
        }
        let databases = super::archive::check_databases(&manifest, &roots)?;
        Ok((manifest, roots, databases))
    })();
    let (manifest, roots, databases) = match verified {
        Ok(v) => v,
        Err(e) => {
            abandon(g, &stack.name, &volumes);
            for v in created.borrow().iter() {
                crate::cleanup::remove_dir_all(crate::volumes::volumes_dir(&g.root).join(v));
            }
            if let Ok(mut s) = super::find(&g.root, &stack.name, &summary.name) {
                s.verification = super::Verification::Failed;
                s.verified_at = Some(chrono::Utc::now().to_rfc3339());
                s.error = Some(format!("{e:#}"));
                crate::cleanup::logged("recording the failed verification", s.save(&g.root));
            }
            return Err(e.context(format!(
                "backup {} refused; the live data was not touched",
                summary.name
            )));
        }
    };
    test_kill_point("staged");
    let mut s = summary.clone();
    s.verification = super::Verification::Verified;
    s.verified_at = Some(chrono::Utc::now().to_rfc3339());
    s.error = None;
    crate::cleanup::logged("recording the verification", s.save(&g.root));

    // 2. A safety backup of the data as it is now.
    let safety = if opts.safety_backup {
        say("Keeping a safety backup of the current data ...");
        match super::create::create_locked(
            g,
            stack,
            &super::create::Options::from_stack(stack, "pre-restore"),
        ) {
            Ok(s) => Some(s.name),
            Err(e) => {
                abandon(g, &stack.name, &volumes);
                return Err(e.context("the safety backup of the current data failed (--no-safety-backup skips it); nothing was restored"));
            }
        }
    } else {
        None
    };

    // 3. The app stopped: nothing writes while the trees are swapped.
    journal.volumes = manifest
        .volumes
        .iter()
        .map(|v| JournalVolume {
            name: v.name.clone(),
            new_ino: ino(&roots[&v.name]).unwrap_or(0),
        })
        .collect();
    journal.phase = Phase::Stopping;
    save(&g.root, &stack.name, &journal)?;
    let apps = super::create::running_apps(g, &stack.name)?;
    let was_running = !apps.is_empty();
    let containers = crate::containers::Containers::open(&g.root)?;
    for c in &apps {
        say(&format!("Stopping {}", c.record.name));
        crate::stack::up::retire(g, &containers, c)?;
    }
    test_kill_point("stopped");

    // 4. The swap, one atomic exchange per volume.
    journal.phase = Phase::Swapping;
    save(&g.root, &stack.name, &journal)?;
    for (i, v) in journal.volumes.iter().enumerate() {
        exchange(&g.root, &v.name)?;
        test_kill_point(&format!("swapped-{}", i + 1));
    }
    journal.phase = Phase::Cleaning;
    save(&g.root, &stack.name, &journal)?;
    clean(g, &stack.name, &journal)?;
    crate::cleanup::remove_file(journal_path(&g.root, &stack.name));
    drop(lock);
    drop(swap_lock);
    test_kill_point("cleaned");

    // 5. The app started on the new data, and waited for (health, else its port).
    let app = if was_running {
        say("Starting the app ...");
        crate::stack::up::up(g, stack, opts.quiet)?;
        super::create::running_apps(g, &stack.name)?
            .last()
            .map(|c| c.record.name.clone())
    } else {
        None
    };
    let files = manifest.volumes.iter().flat_map(|v| &v.files);
    Ok(Restored {
        backup: summary.name.clone(),
        volumes: manifest.volumes.iter().map(|v| v.name.clone()).collect(),
        files: files.filter(|f| f.kind == super::Kind::File).count(),
        databases,
        safety_backup: safety,
        app,
    })
}
