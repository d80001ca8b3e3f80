//! A container's cgroup, on cgroup v1, v2 and hybrid hosts (on a hybrid host the limits
//! live in the v1 hierarchies, as libcgroups has it).
//!
//! Paths are always absolute under frun's own parent (`/frun/<id>`, like Docker's
//! `/docker/<id>`): a relative path would land inside the calling process's cgroup.
//!
//! v2 goes through libcgroups throughout. On v1, frun finds the hierarchies itself, from
//! one read of `/proc/self/mountinfo` (libcgroups' v1 manager rereads and reparses it
//! twice for each of its twelve controllers: about a millisecond per container), and
//! creates, joins and removes the directories itself. Limits are applied by
//! libcgroups, except device rules and a pids limit alone, which frun writes the way
//! libcgroups' v1 controllers do (`Cgroup::apply`).
//!
//! Joining, v1: the container's process moves itself in by writing `0` to `tasks` in
//! every hierarchy (`SelfJoin`). A write of another process's pid to `cgroup.procs`
//! makes the kernel take its global threadgroup rwsem for writing, which waits for an
//! RCU grace period: 3 to 20 ms measured on this project's 2-core test VMs, the largest
//! single cost of a container start there. A thread that moves itself skips that lock
//! on kernels with "cgroup: Optimize single thread migration" (6.x; on older ones the
//! write works as well, it only waits as a pid write does). The process is still
//! single-threaded then, so the thread is the whole process.

use libcgroups::common::{
    create_cgroup_manager, get_cgroup_setup, AnyCgroupManager, CgroupConfig, CgroupManager,
    CgroupSetup, ControllerOpt,
};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{RuntimeError, SetupError};

pub(crate) const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The v1 controllers libcgroups manages, by their names in mountinfo's super options.
/// A hierarchy holding none of them (a named one such as `name=systemd`) is left alone.
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "hugetlb",
    "memory",
    "pids",
    "perf_event",
    "blkio",
    "net_prio",
    "net_cls",
    "freezer",
];

pub struct Cgroup {
    path: PathBuf,
    imp: Imp,
}

enum Imp {
    /// One directory per mounted v1 hierarchy that holds a controller of
    /// [`V1_CONTROLLERS`].
    V1(Vec<Hierarchy>),
    V2(AnyCgroupManager),
}

/// A v1 hierarchy and this cgroup's directory in it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Hierarchy {
    /// The controllers it holds, e.g. `["cpu", "cpuacct"]`.
    controllers: Vec<String>,
    /// Where it is mounted, e.g. `/sys/fs/cgroup/cpu,cpuacct`.
    mount: PathBuf,
    /// The cgroup's directory: `mount` + the cgroup path.
    dir: PathBuf,
    /// The file a process writes `0` to to join: `tasks` in v1, `cgroup.procs` in the
    /// hybrid host's cgroup2 hierarchy.
    join_file: &'static str,
}

impl Hierarchy {
    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// Open `tasks` files of a v1 cgroup, one per hierarchy: [`SelfJoin::join`] moves the
/// calling thread into the cgroup (see the module documentation). Made by the parent
/// (opening needs nothing the child lacks, but costs it nothing either), used by the
/// container's process before anything else.
pub(crate) struct SelfJoin {
    tasks: Vec<(PathBuf, OwnedFd)>,
}

impl SelfJoin {
    /// Moves the calling thread into the cgroup. Async-signal-safe apart from the error
    /// message: it runs in a freshly forked child.
    pub(crate) fn join(&self) -> Result<(), SetupError> {
        for (path, fd) in &self.tasks {
            // SAFETY: writes one byte from a static buffer to an fd this process owns.
            let n = unsafe { libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) };
            if n != 1 {
                return Err(SetupError::JoinCgroup {
                    path: path.clone(),
                    cause: crate::error::Cause::last_os_error(),
                });
            }
        }
        Ok(())
    }
}

pub(crate) fn err(path: &Path, reason: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Cgroup {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Checks that `path` is absolute and stays put (no `..`).
pub fn validate_path(path: &Path) -> Result<(), RuntimeError> {
    let ok = path.is_absolute()
        && path
            .components()
            .all(|c| !matches!(c, std::path::Component::ParentDir))
        && path.components().count() > 1;
    if ok {
        Ok(())
    } else {
        Err(err(
            path,
            "must be an absolute path below the cgroup root, without '..' (e.g. /frun/ID)",
        ))
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
pub(crate) fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The v1 hierarchies in a mountinfo text, as `(controllers, mount point)`: the first
/// mount of each (a hierarchy mounted again elsewhere, e.g. under a container's root,
/// shows up more than once), and only those holding a controller of [`V1_CONTROLLERS`].
pub(crate) fn v1_hierarchies(mountinfo: &str) -> Vec<(Vec<String>, PathBuf)> {
    let mut out: Vec<(Vec<String>, PathBuf)> = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split_whitespace();
        if post.next() != Some("cgroup") {
            continue;
        }
        let super_opts = post.nth(1).unwrap_or_default();
        let Some(mount_point) = pre.split_whitespace().nth(4) else {
            continue;
        };
        let controllers: Vec<String> = super_opts
            .split(',')
            .filter(|o| V1_CONTROLLERS.contains(o))
            .map(str::to_string)
            .collect();
        if controllers.is_empty() || out.iter().any(|(c, _)| *c == controllers) {
            continue;
        }
        out.push((controllers, PathBuf::from(unescape(mount_point))));
    }
    out
}

/// Where the cgroup2 hierarchy is mounted (a hybrid host's `unified`), from mountinfo's
/// text.
fn unified_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (pre, post) = line.split_once(" - ")?;
        (post.split_whitespace().next()? == "cgroup2").then(|| {
            pre.split_whitespace()
                .nth(4)
                .map(|m| PathBuf::from(unescape(m)))
        })?
    })
}

/// Copies `file` (`cpuset.cpus` or `cpuset.mems`) down from the hierarchy's root to
/// `dir` wherever it is empty: a task cannot join a cpuset without cpus or memory
/// nodes, and a new cpuset starts with neither (libcgroups does the same).
fn cpuset_fill(mount: &Path, dir: &Path, file: &str) -> Result<(), RuntimeError> {
    let read = |p: &Path| {
        std::fs::read_to_string(p.join(file)).map_err(|e| err(p, format!("reading {file}: {e}")))
    };
    let rel = dir.strip_prefix(mount).map_err(|e| err(dir, e))?;
    let mut current = mount.to_path_buf();
    let mut value = read(&current)?;
    for c in rel.components() {
        if value.trim().is_empty() {
            return Err(err(&current, format!("{file} is empty")));
        }
        current.push(c);
        let own = read(&current)?;
        if own.trim().is_empty() {
            write_file(&current.join(file), value.as_bytes())?;
        } else {
            value = own;
        }
    }
    Ok(())
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), RuntimeError> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(data))
        .map_err(|e| {
            err(
                path,
                format!("writing {:?}: {e}", String::from_utf8_lossy(data)),
            )
        })
}

/// The device rules libcgroups' v1 devices controller writes after the spec's own, for
/// every container (its `default_devices()`, then `default_allow_devices()`): the
/// minimal `/dev`, mknod of any node, the console, ptys, `/dev/ptmx` and tun.
const LIBCGROUPS_DEVICE_RULES: &[&str] = &[
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 5:0 rwm",
    "c 1:9 rwm",
    "c 1:8 rwm",
    "c *:* m",
    "b *:* m",
    "c 5:1 rwm",
    "c 136:* rwm",
    "c 5:2 rwm",
    "c 10:200 rwm",
];

/// Device rules and the pids limit, written as libcgroups' v1 `Devices` and `Pids`
/// controllers write them, for `resources` that hold nothing else.
fn apply_v1_native(
    hierarchies: &[Hierarchy],
    resources: &LinuxResources,
) -> Result<(), RuntimeError> {
    let dir_of = |controller: &str| {
        hierarchies
            .iter()
            .find(|h| h.has(controller))
            .map(|h| &h.dir)
            .ok_or_else(|| {
                err(
                    Path::new(CGROUP_ROOT),
                    format!(
                        "applying limits: cgroup {controller} is required to fulfill the \
                         request, but is not supported by this system"
                    ),
                )
            })
    };
    // Devices: always, for libcgroups' own rules.
    let devices = dir_of("devices")?;
    let open = |name: &str| {
        let path = devices.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map(|f| (path, f))
            .map_err(|e| err(devices, format!("opening {name}: {e}")))
    };
    let (mut allow, mut deny) = (open("devices.allow")?, open("devices.deny")?);
    let rules = resources
        .devices()
        .iter()
        .flatten()
        .map(|d| (d.allow(), d.to_string()));
    let defaults = LIBCGROUPS_DEVICE_RULES
        .iter()
        .map(|r| (true, r.to_string()));
    for (is_allow, rule) in rules.chain(defaults) {
        // One write is one rule: the files stay open for all of them.
        let (path, f) = if is_allow { &mut allow } else { &mut deny };
        f.write_all(rule.as_bytes())
            .map_err(|e| err(path, format!("writing {rule:?}: {e}")))?;
    }
    if let Some(pids) = resources.pids() {
        let limit = if pids.limit() > 0 {
            pids.limit().to_string()
        } else {
            "max".to_string()
        };
        write_file(&dir_of("pids")?.join("pids.max"), limit.as_bytes())?;
    }
    Ok(())
}

/// What becomes of a spec's swap limit, given the cgroup's memory files and the host's
/// swap. A kernel without swap accounting (`swapaccount=0`, or a build without it) has
/// no file for the limit, and writing it would fail the container's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SwapLimit {
    /// The file is there: the limit is written.
    Apply,
    /// No file and no swap on the host: there is nothing to limit.
    NothingToLimit,
    /// No file, but swap is on: the container may swap beyond its memory limit.
    CannotLimit,
}

/// Decides [`SwapLimit`] for the cgroup directory `dir` holding the memory controller's
/// files, whose swap file is `file` (`memory.swap.max` on v2, swap alone;
/// `memory.memsw.limit_in_bytes` on v1, memory plus swap), with `proc_swaps` the host's
/// `/proc/swaps` (host paths are parameters so that tests use a temp dir).
fn swap_limit(dir: &Path, file: &str, proc_swaps: &Path) -> SwapLimit {
    if dir.join(file).exists() {
        return SwapLimit::Apply;
    }
    // The first line of /proc/swaps is a header; each further line is an active swap.
    let swap_on = std::fs::read_to_string(proc_swaps)
        .map(|t| t.lines().skip(1).any(|l| !l.trim().is_empty()))
        .unwrap_or(false);
    if swap_on {
        SwapLimit::CannotLimit
    } else {
        SwapLimit::NothingToLimit
    }
}

/// `resources` without a swap limit the kernel cannot take (see [`swap_limit`]), saying
/// so: at debug level when there is no swap anyway, once as a warning when there is.
fn without_unlimitable_swap(
    resources: &LinuxResources,
    memory_dir: &Path,
    file: &str,
    proc_swaps: &Path,
) -> Option<LinuxResources> {
    let memory = resources.memory().as_ref()?;
    memory.swap()?;
    match swap_limit(memory_dir, file, proc_swaps) {
        SwapLimit::Apply => return None,
        SwapLimit::NothingToLimit => tracing::debug!(
            dir = %memory_dir.display(),
            "no swap accounting and no swap on this host: no swap limit to set"
        ),
        SwapLimit::CannotLimit => {
            static WARNED: std::sync::atomic::AtomicBool =
                std::sync::atomic::AtomicBool::new(false);
            if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                let missing = crate::needs::Need::SwapAccounting.missing(format!(
                    "swap is on but {file} is missing: the kernel does not account swap per cgroup"
                ));
                tracing::warn!("{missing}");
            }
        }
    }
    let mut memory = *memory;
    memory.set_swap(None);
    let mut out = resources.clone();
    out.set_memory(Some(memory));
    Some(out)
}

/// cgroup v2, no swap (the spec's memory plus swap equal to the limit): libcgroups 0.7
/// computes swap as 0 and then writes nothing for a 0, leaving `memory.swap.max` at
/// `max`, so a container meant to have no swap could swap without bound. frun writes
/// the 0 itself, in `dir` (the cgroup's directory).
fn v2_no_swap(dir: &Path, resources: &LinuxResources) -> Result<(), RuntimeError> {
    let Some(m) = resources.memory() else {
        return Ok(());
    };
    match (m.limit(), m.swap()) {
        (Some(limit), Some(swap)) if limit > 0 && swap == limit => {
            write_file(&dir.join("memory.swap.max"), b"0")
        }
        _ => Ok(()),
    }
}

/// Pids listed in `cgroup.procs` of `dir` and of the cgroups below it.
fn procs_below(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            procs_below(&e.path(), out);
        }
    }
}

/// Removes `dir` and the cgroups below it, deepest first.
fn rmdir_tree(dir: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)?.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            rmdir_tree(&e.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Removes the cgroup directory `dir` and those below it, killing what is inside.
fn remove_killing(dir: &Path) -> Result<(), RuntimeError> {
    // An empty cgroup without children goes at once (the usual case, the container's
    // processes having exited); the kernel refuses the rmdir of one that has either,
    // which are dealt with below.
    match std::fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    kill_below(dir);
    // Killed processes leave their cgroup as they exit, which takes a moment: a
    // container's init takes its pid namespace down first, and on a busy host that took
    // more than the 100 ms libcgroups allows (a `rm -f` failed with EBUSY in
    // tests/it/faults.rs). Retried with a growing wait, for up to 5 s, killing whatever
    // is still (or newly) there each time.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut delay = Duration::from_millis(10);
    loop {
        match rmdir_tree(dir) {
            Ok(()) => return Ok(()),
            Err(e) if std::time::Instant::now() >= deadline => {
                return Err(err(dir, format!("removing: {e}")));
            }
            Err(_) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(200));
                kill_below(dir);
            }
        }
    }
}

/// SIGKILLs every process in `dir` and below: by `cgroup.kill` where the kernel has it
/// (v2, Linux 5.14: the whole subtree at once, forks included), else pid by pid. A
/// process that is gone already is no failure.
fn kill_below(dir: &Path) {
    if std::fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    let mut pids = Vec::new();
    procs_below(dir, &mut pids);
    for pid in pids {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    }
}

impl Cgroup {
    /// A handle on the cgroup at `path`; nothing is created until [`Cgroup::add`] (or
    /// the runtime's own start, which uses `Cgroup::prepare`).
    pub fn open(path: &Path) -> Result<Cgroup, RuntimeError> {
        validate_path(path)?;
        let setup = get_cgroup_setup().map_err(|e| err(path, e))?;
        let imp = match setup {
            CgroupSetup::Legacy | CgroupSetup::Hybrid => {
                let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
                    .map_err(|e| err(path, format!("reading mountinfo: {e}")))?;
                let rel = path.strip_prefix("/").unwrap_or(path);
                let mut hierarchies: Vec<Hierarchy> = v1_hierarchies(&mountinfo)
                    .into_iter()
                    .map(|(controllers, mount)| Hierarchy {
                        dir: mount.join(rel),
                        controllers,
                        mount,
                        join_file: "tasks",
                    })
                    .collect();
                // On a hybrid host systemd tracks a unit's processes in the cgroup2
                // hierarchy (no controllers there): a cgroup of frun's in it too, so
                // that the end of a unit or session that started frun does not take
                // frun's processes and containers with it.
                if matches!(setup, CgroupSetup::Hybrid) {
                    if let Some(mount) = unified_mount(&mountinfo) {
                        hierarchies.push(Hierarchy {
                            dir: mount.join(rel),
                            controllers: Vec::new(),
                            mount,
                            join_file: "cgroup.procs",
                        });
                    }
                }
                Imp::V1(hierarchies)
            }
            CgroupSetup::Unified => Imp::V2(
                create_cgroup_manager(CgroupConfig {
                    cgroup_path: path.to_path_buf(),
                    systemd_cgroup: false,
                    container_name: path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                })
                .map_err(|e| err(path, e))?,
            ),
        };
        Ok(Cgroup {
            path: path.to_path_buf(),
            imp,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// v1: creates the cgroup in every hierarchy (what it has already is kept), applies
    /// `resources` while no process is inside, and opens it for [`SelfJoin::join`]. v2:
    /// nothing, and `None`: the parent adds the process with [`Cgroup::add`].
    pub(crate) fn prepare(
        &self,
        resources: Option<&LinuxResources>,
    ) -> Result<Option<SelfJoin>, RuntimeError> {
        let Imp::V1(hierarchies) = &self.imp else {
            return Ok(None);
        };
        self.create_v1(hierarchies)?;
        if let Some(r) = resources {
            self.apply(r)?;
        }
        let mut tasks = Vec::with_capacity(hierarchies.len());
        for h in hierarchies {
            let path = h.dir.join(h.join_file);
            // std opens with O_CLOEXEC: the container's program never sees these.
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| err(&h.dir, format!("opening tasks: {e}")))?;
            tasks.push((path, OwnedFd::from(f)));
        }
        Ok(Some(SelfJoin { tasks }))
    }

    fn create_v1(&self, hierarchies: &[Hierarchy]) -> Result<(), RuntimeError> {
        for h in hierarchies {
            std::fs::create_dir_all(&h.dir).map_err(|e| err(&h.dir, format!("creating: {e}")))?;
            if h.has("cpuset") {
                cpuset_fill(&h.mount, &h.dir, "cpuset.cpus")?;
                cpuset_fill(&h.mount, &h.dir, "cpuset.mems")?;
            }
        }
        Ok(())
    }

    /// Applies the limits: through libcgroups, except on v1 when there is nothing but
    /// device rules and a pids limit (frun's, podman's and containerd's defaults), which
    /// frun writes itself exactly as libcgroups' v1 controllers would
    /// ([`apply_v1_native`]). libcgroups' v1 manager costs a millisecond to make.
    fn apply(&self, resources: &LinuxResources) -> Result<(), RuntimeError> {
        if let Imp::V1(hierarchies) = &self.imp {
            let mut rest = resources.clone();
            rest.set_devices(None);
            rest.set_pids(None);
            if rest == LinuxResources::default() {
                return apply_v1_native(hierarchies, resources);
            }
        }
        // A swap limit where the kernel has no file for it is left out (and said).
        let (memory_dir, swap_file) = match &self.imp {
            Imp::V2(_) => (
                Path::new(CGROUP_ROOT).join(self.path.strip_prefix("/").unwrap_or(&self.path)),
                "memory.swap.max",
            ),
            Imp::V1(hierarchies) => (
                hierarchies
                    .iter()
                    .find(|h| h.has("memory"))
                    .map(|h| h.dir.clone())
                    .unwrap_or_default(),
                "memory.memsw.limit_in_bytes",
            ),
        };
        let trimmed =
            without_unlimitable_swap(resources, &memory_dir, swap_file, Path::new("/proc/swaps"));
        let resources = trimmed.as_ref().unwrap_or(resources);
        let opt = ControllerOpt {
            resources,
            // v1's `memory.oom_control` (with a memory section); v2 has no such switch.
            disable_oom_killer: resources
                .memory()
                .as_ref()
                .and_then(|m| m.disable_oom_killer())
                .unwrap_or(false),
            oom_score_adj: None,
            freezer_state: None,
        };
        let applied = match &self.imp {
            Imp::V2(m) => m
                .apply(&opt)
                .map_err(|e| e.to_string())
                .and_then(|()| v2_no_swap(&memory_dir, resources).map_err(|e| e.to_string())),
            // libcgroups' v1 manager finds the same directories [`Cgroup::open`] did
            // (the first mount of each controller), made by [`Cgroup::create_v1`].
            Imp::V1(_) => create_cgroup_manager(CgroupConfig {
                cgroup_path: self.path.clone(),
                systemd_cgroup: false,
                container_name: String::new(),
            })
            .map_err(|e| e.to_string())
            .and_then(|m| m.apply(&opt).map_err(|e| e.to_string())),
        };
        applied.map_err(|e| err(&self.path, format!("applying limits: {e}")))
    }

    /// Applies new limits to a cgroup that has processes in it (the OCI `update`).
    pub fn update(&self, resources: &LinuxResources) -> Result<(), RuntimeError> {
        self.apply(resources)
    }

    /// Whether this is a cgroup v2 (unified) cgroup.
    pub fn is_v2(&self) -> bool {
        matches!(self.imp, Imp::V2(_))
    }

    /// The directory holding `controller`'s files: on v1 the one of its hierarchy (if
    /// mounted), on v2 the cgroup's only directory.
    pub(crate) fn dir_for(&self, controller: &str) -> Option<PathBuf> {
        match &self.imp {
            Imp::V1(hierarchies) => hierarchies
                .iter()
                .find(|h| h.has(controller))
                .map(|h| h.dir.clone()),
            Imp::V2(_) => {
                Some(Path::new(CGROUP_ROOT).join(self.path.strip_prefix("/").unwrap_or(&self.path)))
            }
        }
    }

    /// Creates the cgroup (under every controller) with `pid` in it, then applies the
    /// limits.
    pub fn add(&self, pid: i32, resources: Option<&LinuxResources>) -> Result<(), RuntimeError> {
        match &self.imp {
            Imp::V1(hierarchies) => {
                self.create_v1(hierarchies)?;
                for h in hierarchies {
                    write_file(&h.dir.join("cgroup.procs"), pid.to_string().as_bytes())
                        .map_err(|e| err(&self.path, format!("adding pid {pid}: {e}")))?;
                }
            }
            Imp::V2(m) => m
                .add_task(Pid::from_raw(pid))
                .map_err(|e| err(&self.path, format!("adding pid {pid}: {e}")))?,
        }
        if let Some(resources) = resources {
            self.apply(resources)?;
        }
        Ok(())
    }

    /// Pids inside the cgroup (and the cgroups below it).
    pub fn pids(&self) -> Vec<i32> {
        match &self.imp {
            Imp::V1(hierarchies) => {
                let mut out = Vec::new();
                // Every process is in every hierarchy: one is enough (devices, as
                // libcgroups reads it, when mounted).
                if let Some(h) = hierarchies
                    .iter()
                    .find(|h| h.has("devices"))
                    .or(hierarchies.first())
                {
                    procs_below(&h.dir, &mut out);
                }
                out
            }
            Imp::V2(m) => m
                .get_all_pids()
                .map(|v| v.into_iter().map(|p| p.as_raw()).collect())
                .unwrap_or_default(),
        }
    }

    /// Removes the cgroup, killing whatever is still inside (nested cgroups too).
    ///
    /// The same on v1 (each hierarchy's directory) and v2 (the one directory): libcgroups'
    /// v2 `remove` gives killed processes ~100 ms to leave and never removes a nested
    /// cgroup (a container may make them), so it is not used.
    pub fn remove(&self) -> Result<(), RuntimeError> {
        match &self.imp {
            Imp::V2(_) => remove_killing(
                &Path::new(CGROUP_ROOT).join(self.path.strip_prefix("/").unwrap_or(&self.path)),
            ),
            Imp::V1(hierarchies) => hierarchies.iter().try_for_each(|h| remove_killing(&h.dir)),
        }
    }

    /// How many times the kernel's OOM killer killed a process in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let file = match &self.imp {
            Imp::V2(_) => Path::new(CGROUP_ROOT)
                .join(self.path.strip_prefix("/").unwrap_or(&self.path))
                .join("memory.events"),
            Imp::V1(hierarchies) => match hierarchies.iter().find(|h| h.has("memory")) {
                Some(h) => h.dir.join("memory.oom_control"),
                None => return 0,
            },
        };
        std::fs::read_to_string(file)
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    (k == "oom_kill").then(|| v.trim().parse().ok()).flatten()
                })
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cgroup path of this test's own, removed (with what is inside) when dropped.
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = Cgroup::open(&self.0).map(|c| c.remove());
        }
    }

    /// For tests that need root: `/frun-ut-NAME-PID` to use, or `None` (see
    /// [`crate::testing::root_or_skip`]).
    fn root_only(name: &str) -> Option<Cleanup> {
        if !crate::testing::root_or_skip() {
            return None;
        }
        Some(Cleanup(PathBuf::from(format!(
            "/frun-ut-{name}-{}",
            std::process::id()
        ))))
    }

    #[test]
    fn only_absolute_paths_below_the_root() {
        assert!(validate_path(Path::new("/frun/abc")).is_ok());
        assert!(validate_path(Path::new("frun/abc")).is_err());
        assert!(validate_path(Path::new("/")).is_err());
        assert!(validate_path(Path::new("/frun/../x")).is_err());
    }

    /// Root only, on v1 and hybrid hosts: frun's own writes of device rules and a pids
    /// limit leave a cgroup exactly as libcgroups' v1 manager leaves another.
    #[test]
    fn native_v1_limits_match_libcgroups() {
        use oci_spec::runtime::{
            LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxPidsBuilder, LinuxResourcesBuilder,
        };
        if matches!(get_cgroup_setup(), Ok(CgroupSetup::Unified)) {
            eprintln!("SKIPPED: a cgroup v2 host (frun writes v1 limits only)");
            return;
        }
        let Some(own) = root_only("cgroup") else {
            return;
        };
        let base = own.0.clone();
        let deny_all = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap();
        let mem = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(1)
            .access("r")
            .build()
            .unwrap();
        let cases = [
            LinuxResourcesBuilder::default()
                .devices(crate::spec::default_device_rules())
                .build()
                .unwrap(),
            LinuxResourcesBuilder::default()
                .devices(vec![deny_all, mem])
                .pids(LinuxPidsBuilder::default().limit(42).build().unwrap())
                .build()
                .unwrap(),
            LinuxResourcesBuilder::default()
                .pids(LinuxPidsBuilder::default().limit(0).build().unwrap())
                .build()
                .unwrap(),
        ];
        for (i, resources) in cases.iter().enumerate() {
            let ours = Cgroup::open(&base.join(format!("ours{i}"))).unwrap();
            ours.prepare(Some(resources)).unwrap();
            let theirs = Cgroup::open(&base.join(format!("theirs{i}"))).unwrap();
            let Imp::V1(hierarchies) = &theirs.imp else {
                unreachable!()
            };
            theirs.create_v1(hierarchies).unwrap();
            create_cgroup_manager(CgroupConfig {
                cgroup_path: theirs.path.clone(),
                systemd_cgroup: false,
                container_name: String::new(),
            })
            .unwrap()
            .apply(&ControllerOpt {
                resources,
                disable_oom_killer: false,
                oom_score_adj: None,
                freezer_state: None,
            })
            .unwrap();
            let read = |c: &Cgroup, controller: &str, file: &str| {
                let Imp::V1(h) = &c.imp else { unreachable!() };
                let dir = &h.iter().find(|h| h.has(controller)).unwrap().dir;
                std::fs::read_to_string(dir.join(file)).unwrap()
            };
            let ours_list = read(&ours, "devices", "devices.list");
            assert_eq!(ours_list, read(&theirs, "devices", "devices.list"));
            assert_eq!(
                read(&ours, "pids", "pids.max"),
                read(&theirs, "pids", "pids.max")
            );
            if i == 1 {
                assert!(ours_list.contains("c 1:1 r\n"), "{ours_list}");
                assert_eq!(read(&ours, "pids", "pids.max"), "42\n");
            }
        }
    }

    /// Root only, on this host's layout: the spec's memory plus swap lands in the real
    /// cgroup files, v2's `memory.swap.max` as swap alone (0 for "no swap", which
    /// libcgroups 0.7 left at max), v1's `memory.memsw.limit_in_bytes` as memory plus
    /// swap. Skipped where the kernel has no swap accounting (no file to check).
    #[test]
    fn swap_limits_land_in_the_cgroup_files() {
        use oci_spec::runtime::{LinuxMemoryBuilder, LinuxResourcesBuilder};
        let Some(own) = root_only("swap") else {
            return;
        };
        let v2 = matches!(get_cgroup_setup(), Ok(CgroupSetup::Unified));
        const MB32: i64 = 32 << 20;
        // (spec swap, v2 memory.swap.max, v1 memory.memsw.limit_in_bytes)
        let cases = [
            (2 * MB32, "33554432", "67108864"),
            (MB32, "0", "33554432"),
            (-1, "max", "9223372036854771712"),
        ];
        for (i, (swap, v2_want, v1_want)) in cases.into_iter().enumerate() {
            let cg = Cgroup::open(&own.0.join(format!("c{i}"))).unwrap();
            let mut sleeper = std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .unwrap();
            let r = LinuxResourcesBuilder::default()
                .memory(
                    LinuxMemoryBuilder::default()
                        .limit(MB32)
                        .swap(swap)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap();
            let added = cg.add(sleeper.id() as i32, Some(&r));
            let (dir, file, want) = match &cg.imp {
                Imp::V2(_) => (
                    Path::new(CGROUP_ROOT).join(cg.path.strip_prefix("/").unwrap()),
                    "memory.swap.max",
                    v2_want,
                ),
                Imp::V1(h) => (
                    h.iter().find(|h| h.has("memory")).unwrap().dir.clone(),
                    "memory.memsw.limit_in_bytes",
                    v1_want,
                ),
            };
            let got = std::fs::read_to_string(dir.join(file));
            let _ = sleeper.kill();
            let _ = sleeper.wait();
            added.unwrap();
            let Ok(got) = got else {
                eprintln!("SKIPPED: no {file} (no swap accounting on this kernel)");
                return;
            };
            assert_eq!(got.trim(), want, "spec swap {swap} (v2: {v2})");
        }
    }

    /// Root only: `remove` kills what is inside, nested cgroups included, and leaves
    /// nothing behind.
    #[test]
    fn remove_kills_what_is_inside_and_nested_cgroups() {
        let Some(own) = root_only("remove") else {
            return;
        };
        let path = own.0.clone();
        let cg = Cgroup::open(&path).unwrap();
        let mut outer = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let mut inner = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        cg.add(outer.id() as i32, None).unwrap();
        let nested = Cgroup::open(&path.join("nested")).unwrap();
        nested.add(inner.id() as i32, None).unwrap();
        let mut pids = cg.pids();
        pids.sort_unstable();
        let mut want = vec![outer.id() as i32, inner.id() as i32];
        want.sort_unstable();
        assert_eq!(pids, want);
        cg.remove().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(outer.wait().unwrap().signal(), Some(libc::SIGKILL));
        assert_eq!(inner.wait().unwrap().signal(), Some(libc::SIGKILL));
        match &cg.imp {
            Imp::V1(h) => {
                for h in h {
                    assert!(!h.dir.exists(), "{:?} left behind", h.dir);
                }
            }
            Imp::V2(_) => {
                let dir = Path::new(CGROUP_ROOT).join(path.strip_prefix("/").unwrap());
                assert!(!dir.exists(), "{dir:?} left behind");
            }
        }
        assert!(cg.pids().is_empty());
        // Asked by the test below to run on v2.
        if std::env::var_os("FRUN_UT_CGROUP_V2").is_some() {
            assert!(matches!(cg.imp, Imp::V2(_)), "not on v2");
        }
    }

    /// Root only, on a v1 or hybrid host: the test above again, in a mount namespace of
    /// its own where /sys/fs/cgroup is the cgroup2 hierarchy (the one a hybrid host has
    /// as `unified`), so that the v2 removal is proven here too (a v2 host runs the
    /// test above on v2 already).
    #[test]
    fn remove_kills_what_is_inside_and_nested_cgroups_on_v2_too() {
        if !crate::testing::root_or_skip() {
            return;
        }
        if matches!(get_cgroup_setup(), Ok(CgroupSetup::Unified)) {
            return; // the test above is the v2 one here
        }
        let out = std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec \"$@\"")
            .arg("sh")
            .arg(std::env::current_exe().unwrap())
            .args([
                "cgroup::tests::remove_kills_what_is_inside_and_nested_cgroups",
                "--exact",
                "--nocapture",
            ])
            .env("FRUN_UT_CGROUP_V2", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "{text}");
    }

    /// The swap limit against fake cgroup and /proc/swaps files: written where the file
    /// is, left out (the memory limit kept) where the kernel has none.
    #[test]
    fn swap_limit_is_left_out_only_where_the_kernel_has_no_file_for_it() {
        use oci_spec::runtime::{LinuxMemoryBuilder, LinuxResourcesBuilder};
        let tmp = tempfile::tempdir().unwrap();
        let (cg, swaps) = (tmp.path().join("cg"), tmp.path().join("swaps"));
        std::fs::create_dir(&cg).unwrap();
        let header = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";
        std::fs::write(&swaps, header).unwrap();
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(32 << 20)
                    .swap(64 << 20)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        for file in ["memory.swap.max", "memory.memsw.limit_in_bytes"] {
            // No file, no swap: nothing to limit, quietly.
            assert_eq!(swap_limit(&cg, file, &swaps), SwapLimit::NothingToLimit);
            let out = without_unlimitable_swap(&r, &cg, file, &swaps).unwrap();
            let m = out.memory().as_ref().unwrap();
            assert_eq!((m.limit(), m.swap()), (Some(32 << 20), None));
            // No file, swap on: cannot limit (a warning), still left out.
            std::fs::write(&swaps, format!("{header}/swapfile file 524284 0 -2\n")).unwrap();
            assert_eq!(swap_limit(&cg, file, &swaps), SwapLimit::CannotLimit);
            assert!(without_unlimitable_swap(&r, &cg, file, &swaps).is_some());
            // The file is there: the spec goes to libcgroups as it is.
            std::fs::write(cg.join(file), "max\n").unwrap();
            assert_eq!(swap_limit(&cg, file, &swaps), SwapLimit::Apply);
            assert!(without_unlimitable_swap(&r, &cg, file, &swaps).is_none());
            std::fs::remove_file(cg.join(file)).unwrap();
            std::fs::write(&swaps, header).unwrap();
        }
        // No swap limit asked: nothing to change.
        let plain = LinuxResourcesBuilder::default().build().unwrap();
        assert!(without_unlimitable_swap(&plain, &cg, "memory.swap.max", &swaps).is_none());
    }

    /// libcgroups turns the spec's memory plus swap into cgroup v2's swap alone
    /// (`memory.swap.max` = swap - limit), and [`v2_no_swap`] writes the 0 it skips:
    /// on fake v2 files.
    #[test]
    fn v2_swap_max_is_swap_alone() {
        use oci_spec::runtime::{LinuxMemoryBuilder, LinuxResourcesBuilder};
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("cgroup.controllers"), "memory").unwrap();
        for f in ["memory.max", "memory.swap.max", "memory.low"] {
            std::fs::write(tmp.path().join(f), "max").unwrap();
        }
        for (swap, want) in [(64i64 << 20, "33554432"), (32 << 20, "0"), (-1, "max")] {
            let r = LinuxResourcesBuilder::default()
                .memory(
                    LinuxMemoryBuilder::default()
                        .limit(32 << 20)
                        .swap(swap)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap();
            let opt = ControllerOpt {
                resources: &r,
                disable_oom_killer: false,
                oom_score_adj: None,
                freezer_state: None,
            };
            let m = libcgroups::v2::manager::Manager::new(tmp.path().into(), "/".into()).unwrap();
            std::fs::write(tmp.path().join("memory.swap.max"), "max").unwrap();
            m.apply(&opt).unwrap();
            if swap == 32 << 20 {
                // libcgroups alone leaves swap unlimited when there is to be none.
                let got = std::fs::read_to_string(tmp.path().join("memory.swap.max")).unwrap();
                assert_eq!(got.trim(), "max");
                // (A real cgroup file takes a write whole; this fake one is truncated.)
                std::fs::write(tmp.path().join("memory.swap.max"), "").unwrap();
            }
            v2_no_swap(tmp.path(), &r).unwrap();
            let got = std::fs::read_to_string(tmp.path().join("memory.swap.max")).unwrap();
            assert_eq!(got.trim(), want, "swap {swap}");
            let max = std::fs::read_to_string(tmp.path().join("memory.max")).unwrap();
            assert_eq!(max.trim(), "33554432");
        }
    }

    #[test]
    fn v1_hierarchies_from_mountinfo() {
        let mi = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 49 0:32 / /var/lib/x/root/sys/fs/cgroup/memory ro,relatime - cgroup cgroup rw,memory
51 31 0:39 / /sys/fs/cgroup/net\\040cls rw,relatime - cgroup cgroup rw,net_cls,net_prio
";
        let h = v1_hierarchies(mi);
        let names: Vec<String> = h.iter().map(|(c, _)| c.join(",")).collect();
        assert_eq!(
            names,
            ["cpu,cpuacct", "cpuset", "memory", "net_cls,net_prio"]
        );
        assert_eq!(h[0].1, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(h[2].1, PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(h[3].1, PathBuf::from("/sys/fs/cgroup/net cls"));
        assert_eq!(
            unified_mount(mi),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            unified_mount(&mi.replace("cgroup2 cgroup2", "tmpfs tmpfs")),
            None
        );
    }
}
