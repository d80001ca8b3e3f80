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

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// Where the root filesystem comes from.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum RootfsSource {
    /// Image layers (topmost first) under a per-container upper and work directory.
    Overlay {
        lower_dirs: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
    },
    /// A ready directory (an OCI bundle's `rootfs`).
    Dir(PathBuf),
}

type R<T> = Result<T, String>;

/// What a container in a new user namespace mounts differently.
pub(crate) struct Userns {
    /// Detached mounts made by the parent ([`crate::userns::premade_mounts`]): the root
    /// (for an overlay root), then one per idmapped bind mount, in the spec's order.
    pub premade: VecDeque<OwnedFd>,
    /// `/proc/self/cgroup` as the host sees it (read before the cgroup namespace).
    pub cgroups: String,
    /// `/proc/self/mountinfo`, read at the same time.
    pub mountinfo: String,
    /// Host paths to mount (mount point, bind sources), opened (`O_PATH`) in the new
    /// mount namespace before this process became the namespace's root, which may not
    /// traverse the host's private directories.
    pub host_paths: std::collections::HashMap<PathBuf, OwnedFd>,
    /// The parent made the sysfs mounts ([`crate::userns::parent_makes_sysfs`]).
    pub sysfs_premade: bool,
}

/// The paths [`Userns::host_paths`] holds.
pub(crate) fn open_host_paths(
    spec: &Spec,
    source: &RootfsSource,
    mountpoint: &Path,
) -> R<std::collections::HashMap<PathBuf, OwnedFd>> {
    let mut paths = vec![mountpoint.to_path_buf()];
    if let RootfsSource::Dir(d) = source {
        paths.push(d.clone());
    }
    for m in spec.mounts().iter().flatten() {
        let bind = m.typ().as_deref() == Some("bind")
            || m.options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind");
        if let (true, Some(src)) = (bind && !crate::userns::wants_idmap(m), m.source()) {
            paths.push(src.clone());
        }
    }
    let mut out = std::collections::HashMap::new();
    for p in paths {
        let fd = rfs::open(&p, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| format!("opening {p:?}: {e}"))?;
        out.insert(p, fd);
    }
    Ok(out)
}

impl Userns {
    /// `path`, or the `/proc/self/fd` path of its fd opened earlier.
    fn host_path(&self, path: &Path) -> String {
        match self.host_paths.get(path) {
            Some(fd) => fd_path(fd),
            None => path.display().to_string(),
        }
    }
}

impl Userns {
    fn next(&mut self, what: &str) -> R<OwnedFd> {
        self.premade
            .pop_front()
            .ok_or_else(|| format!("{what}: the parent sent no mount for it"))
    }
}

/// Attaches the detached mount `mnt` on `target` (an fd of the mount point).
fn attach(mnt: &OwnedFd, target: &impl AsFd, what: &str) -> R<()> {
    use rustix::mount::MoveMountFlags as F;
    rustix::mount::move_mount(
        mnt,
        "",
        target,
        "",
        F::MOVE_MOUNT_F_EMPTY_PATH | F::MOVE_MOUNT_T_EMPTY_PATH,
    )
    .map_err(|e| format!("{what}: {e}"))
}

/// The flags of the mount at `path` that a user namespace may not clear (the kernel
/// locks them on mounts that came from a more privileged namespace): a remount must
/// keep them or fail with EPERM.
fn locked_flags(path: &str) -> MsFlags {
    let Ok(st) = nix::sys::statvfs::statvfs(path) else {
        return MsFlags::empty();
    };
    use nix::sys::statvfs::FsFlags as S;
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (s, m) in [
        (S::ST_RDONLY, MsFlags::MS_RDONLY),
        (S::ST_NOSUID, MsFlags::MS_NOSUID),
        (S::ST_NODEV, MsFlags::MS_NODEV),
        (S::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (S::ST_NOATIME, MsFlags::MS_NOATIME),
        (S::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (S::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(s) {
            out |= m;
        }
    }
    out
}

fn fd_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn rel(dest: &Path) -> PathBuf {
    dest.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

fn resolve(root: &OwnedFd, dest: &Path) -> rustix::io::Result<OwnedFd> {
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
fn ensure(root: &OwnedFd, dest: &Path, is_dir: bool) -> R<OwnedFd> {
    match resolve(root, dest) {
        Ok(fd) => return Ok(fd),
        Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(format!("resolving {dest:?} in the container: {e}")),
    }
    let comps: Vec<PathBuf> = rel(dest)
        .components()
        .map(|c| PathBuf::from(c.as_os_str()))
        .collect();
    let mut parent = resolve(root, Path::new("/")).map_err(|e| format!("opening the root: {e}"))?;
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
                    .map_err(|e| format!("creating {sofar:?} in the container: {e}"))?;
                } else {
                    match rfs::mkdirat(&parent, c, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(format!("creating {sofar:?} in the container: {e}")),
                    }
                }
                parent = resolve(root, &sofar).map_err(|e| format!("opening {sofar:?}: {e}"))?;
            }
            Err(e) => return Err(format!("resolving {sofar:?} in the container: {e}")),
        }
    }
    Ok(parent)
}

/// Mount flags and the data string from OCI mount options.
fn parse_options(options: &[String]) -> (MsFlags, MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut propagation = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        match o.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => flags &= !MsFlags::MS_RDONLY,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "suid" => flags &= !MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "dev" => flags &= !MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "exec" => flags &= !MsFlags::MS_NOEXEC,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            "dirsync" => flags |= MsFlags::MS_DIRSYNC,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "nodiratime" => flags |= MsFlags::MS_NODIRATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "private" => propagation |= MsFlags::MS_PRIVATE,
            "rprivate" => propagation |= MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            "shared" => propagation |= MsFlags::MS_SHARED,
            "rshared" => propagation |= MsFlags::MS_SHARED | MsFlags::MS_REC,
            "slave" => propagation |= MsFlags::MS_SLAVE,
            "rslave" => propagation |= MsFlags::MS_SLAVE | MsFlags::MS_REC,
            "unbindable" => propagation |= MsFlags::MS_UNBINDABLE,
            "runbindable" => propagation |= MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
            // Options of other runtimes that mean nothing here.
            "defaults" | "async" | "atime" | "diratime" | "norelatime" | "nostrictatime" => {}
            other => data.push(other.to_string()),
        }
    }
    (flags, propagation, data.join(","))
}

fn sys_mount(
    source: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
    what: &str,
) -> R<()> {
    mount(source, target, fstype, flags, data).map_err(|e| format!("{what}: {e}"))
}

/// Mounts the root filesystem on `mountpoint` and everything the spec lists inside it.
/// Runs in the container's fresh mount namespace.
pub(crate) fn prepare(
    spec: &Spec,
    source: &RootfsSource,
    mountpoint: &Path,
    mut userns: Option<Userns>,
) -> R<OwnedFd> {
    // 1. Nothing mounted from here on may propagate back to the host. Until the pivot
    //    the root is a slave (if asked) or private: pivot_root refuses a shared one
    //    (EINVAL); `shared` and `unbindable` are applied after it
    //    ([`set_root_propagation`]), as crun does.
    let propagation = match rootfs_propagation(spec).as_deref() {
        Some("slave") | Some("rslave") => MsFlags::MS_SLAVE,
        _ => MsFlags::MS_PRIVATE,
    };
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
        .map_err(|e| format!("opening the root filesystem: {e}"))
    };
    let root = match (source, userns.as_mut()) {
        (RootfsSource::Overlay { .. }, Some(u)) => {
            let what = "mounting the overlay root filesystem";
            let mnt = u.next(what)?;
            let target = u
                .host_paths
                .get(mountpoint)
                .ok_or_else(|| format!("{what}: {mountpoint:?} was not opened"))?;
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
            .map_err(|e| format!("{what}: {e}"))?;
            let target = u
                .host_paths
                .get(mountpoint)
                .ok_or_else(|| format!("{what}: {mountpoint:?} was not opened"))?;
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
                    std::env::set_current_dir(dir).map_err(|e| format!("chdir {dir:?}: {e}"))?;
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
                return Err("an image without layers has no root filesystem".into());
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
        create_devices(&root, &extra, userns.is_some())?;
    }

    // 5. The working directory, made if the image lacks it (as runc and Docker do),
    //    inside the root. Anything but "missing" is left to the `chdir` check later.
    if let Some(cwd) = spec.process().as_ref().map(|p| p.cwd()) {
        if cwd.is_absolute() && matches!(resolve(&root, cwd), Err(rustix::io::Errno::NOENT)) {
            ensure(&root, cwd, true).map_err(|e| format!("working directory {cwd:?}: {e}"))?;
        }
    }
    Ok(root)
}

fn mount_one(root: &OwnedFd, m: &Mount, mut userns: Option<&mut Userns>) -> R<()> {
    let dest = m.destination();
    if !dest.is_absolute() {
        return Err(format!("mount destination {dest:?} is not absolute"));
    }
    let typ = m.typ().clone().unwrap_or_default();
    let options = m.options().clone().unwrap_or_default();
    let (flags, propagation, data) = parse_options(&options);
    let is_bind = flags.contains(MsFlags::MS_BIND) || typ == "bind";
    let what = format!("mounting {typ} on {dest:?}");

    if is_bind {
        let source = m
            .source()
            .clone()
            .ok_or_else(|| format!("bind mount on {dest:?} has no source"))?;
        let host_source = match &userns {
            Some(u) => u.host_path(&source),
            None => source.display().to_string(),
        };
        let meta = std::fs::metadata(&host_source)
            .map_err(|e| format!("bind mount source {source:?}: {e}"))?;
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
            let target = resolve(root, dest).map_err(|e| format!("{what}: {e}"))?;
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
            let target = resolve(root, dest).map_err(|e| format!("{what}: {e}"))?;
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
                return Err(format!("refusing to mount {typ} on {dest:?}: it is not a directory in the image (a symlink?)"));
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
        return mount_cgroups(root, dest, flags, userns.as_deref());
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
        let target = resolve(root, dest).map_err(|e| format!("{what}: {e}"))?;
        sys_mount(None, &fd_path(&target), None, propagation, None, &what)?;
    }
    Ok(())
}

/// The root as a directory fd (O_PATH fds do for *at calls, but statat on the root
/// itself wants a real one on older kernels).
fn root_dir(root: &OwnedFd) -> R<OwnedFd> {
    rfs::openat(
        root,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("opening the root: {e}"))
}

/// `/sys/fs/cgroup`, read-only, showing the container's own cgroup (the cgroup
/// namespace makes it the root). v2: one cgroup2 mount. v1 and hybrid: a tmpfs with one
/// mount per v1 hierarchy the host has. In a user namespace, where cgroup v1 cannot be
/// mounted, the container's own cgroup of each hierarchy is bound in instead (cgroup2
/// can be mounted there: the cgroup namespace belongs to the user namespace).
fn mount_cgroups(root: &OwnedFd, dest: &Path, flags: MsFlags, userns: Option<&Userns>) -> R<()> {
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RELATIME;
    let ro = flags & MsFlags::MS_RDONLY;
    let read;
    let mountinfo = match userns {
        Some(u) => &u.mountinfo,
        None => {
            read = std::fs::read_to_string("/proc/self/mountinfo")
                .map_err(|e| format!("reading mountinfo: {e}"))?;
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
                let t = resolve(root, &sub).map_err(|e| format!("{what}: {e}"))?;
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
        let t = resolve(root, dest).map_err(|e| format!("cgroup tmpfs: {e}"))?;
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
fn create_devices(root: &OwnedFd, extra: &[LinuxDevice], in_userns: bool) -> R<()> {
    let dev = resolve(root, Path::new("/dev")).map_err(|e| format!("opening /dev: {e}"))?;
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
            let st = rfs::stat(&host).map_err(|e| format!("device {host:?} on the host: {e}"))?;
            if FileType::from_raw_mode(st.st_mode) != ft || st.st_rdev != rfs::makedev(major, minor)
            {
                return Err(format!(
                    "device {host:?}: the host's node is not {major}:{minor} of that type"
                ));
            }
            let f = rfs::openat(
                &dev,
                name,
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(|e| format!("creating /dev/{}: {e}", name.display()))?;
            drop(f);
            let t = rfs::openat(
                &dev,
                name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| format!("opening /dev/{}: {e}", name.display()))?;
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
        .map_err(|e| format!("creating /dev/{}: {e}", name.display()))?;
        rfs::chownat(
            &dev,
            name,
            Some(rfs::Uid::from_raw(uid)),
            Some(rfs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| format!("chown /dev/{}: {e}", name.display()))?;
        rfs::chmodat(&dev, name, Mode::from_raw_mode(mode), AtFlags::empty())
            .map_err(|e| format!("chmod /dev/{}: {e}", name.display()))
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
        let name = path
            .strip_prefix("/dev")
            .map_err(|_| format!("device {path:?} is not under /dev"))?;
        if name.components().count() != 1 {
            return Err(format!(
                "device {path:?}: only devices directly in /dev are supported"
            ));
        }
        let ft = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => FileType::CharacterDevice,
            LinuxDeviceType::B => FileType::BlockDevice,
            LinuxDeviceType::P => FileType::Fifo,
            LinuxDeviceType::A => return Err(format!("device {path:?}: type 'a' is not a node")),
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
        rfs::symlinkat(target, &dev, link).map_err(|e| format!("creating /dev/{link}: {e}"))?;
    }
    Ok(())
}

/// Makes `root` (the root mount [`prepare`] returned) the root: pivot_root, then
/// detach the old root.
pub(crate) fn pivot(root: &OwnedFd) -> R<()> {
    rustix::process::fchdir(root).map_err(|e| format!("chdir to the root: {e}"))?;
    // pivot_root(".", ".") stacks the old root on top of the new one; unmounting "."
    // then removes the old root without needing a directory for it (runc's trick).
    nix::unistd::pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detaching the old root: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    Ok(())
}

fn rootfs_propagation(spec: &Spec) -> Option<String> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone())
}

/// After the pivot: `linux.rootfsPropagation` `shared` or `unbindable` on the new root
/// (and the mounts below it), which could not be set before.
pub(crate) fn set_root_propagation(spec: &Spec) -> R<()> {
    let flag = match rootfs_propagation(spec).as_deref() {
        Some("shared") | Some("rshared") => MsFlags::MS_SHARED,
        Some("unbindable") | Some("runbindable") => MsFlags::MS_UNBINDABLE,
        _ => return Ok(()),
    };
    sys_mount(
        None,
        "/",
        None,
        flag | MsFlags::MS_REC,
        None,
        "setting linux.rootfsPropagation",
    )
}

/// Without a mount namespace of its own: the bundle's directory becomes the root by
/// `chroot`, in the runtime's mount namespace, with nothing mounted.
pub(crate) fn chroot(source: &RootfsSource) -> R<()> {
    let RootfsSource::Dir(dir) = source else {
        return Err("an overlay root filesystem needs a mount namespace".into());
    };
    std::env::set_current_dir(dir).map_err(|e| format!("chdir {dir:?}: {e}"))?;
    nix::unistd::chroot(".").map_err(|e| format!("chroot {dir:?}: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    Ok(())
}

/// After the pivot: read-only root, masked paths, read-only paths.
pub(crate) fn finish(spec: &Spec) -> R<()> {
    let root = rfs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("opening /: {e}"))?;
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
        .map_err(|e| format!("opening /dev/null: {e}"))?;
        let st = rfs::fstat(&null).map_err(|e| format!("stat /dev/null: {e}"))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::CharacterDevice
            || st.st_rdev != rfs::makedev(1, 3)
        {
            return Err("/dev/null is not the null device: refusing to mask paths with it".into());
        }
        for p in masked {
            let fd = match resolve(&root, Path::new(p)) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::ACCESS) => continue,
                Err(e) => return Err(format!("masking {p}: {e}")),
            };
            let st = rfs::fstat(&fd).map_err(|e| format!("masking {p}: {e}"))?;
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
            Err(e) => return Err(format!("making {p} read-only: {e}")),
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
        let fd = resolve(&root, Path::new(p)).map_err(|e| format!("making {p} read-only: {e}"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let (f, p, d) = parse_options(&[
            "nosuid".into(),
            "ro".into(),
            "mode=755".into(),
            "rprivate".into(),
            "size=1k".into(),
        ]);
        assert!(f.contains(MsFlags::MS_NOSUID | MsFlags::MS_RDONLY));
        assert!(p.contains(MsFlags::MS_PRIVATE | MsFlags::MS_REC));
        assert_eq!(d, "mode=755,size=1k");
        let (f, _, _) = parse_options(&["rbind".into()]);
        assert!(f.contains(MsFlags::MS_BIND | MsFlags::MS_REC));
    }

    #[test]
    fn rel_drops_root_and_dots() {
        assert_eq!(rel(Path::new("/a/./b/")), PathBuf::from("a/b"));
        assert_eq!(rel(Path::new("/a/../b")), PathBuf::from("a/b"));
    }
}
