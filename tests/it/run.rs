//! `frun run`, `ps`, `stop`, `rm`, `exec`, `logs`: containers from the test images, checked
//! from the inside by `tests/checker` (`checker report` prints what the container looks
//! like as one JSON object) and from the outside (the test process's own mountinfo, the
//! test's cgroup parent, the state directory, host files). Each test ends by checking that
//! nothing was left behind.

use crate::common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Docker's default capability set, by bit number (capability.h).
const DOCKER_CAPS: &[(u32, &str)] = &[
    (0, "CAP_CHOWN"),
    (1, "CAP_DAC_OVERRIDE"),
    (3, "CAP_FOWNER"),
    (4, "CAP_FSETID"),
    (5, "CAP_KILL"),
    (6, "CAP_SETGID"),
    (7, "CAP_SETUID"),
    (8, "CAP_SETPCAP"),
    (10, "CAP_NET_BIND_SERVICE"),
    (13, "CAP_NET_RAW"),
    (18, "CAP_SYS_CHROOT"),
    (27, "CAP_MKNOD"),
    (29, "CAP_AUDIT_WRITE"),
    (31, "CAP_SETFCAP"),
];

/// The namespaces a container gets new ones of.
const NEW_NAMESPACES: &[&str] = &["mnt", "pid", "uts", "ipc", "net", "cgroup"];

fn image(reg: &str, name: &str) -> String {
    format!("{reg}/test/{name}")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The last JSON object a checker printed on stdout.
fn last_json(out: &[u8]) -> Value {
    let s = text(out);
    let line = s
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in output:\n{s}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}"))
}

/// Asserts `out` succeeded; returns the checker's JSON.
fn json_ok(what: &str, out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    last_json(&out.stdout)
}

/// `frun run --rm FLAGS IMAGE checker report`.
fn report(f: &Frun, flags: &[&str], image: &str) -> Value {
    let mut args = vec!["run", "--rm", "-q"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[image, "checker", "report"]);
    json_ok(&format!("frun {args:?}"), &f.run(&args))
}

fn host_ns(name: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{name}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| {
            x.as_str()
                .unwrap_or_else(|| panic!("not a string: {x}"))
                .to_string()
        })
        .collect()
}

/// The nofile hard limit of this process, which frun inherits and cannot raise (no
/// CAP_SYS_RESOURCE on the test hosts).
fn nofile_hard() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(u64::MAX)
}

/// `frun ARGS` with a directory of the host leaked into it, not close-on-exec, at fds 3
/// to 8: what a careless caller (or runc's own leak, CVE-2024-21626) hands a runtime.
fn leaky_command(f: &Frun, args: &[&str], leak: &Path) -> Command {
    let dir = std::fs::File::open(leak).unwrap();
    let mut c = f.command(args);
    let raw = dir.as_raw_fd();
    // SAFETY: between fork and exec only async-signal-safe calls (fcntl, dup2, close) on
    // descriptor numbers; `dir` is kept open by the closure, so `raw` is valid until the
    // Command is dropped.
    unsafe {
        c.pre_exec(move || {
            let _keep = &dir;
            let hi = libc::fcntl(raw, libc::F_DUPFD, 100);
            if hi < 0 {
                return Err(std::io::Error::last_os_error());
            }
            for n in 3..=8 {
                if libc::dup2(hi, n) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            libc::close(hi);
            Ok(())
        });
    }
    c
}

/// `frun ps -a --format json`.
fn ps(f: &Frun) -> Vec<Value> {
    let out = f.ok(&["ps", "-a", "--format", "json"]);
    serde_json::from_str::<Value>(&out)
        .unwrap_or_else(|e| panic!("ps json: {e}: {out}"))
        .as_array()
        .expect("array")
        .clone()
}

fn try_find(f: &Frun, name: &str) -> Option<Value> {
    ps(f).into_iter().find(|c| c["name"] == name)
}

fn find(f: &Frun, name: &str) -> Value {
    try_find(f, name).unwrap_or_else(|| panic!("no container {name} in ps -a"))
}

/// Polls `probe` every 20 ms until it gives a value, or panics after `secs`.
fn wait_for<T>(secs: u64, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            panic!("timed out after {secs} s waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_running(f: &Frun, name: &str) -> i32 {
    wait_for(30, &format!("{name} to run"), || {
        let c = try_find(f, name)?;
        (c["status"] == "running").then(|| c["pid"].as_i64().expect("running pid") as i32)
    })
}

fn wait_exited(f: &Frun, name: &str, secs: u64) -> Value {
    wait_for(secs, &format!("{name} to exit"), || {
        let c = find(f, name);
        (c["status"] == "exited" && !c["exit_code"].is_null()).then_some(c)
    })
}

/// Waits until `pid` has `sig` in the mask `field` (`SigCgt`, `SigIgn`) of its status:
/// a shell's `trap` is in place.
fn wait_signal_mask(pid: i32, field: &str, sig: i32) {
    wait_for(
        10,
        &format!("{field} of {pid} to hold signal {sig}"),
        || {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let hex = status
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{field}:")))?;
            let mask = u64::from_str_radix(hex.trim(), 16).ok()?;
            (mask & (1 << (sig - 1)) != 0).then_some(())
        },
    )
}

fn log_lines(f: &Frun, name: &str, flags: &[&str]) -> (String, String) {
    let mut args = vec!["logs"];
    args.extend_from_slice(flags);
    args.push(name);
    let out = f.run(&args);
    assert!(out.status.success(), "logs: {}", text(&out.stderr));
    (text(&out.stdout), text(&out.stderr))
}

// --- what must be left after a container is gone ------------------------------------------

/// Lines of this process's mountinfo (the host's mount namespace).
fn mountinfo() -> BTreeSet<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Mounts that appeared since `before`, except those of other tools under temp
/// directories of their own (tests of other runtimes may run beside these).
fn new_mounts(f: &Frun, before: &BTreeSet<String>) -> Vec<String> {
    let ours = f.dir.path().to_string_lossy().into_owned();
    mountinfo()
        .difference(before)
        .filter(|l| {
            let mp = l.split(' ').nth(4).unwrap_or_default();
            let foreign = (mp.starts_with("/tmp/") && !mp.starts_with(&ours))
                || [
                    "/run/netns/",
                    "/run/containers/",
                    "/run/containerd/",
                    "/var/lib/containers/",
                ]
                .iter()
                .any(|p| mp.starts_with(p));
            !foreign || l.contains(&ours)
        })
        .cloned()
        .collect()
}

fn container_dirs(f: &Frun) -> Vec<PathBuf> {
    std::fs::read_dir(f.root().join("containers"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// No mount, cgroup or container directory left by this test's containers.
fn assert_clean(f: &Frun, before: &BTreeSet<String>) {
    let mounts = new_mounts(f, before);
    assert!(mounts.is_empty(), "mounts left behind: {mounts:#?}");
    let cgroups = f.child_cgroups();
    assert!(cgroups.is_empty(), "cgroups left behind: {cgroups:?}");
    let dirs = container_dirs(f);
    assert!(dirs.is_empty(), "container directories left: {dirs:?}");
}

// --- 1. what a container looks like from the inside -----------------------------------------

/// Starts `checker sleep 300` detached as `name` and returns its pid once it runs.
fn run_sleeper(f: &Frun, reg: &str, name: &str) -> i32 {
    f.ok(&[
        "run",
        "-d",
        "--name",
        name,
        &image(reg, "checker"),
        "checker",
        "sleep",
        "300",
    ]);
    wait_running(f, name)
}

/// Masked paths read as empty (or are absent from this kernel, like /proc/kcore here);
/// read-only kernel paths refuse writes with EROFS, each a read-only mount of its own.
fn assert_masked_and_read_only(r: &Value, in_userns: bool) {
    // Masked paths read as empty (or are absent from this kernel, like /proc/kcore here).
    let masked = r["masked"].as_object().unwrap();
    assert!(
        masked["/proc/keys"]["exists"] == true,
        "/proc/keys: {}",
        masked["/proc/keys"]
    );
    for (p, m) in masked {
        if m["exists"] == false {
            continue;
        }
        if m["is_dir"] == true {
            assert_eq!(m["entries"], 0, "{p} is not masked: {m}");
        } else {
            assert_eq!(m["readable_content_len"], 0, "{p} is not masked: {m}");
        }
    }

    // Read-only kernel paths: writes fail with EROFS (in a user namespace, where the
    // host's root owns those files, EACCES may come first), and each is a read-only mount.
    let ro = r["readonly_checks"].as_object().unwrap();
    let refused = |v: &Value| v == "EROFS" || (in_userns && v == "EACCES");
    assert!(
        refused(&ro["/proc/sys"]["open_write"]),
        "{}",
        ro["/proc/sys"]
    );
    for (p, c) in ro {
        if c["exists"] == false {
            continue;
        }
        assert!(
            c["open_write"].is_null() || refused(&c["open_write"]),
            "{p} is writable: {c}"
        );
    }
    for p in ["/sys", "/sys/fs/cgroup"] {
        assert_eq!(ro[p]["create"], "EROFS", "{p}: {}", ro[p]);
        assert!(refused(&ro[p]["open_write"]), "{p}: {}", ro[p]);
    }
    let mounts = r["mounts"].as_array().unwrap();
    let is_ro = |m: &Value| m["options"].as_str().unwrap().split(',').any(|o| o == "ro");
    for (p, c) in ro {
        if c["exists"] == false {
            continue;
        }
        let m = mounts
            .iter()
            .rev()
            .find(|m| m["mount_point"] == p.as_str())
            .unwrap_or_else(|| panic!("{p} is not a mount of its own"));
        assert!(is_ro(m), "{p} is mounted read-write: {m}");
    }
    for m in mounts.iter().filter(|m| {
        let mp = m["mount_point"].as_str().unwrap();
        mp == "/sys" || mp.starts_with("/sys/fs/cgroup")
    }) {
        assert!(is_ro(m), "mounted read-write: {m}");
    }
}

#[test]
fn container_is_isolated_with_docker_default_privileges() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let before = mountinfo();
    let leak = tempfile::tempdir().unwrap();
    let out = leaky_command(
        &f,
        &[
            "run",
            "-q",
            "--name",
            "probe",
            &image(&reg, "checker"),
            "checker",
            "report",
        ],
        leak.path(),
    )
    .output()
    .unwrap();
    let r = json_ok("run checker report", &out);
    let id = find(&f, "probe")["id"].as_str().unwrap().to_string();

    // Namespaces: new ones of everything but the user namespace; pid 1; the short id as
    // the hostname.
    for ns in NEW_NAMESPACES {
        let inside = r["namespaces"][ns].as_str().unwrap();
        assert_ne!(inside, host_ns(ns), "{ns} namespace is the host's");
    }
    assert_eq!(r["namespaces"]["user"], host_ns("user").as_str());
    assert_eq!(r["pid"], 1);
    assert_eq!(r["hostname"], &id[..12]);
    assert_eq!(r["env"]["HOSTNAME"], &id[..12]);
    assert_eq!((r["uid"].as_u64(), r["gid"].as_u64()), (Some(0), Some(0)));
    // The cgroup namespace makes the container's cgroup the root.
    for line in strs(&r["cgroup"]["self"]) {
        assert!(line.ends_with(":/"), "cgroup not namespaced: {line}");
    }

    // Capabilities: exactly Docker's default set, nothing inheritable or ambient.
    let mask: u64 = DOCKER_CAPS.iter().map(|(b, _)| 1u64 << b).sum();
    let caps = &r["caps"];
    for set in ["CapEff", "CapBnd", "CapPrm"] {
        let got = u64::from_str_radix(caps[set].as_str().unwrap(), 16).unwrap();
        assert_eq!(
            got,
            mask,
            "{set} {got:#x}: {}",
            caps[format!("cap_names_{}", set[3..].to_lowercase())]
        );
    }
    let mut want: Vec<&str> = DOCKER_CAPS.iter().map(|(_, n)| *n).collect();
    want.sort();
    let mut got = strs(&caps["cap_names_eff"]);
    got.sort();
    assert_eq!(got, want);
    assert_eq!(caps["CapInh"], "0000000000000000");
    assert_eq!(caps["CapAmb"], "0000000000000000");
    assert_eq!(r["no_new_privs"], 1);
    assert_eq!(r["seccomp"], 2, "seccomp filter mode");

    assert_masked_and_read_only(&r, false);

    // /dev: exactly the minimal set, with the right device numbers.
    let dev = r["dev"].as_array().unwrap();
    let names: BTreeSet<&str> = dev.iter().map(|d| d["name"].as_str().unwrap()).collect();
    let want: BTreeSet<&str> = [
        "null", "zero", "full", "random", "urandom", "tty", "fd", "stdin", "stdout", "stderr",
        "ptmx", "pts", "shm", "mqueue",
    ]
    .into_iter()
    .collect();
    assert_eq!(names, want, "/dev holds something else");
    let entry = |n: &str| dev.iter().find(|d| d["name"] == n).unwrap();
    for (n, rdev) in [
        ("null", "1:3"),
        ("zero", "1:5"),
        ("full", "1:7"),
        ("random", "1:8"),
        ("urandom", "1:9"),
        ("tty", "5:0"),
    ] {
        let d = entry(n);
        assert_eq!(
            (d["type"].as_str(), d["rdev"].as_str()),
            (Some("char"), Some(rdev)),
            "/dev/{n}: {d}"
        );
    }
    for (n, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        let d = entry(n);
        assert_eq!(
            (d["type"].as_str(), d["target"].as_str()),
            (Some("symlink"), Some(target)),
            "/dev/{n}: {d}"
        );
    }
    for n in ["pts", "shm", "mqueue"] {
        assert_eq!(entry(n)["type"], "dir", "/dev/{n}");
    }

    // Privileged operations are refused.
    for probe in [
        "mount_tmpfs",
        "set_hostname",
        "kexec_load",
        "unshare_user",
        "keyctl",
    ] {
        assert_eq!(r["can"][probe], "EPERM", "can.{probe}: {}", r["can"]);
    }

    // nofile: the spec's 1048576, clamped to the hard limit frun got from this process.
    let nofile = nofile_hard().min(1_048_576);
    assert_eq!(r["rlimits"]["nofile"], serde_json::json!([nofile, nofile]));

    // The fds leaked into frun at 3..8 are closed: only stdio is left.
    let fds: Vec<i64> = r["fds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["fd"].as_i64().unwrap())
        .collect();
    assert_eq!(fds, vec![0, 1, 2], "open fds: {}", r["fds"]);

    f.ok(&["rm", "probe"]);
    assert_clean(&f, &before);
}

#[test]
fn cgroup_limits_are_seen_inside() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let before = mountinfo();
    let r = report(
        &f,
        &["--memory", "64m", "--pids-limit", "50", "--cpus", "0.5"],
        &image(&reg, "checker"),
    );
    let cg = &r["cgroup"];
    assert_eq!(cg["memory_limit"], "67108864", "{cg}");
    assert_eq!(cg["pids_limit"], "50", "{cg}");
    assert_eq!(cg["cpu_quota"], "50000", "{cg}");
    assert_eq!(cg["cpu_period"], "100000", "{cg}");
    // Without flags: no limit.
    let r = report(&f, &[], &image(&reg, "checker"));
    assert_eq!(r["cgroup"]["pids_limit"], "max", "{}", r["cgroup"]);
    assert_clean(&f, &before);
}

/// The devices cgroup: CAP_MKNOD makes any node, but only the minimal `/dev`'s devices
/// open (`/dev/mem` made by hand does not, `/dev/zero` does).
#[test]
fn devices_cgroup_opens_only_the_minimal_dev() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let img = image(&reg, "busybox");
    f.ok(&["pull", "-q", &img]);
    let before = mountinfo();
    let script = "mknod /tmp/mem c 1 1 && echo made; \
                  head -c 1 /tmp/mem >/dev/null && echo mem-opened; \
                  head -c 1 /dev/zero | wc -c";
    let out = f.run(&["run", "--rm", &img, "sh", "-c", script]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).split_whitespace().collect::<Vec<_>>(),
        ["made", "1"]
    );
    assert!(
        text(&out.stderr).contains("Operation not permitted"),
        "{}",
        text(&out.stderr)
    );
    assert_clean(&f, &before);
}

// --- 2. user and groups ---------------------------------------------------------------------

#[test]
fn image_user_groups_and_workdir_apply_and_u_overrides() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let before = mountinfo();
    let img = image(&reg, "checker-user");
    let r = report(&f, &[], &img);
    for k in ["uid", "gid", "euid", "egid"] {
        assert_eq!(r[k], 1000, "{k}");
    }
    let groups: BTreeSet<u64> = r["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_u64().unwrap())
        .filter(|g| *g != 1000)
        .collect();
    assert_eq!(groups, BTreeSet::from([2000]), "groups {}", r["groups"]);
    assert_eq!(r["cwd"], "/home/app");

    let r = report(&f, &["-u", "0"], &img);
    assert_eq!((r["uid"].as_u64(), r["euid"].as_u64()), (Some(0), Some(0)));
    assert_eq!(r["cwd"], "/home/app");

    // CVE-2024-40635: a uid above 2^31 must not wrap to root.
    let r = report(&f, &["-u", "2147483648"], &img);
    assert_eq!(r["uid"], 2147483648u64);
    assert_eq!(r["euid"], 2147483648u64);

    // exec -u: names from the running container's own /etc/passwd and /etc/group.
    f.ok(&["run", "-d", "--name", "u", "-u", "0", &img, "sleep", "300"]);
    wait_running(&f, "u");
    assert_eq!(f.ok(&["exec", "-u", "app", "u", "id", "-u"]), "1000\n");
    f.ok(&[
        "exec",
        "u",
        "sh",
        "-c",
        "echo late:x:1234:1234::/:/bin/sh >> /etc/passwd",
    ]);
    assert_eq!(f.ok(&["exec", "-u", "late", "u", "id", "-u"]), "1234\n");
    let e = f.fails(&["exec", "-u", "nobody-here", "u", "true"]);
    assert!(e.contains("unable to find user nobody-here"), "{e}");
    f.ok(&["rm", "-f", "u"]);
    assert_clean(&f, &before);
}

#[test]
fn invalid_users_fail_with_125_naming_the_value_and_leave_nothing() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let img = image(&reg, "checker-user");
    f.ok(&["pull", "-q", &img]);
    let before = mountinfo();
    for user in ["4294967295", "nosuchuser"] {
        let out = f.run(&["run", "--rm", "-u", user, &img, "checker", "report"]);
        assert_eq!(
            out.status.code(),
            Some(125),
            "-u {user}: {}",
            text(&out.stderr)
        );
        assert!(
            out.stdout.is_empty(),
            "the command ran: {}",
            text(&out.stdout)
        );
        let err = text(&out.stderr);
        assert!(
            err.contains(user),
            "-u {user}: error does not name it: {err}"
        );
        assert_clean(&f, &before);
    }
}

// --- 3. environment, working directory, arguments, exit codes ------------------------------

#[test]
fn env_workdir_and_exit_codes_follow_docker() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let before = mountinfo();
    let img = image(&reg, "checker");
    let r = report(
        &f,
        &[
            "-e",
            "PATH=/usr/local/bin:/bin",
            "-e",
            "FOO=bar=baz",
            "-w",
            "/tmp",
        ],
        &img,
    );
    assert_eq!(
        r["env"]["PATH"], "/usr/local/bin:/bin",
        "image env not overridden"
    );
    assert_eq!(r["env"]["FOO"], "bar=baz");
    assert_eq!(r["cwd"], "/tmp");
    assert_eq!(strs(&r["argv"]), vec!["checker", "report"]);
    // A working directory the image lacks is made, as Docker does.
    let out = f.ok(&[
        "run",
        "--rm",
        "-w",
        "/new/dir",
        &img,
        "sh",
        "-c",
        "pwd; stat -c %u:%a .",
    ]);
    assert_eq!(out, "/new/dir\n0:755\n");

    let out = f.run(&["run", "--rm", &img, "no-such-command"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not found"),
        "{}",
        text(&out.stderr)
    );

    let out = f.run(&["run", "--rm", &img, "checker", "exit", "42"]);
    assert_eq!(out.status.code(), Some(42));
    assert_clean(&f, &before);
}

#[test]
fn killed_container_exits_128_plus_signal() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let before = mountinfo();
    let child = f
        .command(&[
            "run",
            "--name",
            "victim",
            &image(&reg, "checker"),
            "checker",
            "sleep",
            "60",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = wait_running(&f, "victim");
    // pid 1 of a pid namespace only takes SIGKILL from outside.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    let c = wait_exited(&f, "victim", 10);
    assert_eq!(c["exit_code"], 137);
    assert_eq!(c["oom_killed"], false);
    f.ok(&["rm", "victim"]);
    assert_clean(&f, &before);
}

#[test]
fn network_none_has_only_loopback_and_host_shares_the_hosts() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let before = mountinfo();
    let img = image(&reg, "checker");
    let script = "readlink /proc/self/ns/net; tail -n +3 /proc/net/dev | cut -d: -f1; \
                  cat /etc/hostname /etc/hosts";
    let out = f.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--name",
        "netnone",
        &img,
        "sh",
        "-c",
        script,
    ]);
    let mut lines = out.lines();
    assert_ne!(lines.next().unwrap(), host_ns("net"));
    let ifaces: Vec<&str> = lines
        .by_ref()
        .take_while(|l| !l.trim().is_empty() && l.starts_with(' '))
        .map(str::trim)
        .collect();
    assert_eq!(ifaces, vec!["lo"], "{out}");
    assert!(
        out.contains("localhost") && out.contains("netnone"),
        "/etc/hosts: {out}"
    );

    let out = f.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        &img,
        "readlink",
        "/proc/self/ns/net",
    ]);
    assert_eq!(out.trim(), host_ns("net"));
    let r = report(&f, &["--network", "host"], &img);
    assert_eq!(
        r["readonly_checks"]["/sys"]["create"], "EROFS",
        "{}",
        r["readonly_checks"]
    );
    assert_ne!(r["namespaces"]["uts"], host_ns("uts").as_str());
    // /sys comes from the host here: none of the host's mounts below it (debugfs,
    // tracefs, cgroups...) may come along writable, not even hidden under another.
    for m in r["mounts"].as_array().unwrap() {
        let mp = m["mount_point"].as_str().unwrap();
        if mp == "/sys" || mp.starts_with("/sys/") {
            let opts = m["options"].as_str().unwrap();
            assert!(
                opts.split(',').any(|o| o == "ro"),
                "writable under /sys: {m}"
            );
        }
    }

    let err = f.fails(&["run", "--rm", "--network", "bridge0", &img, "true"]);
    assert!(err.contains("bridge0"), "{err}");
    assert_clean(&f, &before);
}

#[test]
fn foreground_run_attaches_stdin_and_ctrl_c_stops_the_container() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let img = image(&reg, "busybox");
    f.ok(&["pull", "-q", &img]);
    let before = mountinfo();
    let mut child = f
        .command(&[
            "run",
            "--rm",
            "-i",
            &img,
            "sh",
            "-c",
            "read line; echo got:$line",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hello\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "got:hello\n");

    // Ctrl-C: the terminal signals the whole foreground process group.
    let child = f
        .command(&[
            "run",
            "--name",
            "fg",
            &img,
            "sh",
            "-c",
            "trap 'echo stopping; exit 3' TERM; while true; do sleep 0.1; done",
        ])
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = wait_running(&f, "fg");
    wait_signal_mask(pid, "SigCgt", libc::SIGTERM);
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    // (Exit 3 from its trap: the stop signal came, not the SIGKILL after the grace
    // period, which would have made it 137.)
    assert_eq!(text(&out.stdout), "stopping\n");
    assert_eq!(find(&f, "fg")["exit_code"], 3);
    f.ok(&["rm", "fg"]);
    assert_clean(&f, &before);
}

/// `SigIgn` and `SigBlk` of a `/proc/PID/status` text.
fn ignored_and_blocked(status: &str) -> (u64, u64) {
    let mask = |field: &str| {
        let hex = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .unwrap_or_else(|| panic!("no {field} in {status}"));
        u64::from_str_radix(hex.trim(), 16).unwrap()
    };
    (mask("SigIgn:"), mask("SigBlk:"))
}

/// `frun ARGS` on a pty of its own (util-linux `script`), 40 rows by 100 columns, with
/// `input` typed into it; `script -e` exits with frun's exit code.
fn in_pty(f: &Frun, args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let q = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let c = f.command(args);
    let mut line = format!(
        "stty rows 40 cols 100; exec {}",
        q(c.get_program().to_str().unwrap())
    );
    for a in c.get_args() {
        line.push(' ');
        line.push_str(&q(a.to_str().unwrap()));
    }
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let mut child = cmd.spawn().expect("script (util-linux) runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    // Keep script's stdin open until frun is done: at EOF it would type an end-of-file
    // into the pty.
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    out
}

#[test]
fn tty_and_interactive_follow_docker() {
    use std::io::Write;
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let before = mountinfo();
    let img = image(&reg, "checker");
    f.ok(&["pull", "-q", &img]);

    // -t: a pty of the container's own, the caller's window size, TERM, the exit code;
    // each newline reaches the caller once as CR LF.
    let out = in_pty(
        &f,
        &[
            "run",
            "--rm",
            "-t",
            &img,
            "sh",
            "-c",
            "tty; stty size; echo $TERM; exit 3",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "/dev/pts/0\r\n40 100\r\nxterm\r\n");

    // -it: keystrokes reach the container's shell.
    let out = in_pty(
        &f,
        &["run", "--rm", "-it", &img, "sh"],
        b"echo typed-$((6*7))\nexit 4\n",
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("typed-42"), "{s}");

    // Without -i the container's stdin is not the caller's; with it, it is.
    let mut c = f.command(&["run", "--rm", &img, "cat"]);
    c.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"piped\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "");
    let mut c = f.command(&["run", "--rm", "-i", &img, "cat"]);
    c.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"piped\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(text(&out.stdout), "piped\n");

    // Detached with -t: the terminal's output is the log; exec -t gets a pty of its own.
    f.ok(&[
        "run",
        "-d",
        "-t",
        "--name",
        "t",
        &img,
        "sh",
        "-c",
        "tty; exec sleep 300",
    ]);
    wait_running(&f, "t");
    wait_for(10, "the log", || {
        (log_lines(&f, "t", &[]).0 == "/dev/pts/0\r\n").then_some(())
    });
    let out = in_pty(&f, &["exec", "-it", "t", "sh", "-c", "tty; exit 5"], b"");
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "/dev/pts/1\r\n");
    f.ok(&["rm", "-f", "t"]);
    assert_clean(&f, &before);
}

#[test]
fn container_processes_start_with_default_signal_handling() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let img = image(&reg, "busybox");
    f.ok(&["pull", "-q", &img]);
    let before = mountinfo();
    // An ignored signal and the signal mask survive execve: frun's own (Rust ignores
    // SIGPIPE; the shim blocks the signals that stop the container) are not the
    // container's. busybox changes neither.
    f.ok(&["run", "-d", "--name", "sigs", &img, "sleep", "300"]);
    let pid = wait_running(&f, "sigs");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert_eq!(ignored_and_blocked(&status), (0, 0), "pid 1:\n{status}");
    let status = f.ok(&["exec", "sigs", "cat", "/proc/self/status"]);
    assert_eq!(ignored_and_blocked(&status), (0, 0), "exec:\n{status}");
    let status = f.ok(&["run", "--rm", &img, "cat", "/proc/self/status"]);
    assert_eq!(
        ignored_and_blocked(&status),
        (0, 0),
        "foreground:\n{status}"
    );
    // So a writer into a closed pipe dies of SIGPIPE, quietly, as anywhere else.
    let out = f.run(&["run", "--rm", &img, "sh", "-c", "yes | head -n 1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "y\n");
    assert_eq!(text(&out.stderr), "", "yes did not die of SIGPIPE");
    f.ok(&["rm", "-f", "sigs"]);
    assert_clean(&f, &before);
}

// --- 4. limits ------------------------------------------------------------------------------

#[test]
fn memory_limit_oom_kills_and_is_reported() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let before = mountinfo();
    let out = f.run(&[
        "run",
        "--name",
        "hog",
        "--memory",
        "64m",
        &image(&reg, "checker"),
        "checker",
        "alloc",
        "200",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(137), "{err}");
    assert!(err.contains("out of memory"), "{err}");
    let progress = text(&out.stdout);
    assert!(
        !progress.contains("\"done\""),
        "allocated 200 MiB under 64m: {progress}"
    );
    let c = find(&f, "hog");
    assert_eq!(c["status"], "exited");
    assert_eq!(c["exit_code"], 137);
    assert_eq!(c["oom_killed"], true);
    f.ok(&["rm", "hog"]);
    assert_clean(&f, &before);
}

#[test]
fn fork_bomb_stops_at_the_pids_limit() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let before = mountinfo();
    let out = f.run(&[
        "run",
        "--rm",
        "--pids-limit",
        "20",
        &image(&reg, "checker"),
        "checker",
        "fork-bomb",
        "2000",
    ]);
    let r = json_ok("fork-bomb", &out);
    assert_eq!(r["errno"], "EAGAIN", "{r}");
    assert_eq!(r["capped"], false, "{r}");
    let forked = r["forked"].as_u64().unwrap();
    assert!(forked < 20, "forked {forked} under --pids-limit 20");
    // The children (sleeping 30 s) died with pid 1 (assert_clean: the cgroup is gone,
    // which it cannot be with a process in it); the host still forks.
    assert!(Command::new("true").status().unwrap().success());
    assert_clean(&f, &before);
}

// --- 5. lifecycle ---------------------------------------------------------------------------

#[test]
fn detached_container_is_listed_and_logs_both_streams() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let before = mountinfo();
    let id = f.ok(&[
        "run",
        "-d",
        "--name",
        "bg",
        &image(&reg, "checker"),
        "sh",
        "-c",
        "echo to-stdout; echo to-stderr >&2; exec sleep 300",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "run -d prints the id: {id}");
    let pid = wait_running(&f, "bg");
    let listed = serde_json::from_str::<Value>(&f.ok(&["ps", "--format", "json"])).unwrap();
    let c = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .expect("running container in ps")
        .clone();
    assert_eq!(c["status"], "running");
    assert_eq!(c["pid"], pid);
    assert!(pid > 1 && Path::new(&format!("/proc/{pid}")).exists());
    assert_ne!(
        std::fs::read_link(format!("/proc/{pid}/ns/pid"))
            .unwrap()
            .to_string_lossy(),
        host_ns("pid")
    );

    wait_for(10, "both log lines", || {
        let (o, e) = log_lines(&f, "bg", &[]);
        (o.contains("to-stdout") && e.contains("to-stderr")).then_some(())
    });
    let (o, e) = log_lines(&f, &id[..12], &[]);
    assert_eq!(o, "to-stdout\n");
    assert_eq!(e, "to-stderr\n");
    let (o, e) = log_lines(&f, "bg", &["-t"]);
    for (line, want) in [(o.trim_end(), "to-stdout"), (e.trim_end(), "to-stderr")] {
        let (stamp, rest) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("no timestamp: {line:?}"));
        assert_eq!(rest, want);
        chrono::DateTime::parse_from_rfc3339(stamp)
            .unwrap_or_else(|e| panic!("timestamp {stamp:?}: {e}"));
    }
    f.ok(&["rm", "-f", "bg"]);
    assert_clean(&f, &before);

    // logs -f follows until the container exits.
    f.ok(&[
        "run",
        "-d",
        "--name",
        "short",
        &image(&reg, "checker"),
        "sh",
        "-c",
        "echo first; sleep 1; echo second",
    ]);
    let (o, _) = log_lines(&f, "short", &["-f"]);
    assert_eq!(o, "first\nsecond\n");
    assert_eq!(wait_exited(&f, "short", 10)["exit_code"], 0);
    f.ok(&["rm", "short"]);
    assert_clean(&f, &before);
}

#[test]
fn exec_joins_the_container_and_returns_its_exit_code() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let before = mountinfo();
    let pid = run_sleeper(&f, &reg, "box");
    let leak = tempfile::tempdir().unwrap();
    let out = leaky_command(&f, &["exec", "box", "checker", "report"], leak.path())
        .output()
        .unwrap();
    let r = json_ok("exec checker report", &out);
    for ns in NEW_NAMESPACES {
        let first = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        assert_eq!(
            r["namespaces"][ns],
            first.to_string_lossy().as_ref(),
            "{ns}"
        );
    }
    assert!(
        r["pid"].as_i64().unwrap() > 1,
        "exec'd process is pid {}",
        r["pid"]
    );
    assert_eq!(r["no_new_privs"], 1);
    assert_eq!(r["seccomp"], 2);
    let mask: u64 = DOCKER_CAPS.iter().map(|(b, _)| 1u64 << b).sum();
    assert_eq!(
        u64::from_str_radix(r["caps"]["CapEff"].as_str().unwrap(), 16).unwrap(),
        mask
    );
    let fds: Vec<i64> = r["fds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["fd"].as_i64().unwrap())
        .collect();
    assert_eq!(fds, vec![0, 1, 2], "{}", r["fds"]);
    for line in strs(&r["cgroup"]["self"]) {
        assert!(
            line.ends_with(":/"),
            "exec'd process outside the container's cgroup: {line}"
        );
    }

    let out = f.run(&["exec", "box", "checker", "exit", "3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let out = f.run(&["exec", "box", "sh", "-c", "exit 77"]);
    assert_eq!(out.status.code(), Some(77), "{}", text(&out.stderr));
    f.ok(&["rm", "-f", "box"]);
    assert_clean(&f, &before);
}

#[test]
fn stop_kills_a_container_that_ignores_sigterm() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let before = mountinfo();
    f.ok(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        &image(&reg, "busybox"),
        "sh",
        "-c",
        "trap '' TERM; while true; do sleep 1; done",
    ]);
    let pid = wait_running(&f, "stubborn");
    wait_signal_mask(pid, "SigIgn", libc::SIGTERM);
    let start = Instant::now();
    f.ok(&["stop", "-t", "1", "stubborn"]);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "did not wait the grace period: {took:?}"
    );
    let c = find(&f, "stubborn");
    assert_eq!(c["status"], "exited");
    assert_eq!(c["exit_code"], 137, "{c}");
    f.ok(&["rm", "stubborn"]);
    assert_clean(&f, &before);
}

#[test]
fn stop_sends_the_image_stop_signal() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let before = mountinfo();
    f.ok(&["run", "-d", "--name", "usr1", &image(&reg, "stopsignal")]);
    let pid = wait_running(&f, "usr1");
    wait_signal_mask(pid, "SigCgt", libc::SIGUSR1);
    let start = Instant::now();
    f.ok(&["stop", "usr1"]);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "stop took {:?}: SIGKILL path?",
        start.elapsed()
    );
    let c = find(&f, "usr1");
    assert_eq!(c["status"], "exited");
    assert_eq!(c["exit_code"], 7, "{c}");
    let (o, _) = log_lines(&f, "usr1", &[]);
    assert!(o.contains("got-usr1"), "{o}");
    f.ok(&["rm", "usr1"]);
    assert_clean(&f, &before);
}

#[test]
fn rm_refuses_a_running_container_without_force() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let before = mountinfo();
    let pid = run_sleeper(&f, &reg, "busy");
    let err = f.fails(&["rm", "busy"]);
    assert!(err.contains("running"), "{err}");
    assert_eq!(find(&f, "busy")["status"], "running");
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    f.ok(&["rm", "-f", "busy"]);
    assert!(ps(&f).is_empty());
    assert_clean(&f, &before);
}

#[test]
fn run_rm_removes_the_container_and_names_are_unique() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let before = mountinfo();
    let img = image(&reg, "checker");
    let out = f.run(&[
        "run", "--rm", "--name", "gone", &img, "checker", "exit", "5",
    ]);
    assert_eq!(out.status.code(), Some(5));
    assert!(ps(&f).is_empty());
    assert_clean(&f, &before);

    // Without --rm the exited container stays until rm.
    f.ok(&["run", "--name", "kept", &img, "checker", "exit", "0"]);
    assert_eq!(find(&f, "kept")["status"], "exited");
    assert_eq!(container_dirs(&f).len(), 1);

    f.ok(&[
        "run", "-d", "--name", "dup", &img, "checker", "sleep", "300",
    ]);
    wait_running(&f, "dup");
    let out = f.run(&[
        "run", "-d", "--name", "dup", &img, "checker", "sleep", "300",
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("dup"), "{}", text(&out.stderr));
    assert_eq!(container_dirs(&f).len(), 2, "a second container exists");
    assert_eq!(ps(&f).iter().filter(|c| c["name"] == "dup").count(), 1);
    f.ok(&["rm", "-f", "dup", "kept"]);
    assert_clean(&f, &before);
}

#[test]
fn detached_run_reports_every_start_and_every_failure() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let img = image(&reg, "checker");
    f.ok(&["pull", "-q", &img]);
    let before = mountinfo();
    // With --rm, a container that exits at once is gone before `run -d` could read its
    // state: it started all the same. (No bridge: what is tested here is what `run -d`
    // reports, and these containers come and go faster than a bridge is set up.)
    for i in 0..20 {
        let out = f.run(&[
            "run",
            "-d",
            "--rm",
            "--network",
            "none",
            &img,
            "checker",
            "exit",
            "0",
        ]);
        assert!(
            out.status.success(),
            "run -d --rm #{i} ({}): {}",
            out.status,
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout).trim().len(), 64, "prints the id");
    }
    // A start failure is reported, with --rm too (its state is gone with it).
    for rm in [true, false] {
        let mut args = vec!["run", "-d", "--name", "nocmd"];
        if rm {
            args.push("--rm");
        }
        args.extend_from_slice(&[&img, "no-such-command"]);
        let out = f.run(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(127), "run {args:?}: {err}");
        assert!(
            err.contains("no-such-command") && err.contains("not found"),
            "{err}"
        );
        assert!(
            out.stdout.is_empty(),
            "printed an id: {}",
            text(&out.stdout)
        );
    }
    assert_eq!(find(&f, "nocmd")["exit_code"], 127);
    f.ok(&["rm", "nocmd"]);
    wait_for(10, "--rm containers to go", || {
        container_dirs(&f).is_empty().then_some(())
    });
    assert_clean(&f, &before);
}

// --- 7. volumes -----------------------------------------------------------------------------

#[test]
fn volumes_bind_host_dirs_rw_and_ro_and_named_volumes_persist() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let before = mountinfo();
    let img = image(&reg, "checker");
    let host = f.dir.path().join("shared");
    std::fs::create_dir(&host).unwrap();
    let vol = format!("{}:/data", host.display());
    let out = f.run(&[
        "run",
        "--rm",
        "-v",
        &vol,
        &img,
        "sh",
        "-c",
        "echo from-inside > /data/made && cat /data/made",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(host.join("made")).unwrap(),
        "from-inside\n"
    );

    let ro = format!("{}:/data:ro", host.display());
    let out = f.run(&[
        "run",
        "--rm",
        "-v",
        &ro,
        &img,
        "sh",
        "-c",
        "cat /data/made; echo x > /data/other",
    ]);
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stdout),
        "from-inside\n",
        "read-only volume is readable"
    );
    assert!(
        text(&out.stderr).contains("Read-only file system"),
        "{}",
        text(&out.stderr)
    );
    assert!(!host.join("other").exists());

    f.ok(&[
        "run",
        "--rm",
        "-v",
        "keep:/vol",
        &img,
        "sh",
        "-c",
        "echo persisted > /vol/file",
    ]);
    let out = f.ok(&["run", "--rm", "-v", "keep:/vol", &img, "cat", "/vol/file"]);
    assert_eq!(out, "persisted\n");
    assert!(f.root().join("volumes/keep/_data/file").is_file());
    assert_clean(&f, &before);
}

/// The uid of a file or of a process (`/proc/PID`), as the host sees it.
fn host_uid(p: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{p:?}: {e}"))
        .uid()
}

#[test]
fn user_namespace_maps_ids_idmaps_the_layers_and_idmap_volumes() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let before = mountinfo();
    let img = image(&reg, "checker");
    let map = [
        "--uidmap",
        "0:200000:65536",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
    ];

    // From the inside: a user namespace of its own with the mapping, root in it with
    // Docker's capabilities (of that namespace), the usual masks and read-only paths, and
    // its own cgroup's limits (the mounts a namespace's root cannot make itself came from
    // frun's side).
    let r = report(&f, &map, &img);
    let cg = &r["cgroup"];
    assert_eq!(cg["memory_limit"], "67108864", "{cg}");
    assert_eq!(cg["pids_limit"], "50", "{cg}");
    assert_ne!(r["namespaces"]["user"], host_ns("user").as_str());
    for ns in NEW_NAMESPACES {
        assert_ne!(r["namespaces"][ns].as_str().unwrap(), host_ns(ns), "{ns}");
    }
    assert_eq!((r["uid"].as_u64(), r["gid"].as_u64()), (Some(0), Some(0)));
    let mask: u64 = DOCKER_CAPS.iter().map(|(b, _)| 1u64 << b).sum();
    let eff = u64::from_str_radix(r["caps"]["CapEff"].as_str().unwrap(), 16).unwrap();
    assert_eq!(eff, mask);
    assert_masked_and_read_only(&r, true);

    // The maps; image files owned by root are root's; /dev/null works; new files are
    // the namespace's root's.
    let out = f.ok(&[
        "run",
        "--rm",
        "--uidmap",
        "0:200000:65536",
        "--gidmap",
        "0:300000:65536",
        &img,
        "sh",
        "-c",
        "cat /proc/self/uid_map /proc/self/gid_map; stat -c '%u:%g' /bin/busybox /etc; \
         echo x > /dev/null && touch /new && stat -c '%u:%g' /new; id -u",
    ]);
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(
        words,
        ["0", "200000", "65536", "0", "300000", "65536", "0:0", "0:0", "0:0", "0"],
        "{out}"
    );

    // sysfs shows the container's own network namespace (the bridge's), or the host's
    // with --network host.
    let links = || -> BTreeSet<String> {
        std::fs::read_to_string("/proc/self/net/dev")
            .unwrap()
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next().map(|n| n.trim().to_string()))
            .collect()
    };
    let ls_net = |extra: &[&str]| {
        let mut args = vec!["run", "--rm", "--uidmap", "0:200000:65536"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[&img, "ls", "/sys/class/net"]);
        let mut v: Vec<String> = f.ok(&args).split_whitespace().map(String::from).collect();
        v.sort();
        v
    };
    assert_eq!(ls_net(&[]), ["eth0", "lo"]);
    // (The links of this process's network namespace: /proc/net/dev follows it, the
    // host's /sys does not. Other tests' veths come and go meanwhile.)
    let links_before = links();
    let seen: BTreeSet<String> = ls_net(&["--network", "host"]).into_iter().collect();
    let links_after = links();
    assert!(seen.contains("lo") && !seen.contains("eth0"), "{seen:?}");
    assert!(
        seen.is_subset(&links_before.union(&links_after).cloned().collect()),
        "{seen:?} not among {links_before:?} / {links_after:?}"
    );
    assert!(
        links_before
            .intersection(&links_after)
            .all(|l| seen.contains(l)),
        "{seen:?} lacks some of {links_before:?}"
    );

    // From the outside: the process runs as the mapped host uid, its files in the upper
    // directory belong to it, the shared layers are untouched; exec joins the namespace.
    f.ok(&[
        "run",
        "-d",
        "--name",
        "u",
        "--uidmap",
        "0:200000:65536",
        &img,
        "sh",
        "-c",
        "touch /made-inside; exec sleep 300",
    ]);
    let pid = wait_running(&f, "u");
    assert_eq!(host_uid(Path::new(&format!("/proc/{pid}"))), 200000);
    let id = find(&f, "u")["id"].as_str().unwrap().to_string();
    let upper = f.root().join("containers").join(&id).join("upper");
    wait_for(10, "the file made inside", || {
        upper.join("made-inside").exists().then_some(())
    });
    assert_eq!(host_uid(&upper.join("made-inside")), 200000);
    assert_eq!(host_uid(&upper), 200000);
    for layer in f.layer_dirs(&format!("{img}:latest")) {
        for file in std::iter::once(PathBuf::new()).chain(files_below(&layer)) {
            let file = layer.join(file);
            assert!(host_uid(&file) < 200000, "{file:?} was chowned");
        }
    }
    let out = f.ok(&["exec", "u", "sh", "-c", "id -u; cat /proc/self/uid_map"]);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["0", "0", "200000", "65536"]
    );
    f.ok(&["rm", "-f", "u"]);

    // Volumes: a host directory owned by the host's root is not the namespace's root's
    // (writing fails); with :idmap it is, and what the container writes is the host
    // root's on disk.
    let host = f.dir.path().join("vol");
    std::fs::create_dir(&host).unwrap();
    let out = f.run(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/data", host.display()),
        "--uidmap",
        "0:200000:65536",
        &img,
        "touch",
        "/data/x",
    ]);
    assert!(!out.status.success(), "an unmapped volume was writable");
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out.stderr)
    );
    let idm = format!("{}:/data:idmap", host.display());
    let out = f.ok(&[
        "run",
        "--rm",
        "-v",
        &idm,
        "--uidmap",
        "0:200000:65536",
        &img,
        "sh",
        "-c",
        "echo hi > /data/made && stat -c '%u' /data/made",
    ]);
    assert_eq!(out.trim(), "0");
    assert_eq!(host_uid(&host.join("made")), 0);

    // Ids the maps do not cover are refused before anything starts, naming the flag.
    let e = f.fails(&[
        "run",
        "--rm",
        "--uidmap",
        "0:200000:1000",
        "-u",
        "4242",
        &img,
        "true",
    ]);
    assert!(e.contains("uid 4242 is not mapped by --uidmap"), "{e}");
    let e = f.fails(&["run", "--rm", "--uidmap", "0:200000", &img, "true"]);
    assert!(e.contains("invalid --uidmap \"0:200000\""), "{e}");
    let e = f.fails(&["run", "--rm", "-v", &idm, &img, "true"]);
    assert!(e.contains("idmap needs a user namespace"), "{e}");
    assert_clean(&f, &before);
}

// --- 8. regressions for known runtime escapes -----------------------------------------------

fn sha256_file(p: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()))
}

#[test]
fn cve_2019_5736_container_cannot_overwrite_the_frun_binary() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let before = mountinfo();
    let frun = Path::new(env!("CARGO_BIN_EXE_frun"));
    let digest = sha256_file(frun);
    f.ok(&[
        "run",
        "-d",
        "--name",
        "hostile",
        &image(&reg, "checker"),
        "checker",
        "write-exe",
        "5",
    ]);
    wait_running(&f, "hostile");
    // Processes entering the container are what the probe goes for.
    let start = Instant::now();
    let mut execs = 0;
    while start.elapsed() < Duration::from_secs(4) {
        if f.run(&["exec", "hostile", "checker", "exit", "0"])
            .status
            .success()
        {
            execs += 1;
        }
    }
    assert!(execs >= 3, "only {execs} execs into the container");
    let c = wait_exited(&f, "hostile", 30);
    assert_eq!(c["exit_code"], 0, "{c}");
    let (o, _) = log_lines(&f, "hostile", &[]);
    let r = last_json(o.as_bytes());
    assert_eq!(r["opened_for_write"], serde_json::json!([]), "{r}");
    assert!(r["rounds"].as_u64().unwrap() > 1, "{r}");
    // The probe saw the exec'd processes once they were the container's own binary, and
    // never resolved one to frun: a process entering the container is not dumpable.
    let seen = r["seen"].as_object().unwrap();
    assert!(!seen.is_empty(), "the probe saw no process: {r}");
    for (pid, exe) in seen {
        assert_eq!(
            exe, "/usr/local/bin/checker",
            "pid {pid} in the container: {r}"
        );
    }
    assert_eq!(sha256_file(frun), digest, "the frun binary changed");
    f.ok(&["rm", "hostile"]);
    assert_clean(&f, &before);
}

#[test]
fn cve_2024_21626_workdir_in_proc_self_fd_never_reaches_the_host() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let img = image(&reg, "checker");
    f.ok(&["pull", "-q", &img]);
    let before = mountinfo();
    // The leaked directory, at fds 3 to 8 of frun.
    let leak = tempfile::tempdir().unwrap();
    std::fs::write(leak.path().join("host-sentinel"), "host").unwrap();
    let check = |what: &str, out: Output| {
        if !out.status.success() {
            assert!(!text(&out.stderr).is_empty(), "{what} failed silently");
            assert!(out.stdout.is_empty(), "{what}: {}", text(&out.stdout));
            return;
        }
        let r = last_json(&out.stdout);
        let cwd = r["cwd"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no cwd: {}", r["errors"]));
        assert!(
            cwd.starts_with('/') && !cwd.contains("unreachable"),
            "{what}: cwd {cwd}"
        );
        assert!(
            !cwd.contains(&leak.path().to_string_lossy().into_owned()),
            "{what}: cwd {cwd}"
        );
    };
    for n in 3..=8 {
        let w = format!("/proc/self/fd/{n}");
        let out = leaky_command(
            &f,
            &["run", "--rm", "-w", &w, &img, "checker", "report"],
            leak.path(),
        )
        .output()
        .unwrap();
        check(&format!("run -w {w}"), out);
    }
    assert_clean(&f, &before);

    f.ok(&[
        "run", "-d", "--name", "target", &img, "checker", "sleep", "300",
    ]);
    wait_running(&f, "target");
    for n in 3..=8 {
        let w = format!("/proc/self/fd/{n}");
        let out = leaky_command(
            &f,
            &["exec", "-w", &w, "target", "checker", "report"],
            leak.path(),
        )
        .output()
        .unwrap();
        check(&format!("exec -w {w}"), out);
    }
    f.ok(&["rm", "-f", "target"]);
    assert_eq!(
        std::fs::read_dir(leak.path()).unwrap().count(),
        1,
        "the leaked dir changed"
    );
    assert_clean(&f, &before);
}

#[test]
fn cve_2019_19921_proc_symlink_in_the_image_is_refused() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let img = image(&reg, "proc-symlink");
    f.ok(&["pull", "-q", &img]);
    let before = mountinfo();
    for rm in [true, false] {
        let mut args = vec!["run"];
        if rm {
            args.push("--rm");
        }
        args.extend_from_slice(&["--name", "procsym", &img, "checker", "report"]);
        let out = f.run(&args);
        let err = text(&out.stderr);
        assert!(
            !out.status.success(),
            "started with /proc a symlink: {}",
            text(&out.stdout)
        );
        assert!(
            out.stdout.is_empty(),
            "the command ran: {}",
            text(&out.stdout)
        );
        assert!(err.contains("/proc"), "{err}");
        assert!(
            f.child_cgroups().is_empty(),
            "cgroups left: {:?}",
            f.child_cgroups()
        );
        if !rm {
            let c = find(&f, "procsym");
            assert_eq!(c["status"], "exited");
            f.ok(&["rm", "procsym"]);
        }
        assert_clean(&f, &before);
    }
}

#[test]
fn cve_2025_31133_dev_null_symlink_does_not_unmask_paths() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let before = mountinfo();
    let core_pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let r = report(&f, &[], &image(&reg, "devnull-symlink"));
    let masked = r["masked"].as_object().unwrap();
    for p in ["/proc/keys", "/proc/timer_list"] {
        assert_eq!(masked[p]["exists"], true, "{p}");
        assert_eq!(
            masked[p]["readable_content_len"], 0,
            "{p} readable: {}",
            masked[p]
        );
    }
    for (p, m) in masked {
        if m["exists"] == true && m["is_dir"] == true {
            assert_eq!(m["entries"], 0, "{p}: {m}");
        } else if m["exists"] == true {
            assert_eq!(m["readable_content_len"], 0, "{p}: {m}");
        }
    }
    let null = r["dev"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "null")
        .cloned()
        .unwrap();
    assert_eq!(
        (null["type"].as_str(), null["rdev"].as_str()),
        (Some("char"), Some("1:3")),
        "{null}"
    );
    assert_eq!(r["readonly_checks"]["/proc/sys"]["open_write"], "EROFS");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        core_pattern,
        "the host's core_pattern changed"
    );
    assert_clean(&f, &before);
}

#[test]
fn cve_2021_30465_symlinked_mount_targets_stay_inside_the_container() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let before = mountinfo();
    let token = format!("frun-{}", f.cgroup_parent.trim_start_matches("/frun-test-"));
    let (a, b) = (f.dir.path().join("vol-a"), f.dir.path().join("vol-b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    std::fs::write(a.join("in-a"), "a").unwrap();
    std::fs::write(b.join("in-b"), "b").unwrap();
    let host_etc: BTreeSet<_> = std::fs::read_dir("/etc")
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    let host_tmp_sentinel = tempfile::NamedTempFile::new_in("/tmp").unwrap();
    std::fs::write(host_tmp_sentinel.path(), "host tmp").unwrap();

    // /data -> /etc/../../../../../tmp and /abs -> / in the image: the volumes land on the
    // container's own /tmp and /etc.
    let script = format!(
        "cat /tmp/in-a /etc/in-b && echo x > /data/{token}-a && echo y > /abs/etc/{token}-b && ls /tmp /etc"
    );
    let out = f.run(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/data", a.display()),
        "-v",
        &format!("{}:/abs/etc", b.display()),
        &image(&reg, "bindlink"),
        "sh",
        "-c",
        &script,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    assert!(
        o.starts_with("ab"),
        "volumes not where the symlinks point inside: {o}"
    );
    assert!(!o.contains(
        &host_tmp_sentinel
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    ));
    assert!(a.join(format!("{token}-a")).is_file());
    assert!(b.join(format!("{token}-b")).is_file());
    for dir in ["/tmp", "/etc"] {
        for suffix in ["a", "b"] {
            let p = Path::new(dir).join(format!("{token}-{suffix}"));
            assert!(!p.exists(), "{p:?} written on the host");
        }
    }
    let now: BTreeSet<_> = std::fs::read_dir("/etc")
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(now, host_etc, "the host's /etc changed");
    assert_eq!(
        std::fs::read_to_string(host_tmp_sentinel.path()).unwrap(),
        "host tmp"
    );
    assert_clean(&f, &before);
}

// --- 9. real images -------------------------------------------------------------------------

fn mirror_frun() -> Option<Frun> {
    registry()?;
    let token = test_env("FRUN_TEST_REGISTRY_TOKEN")?;
    Some(Frun::new().env("FRUN_REGISTRY_MIRROR", &token))
}

#[test]
fn alpine_runs_its_shell_and_package_database() {
    let Some(f) = mirror_frun() else { return };
    let before = mountinfo();
    let out = f.ok(&[
        "run",
        "--rm",
        "-q",
        "alpine:3.20.3",
        "cat",
        "/etc/alpine-release",
    ]);
    assert_eq!(out, "3.20.3\n");
    let out = f.ok(&[
        "run",
        "--rm",
        "alpine:3.20.3",
        "/bin/sh",
        "-c",
        "echo $((1+2))",
    ]);
    assert_eq!(out, "3\n");
    let out = f.ok(&["run", "--rm", "alpine:3.20.3", "apk", "info"]);
    let pkgs: BTreeSet<&str> = out.lines().collect();
    for p in ["musl", "busybox", "alpine-baselayout", "apk-tools"] {
        assert!(pkgs.contains(p), "apk info lacks {p}: {out}");
    }
    assert_clean(&f, &before);
}

#[test]
fn arm64_image_is_refused_before_anything_is_set_up() {
    let Some(f) = mirror_frun() else { return };
    let before = mountinfo();
    let out = f.run(&["run", "--rm", "hello-world"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains("linux/arm64") && err.contains("linux/amd64"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(
        f.cgroup_dirs().is_empty(),
        "a cgroup was made: {:?}",
        f.cgroup_dirs()
    );
    assert_clean(&f, &before);
}

// --- 6. nothing left behind, across every way a container ends ------------------------------

#[test]
fn nothing_is_left_after_exit_stop_and_rm() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let img = image(&reg, "checker");
    f.ok(&["pull", "-q", &img]);
    let before = mountinfo();
    let vol = f.dir.path().join("v");
    std::fs::create_dir(&vol).unwrap();
    let v = format!("{}:/v", vol.display());
    // Foreground, then rm.
    f.ok(&[
        "run", "--name", "a", "-v", &v, "--memory", "32m", &img, "checker", "exit", "0",
    ]);
    assert!(
        f.child_cgroups().is_empty(),
        "cgroup outlived its container: {:?}",
        f.child_cgroups()
    );
    f.ok(&["rm", "a"]);
    assert_clean(&f, &before);
    // Detached, stopped, then rm.
    f.ok(&[
        "run", "-d", "--name", "b", "-v", &v, &img, "checker", "sleep", "300",
    ]);
    wait_running(&f, "b");
    assert!(
        !f.child_cgroups().is_empty(),
        "a running container has a cgroup"
    );
    f.ok(&["stop", "-t", "1", "b"]);
    assert!(
        f.child_cgroups().is_empty(),
        "cgroup outlived stop: {:?}",
        f.child_cgroups()
    );
    f.ok(&["rm", "b"]);
    assert_clean(&f, &before);
    // Detached with live children, rm -f.
    f.ok(&[
        "run",
        "-d",
        "--name",
        "c",
        &img,
        "sh",
        "-c",
        "sleep 300 & sleep 300 & exec checker sleep 300",
    ]);
    wait_running(&f, "c");
    f.ok(&["rm", "-f", "c"]);
    assert_clean(&f, &before);
    // Detached --rm that exits by itself.
    f.ok(&[
        "run", "-d", "--rm", "--name", "d", &img, "checker", "exit", "0",
    ]);
    wait_for(10, "the --rm container to go", || {
        container_dirs(&f).is_empty().then_some(())
    });
    assert_clean(&f, &before);
}
