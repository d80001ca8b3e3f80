//! `frun run`, `ps`, `stop`, `rm`, `exec`, `logs`: containers from the test images, checked
//! from the inside by `tests/checker` (`checker report` prints what the container looks
//! like as one JSON object) and from the outside (the test process's own mountinfo, the
//! test's cgroup parent, the state directory, host files). Each test ends by checking that
//! nothing was left behind.
//!
//! One file per section, each test opening with [`run_test`]: its `Frun` checks on drop
//! that the test's containers left nothing behind (mounts, cgroups, state), so a test
//! ends without repeating that check.

mod escapes;
mod isolation;
mod leftovers;
mod lifecycle;
mod limits;
mod process;
mod real_images;
mod users;
mod volumes;

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

/// The opening of a `run` test: root and the test registry (`None`: skipped, or failed
/// in CI), and a private frun whose drop checks that nothing is left behind.
fn run_test() -> Option<(Frun, String)> {
    let reg = registry()?;
    Some((Frun::new().checked(), reg))
}
