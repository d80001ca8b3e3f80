//! What a container looks like from the inside.

use super::*;

#[test]
fn container_is_isolated_with_docker_default_privileges() {
    let Some((f, reg)) = run_test() else { return };
    let leak = tempfile::tempdir().unwrap();
    let out = leaky_command(
        &f,
        &[
            "run",
            "-q",
            "--name",
            "probe",
            &image(&reg, "checker"),
            "checker",
            "report",
        ],
        leak.path(),
    )
    .output()
    .unwrap();
    let r = json_ok("run checker report", &out);
    let id = find(&f, "probe")["id"].as_str().unwrap().to_string();

    // Namespaces: new ones of everything but the user namespace; pid 1; the short id as
    // the hostname.
    for ns in NEW_NAMESPACES {
        let inside = r["namespaces"][ns].as_str().unwrap();
        assert_ne!(inside, host_ns(ns), "{ns} namespace is the host's");
    }
    assert_eq!(r["namespaces"]["user"], host_ns("user").as_str());
    assert_eq!(r["pid"], 1);
    assert_eq!(r["hostname"], &id[..12]);
    assert_eq!(r["env"]["HOSTNAME"], &id[..12]);
    assert_eq!((r["uid"].as_u64(), r["gid"].as_u64()), (Some(0), Some(0)));
    // The cgroup namespace makes the container's cgroup the root.
    for line in strs(&r["cgroup"]["self"]) {
        assert!(line.ends_with(":/"), "cgroup not namespaced: {line}");
    }

    // Capabilities: exactly Docker's default set, nothing inheritable or ambient.
    let mask: u64 = DOCKER_CAPS.iter().map(|(b, _)| 1u64 << b).sum();
    let caps = &r["caps"];
    for set in ["CapEff", "CapBnd", "CapPrm"] {
        let got = u64::from_str_radix(caps[set].as_str().unwrap(), 16).unwrap();
        assert_eq!(
            got,
            mask,
            "{set} {got:#x}: {}",
            caps[format!("cap_names_{}", set[3..].to_lowercase())]
        );
    }
    let mut want: Vec<&str> = DOCKER_CAPS.iter().map(|(_, n)| *n).collect();
    want.sort();
    let mut got = strs(&caps["cap_names_eff"]);
    got.sort();
    assert_eq!(got, want);
    assert_eq!(caps["CapInh"], "0000000000000000");
    assert_eq!(caps["CapAmb"], "0000000000000000");
    assert_eq!(r["no_new_privs"], 1);
    assert_eq!(r["seccomp"], 2, "seccomp filter mode");

    assert_masked_and_read_only(&r, false);

    // /dev: exactly the minimal set, with the right device numbers.
    let dev = r["dev"].as_array().unwrap();
    let names: BTreeSet<&str> = dev.iter().map(|d| d["name"].as_str().unwrap()).collect();
    let want: BTreeSet<&str> = [
        "null", "zero", "full", "random", "urandom", "tty", "fd", "stdin", "stdout", "stderr",
        "ptmx", "pts", "shm", "mqueue",
    ]
    .into_iter()
    .collect();
    assert_eq!(names, want, "/dev holds something else");
    let entry = |n: &str| dev.iter().find(|d| d["name"] == n).unwrap();
    for (n, rdev) in [
        ("null", "1:3"),
        ("zero", "1:5"),
        ("full", "1:7"),
        ("random", "1:8"),
        ("urandom", "1:9"),
        ("tty", "5:0"),
    ] {
        let d = entry(n);
        assert_eq!(
            (d["type"].as_str(), d["rdev"].as_str()),
            (Some("char"), Some(rdev)),
            "/dev/{n}: {d}"
        );
    }
    for (n, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        let d = entry(n);
        assert_eq!(
            (d["type"].as_str(), d["target"].as_str()),
            (Some("symlink"), Some(target)),
            "/dev/{n}: {d}"
        );
    }
    for n in ["pts", "shm", "mqueue"] {
        assert_eq!(entry(n)["type"], "dir", "/dev/{n}");
    }

    // Privileged operations are refused.
    for probe in [
        "mount_tmpfs",
        "set_hostname",
        "kexec_load",
        "unshare_user",
        "keyctl",
    ] {
        assert_eq!(r["can"][probe], "EPERM", "can.{probe}: {}", r["can"]);
    }

    // nofile: the spec's 1048576, clamped to the hard limit frun got from this process.
    let nofile = nofile_hard().min(1_048_576);
    assert_eq!(r["rlimits"]["nofile"], serde_json::json!([nofile, nofile]));

    // The fds leaked into frun at 3..8 are closed: only stdio is left.
    let fds: Vec<i64> = r["fds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["fd"].as_i64().unwrap())
        .collect();
    assert_eq!(fds, vec![0, 1, 2], "open fds: {}", r["fds"]);

    f.ok(&["rm", "probe"]);
}

#[test]
fn cgroup_limits_are_seen_inside() {
    let Some((f, reg)) = run_test() else { return };
    let r = report(
        &f,
        &["--memory", "64m", "--pids-limit", "50", "--cpus", "0.5"],
        &image(&reg, "checker"),
    );
    let cg = &r["cgroup"];
    assert_eq!(cg["memory_limit"], "67108864", "{cg}");
    assert_eq!(cg["pids_limit"], "50", "{cg}");
    assert_eq!(cg["cpu_quota"], "50000", "{cg}");
    assert_eq!(cg["cpu_period"], "100000", "{cg}");
    // Without flags: no limit.
    let r = report(&f, &[], &image(&reg, "checker"));
    assert_eq!(r["cgroup"]["pids_limit"], "max", "{}", r["cgroup"]);
}

/// The devices cgroup: CAP_MKNOD makes any node, but only the minimal `/dev`'s devices
/// open (`/dev/mem` made by hand does not, `/dev/zero` does).
#[test]
fn devices_cgroup_opens_only_the_minimal_dev() {
    let Some((f, reg)) = run_test() else { return };
    let img = image(&reg, "busybox");
    f.ok(&["pull", "-q", &img]);
    let script = "mknod /tmp/mem c 1 1 && echo made; \
                  head -c 1 /tmp/mem >/dev/null && echo mem-opened; \
                  head -c 1 /dev/zero | wc -c";
    let out = f.run(&["run", "--rm", &img, "sh", "-c", script]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).split_whitespace().collect::<Vec<_>>(),
        ["made", "1"]
    );
    assert!(
        text(&out.stderr).contains("Operation not permitted"),
        "{}",
        text(&out.stderr)
    );
}
