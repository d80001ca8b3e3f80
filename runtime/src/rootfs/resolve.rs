//! Paths inside the container's root, resolved by the kernel with
//! `openat2(RESOLVE_IN_ROOT)`: a symlink planted in the image (`/proc -> /`, a volume
//! target `-> ../../..`) resolves inside the root or not at all. What is found is used
//! through its `/proc/self/fd/N` path, never by name again.

use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use super::R;
use crate::error::SetupError;

pub(super) fn fd_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// `dest` (a path in the container) relative to the root, cleaned lexically as runc
/// resolves a mount destination: `..` goes up a level and never above the root, so
/// `/a/../b` is `b`, as for runc, not `a/b`. (runc's securejoin applies a `..` after
/// following a symlink before it; here it goes up from the name. Either way the path
/// stays inside the root: the kernel resolves it there with `RESOLVE_IN_ROOT`.)
pub(super) fn rel(dest: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in dest.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

pub(super) fn resolve(root: &OwnedFd, dest: &Path) -> rustix::io::Result<OwnedFd> {
    let rel = rel(dest);
    let path = if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    };
    rfs::openat2(
        root,
        &path,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
}

/// Opens `dest` inside `root`, creating it (a directory, or an empty file when
/// `is_dir` is false) and its missing parents. Symlinks resolve inside the root.
pub(super) fn ensure(root: &OwnedFd, dest: &Path, is_dir: bool) -> R<OwnedFd> {
    match resolve(root, dest) {
        Ok(fd) => return Ok(fd),
        Err(rustix::io::Errno::NOENT) => {}
        Err(e) => {
            return Err(SetupError::Resolve {
                path: dest.into(),
                cause: e.into(),
            })
        }
    }
    let comps: Vec<PathBuf> = rel(dest)
        .components()
        .map(|c| PathBuf::from(c.as_os_str()))
        .collect();
    let mut parent = resolve(root, Path::new("/")).map_err(|e| SetupError::Open {
        path: "/".into(),
        cause: e.into(),
    })?;
    let mut sofar = PathBuf::from("/");
    for (i, c) in comps.iter().enumerate() {
        sofar.push(c);
        match resolve(root, &sofar) {
            Ok(fd) => parent = fd,
            Err(rustix::io::Errno::NOENT) => {
                let last = i == comps.len() - 1;
                if last && !is_dir {
                    rfs::openat(
                        &parent,
                        c,
                        OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::WRONLY
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o644),
                    )
                    .map_err(|e| SetupError::Create {
                        path: sofar.clone(),
                        cause: e.into(),
                    })?;
                } else {
                    match rfs::mkdirat(&parent, c, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => {
                            return Err(SetupError::Create {
                                path: sofar,
                                cause: e.into(),
                            })
                        }
                    }
                }
                parent = resolve(root, &sofar).map_err(|e| SetupError::Open {
                    path: sofar.clone(),
                    cause: e.into(),
                })?;
            }
            Err(e) => {
                return Err(SetupError::Resolve {
                    path: sofar,
                    cause: e.into(),
                })
            }
        }
    }
    Ok(parent)
}

/// The root as a directory fd (O_PATH fds do for *at calls, but statat on the root
/// itself wants a real one on older kernels).
pub(super) fn root_dir(root: &OwnedFd) -> R<OwnedFd> {
    rfs::openat(
        root,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SetupError::Open {
        path: "/".into(),
        cause: e.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// runc resolves a destination of `/a/../b` to `/b` (securejoin), so does frun; a
    /// `..` at the root stays at the root.
    #[test]
    fn rel_resolves_dots_as_runc_does() {
        assert_eq!(rel(Path::new("/a/./b/")), PathBuf::from("a/b"));
        assert_eq!(rel(Path::new("/a/../b")), PathBuf::from("b"));
        assert_eq!(rel(Path::new("/../../etc/x")), PathBuf::from("etc/x"));
        assert_eq!(rel(Path::new("/a/b/../../..")), PathBuf::new());
        assert_eq!(rel(Path::new("/")), PathBuf::new());
    }
}
