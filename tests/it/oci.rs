//! `frun-oci`, frun's OCI runtime command line (runc's), driven (a) directly on a bundle
//! that umoci unpacked from the test image layout, (b) by podman (through conmon) and
//! (c) by containerd (through containerd-shim-runc-v2), each with private state in the
//! test's temp dir and cgroups under the test's own parent.

use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `dir/frun-oci`, a symlink to the frun binary.
fn oci_bin(dir: &Path) -> PathBuf {
    let link = dir.join("frun-oci");
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_frun"), &link).expect("symlink frun-oci");
    }
    link
}

/// Mount points of this (the host's) mount namespace below `dir`.
fn mounts_below(dir: &Path) -> Vec<String> {
    let d = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| m == &d || m.starts_with(&format!("{d}/")))
        .collect()
}

/// The runc-style CLI on a private state root.
struct Oci {
    f: Frun,
    bin: PathBuf,
    root: PathBuf,
}

impl Oci {
    fn new() -> Oci {
        let f = Frun::new();
        let bin = oci_bin(f.dir.path());
        let root = f.dir.path().join("oci-state");
        Oci { f, bin, root }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(&self.root).args(args);
        c.stdin(Stdio::null()).env_remove("RUST_LOG");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run frun-oci")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "frun-oci {args:?} failed ({}):\n{}",
            out.status,
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "frun-oci {args:?} should have failed:\n{}",
            text(&out.stdout)
        );
        text(&out.stderr)
    }

    fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state JSON")
    }

    fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap().to_string()
    }

    /// `create`, with the container's stdio on files (a pipe would stay open as long as
    /// the container runs).
    fn create(&self, bundle: &Path, id: &str, out: &Path) -> i32 {
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
fn bundle(f: &Frun, name: &str, args: &[&str], cgroup: Option<&str>) -> Option<PathBuf> {
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
        .arg(format!("{images}/oci/test/busybox:latest"))
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
struct CgroupGuard(String, Vec<PathBuf>);

impl CgroupGuard {
    fn new(path: String) -> CgroupGuard {
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

fn alive(pid: i32) -> bool {
    let stat = read_or_empty(Path::new(&format!("/proc/{pid}/stat")));
    !stat.is_empty() && !stat.contains(") Z ")
}

#[test]
fn create_start_kill_delete_follow_runc() {
    let o = Oci::new();
    let cg = format!("{}/life", o.f.cgroup_parent);
    let script = "echo started; trap 'echo got-term; exit 7' TERM; while true; do sleep 0.1; done";
    let Some(b) = bundle(&o.f, "b1", &["/bin/sh", "-c", script], Some(&cg)) else {
        return;
    };
    let out = o.f.dir.path().join("life.out");
    let before = mounts_below(&b);

    // create: the process exists, set up, and waits: nothing of the command ran yet.
    let pid = o.create(&b, "life", &out);
    assert!(alive(pid));
    let st = o.state("life");
    assert_eq!(st["status"], "created");
    assert_eq!(st["pid"], pid);
    assert_eq!(st["id"], "life");
    assert_eq!(st["bundle"], b.display().to_string());
    assert!(st["ociVersion"].is_string());
    assert!(st["annotations"].is_object());
    assert!(!read_or_empty(&out).contains("started"), "ran before start");
    // Its namespaces and cgroup are in place already.
    for ns in ["mnt", "pid", "net", "uts", "ipc"] {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        let ours = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(theirs, ours, "{ns} namespace");
    }
    assert!(o.f.cgroup_pids().contains(&pid), "in the test's cgroup");
    assert!(o.fails(&["start", "nope"]).contains("does not exist"));
    assert!(o
        .fails(&["create", "--bundle", b.to_str().unwrap(), "life"])
        .contains("exists"));

    // start: the command runs, as the same process.
    o.ok(&["start", "life"]);
    assert_eq!(o.status("life"), "running");
    wait_for(10, "the container's output", || {
        read_or_empty(&out).contains("started").then_some(())
    });
    assert_eq!(o.state("life")["pid"], pid);
    assert!(o.fails(&["start", "life"]).contains("running"));
    assert!(o.fails(&["delete", "life"]).contains("not stopped"));
    let ps: Vec<i32> = serde_json::from_str(&o.ok(&["ps", "--format", "json", "life"])).unwrap();
    assert!(ps.contains(&pid));
    let list: Value = serde_json::from_str(&o.ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(list[0]["id"], "life");

    // exec: a second process in the container, with its exit code.
    let e = o.run(&[
        "exec",
        "life",
        "/bin/sh",
        "-c",
        "echo in-$(hostname); exit 4",
    ]);
    assert_eq!(e.status.code(), Some(4), "{}", text(&e.stderr));
    assert!(text(&e.stdout).starts_with("in-"));

    // kill by name: the trap runs, the container stops.
    o.ok(&["kill", "life", "TERM"]);
    wait_for(10, "the container to stop", || {
        (o.status("life") == "stopped").then_some(())
    });
    assert!(read_or_empty(&out).contains("got-term"));
    assert_eq!(o.state("life")["pid"], 0);
    assert!(o.fails(&["kill", "life", "KILL"]).contains("not running"));

    // delete: state, cgroup and mounts gone.
    o.ok(&["delete", "life"]);
    assert!(o.fails(&["state", "life"]).contains("does not exist"));
    assert!(!o.root.join("life").exists());
    assert!(o.f.child_cgroups().is_empty(), "{:?}", o.f.child_cgroups());
    assert_eq!(mounts_below(&b), before);
    o.ok(&["delete", "--force", "life"]);
}

#[test]
fn run_returns_the_exit_code_and_failures_are_logged_as_json() {
    let o = Oci::new();
    let cg = format!("{}/run", o.f.cgroup_parent);
    let Some(b) = bundle(
        &o.f,
        "b2",
        &["/bin/sh", "-c", "echo out; exit 3"],
        Some(&cg),
    ) else {
        return;
    };
    let out = o.run(&["run", "--bundle", b.to_str().unwrap(), "r1"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    assert!(!o.root.join("r1").exists(), "run removes its state");
    assert!(o.f.child_cgroups().is_empty());

    // A command that does not exist fails `create`, with a JSON error line in --log.
    let config = b.join("config.json");
    let mut spec: Value = serde_json::from_str(&read_or_empty(&config)).unwrap();
    spec["process"]["args"] = serde_json::json!(["/no/such/cmd"]);
    std::fs::write(&config, spec.to_string()).unwrap();
    let log = o.f.dir.path().join("log.json");
    let err_file = o.f.dir.path().join("r2.err");
    let ef = std::fs::File::create(&err_file).unwrap();
    let st = o
        .cmd(&["--log", log.to_str().unwrap(), "--log-format", "json"])
        .args(["create", "--bundle", b.to_str().unwrap(), "r2"])
        .stdout(ef.try_clone().unwrap())
        .stderr(ef)
        .status()
        .unwrap();
    let err = read_or_empty(&err_file);
    assert!(
        !st.success(),
        "create of a missing command succeeded: {err}"
    );
    assert!(err.contains("/no/such/cmd"), "{err}");
    let line: Value = serde_json::from_str(read_or_empty(&log).lines().last().unwrap()).unwrap();
    assert_eq!(line["level"], "error");
    assert!(line["msg"].as_str().unwrap().contains("/no/such/cmd"));
    assert!(line["time"].is_string());
    assert!(!o.root.join("r2").exists());
    assert!(o.f.child_cgroups().is_empty());
    assert!(o.ok(&["--version"]).contains("version"));
}

#[test]
fn delete_force_kills_and_a_relative_cgroup_goes_under_frun_oci() {
    let o = Oci::new();
    let Some(b) = bundle(&o.f, "b3", &["/bin/sleep", "1000"], None) else {
        return;
    };
    let id = format!(
        "rel-{}",
        o.f.cgroup_parent.trim_start_matches("/frun-test-")
    );
    let out = o.f.dir.path().join("rel.out");
    let _guard = CgroupGuard::new(format!("frun-oci/{id}"));
    let pid = o.create(&b, &id, &out);
    let procs = PathBuf::from(format!("/sys/fs/cgroup/pids/frun-oci/{id}/cgroup.procs"));
    let unified = PathBuf::from(format!("/sys/fs/cgroup/frun-oci/{id}/cgroup.procs"));
    let cg = if procs.exists() { procs } else { unified };
    assert!(
        read_or_empty(&cg)
            .lines()
            .any(|l| l.trim() == pid.to_string()),
        "pid {pid} in {cg:?}"
    );
    // A created container can be deleted: its waiting process is killed.
    o.ok(&["delete", &id]);
    wait_for(10, "the process to die", || (!alive(pid)).then_some(()));
    assert!(!cg.exists(), "{cg:?} removed");

    // A running one needs --force, and --all signals every process.
    let pid = o.create(&b, &id, &out);
    o.ok(&["start", &id]);
    let st = o
        .cmd(&["exec", "--detach", &id, "/bin/sleep", "1000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let ps: Vec<i32> = serde_json::from_str(&o.ok(&["ps", "--format", "json", &id])).unwrap();
    assert_eq!(ps.len(), 2, "{ps:?}");
    o.ok(&["kill", "--all", &id, "STOP"]);
    for p in &ps {
        wait_for(10, "stopped processes", || {
            read_or_empty(Path::new(&format!("/proc/{p}/stat")))
                .contains(") T ")
                .then_some(())
        });
    }
    o.ok(&["kill", "--all", &id, "CONT"]);
    o.ok(&["delete", "--force", &id]);
    wait_for(10, "the processes to die", || {
        ps.iter().all(|p| !alive(*p)).then_some(())
    });
    assert!(!alive(pid));
    assert!(!cg.exists());
    assert!(!o.root.join(&id).exists());
}

/// Unmounts everything below `dir`, deepest first (what podman or containerd left).
fn umount_below(dir: &Path) {
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
struct Podman {
    f: Frun,
    bin: PathBuf,
}

impl Podman {
    fn new() -> Podman {
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

    fn oci_state(&self) -> PathBuf {
        self.f.dir.path().join("oci-state")
    }

    fn cmd(&self, args: &[&str]) -> Command {
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

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run podman")
    }

    fn ok(&self, args: &[&str]) -> String {
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
fn oci_ids(root: &Path) -> Vec<String> {
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn podman_runs_execs_ttys_stops_kills_and_removes_with_frun_oci() {
    let Some(reg) = registry() else { return };
    if !have("podman") || !have("conmon") {
        unavailable("podman and conmon are not installed (scripts/test.sh installs them)");
        return;
    }
    let p = Podman::new();
    let img = format!("{reg}/test/busybox:latest");
    p.ok(&["pull", "-q", "--tls-verify=false", &img]);
    let cg = p.f.cgroup_parent.clone();
    let base = ["--network", "none", "--cgroup-parent", cg.as_str()];
    let run = |extra: &[&str], cmd: &[&str]| -> Output {
        let args: Vec<&str> = ["run"]
            .iter()
            .chain(extra)
            .chain(&base)
            .chain([&img.as_str()])
            .chain(cmd)
            .copied()
            .collect();
        p.run(&args)
    };

    // Foreground, with the exit code.
    let out = run(&["--rm"], &["sh", "-c", "echo hi; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\n");

    let out = run(&["--rm", "-t"], &["sh", "-c", "tty; exit 2"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "/dev/pts/0\r\n");

    // Detached; exec into it; stop (SIGTERM, trapped: exit 0); rm.
    let script = "trap 'exit 0' TERM; while :; do sleep 0.1; done";
    let out = run(&["-d", "--name", "c1"], &["sh", "-c", script]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    assert!(p.oci_state().join(&id).join("state.json").exists());
    let cg_dir = format!("/sys/fs/cgroup/pids{cg}/libpod-{id}");
    assert!(Path::new(&cg_dir).exists(), "{cg_dir}");
    let e = p.run(&["exec", "c1", "sh", "-c", "echo from-exec; exit 4"]);
    assert_eq!(e.status.code(), Some(4), "{}", text(&e.stderr));
    assert_eq!(text(&e.stdout), "from-exec\n");
    // A terminal: podman (conmon) gets the pty's master over --console-socket.
    let e = p.run(&["exec", "-t", "c1", "sh", "-c", "tty; exit 5"]);
    assert_eq!(e.status.code(), Some(5), "{}", text(&e.stderr));
    assert!(
        text(&e.stdout).starts_with("/dev/pts/"),
        "{}",
        text(&e.stdout)
    );
    let e = p.run(&["exec", "c1", "/no/such/cmd"]);
    assert!(!e.status.success());
    p.ok(&["stop", "-t", "10", "c1"]);
    assert_eq!(
        p.ok(&["inspect", "c1", "--format", "{{.State.ExitCode}}"])
            .trim(),
        "0"
    );
    p.ok(&["rm", "c1"]);
    assert!(!p.oci_state().join(&id).exists());
    assert!(!Path::new(&cg_dir).exists(), "{cg_dir} removed");

    // kill: SIGKILL is 137; rm -f of a running one.
    let out = run(&["-d", "--name", "c2"], &["sleep", "1000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    p.ok(&["kill", "c2"]);
    assert_eq!(p.ok(&["wait", "c2"]).trim(), "137");
    p.ok(&["rm", "c2"]);
    let out = run(&["-d", "--name", "c3"], &["sleep", "1000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    p.ok(&["rm", "-f", "-t", "0", "c3"]);

    // A user namespace: podman prepares the root filesystem for the mapping, frun-oci
    // makes the namespace from the spec's mappings; exec joins it.
    let userns = ["--uidmap", "0:300000:65536", "--gidmap", "0:300000:65536"];
    let out = run(
        &[&["--rm"][..], &userns].concat(),
        &[
            "sh",
            "-c",
            "cat /proc/self/uid_map; id -u; stat -c %u /bin/busybox; touch /x && stat -c %u /x",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).split_whitespace().collect::<Vec<_>>(),
        ["0", "300000", "65536", "0", "0", "0"]
    );
    let out = run(
        &[&["-d", "--name", "u"][..], &userns].concat(),
        &["sleep", "1000"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let e = p.run(&["exec", "u", "sh", "-c", "id -u; cat /proc/self/uid_map"]);
    assert_eq!(
        text(&e.stdout).split_whitespace().collect::<Vec<_>>(),
        ["0", "0", "300000", "65536"],
        "{}",
        text(&e.stderr)
    );
    // With --uidmap, podman's removal right after the exit sometimes finds the
    // container's shm directory busy (EBUSY from unlinkat; 1 run in 3 here, cause not
    // found: with frun run --uidmap a host mount is free again as soon as the container
    // has pivoted). podman has forgotten the container by then (a second `rm` finds
    // none); the test allows that.
    p.ok(&["kill", "u"]);
    assert_eq!(p.ok(&["wait", "u"]).trim(), "137");
    let removed = p.run(&["rm", "u"]);
    if !removed.status.success() {
        assert!(
            text(&removed.stderr).contains("shm: device or resource busy"),
            "{}",
            text(&removed.stderr)
        );
        let again = p.run(&["rm", "u"]);
        assert!(
            again.status.success() || text(&again.stderr).contains("no such container"),
            "{}",
            text(&again.stderr)
        );
    }

    // A command that does not exist: podman's 127, frun-oci's error reaches the user.
    let out = run(&["--rm"], &["/no/such/cmd"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("/no/such/cmd"));

    assert!(p.ok(&["ps", "-aq"]).trim().is_empty());
    assert!(
        oci_ids(&p.oci_state()).is_empty(),
        "{:?}",
        oci_ids(&p.oci_state())
    );
    let left: Vec<_> =
        p.f.child_cgroups()
            .into_iter()
            .filter(|d| d.to_string_lossy().contains("libpod-"))
            .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A private containerd (root, state, socket in the test's temp dir; CRI off) in a mount
/// namespace of its own with a tmpfs on /run, where containerd 1.6 and its shims keep
/// sockets and FIFOs at fixed paths: nothing of it shows on the host, and its mounts go
/// with it.
struct Containerd {
    f: Frun,
    bin: PathBuf,
    sock: PathBuf,
    daemon: Option<std::process::Child>,
}

impl Containerd {
    fn start() -> Containerd {
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

    fn ctr(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(&self.sock)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.ctr(args).output().expect("run ctr")
    }

    fn ok(&self, args: &[&str]) -> String {
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

    fn fifo_dir(&self) -> String {
        self.f.dir.path().join("fifo").display().to_string()
    }

    /// The frun-oci state root the shim passes (`/run/containerd/runc/NAMESPACE`),
    /// seen through the daemon's mount namespace.
    fn oci_state(&self) -> PathBuf {
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

#[test]
fn containerd_runs_execs_kills_and_deletes_with_frun_oci() {
    let Some(reg) = registry() else { return };
    if !have("containerd") || !have("ctr") || !have("containerd-shim-runc-v2") {
        unavailable("containerd is not installed (scripts/test.sh installs it)");
        return;
    }
    let c = Containerd::start();
    let img = format!("{reg}/test/busybox:latest");
    c.ok(&["images", "pull", "--plain-http", &img]);
    let bin = c.bin.display().to_string();
    let fifo = c.fifo_dir();
    let cg = |id: &str| format!("{}/{id}", c.f.cgroup_parent);

    // Foreground run --rm: output and exit code.
    let cg1 = cg("c1");
    let out = c.run(&[
        "run",
        "--rm",
        "--fifo-dir",
        &fifo,
        "--runc-binary",
        &bin,
        "--cgroup",
        &cg1,
        &img,
        "c1",
        "sh",
        "-c",
        "echo hi; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\n");

    // A detached task: exec into it, kill it, delete it.
    let cg2 = cg("c2");
    let script = "trap 'exit 0' TERM; while :; do sleep 0.1; done";
    c.ok(&[
        "run",
        "-d",
        "--null-io",
        "--fifo-dir",
        &fifo,
        "--runc-binary",
        &bin,
        "--cgroup",
        &cg2,
        &img,
        "c2",
        "sh",
        "-c",
        script,
    ]);
    assert!(c.oci_state().join("c2/state.json").exists());
    let procs = format!("/sys/fs/cgroup/pids{cg2}/cgroup.procs");
    assert!(
        !read_or_empty(Path::new(&procs)).trim().is_empty(),
        "{procs}"
    );
    let out = c.run(&[
        "tasks",
        "exec",
        "--fifo-dir",
        &fifo,
        "--exec-id",
        "e1",
        "c2",
        "sh",
        "-c",
        "echo from-exec; exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "from-exec\n");
    c.ok(&["tasks", "kill", "c2"]);
    wait_for(10, "the task to stop", || {
        c.ok(&["tasks", "ls"])
            .lines()
            .any(|l| l.starts_with("c2 ") && l.contains("STOPPED"))
            .then_some(())
    });
    let out = c.ok(&["tasks", "delete", "c2"]);
    assert!(
        !out.contains("exit status") || out.contains("exit status 0"),
        "{out}"
    );
    c.ok(&["containers", "delete", "c2"]);
    assert!(!c.oci_state().join("c2").exists());
    assert!(!Path::new(&procs).exists(), "{procs} removed");

    // SIGKILL of a task that traps SIGTERM; `ctr run` reports 137.
    let cg3 = cg("c3");
    let mut fg = c
        .ctr(&[
            "run",
            "--rm",
            "--fifo-dir",
            &fifo,
            "--runc-binary",
            &bin,
            "--cgroup",
            &cg3,
            &img,
            "c3",
            "sh",
            "-c",
            script,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(20, "c3 to run", || {
        c.ok(&["tasks", "ls"])
            .lines()
            .any(|l| l.starts_with("c3 ") && l.contains("RUNNING"))
            .then_some(())
    });
    c.ok(&["tasks", "kill", "-s", "KILL", "c3"]);
    let status = fg.wait().unwrap();
    assert_eq!(status.code(), Some(137));

    assert!(c.ok(&["containers", "ls", "-q"]).trim().is_empty());
    assert!(oci_ids(&c.oci_state()).is_empty());
    assert!(c.f.child_cgroups().is_empty(), "{:?}", c.f.child_cgroups());
}
