//! `frun logs -f` reads only what was appended: after a 2 MB log has been printed once,
//! twenty more lines cost the follower about their own bytes of reading (its
//! `/proc/PID/io` `rchar`), not a reread of the file per line.

use crate::common::*;
use crate::logs::{image, wait_for};

/// Bytes the process has read so far (every read(2), files and pipes alike).
fn rchar(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_follower_reads_what_was_appended_not_the_whole_log_again() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    // 1. ~2 MB of log, then, once told to, twenty lines a little apart.
    let go = f.dir.path().join("go");
    std::fs::create_dir_all(&go).unwrap();
    f.ok(&[
        "run",
        "-d",
        "--name",
        "talker",
        "--network",
        "none",
        "-v",
        &format!("{}:/go", go.display()),
        &image(&reg, "checker"),
        "sh",
        "-c",
        "seq 1 30000; while [ ! -e /go/now ]; do sleep 0.1; done; \
         i=1; while [ $i -le 20 ]; do echo tick $i; i=$((i+1)); sleep 0.1; done",
    ]);
    wait_for(60, "the 2 MB written", || {
        (f.ok(&["logs", "--tail", "1", "talker"]) == "30000\n").then_some(())
    });
    // 2. A follower prints all of it once.
    let out = f.dir.path().join("followed.txt");
    let follower = f
        .command(&["logs", "-f", "talker"])
        .stdout(std::fs::File::create(&out).unwrap())
        .spawn()
        .unwrap();
    let mut follower = Reaped(follower);
    let pid = follower.0.id();
    let followed = || std::fs::read_to_string(&out).unwrap_or_default();
    wait_for(60, "the first 2 MB followed", || {
        followed().ends_with("30000\n").then_some(())
    });
    let before = rchar(pid);
    assert!(before > 2_000_000, "it read the log once: {before}");
    // 3. Twenty lines more: read as they come, the file not read again.
    std::fs::write(go.join("now"), "").unwrap();
    wait_for(60, "the twenty lines followed", || {
        followed().ends_with("tick 20\n").then_some(())
    });
    let after = rchar(pid);
    eprintln!(
        "follower read {before} bytes for the log, {} for twenty lines",
        after - before
    );
    assert!(
        after - before < 256 * 1024,
        "twenty lines cost {} bytes of reading after a {before}-byte first read",
        after - before
    );
    let status = wait_for(30, "the follower to end with the container", || {
        follower.0.try_wait().unwrap()
    });
    assert!(status.success());
    let text = followed();
    assert_eq!(text.lines().count(), 30020, "every line once");
    f.ok(&["rm", "talker"]);
}
