//! The rotation lock: what makes a reader's view of a rotating log atomic.
//!
//! A rotation renames every file of a log (`.1` → `.2`, ..., `container.log` → `.1`) and
//! a compression then replaces `.1` by `.1.gz`. A reader that lists the files and then
//! opens them cannot tell that a rotation came in between: the names it listed, opened
//! after the renames, are each one file newer and agree with the directory, and the
//! oldest is left out (CI once saw `logs -f` start 221 lines late that way; listing
//! again until names and inodes agreed made it rarer, not impossible). So the writer
//! holds [`ROTATIONS_FILE`] exclusively across each rotation and each compression's
//! last step, and a reader holds it shared while it lists and opens: the cost is a
//! `flock` per rotation and per listing, none per line.
//!
//! The file also counts the rotations (8 bytes, little-endian, written under the lock).
//! A follower that knows at which count its file was `container.log` knows where it is
//! N rotations later (`.N`, or `.N.gz`) and that the files after it are `.N-1` down to
//! `.1` and then `container.log`: no file has to be recognised by its content.

use super::{io, LogError, ROTATIONS_FILE};
use frun_images::fsutil::{lock_existing, lock_file};
use rustix::fs::FlockOperation;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The writer's side, when it opens the log: the lock file made if missing (before the
/// log file, so that a reader that found no lock file and a log knows no rotation of
/// this writer can have come between), and the count so far.
pub fn create(dir: &Path) -> Result<u64, LogError> {
    let path = dir.join(ROTATIONS_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io("opening", &path))?;
    Ok(count(&file))
}

/// How long a rotation waits for readers to finish listing (they hold the lock for the
/// microseconds of a listing; one stopped there, by SIGSTOP or a debugger, must not stop
/// the container's output, which waits on the writer).
#[cfg(not(test))]
const WAIT: std::time::Duration = std::time::Duration::from_secs(5);
#[cfg(test)]
const WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The writer's side, across one rotation: the lock file, locked exclusively. A reader
/// listing the files makes it wait (the point `rotation-waits` lets a unit test see
/// that); after [`WAIT`] it goes on without the lock, as before the lock existed, and
/// says so.
pub fn exclusive(dir: &Path) -> Result<File, LogError> {
    let path = dir.join(ROTATIONS_FILE);
    let try_lock = || match lock_file(&path, FlockOperation::NonBlockingLockExclusive) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(io("locking", &path)(e)),
    };
    if let Some(f) = try_lock()? {
        return Ok(f);
    }
    super::points::reached(dir, "rotation-waits");
    let start = std::time::Instant::now();
    let mut pause = std::time::Duration::from_micros(100);
    while start.elapsed() < WAIT {
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(20));
        if let Some(f) = try_lock()? {
            return Ok(f);
        }
    }
    tracing::warn!(path = %path.display(), "a reader of the log held its rotation lock too long; rotating without it");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(io("opening", &path))
}

/// Records the count of rotations, under the [`exclusive`] lock.
pub fn set_count(lock: &File, dir: &Path, n: u64) -> Result<(), LogError> {
    lock.write_all_at(&n.to_le_bytes(), 0)
        .map_err(io("writing", &dir.join(ROTATIONS_FILE)))
}

/// The reader's side, while it lists and opens the files: the lock, shared; `None` when
/// no writer made the file (a log written before the lock existed, or none yet).
pub fn shared(dir: &Path) -> Result<Option<File>, LogError> {
    let path = dir.join(ROTATIONS_FILE);
    match lock_existing(&path, FlockOperation::LockShared) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("locking", &path)(e)),
    }
}

pub fn exists(dir: &Path) -> bool {
    dir.join(ROTATIONS_FILE).exists()
}

/// The count in an open lock file (0 while none was written).
pub fn count(file: &File) -> u64 {
    let mut b = [0u8; 8];
    match file.read_exact_at(&mut b, 0) {
        Ok(()) => u64::from_le_bytes(b),
        Err(_) => 0,
    }
}

/// A follower's cheap look at the count, without the lock, after each wake-up: one
/// `pread`. A read that overlaps the writer's may see a stale or mixed value; either
/// only sends the follower to take the lock and read it properly (or to look again at
/// the next wake-up, which the rotation's own events bring).
pub struct Counter<'a> {
    dir: &'a Path,
    file: Option<File>,
}

impl<'a> Counter<'a> {
    pub fn new(dir: &'a Path) -> Counter<'a> {
        Counter { dir, file: None }
    }

    pub fn get(&mut self) -> u64 {
        if self.file.is_none() {
            self.file = File::open(self.dir.join(ROTATIONS_FILE)).ok();
        }
        self.file.as_ref().map_or(0, count)
    }
}
