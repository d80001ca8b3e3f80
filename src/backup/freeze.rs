//! Freezing the app while the files that are not databases are copied.
//!
//! A frozen app cannot change a file half-way through the copy, and cannot answer
//! either, so the freeze is bounded: the copy checks the clock between chunks, and
//! past the bound the backup fails and the app is thawed (a [`Frozen`] thaws on drop,
//! whatever way the copy ends). A `kill -9` of frun while the app is frozen would leave
//! it frozen: the cgroups are named in `ROOT/backups/<stack>/frozen.json` before the
//! freeze, and [`thaw_leftover`] (run by the next backup, restore, `frun up` and the
//! supervisor) thaws them.

use anyhow::{bail, Context};
use rustix::fs::{Mode, OFlags};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use frun_runtime::cgroup::Cgroup;

fn marker(root: &Path, stack: &str) -> PathBuf {
    super::stack_dir(root, stack).join("frozen.json")
}

/// The app's cgroups, frozen until this is dropped.
pub struct Frozen {
    cgroups: Vec<Cgroup>,
    marker: PathBuf,
    pub since: Instant,
    pub deadline: Instant,
}

impl Frozen {
    /// Freezes every cgroup in `paths` (the app's running containers); `bound` counts
    /// from before the freeze, so a slow freeze uses up the copy's time.
    pub fn freeze(
        root: &Path,
        stack: &str,
        paths: &[PathBuf],
        bound: Duration,
    ) -> anyhow::Result<Frozen> {
        let since = Instant::now();
        let marker = marker(root, stack);
        frun_images::fsutil::write_atomic(&marker, &serde_json::to_vec(paths)?)
            .with_context(|| format!("writing {}", marker.display()))?;
        let mut frozen = Frozen {
            cgroups: Vec::new(),
            marker,
            since,
            deadline: since + bound,
        };
        for p in paths {
            let cg = Cgroup::open(p).map_err(|e| anyhow::anyhow!("{e}"))?;
            // Pushed first: a freeze that fails half-way is thawed by the drop.
            frozen.cgroups.push(cg);
            let cg = frozen.cgroups.last().expect("just pushed");
            cg.freeze()
                .map_err(|e| anyhow::anyhow!("freezing the app: {e}"))?;
        }
        frozen.check("freezing the app")?;
        tracing::debug!(cgroups = paths.len(), "app frozen");
        Ok(frozen)
    }

    /// The processes of the frozen cgroups.
    pub fn pids(&self) -> Vec<i32> {
        self.cgroups.iter().flat_map(Cgroup::pids).collect()
    }

    /// Fails once the bound is past.
    pub fn check(&self, doing: &str) -> anyhow::Result<()> {
        if Instant::now() > self.deadline {
            bail!(
                "{doing} took longer than the freeze bound ({} ms): the backup is abandoned and the app thawed (raise [backup] freeze_max, or keep large files that change in a sqlite database)",
                (self.deadline - self.since).as_millis()
            );
        }
        Ok(())
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for cg in &self.cgroups {
            if let Err(e) = cg.thaw() {
                tracing::warn!(error = %e, "thawing the app");
            }
        }
        crate::cleanup::remove_file(&self.marker);
        tracing::debug!(ms = self.since.elapsed().as_millis() as u64, "app thawed");
    }
}

/// Thaws the cgroups a killed backup left frozen.
pub fn thaw_leftover(root: &Path, stack: &str) {
    let marker = marker(root, stack);
    let Ok(data) = std::fs::read(&marker) else {
        return;
    };
    let paths: Vec<PathBuf> = serde_json::from_slice(&data).unwrap_or_default();
    for p in paths {
        match Cgroup::open(&p) {
            Ok(cg) => {
                if cg.frozen() {
                    tracing::warn!(cgroup = %p.display(), "thawing an app a killed backup left frozen");
                }
                crate::cleanup::logged("thawing the app", cg.thaw());
            }
            Err(e) => tracing::debug!(error = %e, "opening a cgroup to thaw"),
        }
    }
    crate::cleanup::remove_file(&marker);
}

/// Copies the regular file `src` to the new file `dst` in chunks (`copy_file_range`,
/// done by the kernel), checking the freeze's bound between chunks.
pub fn copy_bounded(src: &Path, dst: &Path, frozen: Option<&Frozen>) -> anyhow::Result<u64> {
    const CHUNK: usize = 8 << 20;
    let from = rustix::fs::open(
        src,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening {}", src.display()))?;
    let to = rustix::fs::open(
        dst,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .with_context(|| format!("creating {}", dst.display()))?;
    let mut total = 0u64;
    loop {
        if let Some(f) = frozen {
            f.check(&format!("copying {}", src.display()))?;
        }
        let n = match rustix::fs::copy_file_range(&from, None, &to, None, CHUNK) {
            Ok(n) => n,
            // Filesystems that cannot: plain reads and writes.
            Err(rustix::io::Errno::XDEV | rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS)
                if total == 0 =>
            {
                return copy_plain(src, dst, frozen);
            }
            Err(e) => return Err(e).with_context(|| format!("copying {}", src.display())),
        };
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

fn copy_plain(src: &Path, dst: &Path, frozen: Option<&Frozen>) -> anyhow::Result<u64> {
    use std::io::{Read, Write};
    let mut from =
        std::fs::File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(dst)
        .with_context(|| format!("creating {}", dst.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        if let Some(f) = frozen {
            f.check(&format!("copying {}", src.display()))?;
        }
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}
