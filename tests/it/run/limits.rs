//! Limits.

use super::*;

#[test]
fn memory_limit_oom_kills_and_is_reported() {
    let Some((f, reg)) = run_test() else { return };
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
}

#[test]
fn fork_bomb_stops_at_the_pids_limit() {
    let Some((f, reg)) = run_test() else { return };
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
}
