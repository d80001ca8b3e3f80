//! Environment, working directory, arguments, exit codes.

use super::*;

#[test]
fn env_workdir_and_exit_codes_follow_docker() {
    let Some((f, reg)) = run_test() else { return };
    let img = image(&reg, "checker");
    let r = report(
        &f,
        &[
            "-e",
            "PATH=/usr/local/bin:/bin",
            "-e",
            "FOO=bar=baz",
            "-w",
            "/tmp",
        ],
        &img,
    );
    assert_eq!(
        r["env"]["PATH"], "/usr/local/bin:/bin",
        "image env not overridden"
    );
    assert_eq!(r["env"]["FOO"], "bar=baz");
    assert_eq!(r["cwd"], "/tmp");
    assert_eq!(strs(&r["argv"]), vec!["checker", "report"]);
    // A working directory the image lacks is made, as Docker does.
    let out = f.ok(&[
        "run",
        "--rm",
        "-w",
        "/new/dir",
        &img,
        "sh",
        "-c",
        "pwd; stat -c %u:%a .",
    ]);
    assert_eq!(out, "/new/dir\n0:755\n");

    let out = f.run(&["run", "--rm", &img, "no-such-command"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not found"),
        "{}",
        text(&out.stderr)
    );

    let out = f.run(&["run", "--rm", &img, "checker", "exit", "42"]);
    assert_eq!(out.status.code(), Some(42));
}

#[test]
fn killed_container_exits_128_plus_signal() {
    let Some((f, reg)) = run_test() else { return };
    let child = f
        .command(&[
            "run",
            "--name",
            "victim",
            &image(&reg, "checker"),
            "checker",
            "sleep",
            "60",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = wait_running(&f, "victim");
    // pid 1 of a pid namespace only takes SIGKILL from outside.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    let c = wait_exited(&f, "victim", 10);
    assert_eq!(c["exit_code"], 137);
    assert_eq!(c["oom_killed"], false);
    f.ok(&["rm", "victim"]);
}

#[test]
fn network_none_has_only_loopback_and_host_shares_the_hosts() {
    let Some((f, reg)) = run_test() else { return };
    let img = image(&reg, "checker");
    let script = "readlink /proc/self/ns/net; tail -n +3 /proc/net/dev | cut -d: -f1; \
                  cat /etc/hostname /etc/hosts";
    let out = f.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--name",
        "netnone",
        &img,
        "sh",
        "-c",
        script,
    ]);
    let mut lines = out.lines();
    assert_ne!(lines.next().unwrap(), host_ns("net"));
    let ifaces: Vec<&str> = lines
        .by_ref()
        .take_while(|l| !l.trim().is_empty() && l.starts_with(' '))
        .map(str::trim)
        .collect();
    assert_eq!(ifaces, vec!["lo"], "{out}");
    assert!(
        out.contains("localhost") && out.contains("netnone"),
        "/etc/hosts: {out}"
    );

    let out = f.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        &img,
        "readlink",
        "/proc/self/ns/net",
    ]);
    assert_eq!(out.trim(), host_ns("net"));
    let r = report(&f, &["--network", "host"], &img);
    assert_eq!(
        r["readonly_checks"]["/sys"]["create"], "EROFS",
        "{}",
        r["readonly_checks"]
    );
    assert_ne!(r["namespaces"]["uts"], host_ns("uts").as_str());
    // /sys comes from the host here: none of the host's mounts below it (debugfs,
    // tracefs, cgroups...) may come along writable, not even hidden under another.
    for m in r["mounts"].as_array().unwrap() {
        let mp = m["mount_point"].as_str().unwrap();
        if mp == "/sys" || mp.starts_with("/sys/") {
            let opts = m["options"].as_str().unwrap();
            assert!(
                opts.split(',').any(|o| o == "ro"),
                "writable under /sys: {m}"
            );
        }
    }

    let err = f.fails(&["run", "--rm", "--network", "bridge0", &img, "true"]);
    assert!(err.contains("bridge0"), "{err}");
}

#[test]
fn foreground_run_attaches_stdin_and_ctrl_c_stops_the_container() {
    let Some((f, reg)) = run_test() else { return };
    let img = image(&reg, "busybox");
    f.ok(&["pull", "-q", &img]);
    let mut child = f
        .command(&[
            "run",
            "--rm",
            "-i",
            &img,
            "sh",
            "-c",
            "read line; echo got:$line",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hello\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "got:hello\n");

    // Ctrl-C: the terminal signals the whole foreground process group.
    let child = f
        .command(&[
            "run",
            "--name",
            "fg",
            &img,
            "sh",
            "-c",
            "trap 'echo stopping; exit 3' TERM; while true; do sleep 0.1; done",
        ])
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = wait_running(&f, "fg");
    wait_signal_mask(pid, "SigCgt", libc::SIGTERM);
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    // (Exit 3 from its trap: the stop signal came, not the SIGKILL after the grace
    // period, which would have made it 137.)
    assert_eq!(text(&out.stdout), "stopping\n");
    assert_eq!(find(&f, "fg")["exit_code"], 3);
    f.ok(&["rm", "fg"]);
}

/// `SigIgn` and `SigBlk` of a `/proc/PID/status` text.
fn ignored_and_blocked(status: &str) -> (u64, u64) {
    let mask = |field: &str| {
        let hex = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .unwrap_or_else(|| panic!("no {field} in {status}"));
        u64::from_str_radix(hex.trim(), 16).unwrap()
    };
    (mask("SigIgn:"), mask("SigBlk:"))
}

/// `frun ARGS` on a pty of its own (util-linux `script`), 40 rows by 100 columns, with
/// `input` typed into it; `script -e` exits with frun's exit code.
fn in_pty(f: &Frun, args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let q = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let c = f.command(args);
    let mut line = format!(
        "stty rows 40 cols 100; exec {}",
        q(c.get_program().to_str().unwrap())
    );
    for a in c.get_args() {
        line.push(' ');
        line.push_str(&q(a.to_str().unwrap()));
    }
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let mut child = cmd.spawn().expect("script (util-linux) runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    // Keep script's stdin open until frun is done: at EOF it would type an end-of-file
    // into the pty.
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    out
}

#[test]
fn tty_and_interactive_follow_docker() {
    use std::io::Write;
    let Some((f, reg)) = run_test() else { return };
    let img = image(&reg, "checker");
    f.ok(&["pull", "-q", &img]);

    // -t: a pty of the container's own, the caller's window size, TERM, the exit code;
    // each newline reaches the caller once as CR LF.
    let out = in_pty(
        &f,
        &[
            "run",
            "--rm",
            "-t",
            &img,
            "sh",
            "-c",
            "tty; stty size; echo $TERM; exit 3",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "/dev/pts/0\r\n40 100\r\nxterm\r\n");

    // -it: keystrokes reach the container's shell.
    let out = in_pty(
        &f,
        &["run", "--rm", "-it", &img, "sh"],
        b"echo typed-$((6*7))\nexit 4\n",
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("typed-42"), "{s}");

    // Without -i the container's stdin is not the caller's; with it, it is.
    let mut c = f.command(&["run", "--rm", &img, "cat"]);
    c.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"piped\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "");
    let mut c = f.command(&["run", "--rm", "-i", &img, "cat"]);
    c.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"piped\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(text(&out.stdout), "piped\n");

    // Detached with -t: the terminal's output is the log; exec -t gets a pty of its own.
    f.ok(&[
        "run",
        "-d",
        "-t",
        "--name",
        "t",
        &img,
        "sh",
        "-c",
        "tty; exec sleep 300",
    ]);
    wait_running(&f, "t");
    wait_for(10, "the log", || {
        (log_lines(&f, "t", &[]).0 == "/dev/pts/0\r\n").then_some(())
    });
    let out = in_pty(&f, &["exec", "-it", "t", "sh", "-c", "tty; exit 5"], b"");
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "/dev/pts/1\r\n");
    f.ok(&["rm", "-f", "t"]);
}

#[test]
fn container_processes_start_with_default_signal_handling() {
    let Some((f, reg)) = run_test() else { return };
    let img = image(&reg, "busybox");
    f.ok(&["pull", "-q", &img]);
    // An ignored signal and the signal mask survive execve: frun's own (Rust ignores
    // SIGPIPE; the holder blocks the signals that stop the container) are not the
    // container's. busybox changes neither.
    f.ok(&["run", "-d", "--name", "sigs", &img, "sleep", "300"]);
    let pid = wait_running(&f, "sigs");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert_eq!(ignored_and_blocked(&status), (0, 0), "pid 1:\n{status}");
    let status = f.ok(&["exec", "sigs", "cat", "/proc/self/status"]);
    assert_eq!(ignored_and_blocked(&status), (0, 0), "exec:\n{status}");
    let status = f.ok(&["run", "--rm", &img, "cat", "/proc/self/status"]);
    assert_eq!(
        ignored_and_blocked(&status),
        (0, 0),
        "foreground:\n{status}"
    );
    // So a writer into a closed pipe dies of SIGPIPE, quietly, as anywhere else.
    let out = f.run(&["run", "--rm", &img, "sh", "-c", "yes | head -n 1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "y\n");
    assert_eq!(text(&out.stderr), "", "yes did not die of SIGPIPE");
    f.ok(&["rm", "-f", "sigs"]);
}
