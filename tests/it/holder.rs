//! The container's holder (`frun __holder`) and what `rm -f`, `ps` and the restart policy
//! do when it or its caller is killed: issue 15's items 1, 9, 10 and 11, each a test
//! named after what it stops.

use crate::common::*;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

fn ps_all(f: &Frun) -> Vec<Value> {
    serde_json::from_str(&f.ok(&["ps", "-a", "--format", "json"])).unwrap()
}

fn entry(f: &Frun, name: &str) -> Value {
    ps_all(f)
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn state(f: &Frun, name: &str) -> Value {
    let id = entry(f, name)["id"].as_str().unwrap().to_string();
    let s = std::fs::read(f.root().join("containers").join(id).join("state.json")).unwrap();
    serde_json::from_slice(&s).unwrap()
}

#[test]
fn a_container_whose_holder_died_is_told_by_ps_and_killed_by_rm_f() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let image = format!("{reg}/test/busybox");
    f.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "orphan",
        &image,
        "sleep",
        "600",
    ]);
    let st = state(&f, "orphan");
    let (pid, holder) = (
        st["pid"].as_i64().unwrap(),
        st["holder_pid"].as_i64().unwrap(),
    );
    assert_eq!(entry(&f, "orphan")["state"], "running");
    // The holder dies; the container's process lives on in its cgroup.
    kill9(holder as i32);
    wait_for(10, "the holder to die", || {
        (!alive(holder as i32)).then_some(())
    });
    assert!(alive(pid as i32));
    let e = entry(&f, "orphan");
    assert_eq!(e["state"], "running (holder lost)", "{e}");
    assert_eq!(e["holder_alive"], false, "{e}");
    // rm -f kills what is in the cgroup before it removes anything.
    f.ok(&["rm", "-f", "orphan"]);
    wait_for(10, "the orphan to die", || {
        (!alive(pid as i32)).then_some(())
    });
    assert!(ps_all(&f).is_empty());
    assert!(f.child_cgroups().is_empty(), "{:?}", f.child_cgroups());
}

#[test]
fn rm_f_ends_a_holder_busy_with_output_without_newlines() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let image = format!("{reg}/test/busybox");
    f.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--memory",
        "64m",
        "--name",
        "spin",
        &image,
        "sh",
        "-c",
        "while :; do printf xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; done",
    ]);
    let holder = state(&f, "spin")["holder_pid"].as_i64().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    f.ok(&["rm", "-f", "spin"]);
    assert!(!alive(holder as i32), "the holder outlived rm -f");
    assert!(ps_all(&f).is_empty());
    assert!(f.child_cgroups().is_empty(), "{:?}", f.child_cgroups());
}

#[test]
fn a_run_d_killed_early_leaves_nothing_that_rm_f_does_not_sweep() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let image = format!("{reg}/test/busybox");
    f.ok(&["pull", "-q", &image]);
    for i in 0..10u64 {
        let name = format!("early{i}");
        let mut child = f
            .command(&["run", "-d", "--name", &name, &image, "sleep", "600"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(i * 15));
        let _ = child.kill();
        let _ = child.wait();
    }
    for c in ps_all(&f) {
        f.ok(&["rm", "-f", c["name"].as_str().unwrap()]);
    }
    // Nothing of the network is left: no lease, no namespace file, no veth, no bridge.
    let leases = std::fs::read_to_string(f.root().join("network/leases.json")).unwrap_or_default();
    assert!(!leases.contains("\"ip\""), "{leases}");
    let netns = f.dir.path().join("run/netns");
    let left: Vec<_> = std::fs::read_dir(&netns)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    let links = String::from_utf8(
        std::process::Command::new("ip")
            .args(["-o", "link"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(!links.contains(&format!("{}:", f.bridge)), "{links}");
    assert!(f.child_cgroups().is_empty(), "{:?}", f.child_cgroups());
    let _ = Path::new("");
}

#[test]
fn restart_policy_on_failure_counts_and_stop_ends_always() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let image = format!("{reg}/test/busybox");
    f.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--restart",
        "on-failure:2",
        "--name",
        "flaky",
        &image,
        "sh",
        "-c",
        "echo ran; exit 3",
    ]);
    // Two restarts, then it stays exited with its code.
    let e = wait_for(20, "on-failure:2 to give up", || {
        let e = entry(&f, "flaky");
        (e["status"] == "exited" && e["holder_alive"] == false).then_some(e)
    });
    assert_eq!(e["restarts"], 2, "{e}");
    assert_eq!(e["exit_code"], 3, "{e}");
    let out = f.run(&["logs", "flaky"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).matches("ran").count(),
        3
    );
    f.ok(&["rm", "flaky"]);

    // always: restarted after a kill -9, not after stop.
    f.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--restart",
        "always",
        "--stop-timeout",
        "1",
        "--name",
        "keep",
        &image,
        "sleep",
        "600",
    ]);
    let pid = state(&f, "keep")["pid"].as_i64().unwrap();
    kill9(pid as i32);
    let e = wait_for(20, "the restart", || {
        let e = entry(&f, "keep");
        (e["restarts"] == 1 && e["status"] == "running").then_some(e)
    });
    assert_ne!(e["pid"], pid);
    f.ok(&["stop", "keep"]);
    wait_for(20, "the holder to end after stop", || {
        let e = entry(&f, "keep");
        (e["status"] == "exited" && e["holder_alive"] == false).then_some(())
    });
    f.ok(&["rm", "keep"]);
    assert!(f.child_cgroups().is_empty(), "{:?}", f.child_cgroups());
}

/// A holder killed with -9 cannot remove its control socket and ports report from the
/// run root; once its container is removed, `gc` does.
#[test]
fn gc_removes_the_run_files_a_killed_holder_left() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let image = format!("{reg}/test/busybox");
    let port = free_port();
    f.ok(&[
        "run",
        "-d",
        "--name",
        "published",
        "-p",
        &format!("127.0.0.1:{port}:8000"),
        &image,
        "sleep",
        "600",
    ]);
    let st = state(&f, "published");
    let holder = st["holder_pid"].as_i64().unwrap() as i32;
    let id = entry(&f, "published")["id"].as_str().unwrap().to_string();
    let ports = f.dir.path().join("run/ports");
    let sock = ports.join(format!("{id}.sock"));
    wait_for(10, "the holder's control socket", || {
        sock.exists().then_some(())
    });
    kill9(holder);
    wait_for(10, "the holder to die", || (!alive(holder)).then_some(()));
    f.ok(&["rm", "-f", "published"]);
    let left: Vec<_> = std::fs::read_dir(&ports)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.iter().any(|n| n.to_string_lossy().starts_with(&id)),
        "a killed holder leaves its run files: {left:?}"
    );
    f.ok(&["gc"]);
    let left: Vec<_> = std::fs::read_dir(&ports)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with(&id))
        .collect();
    assert!(left.is_empty(), "gc left {left:?}");
}
