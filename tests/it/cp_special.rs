//! `frun cp` of what is neither a file, a directory nor a symlink: refused by name, both
//! ways. Out of the container, opening a FIFO waited for a writer that never came (cp
//! hung); into it, a FIFO was skipped and cp said nothing and succeeded.

use crate::common::*;
use crate::logs::image;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn cp_refuses_a_fifo_both_ways_instead_of_hanging_or_copying_nothing() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    // A stopped container with a FIFO of its own.
    f.ok(&[
        "run",
        "-q",
        "--network",
        "none",
        "--name",
        "c",
        &image(&reg, "busybox"),
        "mkfifo",
        "/f",
    ]);
    let host = f.dir.path().join("host");
    std::fs::create_dir_all(&host).unwrap();

    // 1. Out: refused (a hang is ended after 60 s and fails the test).
    let mut cp = f
        .command(&["cp", "c:/f", host.join("f").to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while cp.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if cp.try_wait().unwrap().is_none() {
        let _ = cp.kill();
        let _ = cp.wait();
        panic!("cp of a FIFO out of the container hangs");
    }
    let out = cp.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("\"/f\" is a FIFO: cp copies files, directories and symlinks"),
        "{err}"
    );
    assert!(!host.join("f").exists());

    // 2. In: refused, naming the host path; nothing lands in the container.
    let fifo = host.join("in-fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let err = f.fails(&["cp", fifo.to_str().unwrap(), "c:/in-fifo"]);
    assert!(err.contains("in-fifo\" is a FIFO"), "{err}");
    let back = f.run(&["cp", "c:/in-fifo", host.join("back").to_str().unwrap()]);
    assert!(!back.status.success(), "the FIFO was copied in");
    f.ok(&["rm", "c"]);
}
