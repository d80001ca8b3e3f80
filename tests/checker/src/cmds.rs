//! The subcommands other than `report`.

use crate::util::{io_err, last_errno_name};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

fn println_flush(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{s}");
    let _ = out.flush();
}

fn open_write(path: &str) -> Result<(), String> {
    // O_WRONLY only: no O_TRUNC, no O_CREAT, and nothing is ever written.
    fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map(drop)
        .map_err(|e| io_err(&e))
}

/// CVE-2019-5736 probe: for up to `secs` seconds, try to open /proc/PID/exe of every other
/// process for writing, directly and through an O_PATH fd kept from an earlier round
/// (reopened via /proc/self/fd/N, as the exploit did). Stops at the first success.
pub fn write_exe(secs: f64) -> Value {
    let me = std::process::id();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut opened: Vec<Value> = Vec::new();
    let mut errors: BTreeMap<String, String> = BTreeMap::new();
    let mut seen: BTreeMap<u32, String> = BTreeMap::new();
    let mut opath: BTreeMap<u32, OwnedFd> = BTreeMap::new();
    let mut rounds = 0u64;
    loop {
        rounds += 1;
        let pids: Vec<u32> = fs::read_dir("/proc")
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                    .filter(|p| *p != me)
                    .collect()
            })
            .unwrap_or_default();
        for pid in pids {
            let exe = format!("/proc/{pid}/exe");
            let target = fs::read_link(&exe)
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !target.is_empty() {
                seen.insert(pid, target.clone());
            }
            match open_write(&exe) {
                Ok(()) => opened.push(json!({"pid": pid, "exe": target, "via": "exe"})),
                Err(e) => {
                    errors.insert(pid.to_string(), e);
                }
            }
            if !opath.contains_key(&pid) && opath.len() < 512 {
                if let Ok(f) = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
                    .open(&exe)
                {
                    opath.insert(pid, f.into());
                }
            }
        }
        for (pid, fd) in &opath {
            match open_write(&format!("/proc/self/fd/{}", fd.as_raw_fd())) {
                Ok(()) => opened.push(json!({
                    "pid": pid, "exe": seen.get(pid).cloned().unwrap_or_default(), "via": "o_path"
                })),
                Err(e) => {
                    errors.insert(format!("{pid}/o_path"), e);
                }
            }
        }
        if !opened.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    json!({
        "opened_for_write": opened,
        "errors": errors,
        "seen": seen.into_iter().map(|(p, t)| (p.to_string(), Value::from(t))).collect::<Map<_, _>>(),
        "rounds": rounds,
        "elapsed_ms": start.elapsed().as_millis() as u64,
    })
}

/// Forks until fork fails (or `max` children); children close stdio, sleep 30 s, exit.
pub fn fork_bomb(max: u64) -> Value {
    let mut n = 0u64;
    let mut err = Value::Null;
    while n < max {
        // SAFETY: single-threaded; the child only makes syscalls and _exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            err = last_errno_name().into();
            break;
        }
        if pid == 0 {
            // SAFETY: the child drops its stdio (so nobody waits on pipes for 30 s), sleeps
            // and leaves without running destructors.
            unsafe {
                libc::close(0);
                libc::close(1);
                libc::close(2);
                libc::sleep(30);
                libc::_exit(0)
            }
        }
        n += 1;
    }
    json!({"forked": n, "errno": err, "capped": n >= max})
}

/// Allocates and touches `mb` MiB, one line of progress per MiB; then holds it `hold` s.
pub fn alloc(mb: u64, hold: f64) -> Value {
    const MIB: usize = 1 << 20;
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    for i in 1..=mb {
        let mut v = vec![0u8; MIB];
        for off in (0..MIB).step_by(4096) {
            // SAFETY: off < MIB = v.len(); volatile so the touch is not optimised away.
            unsafe { std::ptr::write_volatile(v.as_mut_ptr().add(off), 1) };
        }
        chunks.push(v);
        println_flush(&json!({"allocated_mb": i}).to_string());
    }
    std::hint::black_box(&chunks);
    if hold > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(hold));
    }
    json!({"allocated_mb": mb, "done": true})
}
