//! `frun supervise --boot` (what the unit of `frun systemd-unit` runs) after a simulated
//! reboot: the family stack recorded by `frun up`, then everything a reboot takes away
//! taken away (every process frun started, the run root with its namespace files, the
//! bridge and its nftables table), then the supervisor started as the unit starts it:
//! the stack serves again with no user action, under the same names, with its data.
//! (The real reboot is the `reboot_serving` check of scripts/vm-test.sh.)

use crate::common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// What a reboot takes away from this test's frun: its processes (killed until none is
/// left in its cgroups), its run root (a tmpfs at boot: the namespace files there are
/// bind mounts, unmounted first), its bridge and the bridge's nftables table.
fn simulate_reboot(f: &Frun) {
    wait_for(10, "every process of the test's cgroups to die", || {
        for pid in f.cgroup_pids() {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid).unwrap(),
                rustix::process::Signal::KILL,
            );
        }
        std::thread::sleep(Duration::from_millis(100));
        f.cgroup_pids().is_empty().then_some(())
    });
    let run = f.dir.path().join("run");
    for m in mounts_below(&run) {
        nix::mount::umount2(Path::new(&m), nix::mount::MntFlags::MNT_DETACH)
            .unwrap_or_else(|e| panic!("umount {m}: {e}"));
    }
    std::fs::remove_dir_all(&run).unwrap();
    let st = Command::new("ip")
        .args(["link", "del", &f.bridge])
        .status()
        .unwrap();
    assert!(st.success(), "ip link del {}", f.bridge);
    let table = format!("frun_{}", f.bridge);
    let st = Command::new("nft")
        .args(["delete", "table", "ip", &table])
        .status()
        .unwrap();
    assert!(st.success(), "nft delete table ip {table}");
}

#[test]
fn after_a_reboot_supervise_boot_brings_the_recorded_stack_back() {
    let Some(reg) = registry() else { return };
    let f = Frun::new().checked();
    // 1. The family stack (nginx + the sqlite app + its volume), up and counting visits.
    let dir = f.dir.path().join("family");
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/family");
    std::fs::copy(repo.join("proxy.conf.tmpl"), dir.join("proxy.conf.tmpl")).unwrap();
    let text = std::fs::read_to_string(repo.join("frun.toml"))
        .unwrap()
        .replace(
            "\"nginx:stable\"",
            &format!("\"{reg}/library/nginx:stable\""),
        )
        .replace("\"family/app:v1\"", &format!("\"{reg}/family/app:v1\""))
        .replace("127.0.0.1:8080:80", &format!("127.0.0.1:{port}:80"))
        .replace("interval = \"2s\"", "interval = \"300ms\"");
    let file = dir.join("frun.toml");
    std::fs::write(&file, text).unwrap();
    let file = file.to_str().unwrap();
    let addr = format!("127.0.0.1:{port}");
    f.ok(&["up", "-f", file]);
    let visit = || {
        eventually_for(60, "a visit through the stack", || {
            http_get(&addr, "/visit")
        })
        .trim()
        .to_string()
    };
    assert_eq!(visit(), "1");
    let before: Vec<Value> =
        serde_json::from_str(&f.ok(&["status", "-f", file, "--format", "json"])).unwrap();

    // 2. The reboot: nothing serves.
    simulate_reboot(&f);
    assert!(http_get(&addr, "/").is_err(), "{addr} still answers");

    // 3. The unit's command, as `frun systemd-unit` prints it (roots, cgroup parent; the
    //    bridge, `--verbose`), and no user action after it.
    let unit = f.ok(&["systemd-unit"]);
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap_or_else(|| panic!("no ExecStart in:\n{unit}"));
    let args: Vec<&str> = exec.split_whitespace().skip(1).collect();
    assert_eq!(
        args[args.len() - 2..],
        ["supervise", "--boot"],
        "the unit runs: {exec}"
    );
    let log = f.dir.path().join("supervise-boot.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_frun"));
    cmd.args(&args)
        .env_remove("FRUN_REGISTRY_MIRROR")
        .env_remove("RUST_LOG")
        .env("DOCKER_CONFIG", f.docker_config())
        .envs(f.envs.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let sup = Reaped(cmd.spawn().expect("start frun supervise --boot"));

    // 4. The stack serves again, same names, same data; status says so.
    assert_eq!(visit(), "2", "the data survived the reboot");
    let after: Vec<Value> =
        serde_json::from_str(&f.ok(&["status", "-f", file, "--format", "json"])).unwrap();
    let names = |rows: &[Value]| {
        let mut n: Vec<String> = rows
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(&after), names(&before), "{after:?}");
    for r in &after {
        assert_eq!(r["status"], "running", "{after:?}");
    }
    // The boot's `frun up` succeeded (it did not merely leave containers behind).
    let text = wait_for(30, "the supervisor to log the stack back", || {
        let t = read_or_empty(&log);
        t.contains("stack back up after the boot").then_some(t)
    });
    assert!(!text.contains("failed"), "supervisor log:\n{text}");
    // And the supervisor that answers is the unit's (the boot's `up` started no other).
    assert_eq!(ping(&f), Some(format!("pong {}", sup.0.id())), "{text}");
    f.ok(&["down", "--volumes", "-f", file]);
}

fn ping(f: &Frun) -> Option<String> {
    let mut s =
        std::os::unix::net::UnixStream::connect(f.dir.path().join("run/supervise.sock")).ok()?;
    writeln!(s, "ping").ok()?;
    let mut pong = String::new();
    s.read_to_string(&mut pong).ok()?;
    Some(pong.trim().to_string())
}

#[test]
fn the_units_supervisor_waits_for_one_that_up_started_then_takes_over() {
    // A user ran `frun up` (which started a supervisor), then installed the unit: the
    // unit's supervisor must neither exit (Restart=always would loop) nor run beside
    // the first; when the first ends, it takes over.
    if !is_root() {
        unavailable("not root: the supervisor joins a cgroup of its own");
        return;
    }
    let f = Frun::new();
    let first = Reaped(
        f.command(&["supervise"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pong = wait_for(10, "the first supervisor", || ping(&f));
    assert_eq!(pong, format!("pong {}", first.0.id()));
    let mut unit = Reaped(
        f.command(&["supervise", "--boot"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The first still answers, and the unit's is still there, waiting.
    assert_eq!(ping(&f), Some(pong));
    assert!(
        unit.0.try_wait().unwrap().is_none(),
        "the unit's supervisor exited"
    );
    drop(first);
    wait_for(10, "the unit's supervisor to take over", || {
        (ping(&f)? == format!("pong {}", unit.0.id())).then_some(())
    });
}
