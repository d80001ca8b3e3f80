//! Limits as users give them: every size and count flag range-checked before anything
//! exists (issue 15, item 6), and `--memory-swap` with Docker's meaning and default
//! (issue 8: a memory limit alone let a container swap the box to death).

use crate::common::*;
use serde_json::Value;

/// Whether this host has the unified (cgroup v2 only) layout.
fn cgroup_v2() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.contains(" /sys/fs/cgroup ") && l.contains(" - cgroup2 "))
}

/// `frun run --rm FLAGS IMAGE checker report`: the container's view of itself.
fn report(f: &Frun, flags: &[&str], image: &str) -> Value {
    let mut args = vec!["run", "--rm", "-q"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[image, "checker", "report"]);
    let out = f.run(&args);
    assert!(out.status.success(), "frun {args:?}: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .expect("a report");
    serde_json::from_str(line).expect("report json")
}

/// `--memory 18446744073709551615` meant "no limit", silently; `9223372036854775808`
/// failed with a negative number. Each such value is refused, naming the flag, with
/// Docker's exit code 125 for `run`, before any container exists.
#[test]
fn sizes_and_counts_out_of_range_are_refused_naming_the_flag() {
    let f = Frun::new();
    let img = "127.0.0.1:1/never-pulled";
    let cases: &[(&[&str], &str)] = &[
        (
            &["--memory", "18446744073709551615"],
            "--memory \"18446744073709551615\" is out of range",
        ),
        (
            &["--memory", "9223372036854775808"],
            "--memory \"9223372036854775808\" is out of range",
        ),
        (
            &["--memory", "17179869184g"],
            "--memory \"17179869184g\" is out of range",
        ),
        (
            &["--memory", "64m", "--memory-swap", "18446744073709551615"],
            "--memory-swap \"18446744073709551615\" is out of range",
        ),
        (
            &["--memory", "64m", "--memory-swap", "32m"],
            "smaller than --memory",
        ),
        (&["--memory-swap", "64m"], "--memory-swap needs --memory"),
        (
            &["--pids-limit", "9223372036854775808"],
            "--pids-limit \"9223372036854775808\" is out of range",
        ),
        (
            &["--pids-limit", "4194305"],
            "--pids-limit \"4194305\" is out of range",
        ),
        (
            &["--pids-limit", "-2"],
            "--pids-limit \"-2\" is out of range",
        ),
        (&["--cpus", "1e400"], "--cpus \"1e400\""),
        (&["--cpus", "nan"], "--cpus \"nan\""),
        (&["--cpus", "0.001"], "--cpus \"0.001\" is out of range"),
    ];
    for (flags, want) in cases {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[img, "true"]);
        let out = f.run(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(
            !err.contains(" -9") && !err.contains("\"-9"),
            "negative: {err}"
        );
    }
    let containers = f.root().join("containers");
    let left: Vec<_> = std::fs::read_dir(&containers)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");

    let err = f.fails(&["stop", "-t", "18446744073709551615", "whatever"]);
    assert!(
        err.contains("-t \"18446744073709551615\" is out of range"),
        "{err}"
    );
    let err = f.fails(&["pull", "--max-layer-size", "18446744073709551616", img]);
    assert!(
        err.contains("--max-layer-size \"18446744073709551616\" is out of range"),
        "{err}"
    );
}

/// With only `--memory`, memory plus swap is twice the limit (Docker's default), so a
/// container cannot swap the box to death; `--memory-swap` equal to `--memory` is no
/// swap and `-1` unlimited swap. cgroup v1 holds memory plus swap
/// (`memory.memsw.limit_in_bytes`), v2 swap alone (`memory.swap.max`).
#[test]
fn memory_swap_defaults_to_twice_the_memory_limit() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let img = format!("{reg}/test/checker");
    let v2 = cgroup_v2();
    let cases: &[(&[&str], &str, &str)] = &[
        // (flags, v1 memsw, v2 swap.max)
        (&["--memory", "32m"], "67108864", "33554432"),
        (
            &["--memory", "32m", "--memory-swap", "32m"],
            "33554432",
            "0",
        ),
        (
            &["--memory", "32m", "--memory-swap", "96m"],
            "100663296",
            "67108864",
        ),
        (
            &["--memory", "32m", "--memory-swap", "-1"],
            "9223372036854771712",
            "max",
        ),
    ];
    for (flags, v1_want, v2_want) in cases {
        let r = report(&f, flags, &img);
        let cg = &r["cgroup"];
        assert_eq!(cg["memory_limit"], "33554432", "{flags:?}: {cg}");
        let want = if v2 { v2_want } else { v1_want };
        assert_eq!(cg["memory_swap_limit"], *want, "{flags:?} (v2: {v2}): {cg}");
    }
}

/// A child of the container's process killed for memory is not the container killed:
/// the shell goes on and exits 0, and frun says what happened (it said "container ...
/// was killed by the kernel" and recorded `oom_killed`).
#[test]
fn a_child_killed_for_memory_is_not_the_container_killed() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let img = format!("{reg}/test/checker");
    let out = f.run(&[
        "run",
        "-q",
        "--name",
        "kid",
        "--memory",
        "32m",
        &img,
        "sh",
        "-c",
        "checker alloc 200 >/dev/null; echo survived",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        text(&out.stdout).contains("survived"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        err.contains(
            "frun: 1 process in container kid was killed by the kernel: out of memory (limit 32m)"
        ),
        "{err}"
    );
    assert!(!err.contains("frun: container kid was killed"), "{err}");
    let ps: Value = serde_json::from_str(&f.ok(&["ps", "-a", "--format", "json"])).unwrap();
    let c = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "kid")
        .expect("the container");
    assert_eq!(c["exit_code"], 0, "{c}");
    assert_eq!(c["oom_killed"], false, "{c}");
    f.ok(&["rm", "kid"]);
}
