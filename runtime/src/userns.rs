//! User namespaces: the parent's half (uid/gid maps, and the mounts that must be made
//! with the host's privileges before the container's process may use them), and passing
//! those mounts to the container's process.
//!
//! A process in a user namespace cannot mount overlayfs with `trusted.*` xattrs (the
//! opaque directories of image layers) nor make device nodes, and the image's files are
//! owned by host ids that the namespace does not map. So, as runc does for idmapped
//! mounts, the parent makes *detached* mounts (never attached anywhere on the host) and
//! sends their fds over a socket; the container's process attaches them in its own mount
//! namespace with `move_mount`:
//! - the root: every image layer is cloned with `open_tree` and idmapped through the
//!   container's user namespace (`mount_setattr(MOUNT_ATTR_IDMAP)`), so a file the layer
//!   holds as uid 0 is seen as the host id that the namespace maps to 0; the overlay is
//!   made over those layers with `fsopen`/`fsmount`, its upper directory owned by the
//!   container's root. The shared layers on disk are never changed.
//! - bind mounts with their own `uidMappings` (`-v SRC:DST:idmap`): the source cloned
//!   and idmapped the same way.
//!
//! The container's side is [`Userns`]: what `crate::rootfs` mounts differently in a
//! user namespace (the premade mounts to attach, host paths opened while still
//! allowed to). This module never imports `rootfs`; `rootfs` imports it.

use oci_spec::runtime::{LinuxIdMapping, Mount, Spec};
use rustix::fs::{self as rfs, Mode, OFlags};
use rustix::mount::{self as rmount, FsMountFlags, FsOpenFlags, MountAttrFlags, OpenTreeFlags};
use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use crate::error::{Cause, RuntimeError, SetupError};
use crate::source::RootfsSource;

type R<T> = Result<T, SetupError>;

/// The spec's mappings, checked: both present, non-empty, and not overlapping.
pub(crate) fn check_mappings(
    uid: &[LinuxIdMapping],
    gid: &[LinuxIdMapping],
) -> Result<(), RuntimeError> {
    if uid.is_empty() || gid.is_empty() {
        return Err(RuntimeError::spec(
            "linux.uidMappings/gidMappings",
            "a new user namespace needs both",
        ));
    }
    for (what, maps) in [("uidMappings", uid), ("gidMappings", gid)] {
        if maps.len() > 340 {
            return Err(RuntimeError::spec(
                format!("linux.{what}"),
                "more than 340 lines",
            ));
        }
        for (i, m) in maps.iter().enumerate() {
            if m.size() == 0 {
                return Err(RuntimeError::spec(format!("linux.{what}[{i}]"), "size 0"));
            }
            let end = |start: u32| u64::from(start) + u64::from(m.size());
            if end(m.container_id()) > 1 << 32 || end(m.host_id()) > 1 << 32 {
                return Err(RuntimeError::spec(
                    format!("linux.{what}[{i}]"),
                    "range beyond 2^32",
                ));
            }
            for (j, o) in maps.iter().enumerate().take(i) {
                let overlap = |a: u32, b: u32| {
                    u64::from(a) < u64::from(b) + u64::from(o.size())
                        && u64::from(b) < u64::from(a) + u64::from(m.size())
                };
                if overlap(m.container_id(), o.container_id()) || overlap(m.host_id(), o.host_id())
                {
                    return Err(RuntimeError::spec(
                        format!("linux.{what}[{i}]"),
                        format!("overlaps linux.{what}[{j}]"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The host id that `id` inside the namespace maps to.
pub(crate) fn host_id(maps: &[LinuxIdMapping], id: u32) -> Option<u32> {
    maps.iter().find_map(|m| {
        let off = id.checked_sub(m.container_id())?;
        (off < m.size()).then(|| m.host_id() + off)
    })
}

fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Writes the child's uid and gid maps (as root of the parent namespace, which may map
/// any ids, and keep `setgroups` allowed).
pub(crate) fn write_maps(
    pid: i32,
    uid: &[LinuxIdMapping],
    gid: &[LinuxIdMapping],
) -> Result<(), RuntimeError> {
    for (file, maps) in [("uid_map", uid), ("gid_map", gid)] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, map_text(maps)).map_err(|cause| RuntimeError::WriteIdMap {
            path: path.into(),
            cause,
        })?;
    }
    Ok(())
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const AT_RECURSIVE: libc::c_uint = 0x8000;

/// A detached copy of the mount tree at `path` (recursive if asked), idmapped through
/// the user namespace `userns`.
pub(crate) fn idmapped_clone(
    path: &Path,
    userns: &impl AsFd,
    recursive: bool,
) -> Result<OwnedFd, SetupError> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    let tree =
        rmount::open_tree(rustix::fs::CWD, path, flags).map_err(|e| SetupError::CloneMount {
            path: path.into(),
            cause: e.into(),
        })?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_fd().as_raw_fd() as u64,
    };
    // SAFETY: mount_setattr reads `attr` (of the size passed) and changes only the
    // detached mount `tree`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | if recursive { AT_RECURSIVE } else { 0 },
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r != 0 {
        let cause = Cause::last_os_error();
        return Err(SetupError::Idmap(
            crate::needs::Need::IdmappedMounts.missing(format!(
                "idmapping {path:?} for the user namespace: {cause}"
            )),
        ));
    }
    Ok(tree)
}

/// A detached overlay of `lower_dirs` (topmost first), each idmapped through `userns`,
/// with `upper` (chowned to the namespace's root, `root_ids`) and `work`.
///
/// Kernels before 6.15 (Debian 12's 6.1 among them) refuse a *detached* mount as an
/// overlay layer (`overlayfs: failed to clone lowerpath`, EINVAL: the layer's mount must
/// belong to the mount namespace of the process making the overlay). So the overlay is
/// made on a thread of its own, in a private mount namespace of that thread's: the
/// idmapped clones are attached there (over their own layer directories, which nothing
/// else in that namespace uses), the overlay takes them by path and keeps private
/// copies of its own, and the namespace, with the clones, goes when the thread ends.
/// Nothing is ever attached in the host's mount namespace. Newer kernels take the same
/// path.
pub(crate) fn idmapped_overlay(
    lower_dirs: &[PathBuf],
    upper: &Path,
    work: &Path,
    userns: &(impl AsFd + Sync),
    root_ids: (u32, u32),
) -> Result<OwnedFd, SetupError> {
    if lower_dirs.is_empty() {
        return Err(SetupError::NoLayers);
    }
    std::os::unix::fs::chown(upper, Some(root_ids.0), Some(root_ids.1)).map_err(|e| {
        SetupError::Chown {
            path: upper.into(),
            cause: e.into(),
        }
    })?;
    std::thread::scope(|s| {
        s.spawn(|| overlay_in_private_namespace(lower_dirs, upper, work, userns))
            .join()
            .map_err(|_| SetupError::mount("the overlay thread", Cause::Other("panicked".into())))?
    })
}

/// [`idmapped_overlay`]'s thread: the steps in its own mount namespace.
fn overlay_in_private_namespace(
    lower_dirs: &[PathBuf],
    upper: &Path,
    work: &Path,
    userns: &impl AsFd,
) -> Result<OwnedFd, SetupError> {
    // 1. A mount namespace for this thread alone (unshare takes the thread's filesystem
    //    context along), where nothing propagates to or from the host.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| SetupError::mount("a private mount namespace for the overlay", e))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| SetupError::mount("making the overlay's mount namespace private", e))?;
    // 2. Each layer cloned, idmapped, and attached in this namespace.
    let mut layers = Vec::with_capacity(lower_dirs.len());
    for d in lower_dirs {
        let layer = idmapped_clone(d, userns, false)?;
        let target = rustix::fs::open(
            d,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| SetupError::OpenHostPath {
            path: d.clone(),
            cause: e.into(),
        })?;
        use rmount::MoveMountFlags as F;
        rmount::move_mount(
            &layer,
            "",
            &target,
            "",
            F::MOVE_MOUNT_F_EMPTY_PATH | F::MOVE_MOUNT_T_EMPTY_PATH,
        )
        .map_err(|e| SetupError::mount(&format!("attaching the idmapped layer {d:?}"), e))?;
        layers.push(layer);
    }
    // 3. The overlay, naming each attached layer by its fd.
    let what = "mounting the overlay root filesystem";
    let fs = rmount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(|e| SetupError::mount(what, e))?;
    let lower = layers
        .iter()
        .map(|l| format!("/proc/self/fd/{}", l.as_raw_fd()))
        .collect::<Vec<_>>()
        .join(":");
    let set = |key: &str, value: &str| {
        rmount::fsconfig_set_string(&fs, key, value).map_err(|e| SetupError::OverlayOption {
            key: key.into(),
            value: value.into(),
            cause: e.into(),
        })
    };
    set("lowerdir", &lower)?;
    set("upperdir", &upper.display().to_string())?;
    set("workdir", &work.display().to_string())?;
    rmount::fsconfig_create(&fs).map_err(|e| {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        SetupError::IdmappedOverlay(crate::needs::Need::OverlayOverIdmapped.missing(format!(
            "mounting the overlay root filesystem over idmapped layers: {}, kernel {}",
            Cause::from(e),
            kernel.trim()
        )))
    })?;
    rmount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
        .map_err(|e| SetupError::mount(what, e))
}

/// Whether the parent makes the container's sysfs: a sysfs shows the network
/// namespace it was mounted in, and only a process privileged over that namespace's
/// owner may mount it. When the container has no network namespace of its own to make
/// (it joins one by path, frun's bridge networking, or stays in the host's), the
/// namespace belongs to the host's side, so the parent mounts sysfs while in it.
pub(crate) fn parent_makes_sysfs(spec: &oci_spec::runtime::Spec) -> bool {
    !spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
        .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Network && n.path().is_none())
}

/// A detached sysfs of the calling thread's network namespace, with the spec mount's
/// flags (ro, nosuid, nodev, noexec) set on it.
pub(crate) fn detached_sysfs(m: &Mount) -> Result<OwnedFd, SetupError> {
    let failed = |e| SetupError::mount(&format!("mounting sysfs on {:?}", m.destination()), e);
    let fs = rmount::fsopen("sysfs", FsOpenFlags::FSOPEN_CLOEXEC).map_err(failed)?;
    rmount::fsconfig_create(&fs).map_err(failed)?;
    let mut attrs = MountAttrFlags::empty();
    for o in m.options().iter().flatten() {
        attrs |= match o.as_str() {
            "ro" => MountAttrFlags::MOUNT_ATTR_RDONLY,
            "nosuid" => MountAttrFlags::MOUNT_ATTR_NOSUID,
            "nodev" => MountAttrFlags::MOUNT_ATTR_NODEV,
            "noexec" => MountAttrFlags::MOUNT_ATTR_NOEXEC,
            _ => MountAttrFlags::empty(),
        };
    }
    rmount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs).map_err(failed)
}

/// Whether the parent premakes mount `m` (see [`premade_mounts`]).
pub(crate) fn premade(spec: &oci_spec::runtime::Spec, m: &Mount) -> bool {
    wants_idmap(m) || (m.typ().as_deref() == Some("sysfs") && parent_makes_sysfs(spec))
}

/// Detached mounts made by the parent for a container in a new user namespace: the
/// root (for an overlay root), then for each mount [`premade`] says, in the spec's
/// order, the idmapped bind mounts and the sysfs mounts (`sysfs`, made before the clone
/// in the right network namespace).
pub(crate) fn premade_mounts(
    rootfs: &RootfsSource,
    spec: &oci_spec::runtime::Spec,
    mut sysfs: std::collections::VecDeque<OwnedFd>,
    userns: &(impl AsFd + Sync),
    uid: &[LinuxIdMapping],
    gid: &[LinuxIdMapping],
) -> Result<Vec<OwnedFd>, SetupError> {
    let mounts = spec.mounts().clone().unwrap_or_default();
    let mut fds = Vec::new();
    if let RootfsSource::Overlay {
        lower_dirs,
        upper,
        work,
    } = rootfs
    {
        let unmapped = |field: &str| SetupError::spec(field, "does not map root (0)");
        let root = (
            host_id(uid, 0).ok_or_else(|| unmapped("linux.uidMappings"))?,
            host_id(gid, 0).ok_or_else(|| unmapped("linux.gidMappings"))?,
        );
        fds.push(idmapped_overlay(lower_dirs, upper, work, userns, root)?);
    }
    for m in mounts.iter().filter(|m| premade(spec, m)) {
        let dest = m.destination();
        let failed = |reason: String| SetupError::PremadeMount {
            destination: dest.clone(),
            reason,
        };
        if !wants_idmap(m) {
            fds.push(
                sysfs
                    .pop_front()
                    .ok_or_else(|| failed("no sysfs was made for it".into()))?,
            );
            continue;
        }
        let same = |a: &Option<Vec<LinuxIdMapping>>, b: &[LinuxIdMapping]| {
            a.as_deref().is_some_and(|a| a == b)
        };
        if !same(m.uid_mappings(), uid) || !same(m.gid_mappings(), gid) {
            return Err(failed(
                "idmapped mounts must use the container's own uid and gid mappings".into(),
            ));
        }
        let source = m
            .source()
            .as_ref()
            .ok_or_else(|| SetupError::NoBindSource {
                destination: dest.clone(),
            })?;
        let recursive = m.options().iter().flatten().any(|o| o == "rbind");
        fds.push(idmapped_clone(source, userns, recursive).map_err(|e| failed(e.to_string()))?);
    }
    Ok(fds)
}

/// A mount that is to be idmapped: a bind mount with its own mappings.
pub(crate) fn wants_idmap(m: &Mount) -> bool {
    m.uid_mappings().as_ref().is_some_and(|u| !u.is_empty())
        || m.gid_mappings().as_ref().is_some_and(|g| !g.is_empty())
}

/// What a container in a new user namespace mounts differently.
pub(crate) struct Userns {
    /// Detached mounts made by the parent ([`premade_mounts`]): the root
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
    /// The parent made the sysfs mounts ([`parent_makes_sysfs`]).
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
        if let (true, Some(src)) = (bind && !wants_idmap(m), m.source()) {
            paths.push(src.clone());
        }
    }
    let mut out = std::collections::HashMap::new();
    for p in paths {
        let fd = rfs::open(&p, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).map_err(|e| {
            SetupError::OpenHostPath {
                path: p.clone(),
                cause: e.into(),
            }
        })?;
        out.insert(p, fd);
    }
    Ok(out)
}

impl Userns {
    /// `path`, or the `/proc/self/fd` path of its fd opened earlier.
    pub(crate) fn host_path(&self, path: &Path) -> String {
        match self.host_paths.get(path) {
            Some(fd) => format!("/proc/self/fd/{}", fd.as_raw_fd()),
            None => path.display().to_string(),
        }
    }
}

impl Userns {
    pub(crate) fn next(&mut self, what: &str) -> R<OwnedFd> {
        self.premade
            .pop_front()
            .ok_or_else(|| SetupError::NoPremadeMount { what: what.into() })
    }
}

/// Attaches the detached mount `mnt` on `target` (an fd of the mount point).
pub(crate) fn attach(mnt: &OwnedFd, target: &impl AsFd, what: &str) -> R<()> {
    use rustix::mount::MoveMountFlags as F;
    rustix::mount::move_mount(
        mnt,
        "",
        target,
        "",
        F::MOVE_MOUNT_F_EMPTY_PATH | F::MOVE_MOUNT_T_EMPTY_PATH,
    )
    .map_err(|e| SetupError::mount(what, e))
}

/// Sends the premade mounts over `sock`, their count as the payload.
pub(crate) fn send_mounts(sock: &OwnedFd, fds: &[OwnedFd]) -> Result<(), SetupError> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    crate::fdpass::send_fds(sock, &raw, &(fds.len() as u32).to_ne_bytes())
        .map_err(|e| SetupError::SendMounts { cause: e.into() })
}

/// Receives what [`send_mounts`] sent, checking the count.
pub(crate) fn recv_mounts(sock: &OwnedFd) -> Result<Vec<OwnedFd>, SetupError> {
    let failed = |reason: String| SetupError::ReceiveMounts { reason };
    let (fds, payload) = crate::fdpass::recv_fds(sock).map_err(|e| failed(e.to_string()))?;
    let count = <[u8; 4]>::try_from(payload.as_slice())
        .map(u32::from_ne_bytes)
        .map_err(|_| failed(format!("a payload of {} bytes", payload.len())))?;
    if fds.len() != count as usize {
        return Err(failed(format!("expected {count}, got {}", fds.len())));
    }
    Ok(fds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxIdMappingBuilder;

    fn m(c: u32, h: u32, s: u32) -> LinuxIdMapping {
        LinuxIdMappingBuilder::default()
            .container_id(c)
            .host_id(h)
            .size(s)
            .build()
            .unwrap()
    }

    /// Root only. The idmapped overlay root: a layer's file owned by uid 0 is seen as the
    /// host id the namespace maps 0 to, and nothing is left mounted in the caller's mount
    /// namespace. On kernels before 6.15 (Debian 12's 6.1) this failed with EINVAL
    /// (`overlayfs: failed to clone lowerpath`) while the layers were handed to overlayfs
    /// detached; the VM job runs it there.
    #[test]
    fn idmapped_overlay_takes_its_layers_on_this_kernel() {
        if !rustix::process::geteuid().is_root() {
            assert!(
                std::env::var("CI").is_err(),
                "this test must run as root in CI"
            );
            eprintln!("SKIPPED: not root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let d = |n: &str| {
            let p = tmp.path().join(n);
            std::fs::create_dir(&p).unwrap();
            p
        };
        let (top, bottom, upper, work) = (d("l1"), d("l0"), d("upper"), d("work"));
        std::fs::write(bottom.join("from-bottom"), "b").unwrap();
        std::fs::write(top.join("from-top"), "t").unwrap();
        std::os::unix::fs::chown(top.join("from-top"), Some(7), Some(7)).unwrap();
        // A user namespace to map through: a child that unshares one and waits.
        let (r, w) = nix::unistd::pipe().unwrap();
        // SAFETY: the child calls only async-signal-safe functions (unshare, write,
        // pause) until it is killed.
        let child = match unsafe { nix::unistd::fork() }.unwrap() {
            // SAFETY: raw system calls on a buffer and an fd the child owns.
            nix::unistd::ForkResult::Child => unsafe {
                let ok = libc::unshare(libc::CLONE_NEWUSER) == 0;
                libc::write(w.as_raw_fd(), [ok as u8].as_ptr().cast(), 1);
                loop {
                    libc::pause();
                }
            },
            nix::unistd::ForkResult::Parent { child } => child,
        };
        drop(w);
        let mut ok = [0u8];
        nix::unistd::read(r.as_raw_fd(), &mut ok).unwrap();
        let maps = [oci_spec::runtime::LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(100000u32)
            .size(65536u32)
            .build()
            .unwrap()];
        let mountinfo = || {
            let mut v: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
                .unwrap()
                .lines()
                .map(|l| {
                    l.split_whitespace()
                        .skip(3)
                        .take(2)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            v.sort();
            v
        };
        let before = mountinfo();
        // The child goes however this test ends.
        struct Reap(nix::unistd::Pid);
        impl Drop for Reap {
            fn drop(&mut self) {
                let _ = nix::sys::signal::kill(self.0, nix::sys::signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(self.0, None);
            }
        }
        let reap = Reap(child);
        assert_eq!(ok[0], 1, "unshare(CLONE_NEWUSER) failed in the child");
        write_maps(child.as_raw(), &maps, &maps).unwrap();
        let ns = std::fs::File::open(format!("/proc/{child}/ns/user")).unwrap();
        let made = idmapped_overlay(
            &[top.clone(), bottom.clone()],
            &upper,
            &work,
            &ns,
            (100000, 100000),
        );
        drop(reap);
        let root = made.expect("the idmapped overlay");
        let stat = |name: &str| {
            rustix::fs::statat(&root, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).unwrap()
        };
        assert_eq!(stat("from-bottom").st_uid, 100000);
        assert_eq!(stat("from-top").st_uid, 100007);
        assert_eq!(
            stat(".").st_uid,
            100000,
            "the upper directory belongs to the namespace's root"
        );
        assert_eq!(
            mountinfo(),
            before,
            "the overlay or a layer was left mounted here"
        );
    }

    #[test]
    fn host_ids_follow_the_maps() {
        let maps = [m(0, 100000, 1000), m(1000, 5000, 1)];
        assert_eq!(host_id(&maps, 0), Some(100000));
        assert_eq!(host_id(&maps, 999), Some(100999));
        assert_eq!(host_id(&maps, 1000), Some(5000));
        assert_eq!(host_id(&maps, 1001), None);
        assert_eq!(map_text(&maps), "0 100000 1000\n1000 5000 1\n");
    }

    #[test]
    fn bad_mappings_are_named() {
        let ok = vec![m(0, 100000, 65536)];
        assert!(check_mappings(&ok, &ok).is_ok());
        assert!(check_mappings(&ok, &[])
            .unwrap_err()
            .to_string()
            .contains("gidMappings"));
        let overlap = vec![m(0, 100000, 10), m(5, 200000, 10)];
        assert_eq!(
            check_mappings(&overlap, &ok).unwrap_err().to_string(),
            "invalid container config: linux.uidMappings[1]: overlaps linux.uidMappings[0]"
        );
        let zero = vec![m(0, 1, 0)];
        assert!(check_mappings(&ok, &zero)
            .unwrap_err()
            .to_string()
            .contains("gidMappings[0]: size 0"));
    }
}
