//! After the pivot: the read-only root, then masked paths (bound over from a
//! `/dev/null` that frun itself created on a fresh tmpfs and checks by device number,
//! never by name: CVE-2025-31133) and read-only paths. A path the image lacks is
//! skipped, as runc does.

use nix::mount::MsFlags;
use oci_spec::runtime::Spec;
use rustix::fs::{self as rfs, FileType, Mode, OFlags};
use std::path::Path;

use super::options::{locked_flags, sys_mount};
use super::resolve::{fd_path, resolve};
use super::R;
use crate::error::SetupError;

/// After the pivot: read-only root, masked paths, read-only paths.
pub(crate) fn finish(spec: &Spec) -> R<()> {
    let root = rfs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SetupError::Open {
        path: "/".into(),
        cause: e.into(),
    })?;
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        sys_mount(
            None,
            "/",
            None,
            // The flags the root already has: in a user namespace, those of a bound
            // bundle directory are locked.
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked_flags("/"),
            None,
            "making the root read-only",
        )?;
    }
    let linux = spec.linux().clone().unwrap_or_default();
    if let Some(masked) = linux.masked_paths() {
        // The /dev/null frun made on its own tmpfs: checked, never trusted by name alone.
        let null = rfs::open(
            "/dev/null",
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::NOENT => SetupError::NoNullToMask,
            e => SetupError::Open {
                path: "/dev/null".into(),
                cause: e.into(),
            },
        })?;
        let st = rfs::fstat(&null).map_err(|e| SetupError::Open {
            path: "/dev/null".into(),
            cause: e.into(),
        })?;
        if FileType::from_raw_mode(st.st_mode) != FileType::CharacterDevice
            || st.st_rdev != rfs::makedev(1, 3)
        {
            return Err(SetupError::NullNotNull);
        }
        for p in masked {
            let fd = match resolve(&root, Path::new(p)) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::ACCESS) => continue,
                Err(e) => return Err(SetupError::mount(&format!("masking {p}"), e)),
            };
            let st = rfs::fstat(&fd).map_err(|e| SetupError::mount(&format!("masking {p}"), e))?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                sys_mount(
                    Some("tmpfs"),
                    &fd_path(&fd),
                    Some("tmpfs"),
                    MsFlags::MS_RDONLY,
                    Some("size=0"),
                    &format!("masking {p}"),
                )?;
            } else {
                sys_mount(
                    Some(&fd_path(&null)),
                    &fd_path(&fd),
                    None,
                    MsFlags::MS_BIND,
                    None,
                    &format!("masking {p}"),
                )?;
            }
        }
    }
    for p in linux.readonly_paths().iter().flatten() {
        let fd = match resolve(&root, Path::new(p)) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::ACCESS) => continue,
            Err(e) => return Err(SetupError::mount(&format!("making {p} read-only"), e)),
        };
        sys_mount(
            Some(&fd_path(&fd)),
            &fd_path(&fd),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
            &format!("making {p} read-only"),
        )?;
        drop(fd);
        let fd = resolve(&root, Path::new(p))
            .map_err(|e| SetupError::mount(&format!("making {p} read-only"), e))?;
        sys_mount(
            None,
            &fd_path(&fd),
            None,
            MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC,
            None,
            &format!("making {p} read-only"),
        )?;
    }
    Ok(())
}
