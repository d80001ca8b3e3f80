//! Helpers: a temp state root per test, running the binary, the registry environment,
//! waiting and reading, and a TCP proxy that injects network failures in front of a
//! real registry.
//!
//! The fixture is [`Frun`]: a private state root, run root and cgroup parent. Made
//! with [`Frun::checked`], its `Drop` also checks, when the test has not failed
//! already, that nothing is left behind (mounts, cgroups, container directories), so a
//! test need not repeat that check at its end.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use frun_runtime::testing::unavailable;

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The file's text; a missing or unreadable file fails the test, naming it.
pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {p:?}: {e}"))
}

/// The file's text, or "" while it does not exist (yet).
pub fn read_or_empty(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Retries `f` every 20 ms until it succeeds, or fails the test after `secs` with `what`
/// and the last error.
pub fn eventually_for<T>(secs: u64, what: &str, f: impl FnMut() -> Result<T, String>) -> T {
    settle(secs, f).unwrap_or_else(|e| panic!("timed out after {secs} s waiting for {what}: {e}"))
}

/// Retries `f` every 20 ms until it succeeds or `secs` have passed; then its last error
/// (for a check that reports rather than fails at once).
pub fn settle<T>(secs: u64, mut f: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if start.elapsed() > Duration::from_secs(secs) => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// [`eventually_for`] with 10 s (a detached server needs a moment to listen).
pub fn eventually<T>(f: impl FnMut() -> Result<T, String>) -> T {
    eventually_for(10, "success", f)
}

/// Polls `probe` every 20 ms until it gives a value, or fails the test after `secs`.
pub fn wait_for<T>(secs: u64, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    eventually_for(secs, what, || probe().ok_or_else(|| "not yet".to_string()))
}

/// `GET path` over HTTP/1.0 to `addr`: the body of a 2xx answer, else the answer (or the
/// connection's error) as the error.
pub fn http_get(addr: &str, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    if !out.starts_with("HTTP/1.") || !out[9..].starts_with('2') {
        return Err(format!("not a 2xx answer: {out}"));
    }
    Ok(out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
}

/// A TCP port on 127.0.0.1 that was free a moment ago, below the kernel's ephemeral
/// range: a port the kernel picked itself (`bind(:0)`) is one it also hands to outgoing
/// connections, so a client socket (a health probe, a pull) could take it between the
/// pick and the test's own bind ("Address already in use" in the metrics test).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let (from, span) = (low.saturating_sub(12000).max(1024), low.min(12000));
    // Where to start: this process and the clock, so that parallel test processes do
    // not try the same ports in the same order.
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    for _ in 0..span {
        let n = NEXT.fetch_add(7919, Ordering::Relaxed).wrapping_add(seed);
        let port = (from + n % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {from}..{}", from + span)
}

/// A process a test started, killed and reaped however the test ends.
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// SIGKILL to `pid` (one this test started, or a process of its containers); a pid
/// already gone is not an error.
pub fn kill9(pid: i32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
}

/// The mount table of this (the host's) mount namespace, one line per mount.
pub fn mountinfo() -> BTreeSet<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .map(String::from)
        .collect()
}

/// The value of a variable that `scripts/registry.sh` exports, or `None` after
/// reporting why the test cannot run.
pub fn test_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            unavailable(&format!(
                "{var} is not set: run the tests through scripts/test.sh, which starts the test registries"
            ));
            None
        }
    }
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The registry at `FRUN_TEST_REGISTRY`, if the test run has one, and root.
pub fn registry() -> Option<String> {
    if !is_root() {
        unavailable("not root: unpacking keeps ownership and device nodes, which needs root");
        return None;
    }
    test_env("FRUN_TEST_REGISTRY")
}

/// A private state root, run root, cgroup parent and Docker config directory. On drop
/// it kills what its containers left running and removes its cgroups, even when the
/// test failed.
pub struct Frun {
    pub dir: tempfile::TempDir,
    pub envs: Vec<(String, String)>,
    /// Absolute cgroup parent of this test's containers, e.g. `/frun-test-1a2b3c`.
    pub cgroup_parent: String,
    /// This test's bridge (`FRUN_BRIDGE`); its nftables table is `frun_<bridge>`.
    pub bridge: String,
    /// With [`Frun::checked`]: the mount table when the test began, for the check on
    /// drop that nothing is left.
    check: Option<BTreeSet<String>>,
}

impl Frun {
    pub fn new() -> Frun {
        let dir = tempfile::Builder::new()
            .prefix("frun-test-")
            .tempdir()
            .expect("temp dir");
        let tag = dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("frun-test-")
            .to_string();
        // A bridge and subnet of its own: tests run at once, and two roots sharing a
        // bridge would hand out the same addresses and remove it under each other.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 250 + 1;
        let bridge = format!("frunt{n}");
        Frun {
            dir,
            envs: vec![
                ("FRUN_BRIDGE".into(), bridge.clone()),
                ("FRUN_SUBNET".into(), format!("10.89.{n}.0/24")),
            ],
            cgroup_parent: format!("/frun-test-{tag}"),
            bridge,
            check: None,
        }
    }

    /// This fixture, checking on drop (unless the test failed already) that its
    /// containers left nothing behind: see [`Frun::leftovers`].
    pub fn checked(mut self) -> Frun {
        self.check = Some(mountinfo());
        self
    }

    /// Mounts that appeared since the test began and are this test's: those naming its
    /// directory, and any other not under a scratch root that tools running beside the
    /// tests use (another test's or helper's `/tmp`, `/var/tmp`, `/run`, `/var/cache`,
    /// `/var/lib/containers` mounts come and go on their own).
    pub fn new_mounts(&self) -> Vec<String> {
        let ours = self.dir.path().to_string_lossy().into_owned();
        let before = self.check.clone().unwrap_or_default();
        mountinfo()
            .difference(&before)
            .filter(|l| {
                let mp = l.split(' ').nth(4).unwrap_or_default();
                let foreign = [
                    "/tmp/",
                    "/var/tmp/",
                    "/run/",
                    "/var/cache/",
                    "/var/lib/containers/",
                ]
                .iter()
                .any(|p| mp.starts_with(p));
                !foreign || l.contains(&ours)
            })
            .cloned()
            .collect()
    }

    /// Container directories in this test's state root.
    pub fn container_dirs(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.root().join("containers"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect()
    }

    /// What this test's containers left: mounts, cgroups, container directories.
    pub fn leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mounts = self.new_mounts();
        if !mounts.is_empty() {
            out.push(format!("mounts left behind: {mounts:#?}"));
        }
        let cgroups = self.child_cgroups();
        if !cgroups.is_empty() {
            out.push(format!("cgroups left behind: {cgroups:?}"));
        }
        let dirs = self.container_dirs();
        if !dirs.is_empty() {
            out.push(format!("container directories left: {dirs:?}"));
        }
        out
    }

    /// Fails the test if its containers left anything (see [`Frun::leftovers`]).
    pub fn assert_clean(&self) {
        let left = self.leftovers();
        assert!(left.is_empty(), "{}", left.join("\n"));
    }

    /// Cgroup directories below this test's cgroup parent (every hierarchy), the
    /// parent itself excluded: what its containers left. (`PARENT/supervisor`, the
    /// cgroup of frun's own processes, the supervisor and the containers' holders, is
    /// frun's and stays.)
    pub fn child_cgroups(&self) -> Vec<PathBuf> {
        self.cgroup_dirs()
            .iter()
            .flat_map(|d| {
                let own = d.join("supervisor");
                walk_dirs(d).into_iter().skip(1).filter(move |p| *p != own)
            })
            .collect()
    }

    /// The cgroup directories of this test under every mounted hierarchy.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let rel = self.cgroup_parent.trim_start_matches('/');
        let mut out = Vec::new();
        for e in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let d = e.path().join(rel);
            if d.is_dir() {
                out.push(d);
            }
        }
        let unified = Path::new("/sys/fs/cgroup").join(rel);
        if unified.join("cgroup.procs").exists() {
            out.push(unified);
        }
        out
    }

    /// Pids still inside this test's cgroups.
    pub fn cgroup_pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for d in self.cgroup_dirs() {
            for f in walk_dirs(&d) {
                let text = std::fs::read_to_string(f.join("cgroup.procs")).unwrap_or_default();
                pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
        pids.sort();
        pids.dedup();
        pids
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn docker_config(&self) -> PathBuf {
        self.dir.path().join("docker")
    }

    pub fn env(mut self, k: &str, v: &str) -> Frun {
        self.envs.push((k.into(), v.into()));
        self
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_frun"));
        c.arg("--root")
            .arg(self.root())
            .arg("--run-root")
            .arg(self.dir.path().join("run"))
            .arg("--cgroup-parent")
            .arg(&self.cgroup_parent)
            .args(args)
            .env("DOCKER_CONFIG", self.docker_config())
            .env_remove("FRUN_REGISTRY_MIRROR")
            .env_remove("FRUN_MAX_LAYER_SIZE")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        for (k, v) in &self.envs {
            c.env(k, v);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run frun")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "frun {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Runs and asserts failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "frun {args:?} should have failed; stdout:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).expect("utf-8 output")
    }

    /// `frun images --format json`.
    pub fn images(&self) -> Vec<serde_json::Value> {
        let out = self.ok(&["images", "--format", "json"]);
        serde_json::from_str::<serde_json::Value>(&out)
            .expect("images json")
            .as_array()
            .expect("array")
            .clone()
    }

    /// The store's record of `reference` (the on-disk index, read as the runtime will).
    pub fn record(&self, reference: &str) -> serde_json::Value {
        let data = std::fs::read(self.root().join("images.json")).expect("images.json");
        let all: Vec<serde_json::Value> = serde_json::from_slice(&data).expect("json");
        all.into_iter()
            .find(|i| i["reference"] == reference)
            .unwrap_or_else(|| panic!("no record of {reference}"))
    }

    /// Unpacked layer directories of `reference`, bottom first.
    pub fn layer_dirs(&self, reference: &str) -> Vec<PathBuf> {
        self.record(reference)["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| {
                let diff = l["diff_id"].as_str().unwrap();
                self.root()
                    .join("layers/sha256")
                    .join(diff.strip_prefix("sha256:").unwrap())
            })
            .collect()
    }

    /// Entries left in the store's scratch areas (must be empty after any pull ends).
    pub fn scratch(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for d in ["layers/tmp"] {
            if let Ok(rd) = std::fs::read_dir(self.root().join(d)) {
                out.extend(rd.flatten().map(|e| e.path()));
            }
        }
        out
    }
}

impl Drop for Frun {
    fn drop(&mut self) {
        // The check first, the clean-up next (it runs either way), the verdict last.
        let left = match &self.check {
            Some(_) if !std::thread::panicking() => self.leftovers(),
            _ => Vec::new(),
        };
        // Whatever a failed test left running: only pids in this test's own cgroups.
        for pid in self.cgroup_pids() {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid).unwrap(),
                rustix::process::Signal::KILL,
            );
        }
        // And what it left mounted in its own directory (a container's netns file,
        // bind-mounted): the temp dir's removal cannot take a mount point with it.
        umount_below(self.dir.path());
        for d in self.cgroup_dirs() {
            let mut dirs = walk_dirs(&d);
            dirs.reverse();
            for sub in dirs {
                for _ in 0..50 {
                    if std::fs::remove_dir(&sub).is_ok() || !sub.exists() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
        }
        assert!(left.is_empty(), "{}", left.join("\n"));
    }
}

/// `dir` and every directory below it, parents first.
pub fn walk_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let d = out[i].clone();
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.push(e.path());
            }
        }
        i += 1;
    }
    out
}

/// Files (not directories) below `dir`, relative.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out
}

/// A TCP proxy in front of a real registry that can slow the flow down and cut it.
pub struct Proxy {
    pub addr: String,
    /// Bytes sent from the registry to the client so far.
    pub sent: Arc<AtomicU64>,
    /// While set, the proxy forwards; when cleared, every connection is dropped.
    pub alive: Arc<AtomicBool>,
    /// Cut every connection once it has carried this many bytes from the registry,
    /// this many times (then pass through).
    cut: Arc<(AtomicU64, AtomicU64)>,
    /// Bytes per 10 ms from the registry, 0 for unlimited.
    rate: Arc<AtomicU64>,
}

impl Proxy {
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().unwrap().to_string();
        let p = Proxy {
            addr,
            sent: Arc::default(),
            alive: Arc::new(AtomicBool::new(true)),
            cut: Arc::default(),
            rate: Arc::default(),
        };
        let (sent, alive, cut, rate) = (
            p.sent.clone(),
            p.alive.clone(),
            p.cut.clone(),
            p.rate.clone(),
        );
        let upstream = upstream.to_string();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !alive.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (sent, alive, cut, rate) =
                    (sent.clone(), alive.clone(), cut.clone(), rate.clone());
                std::thread::spawn(move || relay(client, server, sent, alive, cut, rate));
            }
        });
        p
    }

    /// Cuts the next `times` connections after `after` bytes each.
    pub fn cut_after(&self, after: u64, times: u64) {
        self.cut.0.store(after, Ordering::SeqCst);
        self.cut.1.store(times, Ordering::SeqCst);
    }

    pub fn throttle(&self, bytes_per_10ms: u64) {
        self.rate.store(bytes_per_10ms, Ordering::SeqCst);
    }

    pub fn kill(&self) {
        self.alive.store(false, Ordering::SeqCst);
    }

    pub fn revive(&self) {
        self.alive.store(true, Ordering::SeqCst);
    }
}

fn relay(
    mut client: TcpStream,
    mut server: TcpStream,
    sent: Arc<AtomicU64>,
    alive: Arc<AtomicBool>,
    cut: Arc<(AtomicU64, AtomicU64)>,
    rate: Arc<AtomicU64>,
) {
    let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        while let Ok(n) = c2.read(&mut buf) {
            if n == 0 || s2.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = s2.shutdown(Shutdown::Write);
    });
    let mut carried = 0u64;
    let mut buf = [0u8; 16384];
    loop {
        let r = rate.load(Ordering::SeqCst);
        let want = if r == 0 {
            buf.len()
        } else {
            (r as usize).min(buf.len())
        };
        let n = match server.read(&mut buf[..want]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let limit = cut.0.load(Ordering::SeqCst);
        let times = cut.1.load(Ordering::SeqCst);
        if !alive.load(Ordering::SeqCst) {
            break;
        }
        if times > 0 && limit > 0 && carried + n as u64 > limit {
            let keep = (limit - carried) as usize;
            let _ = client.write_all(&buf[..keep]);
            sent.fetch_add(keep as u64, Ordering::SeqCst);
            cut.1.fetch_sub(1, Ordering::SeqCst);
            break;
        }
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
        carried += n as u64;
        sent.fetch_add(n as u64, Ordering::SeqCst);
        if r != 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
}

// --- frun-oci: bundles, the runc-style CLI, podman and containerd driving it (shared by
// oci.rs and oci_spec.rs) ---

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `dir/frun-oci`, a symlink to the frun binary.
pub fn oci_bin(dir: &Path) -> PathBuf {
    let link = dir.join("frun-oci");
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_frun"), &link).expect("symlink frun-oci");
    }
    link
}

/// Mount points of this (the host's) mount namespace below `dir`.
pub fn mounts_below(dir: &Path) -> Vec<String> {
    let d = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| m == &d || m.starts_with(&format!("{d}/")))
        .collect()
}

/// The runc-style CLI on a private state root.
pub struct Oci {
    pub f: Frun,
    pub bin: PathBuf,
    pub root: PathBuf,
}

impl Oci {
    pub fn new() -> Oci {
        let f = Frun::new();
        let bin = oci_bin(f.dir.path());
        let root = f.dir.path().join("oci-state");
        Oci { f, bin, root }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(&self.root).args(args);
        c.stdin(Stdio::null()).env_remove("RUST_LOG");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run frun-oci")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "frun-oci {args:?} failed ({}):\n{}",
            out.status,
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "frun-oci {args:?} should have failed:\n{}",
            text(&out.stdout)
        );
        text(&out.stderr)
    }

    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state JSON")
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap().to_string()
    }

    /// `create`, with the container's stdio on files (a pipe would stay open as long as
    /// the container runs).
    pub fn create(&self, bundle: &Path, id: &str, out: &Path) -> i32 {
        let pid_file = self.f.dir.path().join(format!("{id}.pid"));
        let log = std::fs::File::create(out).unwrap();
        let status = self
            .cmd(&["create", "--bundle"])
            .arg(bundle)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .status()
            .unwrap();
        assert!(status.success(), "create {id}: {}", read_or_empty(out));
        read_or_empty(&pid_file).trim().parse().expect("pid file")
    }
}

/// A bundle unpacked by umoci from the test image layout of test/busybox, with `args` as
/// the process, no terminal and `cgroup` as cgroupsPath (None: leave it unset).
pub fn bundle(f: &Frun, name: &str, args: &[&str], cgroup: Option<&str>) -> Option<PathBuf> {
    bundle_of(f, "test/busybox", name, args, cgroup)
}

/// [`bundle`] from the test image `image` (e.g. `test/checker`).
pub fn bundle_of(
    f: &Frun,
    image: &str,
    name: &str,
    args: &[&str],
    cgroup: Option<&str>,
) -> Option<PathBuf> {
    if !is_root() {
        unavailable("not root: containers need root");
        return None;
    }
    let images = test_env("FRUN_TEST_IMAGES")?;
    if !have("umoci") {
        unavailable("umoci is not installed (scripts/test.sh installs it)");
        return None;
    }
    let dir = f.dir.path().join(name);
    let out = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{images}/oci/{image}:latest"))
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "umoci unpack: {}", text(&out.stderr));
    let config = dir.join("config.json");
    let mut spec: Value = serde_json::from_str(&read_or_empty(&config)).unwrap();
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = args.iter().map(|a| Value::from(*a)).collect();
    match cgroup {
        Some(c) => spec["linux"]["cgroupsPath"] = c.into(),
        None => {
            spec["linux"].as_object_mut().unwrap().remove("cgroupsPath");
        }
    }
    std::fs::write(&config, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    Some(dir)
}

/// Kills what is left in a cgroup (relative to every hierarchy) and removes it, on drop.
/// Kills what is left in the cgroup `/<path>` and removes it on drop; also its parent,
/// when the parent did not exist before the guard (frun-oci's default `/frun-oci`).
pub struct CgroupGuard(String, Vec<PathBuf>);

impl CgroupGuard {
    pub fn new(path: String) -> CgroupGuard {
        let parent = Path::new(&path)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let made_by_us = std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join(&parent))
            .filter(|p| !parent.as_os_str().is_empty() && !p.exists())
            .collect();
        CgroupGuard(path, made_by_us)
    }
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        for e in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let d = e.path().join(&self.0);
            for pid in read_or_empty(&d.join("cgroup.procs")).lines() {
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            for _ in 0..50 {
                if !d.exists() || std::fs::remove_dir(&d).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Only a parent that this test brought into being, and only if empty.
        for p in &self.1 {
            let _ = std::fs::remove_dir(p);
        }
    }
}

pub fn alive(pid: i32) -> bool {
    let stat = read_or_empty(Path::new(&format!("/proc/{pid}/stat")));
    !stat.is_empty() && !stat.contains(") Z ")
}

/// Unmounts everything below `dir`, deepest first (what podman or containerd left).
pub fn umount_below(dir: &Path) {
    let mut ms = mounts_below(dir);
    ms.sort();
    for m in ms.iter().rev() {
        let c = std::ffi::CString::new(m.as_str()).unwrap();
        // SAFETY: umount2 on a NUL-terminated path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// podman with all of its state in the test's temp dir, frun-oci as its runtime (state
/// in `oci-state/`), cgroupfs under the test's cgroup parent, no network.
pub struct Podman {
    pub f: Frun,
    pub bin: PathBuf,
}

impl Podman {
    pub fn new() -> Podman {
        let f = Frun::new();
        let d = f.dir.path();
        for sub in ["net", "copy", "tmp", "wrap"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        // podman passes no --root to a runtime it does not know (and its --runtime-flag
        // does not reach the clean-up it runs when a container exits): a wrapper named
        // frun-oci gives frun-oci the test's state root.
        let bin = d.join("wrap/frun-oci");
        std::fs::write(
            &bin,
            format!(
                "#!/bin/sh\nexec {} --root {} \"$@\"\n",
                oci_bin(d).display(),
                d.join("oci-state").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        std::fs::write(
            d.join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"none\"\nimage_copy_tmp_dir = \"{0}/copy\"\n\
                 runtime_supports_json = [\"frun-oci\"]\n[network]\nnetwork_config_dir = \"{0}/net\"\n",
                d.display()
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{0}/proot\"\nrunroot = \"{0}/prun\"\n",
                d.display()
            ),
        )
        .unwrap();
        std::fs::write(d.join("registries.conf"), "").unwrap();
        Podman { f, bin }
    }

    pub fn oci_state(&self) -> PathBuf {
        self.f.dir.path().join("oci-state")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let d = self.f.dir.path();
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", d.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", d.join("registries.conf"))
            .arg("--root")
            .arg(d.join("proot"))
            .arg("--runroot")
            .arg(d.join("prun"))
            .args([
                "--storage-driver",
                "overlay",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "none",
            ])
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .arg("--runtime")
            .arg(&self.bin)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run podman")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args:?} failed ({}):\n{}",
            out.status,
            text(&out.stderr)
        );
        text(&out.stdout)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self
            .cmd(&["rm", "--all", "--force", "--time", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        umount_below(self.f.dir.path());
    }
}

/// Container ids frun-oci holds state for.
pub fn oci_ids(root: &Path) -> Vec<String> {
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// A private containerd (root, state, socket in the test's temp dir; CRI off) in a mount
/// namespace of its own with a tmpfs on /run, where containerd 1.6 and its shims keep
/// sockets and FIFOs at fixed paths: nothing of it shows on the host, and its mounts go
/// with it.
pub struct Containerd {
    pub f: Frun,
    pub bin: PathBuf,
    pub sock: PathBuf,
    daemon: Option<std::process::Child>,
}

impl Containerd {
    pub fn start() -> Containerd {
        let f = Frun::new();
        let d = f.dir.path().to_path_buf();
        let bin = oci_bin(&d);
        let sock = d.join("ctd.sock");
        for sub in ["ctd-root", "ctd-state", "ctd-opt", "fifo"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let config = d.join("containerd.toml");
        std::fs::write(
            &config,
            format!(
                r#"version = 2
root = "{0}/ctd-root"
state = "{0}/ctd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{1}"
[ttrpc]
  address = "{1}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{0}/ctd-opt"
"#,
                d.display(),
                sock.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let daemon = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs -o mode=755 frun-test-run /run && exec containerd --config {}",
                config.display()
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let c = Containerd {
            f,
            bin,
            sock,
            daemon: Some(daemon),
        };
        wait_for(20, "containerd to answer", || {
            c.ctr(&["version"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success()
                .then_some(())
        });
        c
    }

    pub fn ctr(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(&self.sock)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.ctr(args).output().expect("run ctr")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ctr {args:?} failed ({}):\n{}\ncontainerd log:\n{}",
            out.status,
            text(&out.stderr),
            read_or_empty(&self.f.dir.path().join("containerd.log"))
        );
        text(&out.stdout)
    }

    pub fn fifo_dir(&self) -> String {
        self.f.dir.path().join("fifo").display().to_string()
    }

    /// The frun-oci state root the shim passes (`/run/containerd/runc/NAMESPACE`),
    /// seen through the daemon's mount namespace.
    pub fn oci_state(&self) -> PathBuf {
        let pid = self.daemon.as_ref().unwrap().id();
        PathBuf::from(format!("/proc/{pid}/root/run/containerd/runc/default"))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let ids = self.run(&["containers", "ls", "-q"]);
        for id in text(&ids.stdout).lines() {
            for args in [
                &["tasks", "kill", "-s", "KILL", id][..],
                &["tasks", "delete", "-f", id],
                &["containers", "delete", id],
            ] {
                let _ = self
                    .ctr(args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        if let Some(mut d) = self.daemon.take() {
            let pid = nix::unistd::Pid::from_raw(d.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while d.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = d.kill();
            let _ = d.wait();
        }
        // Shims this daemon started outlive it: they name its socket on their command line.
        let sock = self.sock.display().to_string();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            if args
                .first()
                .is_some_and(|a| a.ends_with(b"containerd-shim-runc-v2"))
                && args.contains(&sock.as_bytes())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        umount_below(self.f.dir.path());
    }
}

/// Writes `text` as the frun.toml of the test's stack directory (`<test dir>/stack`,
/// made if missing); returns the file's path.
pub fn write_stack_file(f: &Frun, text: &str) -> std::path::PathBuf {
    let dir = f.dir.path().join("stack");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("frun.toml");
    std::fs::write(&file, text).unwrap();
    file
}
