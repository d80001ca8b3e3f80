//! Regressions for known runtime escapes.

use super::*;

fn sha256_file(p: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()))
}

#[test]
fn cve_2019_5736_container_cannot_overwrite_the_frun_binary() {
    let Some((f, reg)) = run_test() else { return };
    let frun = Path::new(env!("CARGO_BIN_EXE_frun"));
    let digest = sha256_file(frun);
    f.ok(&[
        "run",
        "-d",
        "--name",
        "hostile",
        &image(&reg, "checker"),
        "checker",
        "write-exe",
        "5",
    ]);
    wait_running(&f, "hostile");
    // Processes entering the container are what the probe goes for.
    let start = Instant::now();
    let mut execs = 0;
    while start.elapsed() < Duration::from_secs(4) {
        if f.run(&["exec", "hostile", "checker", "exit", "0"])
            .status
            .success()
        {
            execs += 1;
        }
    }
    assert!(execs >= 3, "only {execs} execs into the container");
    let c = wait_exited(&f, "hostile", 30);
    assert_eq!(c["exit_code"], 0, "{c}");
    let (o, _) = log_lines(&f, "hostile", &[]);
    let r = last_json(o.as_bytes());
    assert_eq!(r["opened_for_write"], serde_json::json!([]), "{r}");
    assert!(r["rounds"].as_u64().unwrap() > 1, "{r}");
    // The probe saw the exec'd processes once they were the container's own binary, and
    // never resolved one to frun: a process entering the container is not dumpable.
    let seen = r["seen"].as_object().unwrap();
    assert!(!seen.is_empty(), "the probe saw no process: {r}");
    for (pid, exe) in seen {
        assert_eq!(
            exe, "/usr/local/bin/checker",
            "pid {pid} in the container: {r}"
        );
    }
    assert_eq!(sha256_file(frun), digest, "the frun binary changed");
    f.ok(&["rm", "hostile"]);
}

#[test]
fn cve_2024_21626_workdir_in_proc_self_fd_never_reaches_the_host() {
    let Some((f, reg)) = run_test() else { return };
    let img = image(&reg, "checker");
    f.ok(&["pull", "-q", &img]);
    // The leaked directory, at fds 3 to 8 of frun.
    let leak = tempfile::tempdir().unwrap();
    std::fs::write(leak.path().join("host-sentinel"), "host").unwrap();
    let check = |what: &str, out: Output| {
        if !out.status.success() {
            assert!(!text(&out.stderr).is_empty(), "{what} failed silently");
            assert!(out.stdout.is_empty(), "{what}: {}", text(&out.stdout));
            return;
        }
        let r = last_json(&out.stdout);
        let cwd = r["cwd"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no cwd: {}", r["errors"]));
        assert!(
            cwd.starts_with('/') && !cwd.contains("unreachable"),
            "{what}: cwd {cwd}"
        );
        assert!(
            !cwd.contains(&leak.path().to_string_lossy().into_owned()),
            "{what}: cwd {cwd}"
        );
    };
    for n in 3..=8 {
        let w = format!("/proc/self/fd/{n}");
        let out = leaky_command(
            &f,
            &["run", "--rm", "-w", &w, &img, "checker", "report"],
            leak.path(),
        )
        .output()
        .unwrap();
        check(&format!("run -w {w}"), out);
    }
    f.assert_clean();

    f.ok(&[
        "run", "-d", "--name", "target", &img, "checker", "sleep", "300",
    ]);
    wait_running(&f, "target");
    for n in 3..=8 {
        let w = format!("/proc/self/fd/{n}");
        let out = leaky_command(
            &f,
            &["exec", "-w", &w, "target", "checker", "report"],
            leak.path(),
        )
        .output()
        .unwrap();
        check(&format!("exec -w {w}"), out);
    }
    f.ok(&["rm", "-f", "target"]);
    assert_eq!(
        std::fs::read_dir(leak.path()).unwrap().count(),
        1,
        "the leaked dir changed"
    );
}

#[test]
fn cve_2019_19921_proc_symlink_in_the_image_is_refused() {
    let Some((f, reg)) = run_test() else { return };
    let img = image(&reg, "proc-symlink");
    f.ok(&["pull", "-q", &img]);
    for rm in [true, false] {
        let mut args = vec!["run"];
        if rm {
            args.push("--rm");
        }
        args.extend_from_slice(&["--name", "procsym", &img, "checker", "report"]);
        let out = f.run(&args);
        let err = text(&out.stderr);
        assert!(
            !out.status.success(),
            "started with /proc a symlink: {}",
            text(&out.stdout)
        );
        assert!(
            out.stdout.is_empty(),
            "the command ran: {}",
            text(&out.stdout)
        );
        assert!(err.contains("/proc"), "{err}");
        assert!(
            f.child_cgroups().is_empty(),
            "cgroups left: {:?}",
            f.child_cgroups()
        );
        if !rm {
            let c = find(&f, "procsym");
            assert_eq!(c["status"], "exited");
            f.ok(&["rm", "procsym"]);
        }
        f.assert_clean();
    }
}

#[test]
fn cve_2025_31133_dev_null_symlink_does_not_unmask_paths() {
    let Some((f, reg)) = run_test() else { return };
    let core_pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let r = report(&f, &[], &image(&reg, "devnull-symlink"));
    let masked = r["masked"].as_object().unwrap();
    for p in ["/proc/keys", "/proc/timer_list"] {
        assert_eq!(masked[p]["exists"], true, "{p}");
        assert_eq!(
            masked[p]["readable_content_len"], 0,
            "{p} readable: {}",
            masked[p]
        );
    }
    for (p, m) in masked {
        if m["exists"] == true && m["is_dir"] == true {
            assert_eq!(m["entries"], 0, "{p}: {m}");
        } else if m["exists"] == true {
            assert_eq!(m["readable_content_len"], 0, "{p}: {m}");
        }
    }
    let null = r["dev"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "null")
        .cloned()
        .unwrap();
    assert_eq!(
        (null["type"].as_str(), null["rdev"].as_str()),
        (Some("char"), Some("1:3")),
        "{null}"
    );
    assert_eq!(r["readonly_checks"]["/proc/sys"]["open_write"], "EROFS");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        core_pattern,
        "the host's core_pattern changed"
    );
}

#[test]
fn cve_2021_30465_symlinked_mount_targets_stay_inside_the_container() {
    let Some((f, reg)) = run_test() else { return };
    let token = format!("frun-{}", f.cgroup_parent.trim_start_matches("/frun-test-"));
    let (a, b) = (f.dir.path().join("vol-a"), f.dir.path().join("vol-b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    std::fs::write(a.join("in-a"), "a").unwrap();
    std::fs::write(b.join("in-b"), "b").unwrap();
    let host_etc: BTreeSet<_> = std::fs::read_dir("/etc")
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    let host_tmp_sentinel = tempfile::NamedTempFile::new_in("/tmp").unwrap();
    std::fs::write(host_tmp_sentinel.path(), "host tmp").unwrap();

    // /data -> /etc/../../../../../tmp and /abs -> / in the image: the volumes land on the
    // container's own /tmp and /etc.
    let script = format!(
        "cat /tmp/in-a /etc/in-b && echo x > /data/{token}-a && echo y > /abs/etc/{token}-b && ls /tmp /etc"
    );
    let out = f.run(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/data", a.display()),
        "-v",
        &format!("{}:/abs/etc", b.display()),
        &image(&reg, "bindlink"),
        "sh",
        "-c",
        &script,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    assert!(
        o.starts_with("ab"),
        "volumes not where the symlinks point inside: {o}"
    );
    assert!(!o.contains(
        &host_tmp_sentinel
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    ));
    assert!(a.join(format!("{token}-a")).is_file());
    assert!(b.join(format!("{token}-b")).is_file());
    for dir in ["/tmp", "/etc"] {
        for suffix in ["a", "b"] {
            let p = Path::new(dir).join(format!("{token}-{suffix}"));
            assert!(!p.exists(), "{p:?} written on the host");
        }
    }
    let now: BTreeSet<_> = std::fs::read_dir("/etc")
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(now, host_etc, "the host's /etc changed");
    assert_eq!(
        std::fs::read_to_string(host_tmp_sentinel.path()).unwrap(),
        "host tmp"
    );
}
