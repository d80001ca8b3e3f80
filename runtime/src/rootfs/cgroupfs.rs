//! The container's `/sys/fs/cgroup`: one cgroup2 mount, or on a v1 or hybrid host a
//! tmpfs with one mount (or, in a user namespace, one bind) per v1 hierarchy. Read from
//! mountinfo text, as `crate::cgroup` finds the hierarchies.

use nix::mount::MsFlags;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::options::{locked_flags, sys_mount};
use super::resolve::{ensure, fd_path, resolve};
use super::R;
use crate::error::SetupError;
use crate::userns::Userns;

/// `/sys/fs/cgroup`, read-only, showing the container's own cgroup (the cgroup
/// namespace makes it the root). v2: one cgroup2 mount. v1 and hybrid: a tmpfs with one
/// mount per v1 hierarchy the host has. In a user namespace, where cgroup v1 cannot be
/// mounted, the container's own cgroup of each hierarchy is bound in instead (cgroup2
/// can be mounted there: the cgroup namespace belongs to the user namespace).
pub(super) fn mount_cgroups(
    root: &OwnedFd,
    dest: &Path,
    flags: MsFlags,
    userns: Option<&Userns>,
) -> R<()> {
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RELATIME;
    let ro = flags & MsFlags::MS_RDONLY;
    let read;
    let mountinfo = match userns {
        Some(u) => &u.mountinfo,
        None => {
            read =
                std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| SetupError::Read {
                    path: "/proc/self/mountinfo".into(),
                    cause: e.into(),
                })?;
            &read
        }
    };
    /// How a v1 hierarchy gets into the container.
    enum How {
        /// A fresh mount with these options.
        Mount(String),
        /// A bind of the container's own cgroup directory on the host.
        Bind(PathBuf),
    }
    // (name, options, how) for each v1 hierarchy.
    let mut v1: Vec<(String, String, How)> = Vec::new();
    let mut v2 = false;
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split_whitespace();
        let fstype = post.next().unwrap_or_default();
        let super_opts = post.nth(1).unwrap_or_default();
        let mut pre = pre.split_whitespace();
        // (mountinfo escapes spaces and the like as `\040`.)
        let mount_root = crate::cgroup::unescape(pre.nth(3).unwrap_or_default());
        let mount_point = crate::cgroup::unescape(pre.next().unwrap_or_default());
        let (mount_root, mount_point) = (mount_root.as_str(), mount_point.as_str());
        if fstype == "cgroup2" && mount_point == "/sys/fs/cgroup" {
            v2 = true;
        }
        if fstype != "cgroup" {
            continue;
        }
        let name = Path::new(mount_point)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let opts: Vec<&str> = super_opts
            .split(',')
            .filter(|o| *o != "rw" && *o != "ro")
            .collect();
        // One mount per hierarchy: with /sys bound recursively from the host (a
        // container in the host's network namespace), mountinfo lists each hierarchy
        // again under the new root, and mounting one twice on the same directory
        // fails with EBUSY.
        let joined = opts.join(",");
        if v1.iter().any(|(_, o, _)| *o == joined) {
            continue;
        }
        let how = match userns {
            None => How::Mount(joined.clone()),
            Some(u) => {
                // The line of /proc/self/cgroup for this hierarchy: its controllers
                // (or name=...) are all among the mount's options.
                let path = u.cgroups.lines().find_map(|l| {
                    let mut f = l.splitn(3, ':');
                    let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
                    (!ctrls.is_empty() && ctrls.split(',').all(|c| opts.contains(&c)))
                        .then_some(path)
                });
                let Some(inner) = path.and_then(|p| Path::new(p).strip_prefix(mount_root).ok())
                else {
                    continue;
                };
                How::Bind(Path::new(mount_point).join(inner))
            }
        };
        v1.push((name, joined, how));
    }
    let target = ensure(root, dest, true)?;
    if v2 || v1.is_empty() {
        return sys_mount(
            Some("cgroup2"),
            &fd_path(&target),
            Some("cgroup2"),
            base | ro,
            None,
            "mounting cgroup2",
        );
    }
    sys_mount(
        Some("tmpfs"),
        &fd_path(&target),
        Some("tmpfs"),
        base,
        Some("mode=755"),
        "mounting the cgroup tmpfs",
    )?;
    drop(target);
    for (name, _, how) in &v1 {
        let sub = dest.join(name);
        let t = ensure(root, &sub, true)?;
        match how {
            How::Mount(opts) => sys_mount(
                Some("cgroup"),
                &fd_path(&t),
                Some("cgroup"),
                base | ro,
                Some(opts),
                &format!("mounting cgroup {name}"),
            )?,
            How::Bind(source) => {
                let what = format!("binding cgroup {name}");
                sys_mount(
                    Some(&source.display().to_string()),
                    &fd_path(&t),
                    None,
                    MsFlags::MS_BIND,
                    None,
                    &what,
                )?;
                drop(t);
                let t = resolve(root, &sub).map_err(|e| SetupError::mount(&what, e))?;
                let path = fd_path(&t);
                sys_mount(
                    None,
                    &path,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | base | ro | locked_flags(&path),
                    None,
                    &what,
                )?;
            }
        }
    }
    if !ro.is_empty() {
        let t = resolve(root, dest).map_err(|e| SetupError::Resolve {
            path: dest.into(),
            cause: e.into(),
        })?;
        sys_mount(
            None,
            &fd_path(&t),
            None,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | base,
            Some("mode=755"),
            "making the cgroup tmpfs read-only",
        )?;
    }
    Ok(())
}
