//! Pids recorded before a reboot: pids are handed out again and start times count from
//! the boot, so a new process can match a stale record's pid and start time. The record
//! says which boot it is of; under another boot it names nothing, and frun signals
//! nothing by it.

use crate::common::*;
use serde_json::Value;
use std::process::Command;

/// Field 22 of /proc/PID/stat: the start time frun records beside a pid.
fn start_time(pid: u32) -> u64 {
    let stat = read(std::path::Path::new(&format!("/proc/{pid}/stat")));
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

#[test]
fn a_record_from_another_boot_signals_no_process_that_reuses_its_pids() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let image = format!("{reg}/test/busybox");
    f.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "old",
        &image,
        "sleep",
        "600",
    ]);
    let ps = || -> Value {
        let all: Vec<Value> =
            serde_json::from_str(&f.ok(&["ps", "-a", "--format", "json"])).unwrap();
        all.into_iter()
            .find(|c| c["name"] == "old")
            .expect("old listed")
    };
    let id = ps()["id"].as_str().unwrap().to_string();
    let state_path = f.root().join("containers").join(&id).join("state.json");
    let st: Value = serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    assert!(st["boot_id"].is_string(), "the state names its boot: {st}");

    // 1. "The reboot": the container and its holder die with the machine.
    for pid in [&st["pid"], &st["holder_pid"]] {
        kill9(pid.as_i64().unwrap() as i32);
    }
    wait_for(10, "the container's processes to die", || {
        f.cgroup_pids().is_empty().then_some(())
    });
    // 2. After it, a new process holds the recorded pids with the recorded start time
    //    (no test can make the kernel reuse a pid: the record is pointed at it instead).
    let b = Reaped(Command::new("sleep").arg("600").spawn().unwrap());
    let (pid, start) = (b.0.id(), start_time(b.0.id()));
    let mut old = st.clone();
    for (p, s) in [("pid", "pid_start"), ("holder_pid", "holder_start")] {
        old[p] = pid.into();
        old[s] = start.into();
    }
    old["boot_id"] = "00000000-0000-4000-8000-000000000000".into();
    std::fs::write(&state_path, serde_json::to_vec(&old).unwrap()).unwrap();

    // 3. frun believes none of it, and signals nobody by it.
    let e = ps();
    assert_eq!(e["status"], "exited", "{e}");
    assert_eq!(e["holder_alive"], false, "{e}");
    f.ok(&["stop", "old"]);
    assert!(
        alive(pid as i32),
        "stop signalled the process that reused the pid"
    );
    f.ok(&["rm", "-f", "old"]);
    assert!(
        alive(pid as i32),
        "rm -f killed the process that reused the pid"
    );
    assert!(f.child_cgroups().is_empty(), "{:?}", f.child_cgroups());
}
