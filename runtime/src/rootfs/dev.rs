//! A minimal `/dev` of device nodes frun creates itself (the defaults every container
//! gets, then `linux.devices`), and the usual symlinks. In a user namespace, where mknod
//! is not allowed, the host's nodes are bound instead, after checking they are what
//! their names say.

use nix::mount::MsFlags;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use std::os::fd::OwnedFd;
use std::path::Path;

use super::options::sys_mount;
use super::resolve::{fd_path, resolve};
use super::R;
use crate::error::{Cause, SetupError};

/// The devices every container gets, as `(name, major, minor)`: all character devices,
/// mode 0666.
const DEFAULT_DEVICES: &[(&str, u32, u32)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Makes the device nodes in the container's `/dev`. In a user namespace, where mknod
/// is not allowed (and nodes on its own tmpfs would not open), the host's nodes of the
/// same paths are bound instead.
pub(super) fn create_devices(root: &OwnedFd, extra: &[LinuxDevice], in_userns: bool) -> R<()> {
    let dev = resolve(root, Path::new("/dev")).map_err(|e| SetupError::Open {
        path: "/dev".into(),
        cause: e.into(),
    })?;
    let mk = |name: &Path,
              ft: FileType,
              mode: u32,
              major: u32,
              minor: u32,
              uid: u32,
              gid: u32|
     -> R<()> {
        let _ = rfs::unlinkat(&dev, name, AtFlags::empty());
        if in_userns {
            let host = Path::new("/dev").join(name);
            let st = rfs::stat(&host).map_err(|e| SetupError::Device {
                path: host.clone(),
                reason: format!("on the host: {}", Cause::from(e)),
            })?;
            if FileType::from_raw_mode(st.st_mode) != ft || st.st_rdev != rfs::makedev(major, minor)
            {
                return Err(SetupError::Device {
                    path: host,
                    reason: format!("the host's node is not {major}:{minor} of that type"),
                });
            }
            let f = rfs::openat(
                &dev,
                name,
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(|e| SetupError::Create {
                path: Path::new("/dev").join(name),
                cause: e.into(),
            })?;
            drop(f);
            let t = rfs::openat(
                &dev,
                name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| SetupError::Open {
                path: Path::new("/dev").join(name),
                cause: e.into(),
            })?;
            return sys_mount(
                Some(&host.display().to_string()),
                &fd_path(&t),
                None,
                MsFlags::MS_BIND,
                None,
                &format!("binding {host:?}"),
            );
        }
        rfs::mknodat(
            &dev,
            name,
            ft,
            Mode::from_raw_mode(mode),
            rfs::makedev(major, minor),
        )
        .map_err(|e| SetupError::Create {
            path: Path::new("/dev").join(name),
            cause: e.into(),
        })?;
        rfs::chownat(
            &dev,
            name,
            Some(rfs::Uid::from_raw(uid)),
            Some(rfs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| SetupError::Device {
            path: Path::new("/dev").join(name),
            reason: format!("chown {uid}:{gid}: {}", Cause::from(e)),
        })?;
        rfs::chmodat(&dev, name, Mode::from_raw_mode(mode), AtFlags::empty()).map_err(|e| {
            SetupError::Device {
                path: Path::new("/dev").join(name),
                reason: format!("chmod {mode:o}: {}", Cause::from(e)),
            }
        })
    };
    for (name, major, minor) in DEFAULT_DEVICES {
        mk(
            Path::new(name),
            FileType::CharacterDevice,
            0o666,
            *major,
            *minor,
            0,
            0,
        )?;
    }
    for d in extra {
        let path = d.path();
        let name = path.strip_prefix("/dev").map_err(|_| SetupError::Device {
            path: path.clone(),
            reason: "not under /dev".into(),
        })?;
        if name.components().count() != 1 {
            return Err(SetupError::Device {
                path: path.clone(),
                reason: "only devices directly in /dev are supported".into(),
            });
        }
        let ft = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => FileType::CharacterDevice,
            LinuxDeviceType::B => FileType::BlockDevice,
            LinuxDeviceType::P => FileType::Fifo,
            LinuxDeviceType::A => {
                return Err(SetupError::Device {
                    path: path.clone(),
                    reason: "type 'a' is not a node".into(),
                })
            }
        };
        mk(
            name,
            ft,
            d.file_mode().unwrap_or(0o666),
            d.major() as u32,
            d.minor() as u32,
            d.uid().unwrap_or(0),
            d.gid().unwrap_or(0),
        )?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        let _ = rfs::unlinkat(&dev, link, AtFlags::empty());
        rfs::symlinkat(target, &dev, link).map_err(|e| SetupError::Create {
            path: Path::new("/dev").join(link),
            cause: e.into(),
        })?;
    }
    Ok(())
}
