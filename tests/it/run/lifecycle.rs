//! Lifecycle.

use super::*;

#[test]
fn detached_container_is_listed_and_logs_both_streams() {
    let Some((f, reg)) = run_test() else { return };
    let id = f.ok(&[
        "run",
        "-d",
        "--name",
        "bg",
        &image(&reg, "checker"),
        "sh",
        "-c",
        "echo to-stdout; echo to-stderr >&2; exec sleep 300",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "run -d prints the id: {id}");
    let pid = wait_running(&f, "bg");
    let listed = serde_json::from_str::<Value>(&f.ok(&["ps", "--format", "json"])).unwrap();
    let c = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .expect("running container in ps")
        .clone();
    assert_eq!(c["status"], "running");
    assert_eq!(c["pid"], pid);
    assert!(pid > 1 && Path::new(&format!("/proc/{pid}")).exists());
    assert_ne!(
        std::fs::read_link(format!("/proc/{pid}/ns/pid"))
            .unwrap()
            .to_string_lossy(),
        host_ns("pid")
    );

    wait_for(10, "both log lines", || {
        let (o, e) = log_lines(&f, "bg", &[]);
        (o.contains("to-stdout") && e.contains("to-stderr")).then_some(())
    });
    let (o, e) = log_lines(&f, &id[..12], &[]);
    assert_eq!(o, "to-stdout\n");
    assert_eq!(e, "to-stderr\n");
    let (o, e) = log_lines(&f, "bg", &["-t"]);
    for (line, want) in [(o.trim_end(), "to-stdout"), (e.trim_end(), "to-stderr")] {
        let (stamp, rest) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("no timestamp: {line:?}"));
        assert_eq!(rest, want);
        chrono::DateTime::parse_from_rfc3339(stamp)
            .unwrap_or_else(|e| panic!("timestamp {stamp:?}: {e}"));
    }
    f.ok(&["rm", "-f", "bg"]);
    f.assert_clean();

    // logs -f follows until the container exits.
    f.ok(&[
        "run",
        "-d",
        "--name",
        "short",
        &image(&reg, "checker"),
        "sh",
        "-c",
        "echo first; sleep 1; echo second",
    ]);
    let (o, _) = log_lines(&f, "short", &["-f"]);
    assert_eq!(o, "first\nsecond\n");
    assert_eq!(wait_exited(&f, "short", 10)["exit_code"], 0);
    f.ok(&["rm", "short"]);
}

#[test]
fn exec_joins_the_container_and_returns_its_exit_code() {
    let Some((f, reg)) = run_test() else { return };
    let pid = run_sleeper(&f, &reg, "box");
    let leak = tempfile::tempdir().unwrap();
    let out = leaky_command(&f, &["exec", "box", "checker", "report"], leak.path())
        .output()
        .unwrap();
    let r = json_ok("exec checker report", &out);
    for ns in NEW_NAMESPACES {
        let first = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        assert_eq!(
            r["namespaces"][ns],
            first.to_string_lossy().as_ref(),
            "{ns}"
        );
    }
    assert!(
        r["pid"].as_i64().unwrap() > 1,
        "exec'd process is pid {}",
        r["pid"]
    );
    assert_eq!(r["no_new_privs"], 1);
    assert_eq!(r["seccomp"], 2);
    let mask: u64 = DOCKER_CAPS.iter().map(|(b, _)| 1u64 << b).sum();
    assert_eq!(
        u64::from_str_radix(r["caps"]["CapEff"].as_str().unwrap(), 16).unwrap(),
        mask
    );
    let fds: Vec<i64> = r["fds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["fd"].as_i64().unwrap())
        .collect();
    assert_eq!(fds, vec![0, 1, 2], "{}", r["fds"]);
    for line in strs(&r["cgroup"]["self"]) {
        assert!(
            line.ends_with(":/"),
            "exec'd process outside the container's cgroup: {line}"
        );
    }

    let out = f.run(&["exec", "box", "checker", "exit", "3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let out = f.run(&["exec", "box", "sh", "-c", "exit 77"]);
    assert_eq!(out.status.code(), Some(77), "{}", text(&out.stderr));
    f.ok(&["rm", "-f", "box"]);
}

#[test]
fn stop_kills_a_container_that_ignores_sigterm() {
    let Some((f, reg)) = run_test() else { return };
    f.ok(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        &image(&reg, "busybox"),
        "sh",
        "-c",
        "trap '' TERM; while true; do sleep 1; done",
    ]);
    let pid = wait_running(&f, "stubborn");
    wait_signal_mask(pid, "SigIgn", libc::SIGTERM);
    let start = Instant::now();
    f.ok(&["stop", "-t", "1", "stubborn"]);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "did not wait the grace period: {took:?}"
    );
    let c = find(&f, "stubborn");
    assert_eq!(c["status"], "exited");
    assert_eq!(c["exit_code"], 137, "{c}");
    f.ok(&["rm", "stubborn"]);
}

#[test]
fn stop_sends_the_image_stop_signal() {
    let Some((f, reg)) = run_test() else { return };
    f.ok(&["run", "-d", "--name", "usr1", &image(&reg, "stopsignal")]);
    let pid = wait_running(&f, "usr1");
    wait_signal_mask(pid, "SigCgt", libc::SIGUSR1);
    let start = Instant::now();
    f.ok(&["stop", "usr1"]);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "stop took {:?}: SIGKILL path?",
        start.elapsed()
    );
    let c = find(&f, "usr1");
    assert_eq!(c["status"], "exited");
    assert_eq!(c["exit_code"], 7, "{c}");
    let (o, _) = log_lines(&f, "usr1", &[]);
    assert!(o.contains("got-usr1"), "{o}");
    f.ok(&["rm", "usr1"]);
}

#[test]
fn rm_refuses_a_running_container_without_force() {
    let Some((f, reg)) = run_test() else { return };
    let pid = run_sleeper(&f, &reg, "busy");
    let err = f.fails(&["rm", "busy"]);
    assert!(err.contains("running"), "{err}");
    assert_eq!(find(&f, "busy")["status"], "running");
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    f.ok(&["rm", "-f", "busy"]);
    assert!(ps(&f).is_empty());
}

#[test]
fn run_rm_removes_the_container_and_names_are_unique() {
    let Some((f, reg)) = run_test() else { return };
    let img = image(&reg, "checker");
    let out = f.run(&[
        "run", "--rm", "--name", "gone", &img, "checker", "exit", "5",
    ]);
    assert_eq!(out.status.code(), Some(5));
    assert!(ps(&f).is_empty());
    f.assert_clean();

    // Without --rm the exited container stays until rm.
    f.ok(&["run", "--name", "kept", &img, "checker", "exit", "0"]);
    assert_eq!(find(&f, "kept")["status"], "exited");
    assert_eq!(f.container_dirs().len(), 1);

    f.ok(&[
        "run", "-d", "--name", "dup", &img, "checker", "sleep", "300",
    ]);
    wait_running(&f, "dup");
    let out = f.run(&[
        "run", "-d", "--name", "dup", &img, "checker", "sleep", "300",
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("dup"), "{}", text(&out.stderr));
    assert_eq!(f.container_dirs().len(), 2, "a second container exists");
    assert_eq!(ps(&f).iter().filter(|c| c["name"] == "dup").count(), 1);
    f.ok(&["rm", "-f", "dup", "kept"]);
}

#[test]
fn detached_run_reports_every_start_and_every_failure() {
    let Some((f, reg)) = run_test() else { return };
    let img = image(&reg, "checker");
    f.ok(&["pull", "-q", &img]);
    // With --rm, a container that exits at once is gone before `run -d` could read its
    // state: it started all the same. (No bridge: what is tested here is what `run -d`
    // reports, and these containers come and go faster than a bridge is set up.)
    for i in 0..20 {
        let out = f.run(&[
            "run",
            "-d",
            "--rm",
            "--network",
            "none",
            &img,
            "checker",
            "exit",
            "0",
        ]);
        assert!(
            out.status.success(),
            "run -d --rm #{i} ({}): {}",
            out.status,
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout).trim().len(), 64, "prints the id");
    }
    // A start failure is reported, with --rm too (its state is gone with it).
    for rm in [true, false] {
        let mut args = vec!["run", "-d", "--name", "nocmd"];
        if rm {
            args.push("--rm");
        }
        args.extend_from_slice(&[&img, "no-such-command"]);
        let out = f.run(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(127), "run {args:?}: {err}");
        assert!(
            err.contains("no-such-command") && err.contains("not found"),
            "{err}"
        );
        assert!(
            out.stdout.is_empty(),
            "printed an id: {}",
            text(&out.stdout)
        );
    }
    assert_eq!(find(&f, "nocmd")["exit_code"], 127);
    f.ok(&["rm", "nocmd"]);
    wait_for(10, "--rm containers to go", || {
        f.container_dirs().is_empty().then_some(())
    });
}
