//! Atomic file writes: temp file, (fsync,) rename, (fsync of the directory); and lock
//! files (`flock`), the one way frun's processes take turns on a piece of state.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Replaces `path` with `data` so that a crash leaves either the old or the new content.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    write_via_temp(path, data, true)
}

/// Replaces `path` with `data` so that a reader sees either the old or the new content,
/// never a part; without fsync, so a crash of the host may lose the new content (or
/// leave the file empty). For state that describes processes a host crash takes down
/// with it, where the two fsyncs (a disk flush each) would cost more than the write.
pub fn write_replace(path: &Path, data: &[u8]) -> io::Result<()> {
    write_via_temp(path, data, false)
}

fn write_via_temp(path: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if durable {
            sync_dir(dir)?;
        }
        Ok(())
    })();
    if result.is_err() {
        // The caller reports the write's error; this one is logged (`gc` sweeps what
        // stays: a temp file of a process that is gone).
        if let Err(e) = fs::remove_file(&tmp) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("clean-up: removing {}: {e}", tmp.display());
            }
        }
    }
    result
}

/// `path` (created if missing, mode 0600) opened and `flock`ed with `op`; the lock is
/// released when the file is dropped, and by the kernel if its holder dies.
pub fn lock_file(path: &Path, op: rustix::fs::FlockOperation) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)?;
    rustix::fs::flock(&file, op)?;
    Ok(file)
}

/// `path`, which must exist, opened read-only and `flock`ed with `op`: for a reader that
/// takes turns with a writer but must create nothing (`NotFound` says no writer made the
/// lock yet).
pub fn lock_existing(path: &Path, op: rustix::fs::FlockOperation) -> io::Result<File> {
    let file = File::open(path)?;
    rustix::fs::flock(&file, op)?;
    Ok(file)
}

/// [`lock_file`], exclusive and blocking.
pub fn lock_exclusive(path: &Path) -> io::Result<File> {
    lock_file(path, rustix::fs::FlockOperation::LockExclusive)
}

/// Makes a rename or a new entry in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_writes_replace_the_file_and_leave_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"old").unwrap();
        write_replace(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        write_atomic(&path, b"newer").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"newer");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
        // A directory that is not there: an error, and nothing written anywhere.
        assert!(write_replace(&dir.path().join("no/such"), b"x").is_err());
    }
}
