//! `checker report`: what the container looks like from the inside, as one JSON object.

use crate::util::{
    cap_names, io_err, last_errno_name, major_minor, parse_mountinfo_line, parse_status, Fields,
};
use serde_json::{json, Map, Value};
use std::ffi::{CStr, CString};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Paths a runtime should mask (reported by "masked").
pub const MASKED: &[&str] = &[
    "/proc/kcore",
    "/proc/keys",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/acpi",
    "/sys/firmware",
    "/proc/latency_stats",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
];

/// Paths a runtime should make read-only (reported by "readonly_checks").
pub const READONLY: &[&str] = &[
    "/proc/sys",
    "/proc/sysrq-trigger",
    "/proc/irq",
    "/proc/bus",
    "/proc/fs",
    "/sys",
    "/sys/fs/cgroup",
];

/// At most this many bytes are read from a masked file ("readable_content_len" is capped).
const READ_CAP: u64 = 65536;

pub fn report() -> Value {
    let mut f = Fields::new("");
    ids(&mut f);
    let mut ns = Fields::new("namespaces.");
    for n in ["mnt", "pid", "uts", "ipc", "net", "cgroup", "user", "time"] {
        ns.set(
            n,
            fs::read_link(format!("/proc/self/ns/{n}"))
                .map(|p| p.to_string_lossy().into_owned().into())
                .map_err(|e| io_err(&e)),
        );
    }
    f.set_sub("namespaces", ns);
    status(&mut f);
    f.set("rlimits", Ok(rlimits()));
    f.set(
        "oom_score_adj",
        fs::read_to_string("/proc/self/oom_score_adj")
            .map_err(|e| io_err(&e))
            .and_then(|s| {
                s.trim()
                    .parse::<i64>()
                    .map(Value::from)
                    .map_err(|e| e.to_string())
            }),
    );
    f.set("mounts", mounts());
    f.set("masked", Ok(masked()));
    f.set("readonly_checks", Ok(readonly_checks()));
    f.set("dev", dev());
    let mut cg = Fields::new("cgroup.");
    cgroup(&mut cg);
    f.set_sub("cgroup", cg);
    f.set("fds", fds().map(Value::Array));
    let mut can = Fields::new("can.");
    crate::probes::can(&mut can);
    f.set_sub("can", can);
    let errors = std::mem::take(&mut f.errors);
    f.obj.insert("errors".into(), Value::Object(errors));
    Value::Object(f.obj)
}

fn ids(f: &mut Fields) {
    // SAFETY: these getters cannot fail and touch no memory of ours.
    let (pid, ppid, uid, gid, euid, egid) = unsafe {
        (
            libc::getpid(),
            libc::getppid(),
            libc::getuid(),
            libc::getgid(),
            libc::geteuid(),
            libc::getegid(),
        )
    };
    f.set("pid", Ok(pid.into()));
    f.set("ppid", Ok(ppid.into()));
    f.set("uid", Ok(uid.into()));
    f.set("gid", Ok(gid.into()));
    f.set("euid", Ok(euid.into()));
    f.set("egid", Ok(egid.into()));
    f.set("groups", groups());
    // SAFETY: umask only swaps the process's file mode creation mask; we put it back.
    let mask = unsafe {
        let old = libc::umask(0o022);
        libc::umask(old);
        old
    };
    f.set("umask", Ok(format!("{mask:04o}").into()));
    f.set(
        "cwd",
        std::env::current_dir()
            .map(|p| p.to_string_lossy().into_owned().into())
            .map_err(|e| io_err(&e)),
    );
    f.set("hostname", hostname().map(Value::from));
    f.set(
        "argv",
        Ok(std::env::args_os()
            .map(|a| Value::from(a.to_string_lossy().into_owned()))
            .collect()),
    );
    f.set(
        "env",
        Ok(Value::Object(
            std::env::vars_os()
                .map(|(k, v)| {
                    (
                        k.to_string_lossy().into_owned(),
                        Value::from(v.to_string_lossy().into_owned()),
                    )
                })
                .collect(),
        )),
    );
}

fn groups() -> Result<Value, String> {
    // SAFETY: size query; a null list is allowed when the size is 0.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if n < 0 {
        return Err(last_errno_name());
    }
    let mut v: Vec<libc::gid_t> = vec![0; n as usize];
    // SAFETY: v has room for n entries.
    let n = unsafe { libc::getgroups(n, v.as_mut_ptr()) };
    if n < 0 {
        return Err(last_errno_name());
    }
    v.truncate(n as usize);
    Ok(v.into_iter().map(Value::from).collect())
}

pub fn hostname() -> Result<String, String> {
    // SAFETY: utsname is plain old data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return Err(last_errno_name());
    }
    // SAFETY: uname NUL-terminates nodename within its array.
    let s = unsafe { CStr::from_ptr(u.nodename.as_ptr()) };
    Ok(s.to_string_lossy().into_owned())
}

fn status(f: &mut Fields) {
    let st = match fs::read_to_string("/proc/self/status") {
        Ok(s) => parse_status(&s),
        Err(e) => {
            let e = io_err(&e);
            for k in ["caps", "no_new_privs", "seccomp", "seccomp_filters"] {
                f.set(k, Err(format!("/proc/self/status: {e}")));
            }
            return;
        }
    };
    let mut caps = Fields::new("caps.");
    for k in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        let hex = st.get(k).cloned();
        caps.set(
            k,
            hex.clone()
                .map(Value::from)
                .ok_or_else(|| "missing".to_string()),
        );
        let names = format!("cap_names_{}", k[3..].to_lowercase());
        caps.set(
            &names,
            hex.ok_or_else(|| "missing".to_string()).and_then(|h| {
                u64::from_str_radix(&h, 16)
                    .map(|m| cap_names(m).into_iter().map(Value::from).collect())
                    .map_err(|e| format!("{k} {h:?}: {e}"))
            }),
        );
    }
    f.set_sub("caps", caps);
    for (field, key) in [
        ("no_new_privs", "NoNewPrivs"),
        ("seccomp", "Seccomp"),
        ("seccomp_filters", "Seccomp_filters"),
    ] {
        f.set(
            field,
            st.get(key)
                .ok_or_else(|| format!("{key} missing from /proc/self/status"))
                .and_then(|v| v.parse::<i64>().map(Value::from).map_err(|e| e.to_string())),
        );
    }
}

fn rlimits() -> Value {
    let list = [
        ("as", libc::RLIMIT_AS),
        ("core", libc::RLIMIT_CORE),
        ("cpu", libc::RLIMIT_CPU),
        ("data", libc::RLIMIT_DATA),
        ("fsize", libc::RLIMIT_FSIZE),
        ("locks", libc::RLIMIT_LOCKS),
        ("memlock", libc::RLIMIT_MEMLOCK),
        ("msgqueue", libc::RLIMIT_MSGQUEUE),
        ("nice", libc::RLIMIT_NICE),
        ("nofile", libc::RLIMIT_NOFILE),
        ("nproc", libc::RLIMIT_NPROC),
        ("rss", libc::RLIMIT_RSS),
        ("rtprio", libc::RLIMIT_RTPRIO),
        ("rttime", libc::RLIMIT_RTTIME),
        ("sigpending", libc::RLIMIT_SIGPENDING),
        ("stack", libc::RLIMIT_STACK),
    ];
    let conv = |v: libc::rlim_t| -> Value {
        if v == libc::RLIM_INFINITY {
            (-1i64).into()
        } else {
            v.into()
        }
    };
    let mut m = Map::new();
    for (name, res) in list {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: r is a valid rlimit to fill.
        let v = if unsafe { libc::getrlimit(res, &mut r) } == 0 {
            json!([conv(r.rlim_cur), conv(r.rlim_max)])
        } else {
            Value::Null
        };
        m.insert(name.into(), v);
    }
    Value::Object(m)
}

fn mounts() -> Result<Value, String> {
    let text = fs::read_to_string("/proc/self/mountinfo").map_err(|e| io_err(&e))?;
    Ok(text.lines().filter_map(parse_mountinfo_line).collect())
}

fn masked() -> Value {
    let mut m = Map::new();
    for p in MASKED {
        let v = match fs::metadata(p) {
            Err(e) => json!({"exists": false, "is_dir": false, "readable_content_len": null,
                             "entries": null, "error": io_err(&e)}),
            Ok(md) if md.is_dir() => {
                let (entries, error) = match fs::read_dir(p) {
                    Ok(rd) => (Value::from(rd.count()), Value::Null),
                    Err(e) => (Value::Null, io_err(&e).into()),
                };
                json!({"exists": true, "is_dir": true, "readable_content_len": null,
                       "entries": entries, "error": error})
            }
            Ok(_) => {
                let mut buf = Vec::new();
                let (len, error) =
                    match fs::File::open(p).and_then(|f| f.take(READ_CAP).read_to_end(&mut buf)) {
                        Ok(n) => (Value::from(n), Value::Null),
                        Err(e) => (Value::Null, io_err(&e).into()),
                    };
                json!({"exists": true, "is_dir": false, "readable_content_len": len,
                       "entries": null, "error": error})
            }
        };
        m.insert(p.to_string(), v);
    }
    Value::Object(m)
}

/// Files opened (never written) for the write-open test of a read-only path.
fn write_candidates(p: &str) -> &'static [&'static str] {
    match p {
        "/proc/sys" => &[
            "/proc/sys/kernel/core_pattern",
            "/proc/sys/kernel/domainname",
        ],
        "/proc/irq" => &["/proc/irq/default_smp_affinity"],
        "/sys" => &["/sys/kernel/uevent_helper", "/sys/kernel/profiling"],
        "/sys/fs/cgroup" => &[
            "/sys/fs/cgroup/cgroup.procs",
            "/sys/fs/cgroup/memory/cgroup.procs",
            "/sys/fs/cgroup/pids/cgroup.procs",
        ],
        _ => &[],
    }
}

/// First regular file with an owner write bit under dir (breadth first, bounded).
fn find_writable_file(dir: &str) -> Option<String> {
    let mut queue = std::collections::VecDeque::from([(dir.to_string(), 0)]);
    let mut seen = 0;
    while let Some((d, depth)) = queue.pop_front() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        let mut names: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        names.sort();
        for p in names {
            seen += 1;
            if seen > 5000 {
                return None;
            }
            let Ok(md) = fs::symlink_metadata(&p) else {
                continue;
            };
            if md.is_file() && md.mode() & 0o200 != 0 {
                return Some(p.to_string_lossy().into_owned());
            }
            if md.is_dir() && depth < 3 {
                queue.push_back((p.to_string_lossy().into_owned(), depth + 1));
            }
        }
    }
    None
}

/// O_WRONLY open (no O_TRUNC, no O_CREAT, nothing written): "ok" or the errno name.
fn try_open_write(p: &str) -> String {
    match fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(p)
    {
        Ok(_) => "ok".into(),
        Err(e) => io_err(&e),
    }
}

fn readonly_checks() -> Value {
    let mut m = Map::new();
    for p in READONLY {
        let md = match fs::metadata(p) {
            Ok(md) => md,
            Err(e) => {
                m.insert(
                    p.to_string(),
                    json!({"exists": false, "open_write": io_err(&e), "file": null, "create": null}),
                );
                continue;
            }
        };
        if !md.is_dir() {
            m.insert(
                p.to_string(),
                json!({"exists": true, "open_write": try_open_write(p), "file": p, "create": null}),
            );
            continue;
        }
        let file = write_candidates(p)
            .iter()
            .find(|c| Path::new(c).is_file())
            .map(|c| c.to_string())
            .or_else(|| find_writable_file(p));
        let open_write = file.as_deref().map(try_open_write);
        // SAFETY: getpid cannot fail.
        let probe = format!("{p}/.frun-checker-probe-{}", unsafe { libc::getpid() });
        let create = match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&probe)
        {
            Ok(_) => {
                let _ = fs::remove_file(&probe);
                "ok".to_string()
            }
            Err(e) => io_err(&e),
        };
        m.insert(
            p.to_string(),
            json!({"exists": true, "open_write": open_write, "file": file, "create": create}),
        );
    }
    Value::Object(m)
}

fn file_type_name(ft: fs::FileType) -> &'static str {
    if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else {
        "unknown"
    }
}

fn dev() -> Result<Value, String> {
    let mut names: Vec<_> = fs::read_dir("/dev")
        .map_err(|e| io_err(&e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for n in names {
        let p = Path::new("/dev").join(&n);
        let name = n.to_string_lossy().into_owned();
        let v = match fs::symlink_metadata(&p) {
            Err(e) => json!({"name": name, "error": io_err(&e)}),
            Ok(md) => {
                let ft = md.file_type();
                let rdev = if ft.is_char_device() || ft.is_block_device() {
                    let (ma, mi) = major_minor(md.rdev());
                    Value::from(format!("{ma}:{mi}"))
                } else {
                    Value::Null
                };
                let target = if ft.is_symlink() {
                    fs::read_link(&p)
                        .map(|t| Value::from(t.to_string_lossy().into_owned()))
                        .unwrap_or(Value::Null)
                } else {
                    Value::Null
                };
                json!({"name": name, "type": file_type_name(ft), "rdev": rdev,
                       "mode": format!("{:04o}", md.mode() & 0o7777),
                       "uid": md.uid(), "gid": md.gid(), "target": target})
            }
        };
        out.push(v);
    }
    Ok(Value::Array(out))
}

fn read_trim(p: &str) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

fn cgroup(f: &mut Fields) {
    let lines: Vec<String> = match fs::read_to_string("/proc/self/cgroup") {
        Ok(s) => s.lines().map(str::to_string).collect(),
        Err(e) => {
            f.set("self", Err(io_err(&e)));
            Vec::new()
        }
    };
    if !lines.is_empty() {
        f.set("self", Ok(lines.iter().cloned().map(Value::from).collect()));
    }
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let v1 = ["memory", "pids", "cpu", "cpuset"]
        .iter()
        .any(|c| Path::new("/sys/fs/cgroup").join(c).is_dir());
    f.set(
        "version",
        Ok(if v2 {
            2.into()
        } else if v1 {
            1.into()
        } else {
            Value::Null
        }),
    );
    // Own cgroup path per v1 controller ("" key = v2), for when /sys/fs/cgroup is not namespaced.
    let own = |ctl: &str| -> Option<String> {
        lines.iter().find_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, ctls, path) = (it.next()?, it.next()?, it.next()?);
            let hit = if ctl.is_empty() {
                ctls.is_empty()
            } else {
                ctls.split(',').any(|c| c == ctl)
            };
            (hit && path != "/").then(|| path.to_string())
        })
    };
    // Directories to look in, own cgroup first, then the mount root.
    let dirs = |ctl: &str| -> Vec<String> {
        let base = if ctl.is_empty() {
            "/sys/fs/cgroup".to_string()
        } else {
            format!("/sys/fs/cgroup/{ctl}")
        };
        let mut v = Vec::new();
        if let Some(p) = own(ctl) {
            v.push(format!("{base}{p}"));
        }
        v.push(base);
        v
    };
    let mut files = Map::new();
    let mut find = |cands: &[(&str, &str)]| -> Option<String> {
        for (ctl, file) in cands {
            for d in dirs(ctl) {
                let p = format!("{d}/{file}");
                if let Some(c) = read_trim(&p) {
                    files.insert(p, c.clone().into());
                    return Some(c);
                }
            }
        }
        None
    };
    let summary: [(&str, &[(&str, &str)]); 9] = [
        (
            "memory_limit",
            &[("", "memory.max"), ("memory", "memory.limit_in_bytes")],
        ),
        (
            "memory_swap_limit",
            &[
                ("", "memory.swap.max"),
                ("memory", "memory.memsw.limit_in_bytes"),
            ],
        ),
        ("pids_limit", &[("", "pids.max"), ("pids", "pids.max")]),
        ("cpu_max", &[("", "cpu.max")]),
        ("cpu_quota", &[("cpu", "cpu.cfs_quota_us")]),
        ("cpu_period", &[("cpu", "cpu.cfs_period_us")]),
        ("cpu_weight", &[("", "cpu.weight")]),
        ("cpu_shares", &[("cpu", "cpu.shares")]),
        (
            "cpuset_cpus",
            &[
                ("", "cpuset.cpus.effective"),
                ("", "cpuset.cpus"),
                ("cpuset", "cpuset.cpus"),
            ],
        ),
    ];
    let mut found = Vec::new();
    for (name, cands) in summary {
        found.push((name, find(cands)));
    }
    // cpu_quota/cpu_period from v2 cpu.max ("max 100000" / "50000 100000") when v1 is absent.
    let cpu_max = found
        .iter()
        .find(|(n, _)| *n == "cpu_max")
        .and_then(|(_, v)| v.clone());
    for (name, v) in found {
        let v = match (name, v, &cpu_max) {
            (_, Some(v), _) => Some(v),
            ("cpu_quota", None, Some(m)) => m.split_whitespace().next().map(str::to_string),
            ("cpu_period", None, Some(m)) => m.split_whitespace().nth(1).map(str::to_string),
            _ => None,
        };
        match v {
            Some(v) => f.set(name, Ok(v.into())),
            None => f.set(name, Err("not found in the v1 or v2 layout".into())),
        }
    }
    for extra in [
        "cgroup.controllers",
        "memory.high",
        "memory.oom.group",
        "cpuset.mems",
    ] {
        for d in dirs("") {
            let p = format!("{d}/{extra}");
            if let Some(c) = read_trim(&p) {
                files.insert(p, c.into());
                break;
            }
        }
    }
    f.set("files", Ok(Value::Object(files)));
}

/// Open fds with their readlink targets, without the one used to list them.
pub fn fds() -> Result<Vec<Value>, String> {
    let names: Vec<String> = fs::read_dir("/proc/self/fd")
        .map_err(|e| io_err(&e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    // The directory fd is closed now: readlink fails for it, so it drops out.
    let mut fds: Vec<(i64, String)> = names
        .into_iter()
        .filter_map(|n| {
            let fd = n.parse::<i64>().ok()?;
            let t = fs::read_link(format!("/proc/self/fd/{n}")).ok()?;
            Some((fd, t.to_string_lossy().into_owned()))
        })
        .collect();
    fds.sort();
    Ok(fds
        .into_iter()
        .map(|(fd, t)| json!({"fd": fd, "target": t}))
        .collect())
}

/// mkdir a fresh directory under /tmp (for the mount probe).
pub fn temp_dir(tag: &str) -> Option<CString> {
    // SAFETY: getpid cannot fail.
    let p = format!("/tmp/.frun-checker-{tag}-{}", unsafe { libc::getpid() });
    match fs::create_dir(&p) {
        Ok(()) => CString::new(Path::new(&p).as_os_str().as_bytes()).ok(),
        Err(_) => None,
    }
}
