//! The files that are not databases, copied once before the freeze, so that the frozen
//! app waits only for those that changed since (rsync's two passes, or a live
//! migration's pre-copy): under the freeze each file is looked at again, and a copy is
//! kept only when the file is provably the same.
//!
//! "The same" is the file's identity, size, modification and change times as they were
//! before its copy began, and still were after it ended, with two exceptions that are
//! copied again while frozen:
//! - a file changed less than [`RACY`] before its copy began: a file system's times
//!   are coarse (one clock tick), so a write in the same tick as the first look could
//!   leave them as they were (git's "racily clean" entries);
//! - a file a process of the app maps shared and writable: writes through a mapping
//!   change the times only at the first write after each writeback, so a file can
//!   change for half a minute without them moving.

use anyhow::Context;
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How long before the copy a file's last change must lie for its copy to be kept.
pub const RACY: Duration = Duration::from_secs(1);

/// What tells two looks at one file apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// Changed less than [`RACY`] before `now` (or after it: a clock set back).
    fn racy(&self, now: SystemTime) -> bool {
        let at = |(s, ns): (i64, i64)| {
            if s < 0 {
                SystemTime::UNIX_EPOCH
            } else {
                SystemTime::UNIX_EPOCH + Duration::new(s as u64, ns.clamp(0, 999_999_999) as u32)
            }
        };
        let latest = at(self.mtime).max(at(self.ctime));
        now.duration_since(latest).map_or(true, |d| d < RACY)
    }
}

/// The copies made before the freeze, by the file they copy.
#[derive(Default)]
pub struct PreCopied {
    files: HashMap<PathBuf, (Stamp, PathBuf)>,
}

impl PreCopied {
    /// Copies the regular file `src` to the new file `dst` if it has not changed lately,
    /// and remembers it when it did not change while copied. A file that changed is
    /// left to the frozen pass (its half copy removed).
    pub fn copy(&mut self, src: &Path, dst: &Path) -> anyhow::Result<()> {
        let now = SystemTime::now();
        let before = match std::fs::symlink_metadata(src) {
            Ok(m) if m.file_type().is_file() => Stamp::of(&m),
            // Gone or not a file any more: the frozen pass sees what it is.
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("{}", src.display())),
        };
        if before.racy(now) {
            return Ok(());
        }
        match super::freeze::copy_bounded(src, dst, None) {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {
                crate::cleanup::remove_file(dst);
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        let after = std::fs::symlink_metadata(src).map(|m| Stamp::of(&m));
        if after.as_ref().ok() == Some(&before) {
            self.files
                .insert(src.to_path_buf(), (before, dst.to_path_buf()));
        } else {
            crate::cleanup::remove_file(dst);
        }
        Ok(())
    }

    /// Whether the copy of `src` at `dst` made before the freeze still holds what `src`
    /// holds, `m` being how `src` looks now (frozen) and `mapped` the inodes the app
    /// maps shared and writable ([`shared_writable_inodes`]). When not, a stale copy at
    /// `dst` is removed (the caller copies again).
    pub fn still_holds(
        &self,
        src: &Path,
        dst: &Path,
        m: &std::fs::Metadata,
        mapped: &HashSet<u64>,
    ) -> bool {
        match self.files.get(src) {
            Some((stamp, at))
                if at == dst && *stamp == Stamp::of(m) && !mapped.contains(&m.ino()) =>
            {
                true
            }
            _ => {
                clear(dst);
                false
            }
        }
    }

    /// How many files were copied before the freeze.
    pub fn len(&self) -> usize {
        self.files.len()
    }
}

/// Removes what is at the staged path `dst`, file or directory (a file the app has
/// since replaced by a directory, or the other way round).
fn clear(dst: &Path) {
    match std::fs::symlink_metadata(dst) {
        Ok(m) if m.is_dir() => crate::cleanup::remove_dir_all(dst),
        Ok(_) => crate::cleanup::remove_file(dst),
        Err(_) => {}
    }
}

/// Makes the staged path `dst` a directory, whatever the copy before the freeze left
/// there (a file the app has since replaced by a directory).
pub fn make_dir(dst: &Path) -> std::io::Result<()> {
    if std::fs::symlink_metadata(dst).is_ok_and(|m| !m.is_dir()) {
        crate::cleanup::remove_file(dst);
    }
    std::fs::create_dir_all(dst)
}

fn is_not_found(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound)
            || c.downcast_ref::<rustix::io::Errno>() == Some(&rustix::io::Errno::NOENT)
    })
}

/// The inodes of the files that the processes `pids` map shared and writable (from
/// `/proc/PID/maps`: a mapping whose permissions read `rw?s` or `-w?s`). A process
/// that is gone is skipped.
pub fn shared_writable_inodes(pids: &[i32]) -> HashSet<u64> {
    let mut out = HashSet::new();
    for pid in pids {
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
            continue;
        };
        out.extend(parse_maps(&maps));
    }
    out
}

/// `/proc/PID/maps` lines: `start-end perms offset dev inode path`.
fn parse_maps(maps: &str) -> impl Iterator<Item = u64> + '_ {
    maps.lines().filter_map(|l| {
        let mut f = l.split_ascii_whitespace();
        let perms = f.nth(1)?.as_bytes();
        let inode: u64 = f.nth(2)?.parse().ok()?;
        (perms.len() == 4 && perms[1] == b'w' && perms[3] == b's' && inode != 0).then_some(inode)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file last changed `ago` back.
    fn aged(path: &Path, content: &[u8], ago: Duration) {
        std::fs::write(path, content).unwrap();
        let t = SystemTime::now() - ago;
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    #[test]
    fn a_copy_is_kept_only_while_the_file_is_provably_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("photo"), dir.path().join("copy"));
        let none = HashSet::new();
        let mut pre = PreCopied::default();

        // Unchanged since the copy (and its ctime is now: setting mtime changes it).
        aged(&src, b"old picture", Duration::from_secs(60));
        pre.copy(&src, &dst).unwrap();
        assert_eq!(
            pre.len(),
            0,
            "changed within RACY (ctime): not copied before"
        );
        assert!(!dst.exists());
        std::thread::sleep(RACY + Duration::from_millis(50));
        pre.copy(&src, &dst).unwrap();
        assert_eq!(pre.len(), 1);
        assert_eq!(std::fs::read(&dst).unwrap(), b"old picture");
        let m = std::fs::symlink_metadata(&src).unwrap();
        assert!(pre.still_holds(&src, &dst, &m, &none));
        assert!(dst.exists());

        // Mapped shared and writable by the app: copied again.
        assert!(!pre.still_holds(&src, &dst, &m, &HashSet::from([m.ino()])));
        assert!(!dst.exists(), "the stale copy is removed");

        // Written after the copy, even with the same size: copied again.
        pre.copy(&src, &dst).unwrap();
        std::fs::write(&src, b"new picture").unwrap();
        let m = std::fs::symlink_metadata(&src).unwrap();
        assert!(!pre.still_holds(&src, &dst, &m, &none));
        assert!(!dst.exists());

        // Replaced by another file (rename over it): another inode.
        let other = dir.path().join("other");
        aged(&other, b"new picture", Duration::from_secs(60));
        std::thread::sleep(RACY + Duration::from_millis(50));
        pre.copy(&src, &dst).unwrap();
        std::fs::rename(&other, &src).unwrap();
        let m = std::fs::symlink_metadata(&src).unwrap();
        assert!(!pre.still_holds(&src, &dst, &m, &none));

        // A file the app replaced by a directory, and the other way round: the staged
        // path is made what the frozen volume has.
        let (d_src, d_dst) = (dir.path().join("was-a-file"), dir.path().join("staged-d"));
        aged(&d_src, b"file", Duration::from_secs(60));
        std::thread::sleep(RACY + Duration::from_millis(50));
        pre.copy(&d_src, &d_dst).unwrap();
        assert!(d_dst.is_file());
        make_dir(&d_dst).unwrap();
        assert!(d_dst.is_dir());
        std::fs::write(d_dst.join("inside"), b"x").unwrap();
        let m = std::fs::symlink_metadata(&src).unwrap();
        assert!(!pre.still_holds(&src, &d_dst, &m, &none));
        assert!(
            !d_dst.exists(),
            "a staged directory where a file now is: removed"
        );

        // A file never pre-copied is copied while frozen.
        let fresh = dir.path().join("fresh");
        std::fs::write(&fresh, b"x").unwrap();
        let m = std::fs::symlink_metadata(&fresh).unwrap();
        assert!(!pre.still_holds(&fresh, &dir.path().join("c2"), &m, &none));
    }

    #[test]
    fn shared_writable_mappings_are_found_by_inode() {
        let maps = "\
55d0c0a00000-55d0c0a21000 r--p 00000000 fd:01 1311 /usr/bin/sqlite3
7f0000000000-7f0000001000 rw-s 00000000 fd:01 4242 /var/db/app.dat
7f0000002000-7f0000003000 r--s 00000000 fd:01 4343 /var/db/read-only.dat
7f0000004000-7f0000005000 rw-p 00000000 00:00 0 
7f0000006000-7f0000007000 rw-s 00000000 00:01 0 /dev/zero (deleted)
";
        assert_eq!(parse_maps(maps).collect::<Vec<_>>(), vec![4242]);

        // And from a live process: this one, mapping a file shared and writable.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mapped");
        std::fs::write(&p, vec![0u8; 4096]).unwrap();
        let f = std::fs::File::options()
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        let ino = f.metadata().unwrap().ino();
        // SAFETY: a fresh shared mapping of a file this test owns, unmapped below.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&f),
                0,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED);
        let found = shared_writable_inodes(&[std::process::id() as i32]);
        // SAFETY: the mapping made above, used by nothing else.
        unsafe { libc::munmap(addr, 4096) };
        assert!(found.contains(&ino));
    }
}
