//! Unpacking one layer's tar stream into a directory that overlayfs can use as a lower
//! layer.
//!
//! Every write goes through directory file descriptors: each entry's parent is opened one
//! component at a time with `O_NOFOLLOW | O_DIRECTORY`, so a symlink anywhere in a path
//! (planted by an earlier entry) stops the unpack instead of being followed out of the
//! target. `..` components and whiteouts of the root are refused outright. The `tar` crate
//! parses the archive (long names, PAX headers, sparse files); the writing is done here
//! because the crate writes device nodes and FIFOs as plain files and knows nothing of
//! OCI whiteouts.
//!
//! OCI whiteouts become what overlayfs reads: `.wh.NAME` a 0/0 character device `NAME`,
//! `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on its directory.

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::fs::{Gid, Uid, XattrFlags};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::digest::LimitExceeded;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {path:?} {reason}")]
    Hostile { path: PathBuf, reason: &'static str },
    #[error("cannot {op} {path:?}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("layer unpacks to more than {limit} bytes (the decompression cap; raise it with FRUN_MAX_LAYER_SIZE)")]
    TooLarge { limit: u64 },
    #[error("layer entry {path:?} is {size} bytes, past what is left of the decompression cap of {limit} bytes (raise it with --max-layer-size or FRUN_MAX_LAYER_SIZE)")]
    EntryTooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("reading the layer archive")]
    Read(#[source] io::Error),
}

impl UnpackError {
    pub(crate) fn read(e: io::Error) -> UnpackError {
        if let Some(l) = e.get_ref().and_then(|i| i.downcast_ref::<LimitExceeded>()) {
            return UnpackError::TooLarge { limit: l.limit };
        }
        UnpackError::Read(e)
    }
}

/// What an unpack wrote.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnpackStats {
    pub entries: u64,
    pub file_bytes: u64,
}

/// Unpacks the tar stream `reader` into `target`, an existing empty directory, writing at
/// most `limit` bytes of file content in all (the apparent size: a sparse entry's holes
/// count, though they stay holes on disk). The tar stream itself is capped by the caller;
/// this cap is for what the stream describes, which a GNU sparse entry can make much
/// larger than the stream. Syncs the filesystem before returning, so a rename of `target`
/// that follows is durable.
pub fn unpack<R: Read>(reader: R, target: &Path, limit: u64) -> Result<UnpackStats, UnpackError> {
    let root = rfs::open(
        target,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err("open layer directory", target, e.into()))?;
    let mut u = Unpacker {
        root,
        parents: HashMap::new(),
        dirs: Vec::new(),
        stats: UnpackStats::default(),
        limit,
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(UnpackError::read)? {
        let entry = entry.map_err(UnpackError::read)?;
        u.entry(entry)?;
    }
    u.finish_dirs()?;
    rfs::syncfs(&u.root).map_err(|e| io_err("sync", target, e.into()))?;
    Ok(u.stats)
}

fn io_err(op: &'static str, path: &Path, source: io::Error) -> UnpackError {
    UnpackError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn hostile(path: &Path, reason: &'static str) -> UnpackError {
    UnpackError::Hostile {
        path: path.to_path_buf(),
        reason,
    }
}

/// Metadata of one entry, PAX overrides applied.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

struct Unpacker {
    root: OwnedFd,
    /// Parent directories opened so far, by their components (tar streams are mostly
    /// sorted, so this saves walking the same path for every file).
    parents: HashMap<Vec<OsString>, OwnedFd>,
    /// Directories whose mode and mtime are set last: adding children changes a
    /// directory's mtime, and a read-only mode would stop the children being written.
    dirs: Vec<(Vec<OsString>, Meta)>,
    stats: UnpackStats,
    /// Cap on the sum of the files' sizes.
    limit: u64,
}

/// Splits an archive path into components, dropping `.` and a leading `/` (absolute
/// names land inside the target, as tar does by default) and refusing `..`.
fn components(path: &Path) -> Result<Vec<OsString>, UnpackError> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => return Err(hostile(path, "climbs out with '..'")),
            Component::Prefix(_) => return Err(hostile(path, "has a path prefix")),
        }
    }
    Ok(out)
}

impl Unpacker {
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let path = entry.path().map_err(UnpackError::read)?.into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            return Ok(());
        }
        let mut comps = components(&path)?;
        let Some(name) = comps.pop() else {
            // The root directory itself ("./"): its metadata belongs to the image's lowest
            // layer, not to this directory of the store.
            return Ok(());
        };
        let meta = self.meta(&mut entry, &path)?;
        self.stats.entries += 1;
        let name_bytes = name.as_bytes();

        // Whiteouts first: their names are instructions, not files.
        if name == OPAQUE_MARKER {
            if comps.is_empty() {
                return Err(hostile(&path, "marks the layer root opaque"));
            }
            let dir = self.parent(&comps, &path)?;
            rfs::fsetxattr(&dir, OPAQUE_XATTR, b"y", XattrFlags::empty())
                .map_err(|e| io_err("mark opaque", &path, e.into()))?;
            return Ok(());
        }
        if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.contains(&b'/') {
                return Err(hostile(&path, "whites out the root or its parent"));
            }
            let hidden = OsStr::from_bytes(hidden);
            let dir = self.parent(&comps, &path)?;
            remove_existing(&dir, hidden, &path)?;
            rfs::mknodat(
                &dir,
                hidden,
                FileType::CharacterDevice,
                Mode::empty(),
                rfs::makedev(0, 0),
            )
            .map_err(|e| io_err("create whiteout", &path, e.into()))?;
            return Ok(());
        }

        let dir = self.parent(&comps, &path)?;
        // A directory that this entry replaces may be a cached parent.
        let depth = comps.len();
        self.parents
            .retain(|k, _| k.len() <= depth || k[..depth] != comps[..] || k[depth] != name);
        match kind {
            tar::EntryType::Directory => {
                match rfs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
                    Ok(_) => {
                        remove_existing(&dir, &name, &path)?;
                        mkdir(&dir, &name, &path)?;
                    }
                    Err(_) => mkdir(&dir, &name, &path)?,
                }
                let fd = open_dir(&dir, &name).map_err(|e| io_err("open directory", &path, e))?;
                set_owner(&fd, &meta, &path)?;
                set_xattrs(&fd, &meta, &path)?;
                comps.push(name);
                self.dirs.push((comps, meta));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                remove_existing(&dir, &name, &path)?;
                let fd = rfs::openat(
                    &dir,
                    &name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| io_err("create file", &path, e.into()))?;
                let mut file = File::from(fd);
                // A sparse entry's size is its real size: refuse it before writing a byte.
                let left = self.limit.saturating_sub(self.stats.file_bytes);
                let too_large = |size| UnpackError::EntryTooLarge {
                    path: path.clone(),
                    size,
                    limit: self.limit,
                };
                if entry.size() > left {
                    return Err(too_large(entry.size()));
                }
                let n = copy_keeping_holes(&mut entry, &mut file, left, &path)?
                    .ok_or_else(|| too_large(entry.size()))?;
                self.stats.file_bytes += n;
                set_owner(&file, &meta, &path)?;
                rfs::fchmod(&file, Mode::from_raw_mode(meta.mode))
                    .map_err(|e| io_err("chmod", &path, e.into()))?;
                set_xattrs(&file, &meta, &path)?;
                rfs::futimens(&file, &times(meta.mtime))
                    .map_err(|e| io_err("set times of", &path, e.into()))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::read)?
                    .ok_or_else(|| hostile(&path, "is a symlink without a target"))?
                    .into_owned();
                remove_existing(&dir, &name, &path)?;
                rfs::symlinkat(&target, &dir, &name)
                    .map_err(|e| io_err("create symlink", &path, e.into()))?;
                rfs::chownat(
                    &dir,
                    &name,
                    Some(uid(meta.uid)),
                    Some(gid(meta.gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| io_err("chown", &path, e.into()))?;
                rfs::utimensat(&dir, &name, &times(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| io_err("set times of", &path, e.into()))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::read)?
                    .ok_or_else(|| hostile(&path, "is a hard link without a target"))?
                    .into_owned();
                let mut tcomps = components(&target)?;
                let Some(tname) = tcomps.pop() else {
                    return Err(hostile(&path, "is a hard link to the layer root"));
                };
                let tdir = self.parent(&tcomps, &target)?;
                remove_existing(&dir, &name, &path)?;
                rfs::linkat(&tdir, &tname, &dir, &name, AtFlags::empty())
                    .map_err(|e| io_err("create hard link", &path, e.into()))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let ft = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let h = entry.header();
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                remove_existing(&dir, &name, &path)?;
                rfs::mknodat(
                    &dir,
                    &name,
                    ft,
                    Mode::from_raw_mode(meta.mode),
                    rfs::makedev(major, minor),
                )
                .map_err(|e| io_err("create device node", &path, e.into()))?;
                rfs::chownat(
                    &dir,
                    &name,
                    Some(uid(meta.uid)),
                    Some(gid(meta.gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| io_err("chown", &path, e.into()))?;
                // mknod applies the umask; chmod after chown keeps setuid bits.
                rfs::chmodat(
                    &dir,
                    &name,
                    Mode::from_raw_mode(meta.mode),
                    AtFlags::empty(),
                )
                .map_err(|e| io_err("chmod", &path, e.into()))?;
                rfs::utimensat(&dir, &name, &times(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| io_err("set times of", &path, e.into()))?;
            }
            // Other kinds (GNU volume labels, ...) carry nothing for a root filesystem.
            _ => {}
        }
        Ok(())
    }

    fn meta<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        path: &Path,
    ) -> Result<Meta, UnpackError> {
        let h = entry.header();
        let mode = h.mode().map_err(UnpackError::read)? & 0o7777;
        let mut uid64 = h.uid().map_err(UnpackError::read)?;
        let mut gid64 = h.gid().map_err(UnpackError::read)?;
        let mut mtime = h.mtime().map_err(UnpackError::read)? as i64;
        let mut xattrs = Vec::new();
        if let Some(exts) = entry.pax_extensions().map_err(UnpackError::read)? {
            for ext in exts {
                let ext = ext.map_err(UnpackError::read)?;
                let Ok(key) = ext.key() else { continue };
                let value = ext.value_bytes();
                let num = || {
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.split('.').next())
                        .and_then(|v| v.parse::<i64>().ok())
                };
                match key {
                    "uid" => {
                        uid64 = num().ok_or_else(|| hostile(path, "has a bad PAX uid"))? as u64
                    }
                    "gid" => {
                        gid64 = num().ok_or_else(|| hostile(path, "has a bad PAX gid"))? as u64
                    }
                    "mtime" => mtime = num().unwrap_or(mtime),
                    k if k.starts_with("SCHILY.xattr.") => {
                        let name = &k["SCHILY.xattr.".len()..];
                        xattrs.push((OsString::from(name), value.to_vec()));
                    }
                    _ => {}
                }
            }
        }
        // uid/gid -1 means "leave unchanged" to chown(2); anything past u32 is garbage.
        let id = |v: u64| u32::try_from(v).ok().filter(|v| *v != u32::MAX);
        let uid = id(uid64).ok_or_else(|| hostile(path, "has a uid out of range"))?;
        let gid = id(gid64).ok_or_else(|| hostile(path, "has a gid out of range"))?;
        Ok(Meta {
            mode,
            uid,
            gid,
            mtime,
            xattrs,
        })
    }

    /// Opens (creating as needed) the directory at `comps` below the root, never
    /// following a symlink.
    fn parent(&mut self, comps: &[OsString], path: &Path) -> Result<OwnedFd, UnpackError> {
        if let Some(fd) = self.parents.get(comps) {
            return fd
                .try_clone()
                .map_err(|e| io_err("open parent of", path, e));
        }
        let mut cur = self.root.try_clone().map_err(|e| io_err("open", path, e))?;
        for c in comps {
            cur = match open_dir(&cur, c) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc_enoent()) => {
                    mkdir(&cur, c, path)?;
                    open_dir(&cur, c).map_err(|e| io_err("open parent of", path, e))?
                }
                Err(e)
                    if matches!(e.raw_os_error(), Some(n) if n == rustix::io::Errno::LOOP.raw_os_error()
                        || n == rustix::io::Errno::NOTDIR.raw_os_error()) =>
                {
                    return Err(hostile(path, "goes through a symlink or a non-directory"));
                }
                Err(e) => return Err(io_err("open parent of", path, e)),
            };
        }
        if self.parents.len() > 256 {
            self.parents.clear();
        }
        let keep = cur
            .try_clone()
            .map_err(|e| io_err("open parent of", path, e))?;
        self.parents.insert(comps.to_vec(), keep);
        Ok(cur)
    }

    fn finish_dirs(&mut self) -> Result<(), UnpackError> {
        self.parents.clear();
        let dirs = std::mem::take(&mut self.dirs);
        // Deepest first, so that setting a parent's mtime comes after its children.
        for (comps, meta) in dirs.iter().rev() {
            let path: PathBuf = comps.iter().collect();
            let fd = self.parent(comps, &path)?;
            rfs::fchmod(&fd, Mode::from_raw_mode(meta.mode))
                .map_err(|e| io_err("chmod", &path, e.into()))?;
            rfs::futimens(&fd, &times(meta.mtime))
                .map_err(|e| io_err("set times of", &path, e.into()))?;
        }
        Ok(())
    }
}

/// Copies `from` into the new file `to`, seeking over blocks of zeros instead of writing
/// them (a sparse entry's holes, and any run of zeros, stay holes), and stopping at
/// `limit` bytes: `None` then.
fn copy_keeping_holes(
    from: &mut impl Read,
    to: &mut File,
    limit: u64,
    path: &Path,
) -> Result<Option<u64>, UnpackError> {
    use std::io::{Seek, SeekFrom, Write};
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    let mut hole_at_end = false;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(UnpackError::read(e)),
        };
        total += n as u64;
        if total > limit {
            return Ok(None);
        }
        let chunk = &buf[..n];
        if chunk.iter().all(|b| *b == 0) {
            to.seek(SeekFrom::Current(n as i64))
                .map_err(|e| io_err("write", path, e))?;
            hole_at_end = true;
        } else {
            to.write_all(chunk).map_err(|e| io_err("write", path, e))?;
            hole_at_end = false;
        }
    }
    if hole_at_end {
        to.set_len(total).map_err(|e| io_err("write", path, e))?;
    }
    Ok(Some(total))
}

fn libc_enoent() -> i32 {
    rustix::io::Errno::NOENT.raw_os_error()
}

fn open_dir(dir: &OwnedFd, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn mkdir(dir: &OwnedFd, name: &OsStr, path: &Path) -> Result<(), UnpackError> {
    match rfs::mkdirat(dir, name, Mode::from_raw_mode(0o755)) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(io_err("create directory", path, e.into())),
    }
}

/// Removes whatever an earlier entry put at `name` (later entries win, as in tar).
/// Callers forget cached parents afterwards: a removed directory may be one of them.
fn remove_existing(dir: &OwnedFd, name: &OsStr, path: &Path) -> Result<(), UnpackError> {
    let st = match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(io_err("inspect", path, e.into())),
    };
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        // std's remove_dir_all never follows symlinks inside the tree; the
        // /proc/self/fd path pins the parent we already opened without following links.
        let p = proc_fd_path(dir, name);
        std::fs::remove_dir_all(&p).map_err(|e| io_err("replace directory", path, e))
    } else {
        rfs::unlinkat(dir, name, AtFlags::empty()).map_err(|e| io_err("replace", path, e.into()))
    }
}

fn proc_fd_path(dir: &OwnedFd, name: &OsStr) -> PathBuf {
    use std::os::fd::AsRawFd;
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_fd().as_raw_fd()));
    p.push(name);
    p
}

fn uid(v: u32) -> Uid {
    Uid::from_raw(v)
}

fn gid(v: u32) -> Gid {
    Gid::from_raw(v)
}

fn times(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn set_owner<Fd: AsFd>(fd: Fd, meta: &Meta, path: &Path) -> Result<(), UnpackError> {
    rfs::fchown(fd, Some(uid(meta.uid)), Some(gid(meta.gid)))
        .map_err(|e| io_err("chown", path, e.into()))
}

fn set_xattrs<Fd: AsFd>(fd: Fd, meta: &Meta, path: &Path) -> Result<(), UnpackError> {
    for (name, value) in &meta.xattrs {
        // An image may not smuggle overlayfs's own attributes in (they would turn a
        // file into a whiteout or redirect a directory).
        if name.as_bytes().starts_with(b"trusted.overlay.") {
            return Err(hostile(path, "sets an overlayfs xattr"));
        }
        match rfs::fsetxattr(&fd, name.as_os_str(), value, XattrFlags::empty()) {
            Ok(()) => {}
            // Some filesystems refuse some namespaces; a missing xattr is not worth
            // failing a pull for, as Docker and containerd also decide.
            Err(rustix::io::Errno::NOTSUP) | Err(rustix::io::Errno::PERM) => {
                tracing::debug!(?path, ?name, "xattr not supported here, skipped");
            }
            Err(e) => return Err(io_err("set xattr on", path, e.into())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_refuse_dotdot() {
        assert!(components(Path::new("../x")).is_err());
        assert!(components(Path::new("a/../../x")).is_err());
        assert_eq!(
            components(Path::new("/abs/./x")).unwrap(),
            vec![OsString::from("abs"), OsString::from("x")]
        );
        assert!(components(Path::new("./")).unwrap().is_empty());
    }
}

#[cfg(test)]
mod sparse_tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn octal(field: &mut [u8], v: u64) {
        let s = format!("{v:0w$o}\0", w = field.len() - 1);
        field.copy_from_slice(s.as_bytes());
    }

    /// A tar with one GNU sparse entry `name` of real size `real`, whose only data is
    /// 512 bytes of `x` at the end.
    pub(super) fn sparse_tar(name: &str, real: u64) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_entry_type(tar::EntryType::GNUSparse);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(512);
        {
            let g = h.as_gnu_mut().unwrap();
            octal(&mut g.sparse[0].offset, real - 512);
            octal(&mut g.sparse[0].numbytes, 512);
            octal(&mut g.realsize, real);
        }
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(&[b'x'; 512]);
        out.extend_from_slice(&[0; 1024]);
        out
    }

    #[test]
    fn sparse_entry_cannot_get_around_the_layer_cap() {
        let dir = tempfile::tempdir().unwrap();
        let tar = sparse_tar("big", 300 << 20);
        assert!(tar.len() < 3000, "a tiny layer");
        let err = unpack(&tar[..], dir.path(), 1 << 20).unwrap_err();
        assert!(
            matches!(&err, UnpackError::EntryTooLarge { path, size, limit: 1048576 }
                if path == Path::new("big") && *size == 300 << 20),
            "{err}"
        );
        let big = dir.path().join("big");
        let written = big.metadata().map(|m| m.len()).unwrap_or(0);
        assert_eq!(written, 0, "nothing of the entry was written");
    }

    #[test]
    fn sparse_holes_stay_holes() {
        let dir = tempfile::tempdir().unwrap();
        let tar = sparse_tar("big", 64 << 20);
        unpack(&tar[..], dir.path(), 1 << 30).unwrap();
        let m = dir.path().join("big").metadata().unwrap();
        assert_eq!(m.len(), 64 << 20);
        assert!(
            m.blocks() * 512 < 1 << 20,
            "{} bytes of real blocks for 512 bytes of data",
            m.blocks() * 512
        );
        let data = std::fs::read(dir.path().join("big")).unwrap();
        assert!(data[..(64 << 20) - 512].iter().all(|b| *b == 0));
        assert!(data[(64 << 20) - 512..].iter().all(|b| *b == b'x'));
    }

    #[test]
    fn the_cap_counts_every_file_of_the_layer() {
        let mut b = tar::Builder::new(Vec::new());
        for name in ["a", "b", "c"] {
            let mut h = tar::Header::new_gnu();
            h.set_size(400);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            b.append_data(&mut h, name, &[1u8; 400][..]).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let err = unpack(&tar[..], dir.path(), 1000).unwrap_err();
        assert!(
            matches!(&err, UnpackError::EntryTooLarge { path, .. } if path == Path::new("c")),
            "{err:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(unpack(&tar[..], dir.path(), 1200).unwrap().file_bytes, 1200);
    }
}
