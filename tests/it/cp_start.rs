//! `frun cp` to a stopped container's files against a start of it: the copy mounts the
//! container's overlay on its upper directory, and the kernel would let the holder
//! mount a second one on it meanwhile. One waits for the other through the container's
//! hold lock; which one is told by /proc/locks, never by a clock.

use crate::common::*;
use crate::logs::image;
use serde_json::Value;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// A stopped container `c` (its command ran, then `stop`); its directory.
fn stopped(f: &Frun, reg: &str) -> PathBuf {
    f.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "c",
        &image(reg, "busybox"),
        "sleep",
        "600",
    ]);
    f.ok(&["stop", "-t", "0", "c"]);
    let ps: Vec<Value> = serde_json::from_str(&f.ok(&["ps", "-a", "--format", "json"])).unwrap();
    assert_eq!(ps[0]["status"], "exited", "{}", ps[0]);
    f.root()
        .join("containers")
        .join(ps[0]["id"].as_str().unwrap())
}

fn status(f: &Frun) -> String {
    let ps: Vec<Value> = serde_json::from_str(&f.ok(&["ps", "-a", "--format", "json"])).unwrap();
    ps[0]["status"].as_str().unwrap().to_string()
}

/// The flock entries of /proc/locks on `file`: (waiting, kind, pid).
fn flocks_on(file: &Path) -> Vec<(bool, String, i32)> {
    let ino = std::fs::metadata(file).unwrap().ino();
    read(Path::new("/proc/locks"))
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let waiting = f.get(1) == Some(&"->");
            let f = &f[if waiting { 2 } else { 1 }..];
            let on_ino = f.get(4)?.rsplit(':').next()? == ino.to_string();
            (f.first() == Some(&"FLOCK") && on_ino)
                .then(|| (waiting, f[2].to_string(), f[3].parse().unwrap()))
        })
        .collect()
}

#[test]
fn cp_into_a_stopped_container_is_refused_while_its_holder_starts_it() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let dir = stopped(&f, &reg);
    let host = f.dir.path().join("in");
    std::fs::write(&host, "from the host\n").unwrap();
    // A holder that is starting the container holds this lock shared (as this does);
    // cp gives it the moments an ending holder takes, then refuses.
    let starting =
        frun_images::fsutil::lock_file(&dir.join("hold"), rustix::fs::FlockOperation::LockShared)
            .unwrap();
    let err = f.fails(&["cp", host.to_str().unwrap(), "c:/in"]);
    assert!(
        err.contains("container c is starting or waiting to restart"),
        "{err}"
    );
    assert!(!dir.join("upper/in").exists(), "written while refused");
    drop(starting);
    f.ok(&["cp", host.to_str().unwrap(), "c:/in"]);
    assert_eq!(read(&dir.join("upper/in")), "from the host\n");
    f.ok(&["rm", "c"]);
}

#[test]
fn a_start_waits_for_a_cp_of_the_stopped_containers_files() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let dir = stopped(&f, &reg);
    let hold = dir.join("hold");
    // 1. A copy out to a FIFO: it holds the lock, its overlay mounted, until the FIFO
    //    is read.
    let fifo = f.dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let cp = Reaped(
        f.command(&["cp", "c:/bin/busybox", fifo.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let cp_pid = cp.0.id() as i32;
    wait_for(30, "cp to hold the container's lock", || {
        flocks_on(&hold)
            .contains(&(false, "WRITE".into(), cp_pid))
            .then_some(())
    });
    // 2. A start meanwhile (the holder, as `start_detached` or the supervisor runs it):
    //    it waits for the lock, and the container does not run.
    let holder = Reaped(
        f.command(&["__holder", dir.file_name().unwrap().to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let holder_pid = holder.0.id() as i32;
    wait_for(30, "the holder to wait for the lock", || {
        flocks_on(&hold)
            .contains(&(true, "READ".into(), holder_pid))
            .then_some(())
    });
    assert_eq!(status(&f), "exited");
    // 3. The copy ends; then the container starts.
    let copied = std::fs::read(&fifo).unwrap();
    assert!(copied.len() > 100_000, "{} bytes copied", copied.len());
    let mut cp = cp;
    let done = cp.0.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut cp.0.stderr.take().unwrap(), &mut err).unwrap();
    assert!(done.success(), "cp: {err}");
    wait_for(30, "the container to run", || {
        (status(&f) == "running").then_some(())
    });
    f.ok(&["rm", "-f", "c"]);
    drop(holder);
    assert!(f.child_cgroups().is_empty(), "{:?}", f.child_cgroups());
}
