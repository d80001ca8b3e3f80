//! What this host's kernel offers frun, for `frun info`: the cgroup layout and its
//! controllers, overlayfs, user namespaces, idmapped mounts and whether overlayfs takes
//! idmapped layers. Each probe does the real thing the runtime does (the layout read
//! the way [`crate::cgroup`] reads it, an idmapped clone and an overlay over it made
//! by the same functions `--uidmap` uses), on detached mounts and a throw-away user
//! namespace, so it leaves nothing behind and cannot disagree with a real start.

use libcgroups::common::{get_cgroup_setup, CgroupSetup};
use oci_spec::runtime::LinuxIdMappingBuilder;
use rustix::mount::{self as rmount, FsOpenFlags};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::cgroup::CGROUP_ROOT;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The OS error is in the message, not a `source()`: `{err:#}` prints it once.
    #[error("reading {path:?}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("finding the cgroup layout under {CGROUP_ROOT}: {0}")]
    Layout(String),
}

/// How the cgroup hierarchies are mounted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupLayout {
    /// Only v1 hierarchies.
    V1,
    /// v1 hierarchies hold the controllers; a cgroup2 mount (`unified`) beside them.
    Hybrid,
    /// One cgroup2 hierarchy.
    V2,
}

impl std::fmt::Display for CgroupLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CgroupLayout::V1 => "v1",
            CgroupLayout::Hybrid => "hybrid",
            CgroupLayout::V2 => "v2",
        })
    }
}

/// The cgroups frun's limits go into.
#[derive(Clone, Debug)]
pub struct Cgroups {
    pub layout: CgroupLayout,
    /// The controllers where frun puts limits: the v1 hierarchies' on v1 and hybrid
    /// hosts (as the cgroup code does), the root's `cgroup.controllers` on v2.
    pub controllers: Vec<String>,
    /// Whether the memory controller accounts swap (so a swap limit can be set): v1's
    /// `memory.memsw.*`, v2's `memory.swap.max` in the root's children. `None` when
    /// nothing shows it either way (v2 with no child cgroup that has memory on).
    pub swap_accounting: Option<bool>,
}

fn read(path: &Path) -> Result<String, ProbeError> {
    std::fs::read_to_string(path).map_err(|cause| ProbeError::Read {
        path: path.to_path_buf(),
        cause,
    })
}

/// The cgroup layout, as libcgroups (and so the cgroup code) sees it, and its controllers.
pub fn cgroups() -> Result<Cgroups, ProbeError> {
    let root = Path::new(CGROUP_ROOT);
    let layout = match get_cgroup_setup().map_err(|e| ProbeError::Layout(e.to_string()))? {
        CgroupSetup::Legacy => CgroupLayout::V1,
        CgroupSetup::Hybrid => CgroupLayout::Hybrid,
        CgroupSetup::Unified => CgroupLayout::V2,
    };
    if layout == CgroupLayout::V2 {
        let controllers: Vec<String> = read(&root.join("cgroup.controllers"))?
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let swap_accounting = if !controllers.iter().any(|c| c == "memory") {
            Some(false)
        } else {
            // The root cgroup has no memory.* files: look at its children that have
            // the memory controller on.
            std::fs::read_dir(root)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.join("memory.current").exists())
                .map(|p| p.join("memory.swap.max").exists())
                .next()
        };
        return Ok(Cgroups {
            layout: CgroupLayout::V2,
            controllers,
            swap_accounting,
        });
    }
    let mountinfo = read(Path::new("/proc/self/mountinfo"))?;
    let hierarchies = crate::cgroup::v1_hierarchies(&mountinfo);
    let mut controllers: Vec<String> = hierarchies.iter().flat_map(|(c, _)| c.clone()).collect();
    controllers.sort();
    let swap_accounting = hierarchies
        .iter()
        .find(|(c, _)| c.iter().any(|c| c == "memory"))
        .map(|(_, mount)| mount.join("memory.memsw.limit_in_bytes").exists());
    Ok(Cgroups {
        layout,
        controllers,
        swap_accounting: swap_accounting.or(Some(false)),
    })
}

impl Cgroups {
    /// Whether controller `c` is there for frun's limits, in the words of `frun info`.
    pub fn controller(&self, c: &str) -> Result<String, String> {
        if self.controllers.iter().any(|x| x == c) {
            Ok(format!("{c} controller on {}", self.layout))
        } else {
            Err(format!("no {c} controller on {}", self.layout))
        }
    }
}

/// Whether the kernel has overlayfs (asking for it loads the module, as a mount would).
pub fn overlay() -> Result<(), String> {
    rmount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)
        .map(drop)
        .map_err(|e| format!("fsopen(\"overlay\"): {e}"))
}

/// What `--uidmap` needs, tried in order; a step that could not be tried because an
/// earlier one failed says so.
#[derive(Debug)]
pub struct Idmap {
    /// A new user namespace, with ids mapped by root of this one.
    pub user_namespaces: Result<(), String>,
    /// `open_tree` + `mount_setattr(MOUNT_ATTR_IDMAP)` on a directory of the probed
    /// filesystem.
    pub idmapped_mounts: Result<(), String>,
    /// An overlay whose lower layer is such a detached idmapped mount (the container's
    /// root with `--uidmap`).
    pub overlay_over_idmapped: Result<(), String>,
}

/// Tries user namespaces, an idmapped mount of a fresh directory below `dir` and an
/// overlay over it, with the same functions `--uidmap` starts use. `dir` should be on
/// the filesystem of the image store. The temporary directory is removed afterwards.
pub fn idmap(dir: &Path) -> Idmap {
    let skipped = |what: &str| Err(format!("not tried: {what} failed"));
    let tmp = dir.join(format!(".frun-probe-{}", std::process::id()));
    let result = (|| {
        // 1. A process in a new user namespace, its ids mapped as `--uidmap 0:100000:65536`.
        let holder = match UsernsHolder::new() {
            Ok(h) => h,
            Err(e) => {
                return Idmap {
                    user_namespaces: Err(e),
                    idmapped_mounts: skipped("user namespaces"),
                    overlay_over_idmapped: skipped("user namespaces"),
                }
            }
        };
        let userns = match holder.map_and_open() {
            Ok(f) => f,
            Err(e) => {
                return Idmap {
                    user_namespaces: Err(e),
                    idmapped_mounts: skipped("user namespaces"),
                    overlay_over_idmapped: skipped("user namespaces"),
                }
            }
        };
        // 2. Three directories like a container's: a layer, an upper and a work dir.
        let (lower, upper, work) = (tmp.join("lower"), tmp.join("upper"), tmp.join("work"));
        for d in [&lower, &upper, &work] {
            if let Err(e) = std::fs::create_dir_all(d) {
                let e = Err(format!("creating {d:?}: {e}"));
                return Idmap {
                    user_namespaces: Ok(()),
                    idmapped_mounts: e.clone(),
                    overlay_over_idmapped: e,
                };
            }
        }
        // 3. The idmapped clone alone, then the overlay over such clones (dropping the
        // detached mounts unmounts them).
        let idmapped_mounts = crate::userns::idmapped_clone(&lower, &userns, false)
            .map(drop)
            .map_err(detail);
        let overlay_over_idmapped = match &idmapped_mounts {
            Ok(()) => crate::userns::idmapped_overlay(
                std::slice::from_ref(&lower),
                &upper,
                &work,
                &userns,
                (PROBE_HOST_ID, PROBE_HOST_ID),
            )
            .map(drop)
            .map_err(detail),
            Err(_) => skipped("idmapped mounts"),
        };
        Idmap {
            user_namespaces: Ok(()),
            idmapped_mounts,
            overlay_over_idmapped,
        }
    })();
    crate::cleanup::remove_dir_all(&tmp);
    result
}

/// What a probe found: the finding alone for a refusal (frun info prints the need's
/// texts beside it), the error for anything else.
fn detail(e: crate::SetupError) -> String {
    match e {
        crate::SetupError::Idmap(m) | crate::SetupError::IdmappedOverlay(m) => m.detail,
        e => e.to_string(),
    }
}

const PROBE_HOST_ID: u32 = 100_000;

/// A forked child that has made a user namespace of its own and waits (on a pipe) until
/// this is dropped; then it exits and is reaped.
struct UsernsHolder {
    pid: nix::unistd::Pid,
    /// Closed on drop: the child's read sees EOF and it exits.
    release: Option<std::os::fd::OwnedFd>,
}

impl UsernsHolder {
    fn new() -> Result<UsernsHolder, String> {
        use nix::unistd::{fork, pipe, ForkResult};
        let (ready_r, ready_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
        let (release_r, release_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
        // SAFETY: the child only makes raw system calls (unshare, write, read, _exit)
        // and allocates nothing, so forking a process that may have threads is sound.
        match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
            ForkResult::Child => {
                drop(ready_r);
                drop(release_w);
                let errno: i32 = match nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER) {
                    Ok(()) => 0,
                    Err(e) => e as i32,
                };
                let _ = nix::unistd::write(&ready_w, &errno.to_ne_bytes());
                let mut b = [0u8; 1];
                let _ = nix::unistd::read(release_r.as_raw_fd(), &mut b);
                // SAFETY: _exit ends this forked child without running the parent's
                // atexit handlers or destructors.
                unsafe { libc::_exit(0) }
            }
            ForkResult::Parent { child } => {
                drop(ready_w);
                drop(release_r);
                let holder = UsernsHolder {
                    pid: child,
                    release: Some(release_w),
                };
                let mut b = [0u8; 4];
                match nix::unistd::read(ready_r.as_raw_fd(), &mut b) {
                    Ok(4) => {}
                    r => return Err(format!("the probe's child did not report: {r:?}")),
                }
                match i32::from_ne_bytes(b) {
                    0 => Ok(holder),
                    errno => Err(format!(
                        "unshare(CLONE_NEWUSER): {}",
                        nix::errno::Errno::from_raw(errno)
                    )),
                }
            }
        }
    }

    /// Writes the child's maps (0:100000:65536 for uids and gids) and opens its namespace.
    fn map_and_open(&self) -> Result<std::fs::File, String> {
        let map = LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(PROBE_HOST_ID)
            .size(65536u32)
            .build()
            .map_err(|e| e.to_string())?;
        crate::userns::write_maps(self.pid.as_raw(), &[map], &[map])
            .map_err(|e| format!("{e} (mapping other ids needs root)"))?;
        let path = format!("/proc/{}/ns/user", self.pid);
        std::fs::File::open(&path).map_err(|e| format!("opening {path}: {e}"))
    }
}

impl Drop for UsernsHolder {
    fn drop(&mut self) {
        self.release.take();
        let _ = nix::sys::wait::waitpid(self.pid, None);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_read_error_says_the_os_error_once() {
        let e = super::read(std::path::Path::new("/nonexistent/frun-probe")).unwrap_err();
        let all = crate::error::chain(&e);
        assert_eq!(all.matches("No such file or directory").count(), 1, "{all}");
        assert!(all.contains("/nonexistent/frun-probe"), "{all}");
    }
}
