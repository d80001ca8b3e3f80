//! The container's filesystem, set up inside its own mount namespace: the overlay root,
//! the spec's mounts, a minimal `/dev`, then `pivot_root`, then masked and read-only
//! paths.
//!
//! Every mount target inside the root is resolved with `openat2(RESOLVE_IN_ROOT)` and
//! mounted through its `/proc/self/fd/N` path, so a symlink planted in the image (`/proc
//! -> /`, a volume target `-> ../../..`) resolves inside the root or not at all. `proc`
//! and `sysfs` refuse a target that is not a real directory (CVE-2019-19921), and masks
//! are bound from a `/dev/null` that frun itself created on a fresh tmpfs
//! (CVE-2025-31133).
//!
//! One file per concern: [`resolve`] (paths inside the root), [`options`] (mount
//! options and the `mount` call), [`cgroupfs`] (`/sys/fs/cgroup`), [`dev`] (`/dev`),
//! [`mask`] (masked and read-only paths, after the pivot). What a user namespace changes
//! lives in `crate::userns`.

mod cgroupfs;
mod dev;
mod mask;
mod options;
mod propagation;
mod resolve;

use nix::mount::{umount2, MntFlags, MsFlags};
use oci_spec::runtime::{Mount, Spec};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use crate::error::{Cause, SetupError};
use crate::userns::{attach, Userns};
use options::{locked_flags, parse_options, sys_mount};
use resolve::{ensure, fd_path, rel, resolve, root_dir};

pub use crate::source::RootfsSource;
pub(crate) use mask::finish;
pub(crate) use propagation::after_pivot as set_root_propagation;

type R<T> = Result<T, SetupError>;

/// Mounts the root filesystem on `mountpoint` and everything the spec lists inside it.
/// Runs in the container's fresh mount namespace.
pub(crate) fn prepare(
    spec: &Spec,
    source: &RootfsSource,
    mountpoint: &Path,
    mut userns: Option<Userns>,
) -> R<OwnedFd> {
    // 1. Nothing mounted from here on may propagate back to the host (and the root
    //    is not shared until after the pivot: see `propagation`).
    let propagation = propagation::before_pivot(spec);
    sys_mount(
        None,
        "/",
        None,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None,
        "making / a slave mount",
    )?;

    // 2. The root: overlayfs of the image layers, or a bind of the bundle's directory.
    // In a user namespace, the root is attached from a detached mount (the parent's
    // overlay, or a clone of the bundle's directory) whose fd then serves as the root:
    // the namespace's root may not walk the host's path to the mount point again.
    let open_mountpoint = || {
        rfs::open(
            mountpoint,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| SetupError::OpenHostPath {
            path: mountpoint.into(),
            cause: e.into(),
        })
    };
    let root = match (source, userns.as_mut()) {
        (RootfsSource::Overlay { .. }, Some(u)) => {
            let what = "mounting the overlay root filesystem";
            let mnt = u.next(what)?;
            let target = u
                .host_paths
                .get(mountpoint)
                .ok_or_else(|| SetupError::OpenHostPath {
                    path: mountpoint.into(),
                    cause: Cause::Other("not opened before becoming root".into()),
                })?;
            attach(&mnt, target, what)?;
            mnt
        }
        (RootfsSource::Dir(dir), Some(u)) => {
            let what = format!("bind-mounting the root filesystem {dir:?}");
            use rustix::mount::OpenTreeFlags as T;
            let tree = rustix::mount::open_tree(
                rfs::CWD,
                u.host_path(dir),
                T::OPEN_TREE_CLONE | T::OPEN_TREE_CLOEXEC | T::AT_RECURSIVE,
            )
            .map_err(|e| SetupError::mount(&what, e))?;
            let target = u
                .host_paths
                .get(mountpoint)
                .ok_or_else(|| SetupError::OpenHostPath {
                    path: mountpoint.into(),
                    cause: Cause::Other("not opened before becoming root".into()),
                })?;
            attach(&tree, target, &what)?;
            tree
        }
        (
            RootfsSource::Overlay {
                lower_dirs,
                upper,
                work,
            },
            None,
        ) => {
            // lowerdir= is limited to a page: with every layer in one directory, name
            // them relative to it (Docker shortens them with symlinks for the same reason).
            let common = lower_dirs
                .first()
                .and_then(|d| d.parent())
                .filter(|p| lower_dirs.iter().all(|d| d.parent() == Some(*p)));
            let lower: Vec<String> = match common {
                Some(dir) => {
                    std::env::set_current_dir(dir).map_err(|e| SetupError::Chdir {
                        path: dir.into(),
                        cause: e.into(),
                    })?;
                    lower_dirs
                        .iter()
                        .map(|d| {
                            d.file_name()
                                .unwrap_or_default()
                                .to_string_lossy()
                                .into_owned()
                        })
                        .collect()
                }
                None => lower_dirs.iter().map(|d| d.display().to_string()).collect(),
            };
            if lower.is_empty() {
                return Err(SetupError::NoLayers);
            }
            let data = format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.join(":"),
                upper.display(),
                work.display()
            );
            sys_mount(
                Some("overlay"),
                &mountpoint.display().to_string(),
                Some("overlay"),
                MsFlags::empty(),
                Some(&data),
                "mounting the overlay root filesystem",
            )?;
            let _ = std::env::set_current_dir("/");
            open_mountpoint()?
        }
        (RootfsSource::Dir(dir), None) => {
            sys_mount(
                Some(&dir.display().to_string()),
                &mountpoint.display().to_string(),
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
                &format!("bind-mounting the root filesystem {dir:?}"),
            )?;
            open_mountpoint()?
        }
    };
    sys_mount(
        None,
        &fd_path(&root),
        None,
        propagation | MsFlags::MS_REC,
        None,
        "setting root propagation",
    )?;

    // 3. The spec's mounts, in order.
    let mut dev_mounted = false;
    for m in spec.mounts().iter().flatten() {
        mount_one(&root, m, userns.as_mut())?;
        if m.destination() == Path::new("/dev") {
            dev_mounted = true;
        }
    }

    // 4. A minimal /dev of device nodes frun creates itself, unless a bind mount is
    //    /dev: that is a host directory (the host's own /dev, even), where nodes made
    //    and files unlinked would be the host's. runc skips the set-up then too.
    let dev_bound = spec.mounts().iter().flatten().any(|m| {
        rel(m.destination()) == Path::new("dev")
            && (m.typ().as_deref() == Some("bind")
                || m.options()
                    .iter()
                    .flatten()
                    .any(|o| o == "bind" || o == "rbind"))
    });
    if dev_mounted && !dev_bound {
        let extra = spec
            .linux()
            .as_ref()
            .and_then(|l| l.devices().clone())
            .unwrap_or_default();
        dev::create_devices(&root, &extra, userns.is_some())?;
    }

    // 5. The working directory, made if the image lacks it (as runc and Docker do),
    //    inside the root. Anything but "missing" is left to the `chdir` check later.
    if let Some(cwd) = spec.process().as_ref().map(|p| p.cwd()) {
        if cwd.is_absolute() && matches!(resolve(&root, cwd), Err(rustix::io::Errno::NOENT)) {
            ensure(&root, cwd, true).map_err(|e| SetupError::MakeWorkingDir {
                path: cwd.into(),
                cause: Box::new(e),
            })?;
        }
    }
    Ok(root)
}

fn mount_one(root: &OwnedFd, m: &Mount, mut userns: Option<&mut Userns>) -> R<()> {
    let dest = m.destination();
    if !dest.is_absolute() {
        return Err(SetupError::RelativeDestination { path: dest.into() });
    }
    let typ = m.typ().clone().unwrap_or_default();
    let options = m.options().clone().unwrap_or_default();
    let (flags, propagation, data) = parse_options(&options);
    let is_bind = flags.contains(MsFlags::MS_BIND) || typ == "bind";
    let what = format!("mounting {typ} on {dest:?}");

    if is_bind {
        let source = m.source().clone().ok_or_else(|| SetupError::NoBindSource {
            destination: dest.into(),
        })?;
        let host_source = match &userns {
            Some(u) => u.host_path(&source),
            None => source.display().to_string(),
        };
        let meta = std::fs::metadata(&host_source).map_err(|e| SetupError::BindSource {
            path: source.clone(),
            cause: e.into(),
        })?;
        let target = ensure(root, dest, meta.is_dir())?;
        let target_path = fd_path(&target);
        let rec = flags & MsFlags::MS_REC;
        let in_userns = userns.is_some();
        match userns {
            Some(u) if crate::userns::wants_idmap(m) => attach(&u.next(&what)?, &target, &what)?,
            _ => sys_mount(
                Some(&host_source),
                &target_path,
                None,
                MsFlags::MS_BIND | rec,
                None,
                &what,
            )?,
        }
        drop(target);
        // Remount to apply ro/nosuid/...: only a remount sets them on a bind mount. The
        // new mount is reached by resolving the path again.
        let extra = flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
        if !extra.is_empty() {
            let target = resolve(root, dest).map_err(|e| SetupError::mount(&what, e))?;
            let path = fd_path(&target);
            let locked = if in_userns {
                locked_flags(&path)
            } else {
                MsFlags::empty()
            };
            sys_mount(
                None,
                &path,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra | locked,
                None,
                &what,
            )?;
        }
        if !propagation.is_empty() {
            let target = resolve(root, dest).map_err(|e| SetupError::mount(&what, e))?;
            sys_mount(None, &fd_path(&target), None, propagation, None, &what)?;
        }
        return Ok(());
    }

    if typ == "proc" || typ == "sysfs" {
        // The image may have made the target a symlink to somewhere else entirely.
        if let Ok(st) = rfs::statat(
            root_dir(root)?.as_fd(),
            rel(dest),
            AtFlags::SYMLINK_NOFOLLOW,
        ) {
            if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                return Err(SetupError::NotADirectory {
                    fstype: typ,
                    destination: dest.into(),
                });
            }
        }
    }
    if let Some(u) = userns
        .as_deref_mut()
        .filter(|u| u.sysfs_premade && typ == "sysfs")
    {
        let target = ensure(root, dest, true)?;
        return attach(&u.next(&what)?, &target, &what);
    }
    if typ == "cgroup" || typ == "cgroup2" {
        return cgroupfs::mount_cgroups(root, dest, flags, userns.as_deref());
    }
    let target = ensure(root, dest, true)?;
    let source = m
        .source()
        .as_ref()
        .map(|s| s.display().to_string())
        .unwrap_or_else(|| typ.clone());
    let data = (!data.is_empty()).then_some(data.as_str());
    sys_mount(
        Some(&source),
        &fd_path(&target),
        Some(&typ),
        flags,
        data,
        &what,
    )?;
    if !propagation.is_empty() {
        let target = resolve(root, dest).map_err(|e| SetupError::mount(&what, e))?;
        sys_mount(None, &fd_path(&target), None, propagation, None, &what)?;
    }
    Ok(())
}

/// Without a mount namespace of its own: the bundle's directory becomes the root by
/// `chroot`, in the runtime's mount namespace, with nothing mounted (`spawn` refuses a
/// spec that would need a mount).
pub(crate) fn chroot(source: &RootfsSource) -> R<()> {
    let RootfsSource::Dir(dir) = source else {
        return Err(SetupError::spec(
            "root",
            "an overlay root filesystem needs a mount namespace",
        ));
    };
    let chdir = |path: &Path| {
        let p = path.to_path_buf();
        move |e: std::io::Error| SetupError::Chdir {
            path: p,
            cause: e.into(),
        }
    };
    std::env::set_current_dir(dir).map_err(chdir(dir))?;
    nix::unistd::chroot(".").map_err(|e| SetupError::Chroot {
        path: dir.clone(),
        cause: e.into(),
    })?;
    std::env::set_current_dir("/").map_err(chdir(Path::new("/")))?;
    Ok(())
}

/// Makes `root` (the root mount [`prepare`] returned) the root: pivot_root, then
/// detach the old root.
pub(crate) fn pivot(root: &OwnedFd) -> R<()> {
    rustix::process::fchdir(root).map_err(|e| SetupError::Chdir {
        path: "the new root".into(),
        cause: e.into(),
    })?;
    // pivot_root(".", ".") stacks the old root on top of the new one; unmounting "."
    // then removes the old root without needing a directory for it (runc's trick).
    nix::unistd::pivot_root(".", ".").map_err(|e| SetupError::PivotRoot { cause: e.into() })?;
    umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| SetupError::mount("detaching the old root", e))?;
    std::env::set_current_dir("/").map_err(|e| SetupError::Chdir {
        path: "/".into(),
        cause: e.into(),
    })?;
    Ok(())
}
