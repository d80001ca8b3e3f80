//! Fault injection (issue 15): frun is killed with SIGKILL at each named step of a start
//! (`FRUN_TEST_STOP_AT`, the steps `frun __steps` lists: the creating CLI, the
//! container's holder, the runtime's spawn, `frun up`, the supervisor), and then `rm -f`
//! of what `ps -a` lists and `gc` (in either order) must leave nothing: no container
//! directory, mount, cgroup, process, lease, network namespace file, veth, bridge or
//! NAT table, and no temp file or partial download.
//!
//! Each step is run in the scenarios that reach it (a `run -d` with a published port on
//! the bridge; `up` of the family stack, nginx in front of the app; a supervisor
//! bringing a `--restart always` container back at boot), and the process that reached
//! it says so in a mark file: a step no scenario reaches fails the test instead of
//! passing untested. A step added to the enum is covered without changing this file.

use crate::common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Scenario {
    /// `frun run -d -p ...` on the bridge.
    Run,
    /// `frun up` of the family stack (proxy and app), which starts the supervisor.
    Up,
    /// `frun supervise --boot` reviving a `--restart always` container that died.
    Boot,
}

/// Where a step is reached, by the process its name begins with.
fn scenarios(step: &str) -> Vec<Scenario> {
    if step.starts_with("up.") || step == "supervise.locked" || step == "supervise.listening" {
        vec![Scenario::Up]
    } else if step.starts_with("supervise.revive-") {
        vec![Scenario::Boot]
    } else {
        // Creation, network, holder and spawn: both `run -d` and `up` go through them.
        vec![Scenario::Run, Scenario::Up]
    }
}

fn steps(f: &Frun) -> Vec<String> {
    f.ok(&["__steps"]).lines().map(String::from).collect()
}

/// The pid of the supervisor of this test's run root, if one answers.
fn supervisor(f: &Frun) -> Option<i32> {
    let sock = f.dir.path().join("run/supervise.sock");
    let mut s = std::os::unix::net::UnixStream::connect(sock).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    writeln!(s, "ping").ok()?;
    let mut a = String::new();
    s.read_to_string(&mut a).ok()?;
    a.trim().strip_prefix("pong ")?.parse().ok()
}

/// Processes that name this test's directory on their command line (holders,
/// supervisors, CLIs: every frun process of this test).
fn frun_processes(f: &Frun) -> Vec<(i32, String)> {
    let ours = f.dir.path().to_string_lossy().into_owned();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a.starts_with(&ours)) && alive(pid) {
            out.push((pid, args.join(" ")));
        }
    }
    out
}

/// The family stack of `examples/family` with the test registry's images and a free
/// port.
fn family_stack(f: &Frun, reg: &str) -> PathBuf {
    let dir = f.dir.path().join("family");
    std::fs::create_dir_all(&dir).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/family");
    std::fs::copy(repo.join("proxy.conf.tmpl"), dir.join("proxy.conf.tmpl")).unwrap();
    let text = std::fs::read_to_string(repo.join("frun.toml"))
        .unwrap()
        .replace(
            "\"nginx:stable\"",
            &format!("\"{reg}/library/nginx:stable\""),
        )
        .replace("\"family/app:v1\"", &format!("\"{reg}/family/app:v1\""))
        .replace(
            "127.0.0.1:8080:80",
            &format!("127.0.0.1:{}:80", free_port()),
        )
        .replace("interval = \"2s\"", "interval = \"300ms\"");
    std::fs::write(dir.join("frun.toml"), text).unwrap();
    dir.join("frun.toml")
}

/// One kill: the scenario run with `step` as the place to die. Returns whether the step
/// was reached.
fn inject(f: &Frun, reg: &str, scenario: Scenario, step: &str, n: usize) -> bool {
    let mark = f.dir.path().join("stopped-at");
    let _ = std::fs::remove_file(&mark);
    let with_fault = |args: &[&str]| {
        let mut c = f.command(args);
        c.env("FRUN_TEST_STOP_AT", step)
            .env("FRUN_TEST_STOP_MARK", &mark)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let image = format!("{reg}/test/busybox");
    match scenario {
        Scenario::Run => {
            let port = format!("127.0.0.1:{}:80", free_port());
            let name = format!("run{n}");
            let args = [
                "run", "-d", "--name", &name, "-p", &port, &image, "httpd", "-f", "-p", "80",
            ];
            // It ends on its own: killed, told its holder died, or done.
            let _ = with_fault(&args).status().unwrap();
        }
        Scenario::Up => {
            let file = family_stack(f, reg);
            let _ = with_fault(&["up", "-f", file.to_str().unwrap()])
                .status()
                .unwrap();
        }
        Scenario::Boot => {
            // A container of a policy that brings it back, dead as after a reboot: its
            // holder and its process killed.
            let name = format!("boot{n}");
            f.ok(&[
                "run",
                "-d",
                "--restart",
                "always",
                "--name",
                &name,
                &image,
                "sleep",
                "600",
            ]);
            let id = f.ok(&["ps", "-q", "--filter", &format!("name={name}")]);
            let st = state_of(f, id.trim());
            kill9(st["holder_pid"].as_i64().unwrap() as i32);
            kill9(st["pid"].as_i64().unwrap() as i32);
            wait_for(10, "the container to die", || {
                (!alive(st["pid"].as_i64().unwrap() as i32)
                    && !alive(st["holder_pid"].as_i64().unwrap() as i32))
                .then_some(())
            });
            let mut sup = with_fault(&["supervise", "--boot"]).spawn().unwrap();
            let start = Instant::now();
            while sup.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(30) {
                if std::fs::metadata(&mark).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // A supervisor that did not reach the step runs on: ended here.
            let _ = sup.kill();
            let _ = sup.wait();
        }
    }
    // A holder goes on after its creator returned: a step of its may come a moment
    // later.
    let reached = || {
        read_or_empty(&mark)
            .lines()
            .any(|l| l.split(' ').next() == Some(step))
    };
    let start = Instant::now();
    while !reached() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    reached()
}

fn state_of(f: &Frun, short: &str) -> Value {
    let dir = f
        .container_dirs()
        .into_iter()
        .find(|d| d.file_name().unwrap().to_string_lossy().starts_with(short))
        .unwrap_or_else(|| panic!("no container {short}"));
    serde_json::from_str(&read(&dir.join("state.json"))).unwrap()
}

/// Whether a process (a creator, a holder about to record itself) holds the container
/// in `dir` (see `src/sweep.rs`).
fn held(dir: &Path) -> bool {
    let Ok(f) = std::fs::File::open(dir.join("hold")) else {
        return false;
    };
    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err()
}

/// `gc`, then `rm -f` of every container `ps -a` lists, then `gc` (with `gc_first`;
/// otherwise `rm -f` first: a user who removes what `ps -a` shows must get the same);
/// then checks that nothing is left. `what` names the kill for the messages.
fn sweep_and_check(f: &Frun, what: &str, gc_first: bool) {
    let ids: Vec<String> = f
        .container_dirs()
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    // 1. gc alone sweeps what no process works on and no command lists: directories
    //    without a record, records left `created` by a dead creator or holder.
    let gc = if gc_first {
        let gc: Value = serde_json::from_str(&f.ok(&["gc", "--format", "json"])).unwrap();
        for d in f.container_dirs() {
            assert!(
                d.join("frun.json").exists(),
                "{what}: gc left {d:?} without a record ({gc})"
            );
            let st: Value = serde_json::from_str(&read(&d.join("state.json"))).unwrap();
            if st["status"] == "created" {
                let holder = st["holder_pid"].as_i64().unwrap_or(0) as i32;
                assert!(
                    (holder > 0 && alive(holder)) || held(&d),
                    "{what}: gc left a created container without a holder: {d:?} {st} ({gc})"
                );
            }
        }
        gc
    } else {
        Value::Null
    };
    // 2. rm -f of what ps -a lists, then gc.
    let ps: Vec<Value> = serde_json::from_str(&f.ok(&["ps", "-a", "--format", "json"])).unwrap();
    for c in &ps {
        f.ok(&["rm", "-f", c["id"].as_str().unwrap()]);
    }
    let gc2: Value = serde_json::from_str(&f.ok(&["gc", "--format", "json"])).unwrap();
    let mut left = f.leftovers();
    let ps: Vec<Value> = serde_json::from_str(&f.ok(&["ps", "-a", "--format", "json"])).unwrap();
    if !ps.is_empty() {
        left.push(format!("ps -a lists {ps:?}"));
    }
    // 3. No frun process but a supervisor that answers; nothing else in frun's cgroup.
    let sup = supervisor(f);
    let procs: Vec<(i32, String)> = frun_processes(f)
        .into_iter()
        .filter(|(p, _)| Some(*p) != sup)
        .collect();
    if !procs.is_empty() {
        left.push(format!("processes left: {procs:?}"));
    }
    for d in f.cgroup_dirs() {
        let procs = read_or_empty(&d.join("supervisor/cgroup.procs"));
        let others: Vec<&str> = procs
            .lines()
            .filter(|p| p.trim().parse::<i32>().ok() != sup)
            .collect();
        if !others.is_empty() {
            left.push(format!("processes left in {d:?}/supervisor: {others:?}"));
        }
    }
    // 4. The network: leases, namespace files, veths, the bridge, its NAT table.
    let leases = read_or_empty(&f.root().join("network/leases.json"));
    if leases.contains("\"ip\"") {
        left.push(format!("leases left: {leases}"));
    }
    let netns: Vec<PathBuf> = std::fs::read_dir(f.dir.path().join("run/netns"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    if !netns.is_empty() {
        left.push(format!("netns files left: {netns:?}"));
    }
    // A veth pair whose peer was in the container's namespace goes with the namespace,
    // in the kernel's own time (moments): waited for, 5 s at most.
    let ip_links = || {
        text(
            &Command::new("ip")
                .args(["-o", "link"])
                .output()
                .unwrap()
                .stdout,
        )
    };
    let veths_left = |links: &str| -> Vec<String> {
        ids.iter()
            .filter(|id| links.contains(&format!("veth{}", &id[..11])))
            .map(|id| format!("the veth of {id} is left"))
            .collect()
    };
    let links = settle(5, || {
        let links = ip_links();
        match veths_left(&links).is_empty() {
            true => Ok(links),
            false => Err(links),
        }
    })
    .unwrap_or_else(|links| links);
    left.extend(veths_left(&links));
    if links.contains(&format!(" {}:", f.bridge)) {
        left.push(format!("bridge {} left", f.bridge));
    }
    if have("nft") {
        let table = format!("frun_{}", f.bridge);
        let out = Command::new("nft")
            .args(["list", "table", "ip", &table])
            .output()
            .unwrap();
        if out.status.success() {
            left.push(format!("nft table {table} left"));
        }
    }
    // 5. The store's scratch areas and the temp files of atomic writes.
    for d in ["ingest", "layers/tmp"] {
        let n = std::fs::read_dir(f.root().join(d))
            .map(|r| r.count())
            .unwrap_or(0);
        if n > 0 {
            left.push(format!("{n} entries left in {d}"));
        }
    }
    let temps: Vec<PathBuf> = walk_dirs(&f.root())
        .into_iter()
        .filter(|d| !d.starts_with(f.root().join("layers")))
        .flat_map(|d| {
            std::fs::read_dir(&d)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().contains(".tmp-"))
                .collect::<Vec<_>>()
        })
        .collect();
    if !temps.is_empty() {
        left.push(format!("temp files left: {temps:?}"));
    }
    assert!(
        left.is_empty(),
        "{what}: rm -f and gc left:\n{}\n(first gc: {gc}; second: {gc2})",
        left.join("\n")
    );
    // The next kill begins without a supervisor (a kill of its start needs one to start).
    if let Some(pid) = sup {
        kill9(pid);
        wait_for(10, "the supervisor to end", || (!alive(pid)).then_some(()));
    }
}

/// Kills at every step each scenario of `wanted` reaches; checks after each.
fn every_step_of(wanted: Scenario) {
    let Some(reg) = registry() else { return };
    let f = Frun::new().checked();
    for image in ["test/busybox", "library/nginx:stable", "family/app:v1"] {
        f.ok(&["pull", "-q", &format!("{reg}/{image}")]);
    }
    let mut tried = 0;
    let mut unreached = Vec::new();
    for (n, step) in steps(&f).iter().enumerate() {
        if !scenarios(step).contains(&wanted) {
            continue;
        }
        let reached = inject(&f, &reg, wanted, step, n);
        // `run -d`: rm -f first, as a user would; the others: gc first.
        let gc_first = wanted != Scenario::Run;
        sweep_and_check(&f, &format!("{wanted:?} killed at {step}"), gc_first);
        tried += 1;
        if !reached {
            unreached.push(step.clone());
        }
    }
    assert!(tried > 0, "no step for {wanted:?}");
    assert!(
        unreached.is_empty(),
        "{wanted:?} never reached {unreached:?}: a step the test cannot reach tests nothing (map it to the scenario that reaches it in `scenarios`)"
    );
}

#[test]
fn a_run_d_killed_at_any_step_leaves_nothing_that_rm_f_and_gc_do_not_sweep() {
    every_step_of(Scenario::Run);
}

#[test]
fn an_up_killed_at_any_step_leaves_nothing_that_rm_f_and_gc_do_not_sweep() {
    every_step_of(Scenario::Up);
}

#[test]
fn a_supervisor_killed_while_it_revives_a_container_leaves_nothing_that_rm_f_and_gc_do_not_sweep() {
    every_step_of(Scenario::Boot);
}

/// `gc` sweeps a container directory that a kill left without its record and the temp
/// file of a writer that died, says so, and counts their bytes (each file once).
#[test]
fn gc_sweeps_a_half_made_container_and_dead_writers_temp_files_and_counts_their_bytes() {
    let Some(reg) = registry() else { return };
    let f = Frun::new().checked();
    let image = format!("{reg}/test/busybox");
    f.ok(&["pull", "-q", &image]);
    f.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "kept",
        &image,
        "sleep",
        "600",
    ]);
    let mark = f.dir.path().join("stopped-at");
    let out = f
        .command(&["run", "-d", "--network", "none", &image, "true"])
        .env("FRUN_TEST_STOP_AT", "create.state-written")
        .env("FRUN_TEST_STOP_MARK", &mark)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(read(&mark).starts_with("create.state-written "));
    let half: Vec<PathBuf> = f
        .container_dirs()
        .into_iter()
        .filter(|d| !d.join("frun.json").exists())
        .collect();
    assert_eq!(half.len(), 1, "{:?}", f.container_dirs());
    let half = &half[0];
    // What it holds: its state, and (as if it had run) 100 kB in its upper directory,
    // hard-linked once, which frees 100 kB, not 200.
    std::fs::write(half.join("upper/data"), vec![7u8; 100_000]).unwrap();
    std::fs::hard_link(half.join("upper/data"), half.join("upper/link")).unwrap();
    let state_len = std::fs::metadata(half.join("state.json")).unwrap().len();
    // A temp file of a writer that died (no pid is that high), one of a live writer.
    let kept = f
        .container_dirs()
        .into_iter()
        .find(|d| d.join("frun.json").exists())
        .unwrap();
    std::fs::write(kept.join(".state.json.tmp-999999999"), vec![1u8; 5_000]).unwrap();
    let live = format!(".state.json.tmp-{}", std::process::id());
    std::fs::write(kept.join(&live), b"being written").unwrap();
    assert!(
        f.ok(&["ps", "-a", "-q"]).lines().count() == 1,
        "the half-made one is not listed"
    );

    let gc: Value = serde_json::from_str(&f.ok(&["gc", "--format", "json"])).unwrap();
    let id = half.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        gc["containers"],
        serde_json::json!([{"id": id, "name": null, "why": "no record", "bytes": 100_000 + state_len}]),
        "{gc}"
    );
    assert_eq!(gc["temp_files"], 1, "{gc}");
    assert_eq!(gc["bytes"], 100_000 + state_len + 5_000, "{gc}");
    assert!(!half.exists());
    assert!(!kept.join(".state.json.tmp-999999999").exists());
    assert!(kept.join(&live).exists(), "a live writer's temp file stays");
    std::fs::remove_file(kept.join(&live)).unwrap();
    // Nothing more the second time; the running container is untouched.
    let again: Value = serde_json::from_str(&f.ok(&["gc", "--format", "json"])).unwrap();
    assert_eq!(again["containers"], Value::Array(vec![]), "{again}");
    assert_eq!(again["bytes"], 0, "{again}");
    let ps: Vec<Value> = serde_json::from_str(&f.ok(&["ps", "--format", "json"])).unwrap();
    assert_eq!(ps.len(), 1, "{ps:?}");
    f.ok(&["rm", "-f", "kept"]);
    f.assert_clean();
}

/// The holder of an `--rm` container was killed (issue 15, item 11: `--rm` was not
/// honoured): `ps` tells, `gc` leaves it while it runs, and removes it once it exited,
/// as its holder would have.
#[test]
fn an_rm_container_whose_holder_died_is_removed_by_gc_once_it_exits() {
    let Some(reg) = registry() else { return };
    let f = Frun::new().checked();
    let image = format!("{reg}/test/busybox");
    let id = f.ok(&[
        "run",
        "-d",
        "--rm",
        "--network",
        "none",
        "--name",
        "gone",
        &image,
        "sleep",
        "600",
    ]);
    let st = state_of(&f, &id.trim()[..12]);
    let (pid, holder) = (
        st["pid"].as_i64().unwrap() as i32,
        st["holder_pid"].as_i64().unwrap() as i32,
    );
    kill9(holder);
    wait_for(10, "the holder to die", || (!alive(holder)).then_some(()));
    let ps: Vec<Value> = serde_json::from_str(&f.ok(&["ps", "--format", "json"])).unwrap();
    assert_eq!(ps[0]["state"], "running (holder lost)", "{ps:?}");
    let gc: Value = serde_json::from_str(&f.ok(&["gc", "--format", "json"])).unwrap();
    assert_eq!(
        gc["containers"],
        Value::Array(vec![]),
        "a running one stays: {gc}"
    );
    kill9(pid);
    wait_for(10, "the container to die", || (!alive(pid)).then_some(()));
    let out = f.ok(&["gc"]);
    assert!(
        out.contains(&format!(
            "removed container {} (gone): --rm, exited after its holder died",
            &id.trim()[..12]
        )),
        "{out}"
    );
    assert!(
        out.contains("removed 0 blobs, 0 layers, 0 leftovers of interrupted pulls, 1 abandoned containers and 0 temp files"),
        "{out}"
    );
    assert!(f.ok(&["ps", "-a", "-q"]).is_empty());
}
