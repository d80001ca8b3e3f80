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
pub fn eventually_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if start.elapsed() > Duration::from_secs(secs) => {
                panic!("timed out after {secs} s waiting for {what}: {e}")
            }
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
    /// parent itself excluded: what its containers left.
    pub fn child_cgroups(&self) -> Vec<PathBuf> {
        self.cgroup_dirs()
            .iter()
            .flat_map(|d| walk_dirs(d).into_iter().skip(1))
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
