//! frun-oci held against the OCI runtime-spec where runc and crun run a bundle (issue
//! 10): runc's own default bundle, no_new_privs as the spec says, hooks, sysctls,
//! disableOOMKiller, rootfsPropagation, no mount namespace, `delete` of a created
//! container, `--preserve-fds`, `pause`/`resume`, `update`, `events --stats`; and the
//! same through podman and containerd. Each test builds its bundle with umoci from the
//! test images and, where the behaviour shows from inside, asks the in-container checker.

use crate::common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Rewrites `bundle/config.json` through `f`.
fn edit(bundle: &Path, f: impl FnOnce(&mut Value)) {
    let config = bundle.join("config.json");
    let mut spec: Value = serde_json::from_str(&read_or_empty(&config)).unwrap();
    f(&mut spec);
    std::fs::write(&config, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
}

/// A bundle of test/checker running `checker ARGS...`, in the test's cgroup `name`.
fn checker(o: &Oci, name: &str, args: &[&str]) -> Option<PathBuf> {
    let cg = format!("{}/{name}", o.f.cgroup_parent);
    let mut argv = vec!["/usr/local/bin/checker"];
    argv.extend_from_slice(args);
    bundle_of(&o.f, "test/checker", name, &argv, Some(&cg))
}

/// `frun-oci run` of a bundle whose program prints one JSON object: that object.
fn run_json(o: &Oci, bundle: &Path, id: &str) -> Value {
    let out = o.run(&["run", "--bundle", bundle.to_str().unwrap(), id]);
    assert!(
        out.status.success(),
        "run {id}: {}\n{}",
        out.status,
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{id}: not JSON ({e}): {stdout}\n{}", text(&out.stderr)))
}

fn remove_namespace(spec: &mut Value, typ: &str) {
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != typ);
}

/// The directory of the test's cgroup `name` under the v1 `controller` (or v2).
fn cgroup_dir(o: &Oci, controller: &str, name: &str) -> PathBuf {
    let rel = format!("{}/{name}", o.f.cgroup_parent.trim_start_matches('/'));
    let v1 = Path::new("/sys/fs/cgroup").join(controller).join(&rel);
    if v1.exists() {
        v1
    } else {
        Path::new("/sys/fs/cgroup").join(rel)
    }
}

#[test]
fn runc_spec_default_bundle_runs_and_unraisable_ambient_caps_only_warn() {
    let o = Oci::new();
    if !have("runc") {
        unavailable("runc is not installed (scripts/packages/test.txt lists it)");
        return;
    }
    let Some(b) = checker(&o, "rspec", &["report"]) else {
        return;
    };
    // `runc spec`'s config, as it is, but for terminal=false and the checker as the
    // program; no cgroupsPath (runc's default): frun-oci puts it under /frun-oci/ID.
    std::fs::remove_file(b.join("config.json")).unwrap();
    let out = std::process::Command::new("runc")
        .args(["spec", "--bundle"])
        .arg(&b)
        .output()
        .unwrap();
    assert!(out.status.success(), "runc spec: {}", text(&out.stderr));
    edit(&b, |s| {
        assert!(s["linux"].get("cgroupsPath").is_none());
        assert_eq!(
            s["process"]["capabilities"]["ambient"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        assert!(s["process"]["capabilities"].get("inheritable").is_none());
        s["process"]["terminal"] = false.into();
        s["process"]["args"] = json!(["/usr/local/bin/checker", "report"]);
    });
    let id = format!(
        "rspec-{}",
        o.f.cgroup_parent.trim_start_matches("/frun-test-")
    );
    let _guard = CgroupGuard::new(format!("frun-oci/{id}"));
    let out = o.run(&["run", "--bundle", b.to_str().unwrap(), &id]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{}: {err}", out.status);
    for cap in ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"] {
        assert!(
            err.contains(&format!("warning: process.capabilities.ambient: {cap}")),
            "{err}"
        );
    }
    let r: Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(r["caps"]["cap_names_amb"], json!([]), "{r}");
    assert_eq!(
        r["caps"]["cap_names_eff"],
        json!(["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"]),
        "{r}"
    );
    assert_eq!(r["no_new_privs"], 1, "runc spec sets noNewPrivileges");
    // root.readonly: the root is mounted read-only.
    let root = r["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|m| m["mount_point"] == "/")
        .unwrap();
    assert!(
        root["options"]
            .as_str()
            .unwrap()
            .split(',')
            .any(|o| o == "ro"),
        "{root}"
    );
    assert!(!o.root.join(&id).exists());
}

#[test]
fn no_new_privs_is_what_the_spec_says_with_seccomp_either_way() {
    let o = Oci::new();
    let Some(b) = checker(&o, "nnp", &["report"]) else {
        return;
    };
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["keyctl"], "action": "SCMP_ACT_ERRNO"}]
    });
    for (i, (nnp, want)) in [(Some(false), 0), (None, 0), (Some(true), 1)]
        .into_iter()
        .enumerate()
    {
        edit(&b, |s| {
            s["linux"]["seccomp"] = profile.clone();
            match nnp {
                Some(v) => s["process"]["noNewPrivileges"] = v.into(),
                None => {
                    s["process"]
                        .as_object_mut()
                        .unwrap()
                        .remove("noNewPrivileges");
                }
            }
        });
        let r = run_json(&o, &b, &format!("nnp{i}"));
        assert_eq!(r["no_new_privs"], want, "noNewPrivileges {nnp:?}: {r}");
        assert_eq!(r["seccomp"], 2, "the filter is loaded either way: {r}");
    }
}

/// A host-side hook: `sh -c SCRIPT` with the state on stdin, in the runtime's or (before
/// the pivot) the container's mount namespace.
fn sh_hook(script: &str) -> Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", script]})
}

#[test]
fn hooks_run_in_order_with_the_state_in_their_namespaces() {
    let o = Oci::new();
    let cg = format!("{}/hooks", o.f.cgroup_parent);
    let Some(b) = bundle(
        &o.f,
        "hooks",
        &["/bin/sh", "-c", "echo ran >> /order; sleep 1000"],
        Some(&cg),
    ) else {
        return;
    };
    let d = o.f.dir.path().join("hookout");
    std::fs::create_dir(&d).unwrap();
    let dd = d.display().to_string();
    // Each host-side hook saves its stdin and its mount namespace, and appends its name.
    let rec = |name: &str| {
        sh_hook(&format!(
            "cat > {dd}/{name}.json; readlink /proc/self/ns/mnt > {dd}/{name}.mnt; echo {name} >> {dd}/order"
        ))
    };
    edit(&b, |s| {
        s["hooks"] = json!({
            "prestart": [rec("prestart")],
            "createRuntime": [rec("createRuntime")],
            "createContainer": [rec("createContainer")],
            // After the pivot: the container's /bin/sh, writing into its root.
            "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /start.json; echo startContainer >> /order"]}],
            "poststart": [rec("poststart")],
            "poststop": [rec("poststop")],
        });
    });
    let out = o.f.dir.path().join("hooks.out");
    let pid = o.create(&b, "hk", &out);
    let order = || read_or_empty(&d.join("order"));
    assert_eq!(order(), "prestart\ncreateRuntime\ncreateContainer\n");
    let host_mnt = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let ctr_mnt = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap();
    assert_ne!(host_mnt, ctr_mnt);
    for (name, mnt) in [
        ("prestart", &host_mnt),
        ("createRuntime", &host_mnt),
        ("createContainer", &ctr_mnt),
    ] {
        assert_eq!(
            read_or_empty(&d.join(format!("{name}.mnt"))).trim(),
            mnt.to_str().unwrap(),
            "{name}"
        );
        let st: Value =
            serde_json::from_str(&read_or_empty(&d.join(format!("{name}.json")))).unwrap();
        assert_eq!(st["status"], "creating", "{name}: {st}");
        assert_eq!(st["id"], "hk");
        assert_eq!(st["pid"], pid);
        assert_eq!(st["bundle"], b.display().to_string());
        assert!(st["ociVersion"].is_string());
    }
    assert!(
        !b.join("rootfs/start.json").exists(),
        "startContainer ran at create"
    );

    o.ok(&["start", "hk"]);
    let st: Value = serde_json::from_str(&read_or_empty(&b.join("rootfs/start.json"))).unwrap();
    assert_eq!(st["status"], "created");
    assert_eq!(st["pid"], pid);
    // startContainer before the program, in the container; poststart once it runs.
    wait_for(10, "the program", || {
        read_or_empty(&b.join("rootfs/order"))
            .contains("ran")
            .then_some(())
    });
    assert_eq!(
        read_or_empty(&b.join("rootfs/order")),
        "startContainer\nran\n"
    );
    assert_eq!(
        order(),
        "prestart\ncreateRuntime\ncreateContainer\npoststart\n"
    );
    let st: Value = serde_json::from_str(&read_or_empty(&d.join("poststart.json"))).unwrap();
    assert_eq!(st["status"], "running");

    o.ok(&["kill", "hk", "KILL"]);
    wait_for(10, "the container to stop", || {
        (o.status("hk") == "stopped").then_some(())
    });
    o.ok(&["delete", "hk"]);
    assert!(order().ends_with("poststart\npoststop\n"), "{}", order());
    let st: Value = serde_json::from_str(&read_or_empty(&d.join("poststop.json"))).unwrap();
    assert_eq!(st["status"], "stopped");
    assert_eq!(st["id"], "hk");

    // `run` does the same in one go (startContainer through the start gate), with the
    // program's exit code.
    std::fs::remove_file(d.join("order")).unwrap();
    std::fs::remove_file(b.join("rootfs/order")).unwrap();
    edit(&b, |s| {
        s["process"]["args"] = json!(["/bin/sh", "-c", "echo ran >> /order; exit 5"])
    });
    let r = o.run(&["run", "--bundle", b.to_str().unwrap(), "hk2"]);
    assert_eq!(r.status.code(), Some(5), "{}", text(&r.stderr));
    assert_eq!(
        read_or_empty(&b.join("rootfs/order")),
        "startContainer\nran\n"
    );
    assert_eq!(
        order(),
        "prestart\ncreateRuntime\ncreateContainer\npoststart\npoststop\n"
    );
    assert!(!o.root.join("hk2").exists());

    let f: Value = serde_json::from_str(&o.ok(&["features"])).unwrap();
    assert_eq!(
        f["hooks"],
        json!([
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ])
    );
}

#[test]
fn failing_hooks_destroy_the_container_or_only_warn_as_the_spec_says() {
    let o = Oci::new();
    let cg = format!("{}/hookfail", o.f.cgroup_parent);
    let Some(b) = bundle(&o.f, "hookfail", &["/bin/sleep", "1000"], Some(&cg)) else {
        return;
    };
    let d = o.f.dir.path().join("hf");
    std::fs::create_dir(&d).unwrap();
    let stop = sh_hook(&format!("echo stopped >> {}/poststop", d.display()));
    let out = o.f.dir.path().join("hookfail.out");
    let fail = sh_hook("echo hook-said-no >&2; exit 3");
    let slow = json!({"path": "/bin/sleep", "args": ["sleep", "1000"], "timeout": 1});

    // Each of these fails create (or start): an error, nothing left, poststop run.
    for (i, (kind, hook)) in [
        ("prestart", &fail),
        ("createRuntime", &slow),
        ("createContainer", &fail),
        ("startContainer", &json!({"path": "/no/such/hook"})),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("hf{i}");
        edit(&b, |s| {
            s["hooks"] = json!({kind: [hook], "poststop": [stop]})
        });
        let err = if kind == "startContainer" {
            let pid = o.create(&b, &id, &out);
            let err = o.fails(&["start", &id]);
            wait_for(10, "the process to die", || (!alive(pid)).then_some(()));
            err
        } else {
            o.fails(&["create", "--bundle", b.to_str().unwrap(), &id])
        };
        assert!(err.contains(kind), "{kind}: {err}");
        match kind {
            "createRuntime" => assert!(err.contains("timed out"), "{err}"),
            "startContainer" => assert!(err.contains("/no/such/hook"), "{err}"),
            _ => assert!(err.contains("hook-said-no"), "{kind}: {err}"),
        }
        assert!(
            o.fails(&["state", &id]).contains("does not exist"),
            "{kind}"
        );
        assert!(
            o.f.child_cgroups().is_empty(),
            "{kind}: {:?}",
            o.f.child_cgroups()
        );
        assert_eq!(
            read_or_empty(&d.join("poststop")).lines().count(),
            i + 1,
            "{kind}: poststop ran"
        );
    }

    // poststart and poststop failing: warnings; the container runs, then is deleted.
    edit(&b, |s| {
        s["hooks"] = json!({"poststart": [fail], "poststop": [fail]})
    });
    let pid = o.create(&b, "hf-warn", &out);
    let st = o.run(&["start", "hf-warn"]);
    assert!(st.status.success(), "{}", text(&st.stderr));
    assert!(
        text(&st.stderr).contains("warning: poststart hook 0"),
        "{}",
        text(&st.stderr)
    );
    assert_eq!(o.status("hf-warn"), "running");
    assert!(alive(pid));
    let del = o.run(&["delete", "--force", "hf-warn"]);
    assert!(del.status.success(), "{}", text(&del.stderr));
    assert!(
        text(&del.stderr).contains("warning: poststop hook 0"),
        "{}",
        text(&del.stderr)
    );
    assert!(!alive(pid));
}

#[test]
fn sysctls_are_set_in_the_containers_namespaces_and_host_wide_ones_refused() {
    let o = Oci::new();
    let cg = format!("{}/sysctl", o.f.cgroup_parent);
    let script =
        "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni /proc/sys/kernel/domainname";
    let Some(b) = bundle(&o.f, "sysctl", &["/bin/sh", "-c", script], Some(&cg)) else {
        return;
    };
    let host = |p: &str| read(Path::new(p)).trim().to_string();
    let (fwd, shmmni) = (
        host("/proc/sys/net/ipv4/ip_forward"),
        host("/proc/sys/kernel/shmmni"),
    );
    let want_shmmni = if shmmni == "4000" { "4001" } else { "4000" };
    edit(&b, |s| {
        s["linux"]["sysctl"] = json!({
            "net.ipv4.ip_forward": if fwd == "1" { "0" } else { "1" },
            "kernel/shmmni": want_shmmni,
            "kernel.domainname": "frun.test",
        })
    });
    let out = o.run(&["run", "--bundle", b.to_str().unwrap(), "s1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let want_fwd = if fwd == "1" { "0" } else { "1" };
    assert_eq!(
        text(&out.stdout),
        format!("{want_fwd}\n{want_shmmni}\nfrun.test\n")
    );
    // The host's own values did not move.
    assert_eq!(host("/proc/sys/net/ipv4/ip_forward"), fwd);
    assert_eq!(host("/proc/sys/kernel/shmmni"), shmmni);

    for (key, ns, why) in [
        ("kernel.panic", None, "not kept per namespace"),
        ("vm.swappiness", None, "not kept per namespace"),
        (
            "net.ipv4.ip_forward",
            Some("network"),
            "host's network namespace",
        ),
        ("kernel.shmmax", Some("ipc"), "host's IPC namespace"),
    ] {
        edit(&b, |s| {
            s["linux"]["sysctl"] = json!({key: "1"});
            if let Some(ns) = ns {
                remove_namespace(s, ns);
            }
        });
        let err = o.fails(&["run", "--bundle", b.to_str().unwrap(), "s2"]);
        assert!(err.contains(key) && err.contains(why), "{key}: {err}");
        assert!(!o.root.join("s2").exists());
        edit(&b, |s| {
            if let Some(ns) = ns {
                s["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": ns}));
            }
        });
    }
    assert!(o.f.child_cgroups().is_empty());
}

#[test]
fn disable_oom_killer_is_applied_on_cgroup_v1() {
    let o = Oci::new();
    let Some(b) = bundle(
        &o.f,
        "oom",
        &["/bin/sleep", "1000"],
        Some(&format!("{}/oom", o.f.cgroup_parent)),
    ) else {
        return;
    };
    edit(&b, |s| {
        s["linux"]["resources"]["memory"] = json!({"limit": 64 << 20, "disableOOMKiller": true});
    });
    let out = o.f.dir.path().join("oom.out");
    o.create(&b, "oom", &out);
    let mem = cgroup_dir(&o, "memory", "oom");
    if mem.join("memory.oom_control").exists() {
        let ctl = read_or_empty(&mem.join("memory.oom_control"));
        assert!(ctl.lines().any(|l| l == "oom_kill_disable 1"), "{ctl}");
    } else {
        // cgroup v2 has no such switch: a warning says so.
        assert!(
            read_or_empty(&out).contains("disableOOMKiller"),
            "{}",
            read_or_empty(&out)
        );
    }
    let limit = [mem.join("memory.limit_in_bytes"), mem.join("memory.max")];
    let limit = limit.iter().find(|p| p.exists()).unwrap();
    assert_eq!(read(limit).trim(), (64u64 << 20).to_string());
    o.ok(&["delete", "--force", "oom"]);
    // Without it, the killer stays on.
    edit(&b, |s| {
        s["linux"]["resources"]["memory"] = json!({"limit": 64 << 20})
    });
    o.create(&b, "oom2", &out);
    if mem.join("memory.oom_control").exists() {
        assert!(read_or_empty(&mem.join("memory.oom_control")).contains("oom_kill_disable 0"));
    }
    o.ok(&["delete", "--force", "oom2"]);
}

#[test]
fn rootfs_propagation_shared_and_unbindable_are_applied() {
    let o = Oci::new();
    let Some(b) = checker(&o, "prop", &["report"]) else {
        return;
    };
    for (i, (prop, want)) in [
        ("shared", "shared:"),
        ("rshared", "shared:"),
        ("unbindable", "unbindable"),
        ("private", ""),
    ]
    .into_iter()
    .enumerate()
    {
        edit(&b, |s| s["linux"]["rootfsPropagation"] = prop.into());
        let r = run_json(&o, &b, &format!("p{i}"));
        let root = r["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .rfind(|m| m["mount_point"] == "/")
            .unwrap()
            .clone();
        let p = root["propagation"].as_str().unwrap();
        if want.is_empty() {
            assert!(
                !p.contains("shared") && !p.contains("unbindable"),
                "{prop}: {root}"
            );
        } else {
            assert!(p.contains(want), "{prop}: {root}");
        }
    }
}

#[test]
fn without_a_mount_namespace_the_root_is_entered_by_chroot_in_the_runtimes() {
    let o = Oci::new();
    let cg = format!("{}/nomnt", o.f.cgroup_parent);
    let Some(b) = bundle(
        &o.f,
        "nomnt",
        &[
            "/bin/sh",
            "-c",
            "echo inside > /marker; ls /bin/busybox; sleep 1000",
        ],
        Some(&cg),
    ) else {
        return;
    };
    // With mounts, it is refused: they would be made in the runtime's namespace.
    edit(&b, |s| remove_namespace(s, "mount"));
    let err = o.fails(&["create", "--bundle", b.to_str().unwrap(), "nm"]);
    assert!(
        err.contains("mount namespace") && err.contains("mounts"),
        "{err}"
    );
    assert!(!o.root.join("nm").exists());
    edit(&b, |s| {
        s["mounts"] = json!([]);
        for k in ["maskedPaths", "readonlyPaths", "rootfsPropagation"] {
            s["linux"].as_object_mut().unwrap().remove(k);
        }
        s["root"]["readonly"] = false.into();
    });
    let out = o.f.dir.path().join("nomnt.out");
    let pid = o.create(&b, "nm", &out);
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap(),
        std::fs::read_link("/proc/self/ns/mnt").unwrap(),
        "the runtime's mount namespace"
    );
    assert_eq!(
        std::fs::canonicalize(format!("/proc/{pid}/root")).unwrap(),
        std::fs::canonicalize(b.join("rootfs")).unwrap()
    );
    o.ok(&["start", "nm"]);
    wait_for(10, "the program", || {
        read_or_empty(&out).contains("/bin/busybox").then_some(())
    });
    assert_eq!(read_or_empty(&b.join("rootfs/marker")), "inside\n");
    o.ok(&["delete", "--force", "nm"]);
    assert_eq!(
        mounts_below(&b),
        Vec::<String>::new(),
        "nothing mounted in the runtime's namespace"
    );
    assert!(o.f.child_cgroups().is_empty());
}

#[test]
fn delete_of_a_created_container_fails_and_changes_nothing_unless_forced() {
    let o = Oci::new();
    let cg = format!("{}/delc", o.f.cgroup_parent);
    let Some(b) = bundle(&o.f, "delc", &["/bin/sh", "-c", "echo started"], Some(&cg)) else {
        return;
    };
    let out = o.f.dir.path().join("delc.out");
    let pid = o.create(&b, "dc", &out);
    let err = o.fails(&["delete", "dc"]);
    assert!(err.contains("not stopped: created"), "{err}");
    assert_eq!(o.status("dc"), "created");
    assert!(alive(pid));
    assert!(o.f.cgroup_pids().contains(&pid));
    // It still starts as if nothing happened.
    o.ok(&["start", "dc"]);
    wait_for(10, "the program", || {
        read_or_empty(&out).contains("started").then_some(())
    });
    wait_for(10, "the container to stop", || {
        (o.status("dc") == "stopped").then_some(())
    });
    o.ok(&["delete", "dc"]);
    // --force deletes a created one.
    let pid = o.create(&b, "dc2", &out);
    o.ok(&["delete", "--force", "dc2"]);
    wait_for(10, "the process to die", || (!alive(pid)).then_some(()));
    assert!(!o.root.join("dc2").exists());
    assert!(o.f.child_cgroups().is_empty());
}

#[test]
fn preserve_fds_passes_extra_fds_on() {
    let o = Oci::new();
    let Some(b) = checker(&o, "pfd", &["fds"]) else {
        return;
    };
    let f3 = o.f.dir.path().join("three");
    let f4 = o.f.dir.path().join("four");
    std::fs::write(&f3, "3").unwrap();
    std::fs::write(&f4, "4").unwrap();
    let fds = |n: u32, id: &str| -> Vec<(i64, String)> {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "exec \"$0\" --root \"$1\" run --preserve-fds {n} --bundle \"$2\" {id} 3<\"$3\" 4<\"$4\""
            ))
            .args([&o.bin, &o.root, &b, &f3, &f4])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
        v["fds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["fd"].as_i64().unwrap(),
                    f["target"].as_str().unwrap_or("").to_string(),
                )
            })
            .filter(|(fd, _)| *fd > 2)
            .collect()
    };
    assert_eq!(fds(0, "pf0"), vec![], "only stdio without --preserve-fds");
    // The container sees the files by their host paths' names below its root: compare
    // the names' ends.
    let two = fds(2, "pf2");
    assert_eq!(two.len(), 2, "{two:?}");
    assert!(two[0].0 == 3 && two[0].1.ends_with("three"), "{two:?}");
    assert!(two[1].0 == 4 && two[1].1.ends_with("four"), "{two:?}");
    let one = fds(1, "pf1");
    assert_eq!(one.len(), 1, "{one:?}");
}

#[test]
fn pause_resume_update_and_events_act_on_a_running_container() {
    let o = Oci::new();
    let Some(b) = checker(&o, "res", &["sleep", "1000"]) else {
        return;
    };
    edit(&b, |s| {
        s["linux"]["resources"]["memory"] = json!({"limit": 128 << 20});
        s["linux"]["resources"]["pids"] = json!({"limit": 100});
    });
    let out = o.f.dir.path().join("res.out");
    let pid = o.create(&b, "rs", &out);
    assert!(o.fails(&["pause", "rs"]).contains("not running: created"));
    o.ok(&["start", "rs"]);

    // pause / resume: the freezer, and the status.
    o.ok(&["pause", "rs"]);
    assert_eq!(o.status("rs"), "paused");
    let fz = cgroup_dir(&o, "freezer", "res");
    if fz.join("freezer.state").exists() {
        assert_eq!(read_or_empty(&fz.join("freezer.state")).trim(), "FROZEN");
    } else {
        assert!(read_or_empty(&fz.join("cgroup.events")).contains("frozen 1"));
    }
    assert!(o.fails(&["pause", "rs"]).contains("already paused"));
    assert!(o.fails(&["exec", "rs", "/bin/true"]).contains("paused"));
    assert!(o.fails(&["start", "rs"]).contains("running"));
    o.ok(&["resume", "rs"]);
    assert_eq!(o.status("rs"), "running");
    if fz.join("freezer.state").exists() {
        assert_eq!(read_or_empty(&fz.join("freezer.state")).trim(), "THAWED");
    }
    assert!(o.fails(&["resume", "rs"]).contains("not paused"));
    // The process runs on: it answers an exec.
    let report = |o: &Oci| -> Value {
        let e = o.run(&["exec", "rs", "/usr/local/bin/checker", "report"]);
        assert!(e.status.success(), "{}", text(&e.stderr));
        serde_json::from_str(text(&e.stdout).trim()).unwrap()
    };
    let r = report(&o);
    assert_eq!(
        r["cgroup"]["memory_limit"],
        (128u64 << 20).to_string(),
        "{}",
        r["cgroup"]
    );

    // update: flags, then a resources file, then stdin; seen from inside.
    o.ok(&["update", "--memory", "64m", "rs"]);
    let r = report(&o);
    assert_eq!(
        r["cgroup"]["memory_limit"],
        (64u64 << 20).to_string(),
        "{}",
        r["cgroup"]
    );
    let res = o.f.dir.path().join("resources.json");
    std::fs::write(&res, json!({"pids": {"limit": 42}}).to_string()).unwrap();
    o.ok(&["update", "-r", res.to_str().unwrap(), "rs"]);
    assert_eq!(report(&o)["cgroup"]["pids_limit"], "42");
    let mut child = o
        .cmd(&["update", "--resources", "-", "rs"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            json!({"memory": {"limit": 96 << 20}})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(
        report(&o)["cgroup"]["memory_limit"],
        (96u64 << 20).to_string()
    );
    assert!(o
        .fails(&["update", "--memory", "lots", "rs"])
        .contains("lots"));

    // events --stats: frun stats' figures, in runc's shape.
    let ev: Value = serde_json::from_str(o.ok(&["events", "--stats", "rs"]).trim()).unwrap();
    assert_eq!(ev["type"], "stats");
    assert_eq!(ev["id"], "rs");
    let data = &ev["data"];
    assert_eq!(data["pids"]["current"], 1, "{data}");
    assert_eq!(data["memory"]["usage"]["limit"], 96u64 << 20);
    let usage = data["memory"]["usage"]["usage"].as_u64().unwrap();
    // In use without the inactive page cache: at most the most the cgroup was ever
    // charged (the peak: the charge now can be lower, an exec'd process having gone).
    let mem = cgroup_dir(&o, "memory", "res");
    let charged = [
        mem.join("memory.max_usage_in_bytes"),
        mem.join("memory.peak"),
        mem.join("memory.usage_in_bytes"),
        mem.join("memory.current"),
    ];
    let charged: u64 = read(charged.iter().find(|p| p.exists()).unwrap())
        .trim()
        .parse()
        .unwrap();
    assert!(
        usage > 0 && usage <= charged,
        "{usage} <= {charged}: {data}"
    );
    assert!(
        data["cpu"]["usage"]["total"].as_u64().unwrap() > 0,
        "{data}"
    );
    assert_eq!(data["memory"]["oom_kills"], 0);

    o.ok(&["kill", "rs", "KILL"]);
    wait_for(10, "the container to stop", || {
        (o.status("rs") == "stopped").then_some(())
    });
    assert!(o
        .fails(&["events", "--stats", "rs"])
        .contains("not running"));
    assert!(o
        .fails(&["update", "--memory", "64m", "rs"])
        .contains("not running"));
    o.ok(&["delete", "rs"]);
    assert!(!alive(pid));
}

#[test]
fn a_paused_container_can_be_force_deleted() {
    let o = Oci::new();
    let Some(b) = checker(&o, "pdel", &["sleep", "1000"]) else {
        return;
    };
    let out = o.f.dir.path().join("pdel.out");
    let pid = o.create(&b, "pd", &out);
    o.ok(&["start", "pd"]);
    o.ok(&["pause", "pd"]);
    assert!(o.fails(&["delete", "pd"]).contains("not stopped: paused"));
    o.ok(&["delete", "--force", "pd"]);
    wait_for(10, "the process to die", || (!alive(pid)).then_some(()));
    assert!(o.f.child_cgroups().is_empty(), "{:?}", o.f.child_cgroups());
}

#[test]
fn podman_runs_a_hooks_d_hook_pauses_unpauses_and_updates_with_frun_oci() {
    let Some(reg) = registry() else { return };
    if !have("podman") || !have("conmon") {
        unavailable("podman and conmon are not installed (scripts/test.sh installs them)");
        return;
    }
    let p = Podman::new();
    let img = format!("{reg}/test/checker:latest");
    p.ok(&["pull", "-q", "--tls-verify=false", &img]);
    let cg = p.f.cgroup_parent.clone();

    // A hook from a hooks.d directory: podman puts it into the spec, frun-oci runs it.
    let d = p.f.dir.path();
    let hooks = d.join("hooks.d");
    std::fs::create_dir(&hooks).unwrap();
    let out = d.join("hook-out");
    std::fs::create_dir(&out).unwrap();
    let hook = json!({
        "version": "1.0.0",
        "hook": {"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}/prestart.json", out.display())]},
        "when": {"always": true},
        "stages": ["prestart"],
    });
    std::fs::write(hooks.join("10-frun-test.json"), hook.to_string()).unwrap();
    let hooks_dir = hooks.to_str().unwrap();
    let base = ["--network", "none", "--cgroup-parent", cg.as_str()];
    let args: Vec<&str> = ["--hooks-dir", hooks_dir, "run", "-d", "--name", "h"]
        .iter()
        .chain(&base)
        .chain(&[img.as_str(), "/usr/local/bin/checker", "sleep", "1000"])
        .copied()
        .collect();
    let id = p.ok(&args).trim().to_string();
    let st: Value = serde_json::from_str(&read_or_empty(&out.join("prestart.json"))).unwrap();
    assert_eq!(st["id"], id.as_str(), "{st}");
    assert_eq!(st["status"], "creating");
    assert!(st["pid"].as_i64().unwrap() > 0);

    // pause / unpause: frun-oci's freezer.
    p.ok(&["pause", "h"]);
    assert_eq!(
        p.ok(&["inspect", "h", "--format", "{{.State.Status}}"])
            .trim(),
        "paused"
    );
    let fz = PathBuf::from(format!(
        "/sys/fs/cgroup/freezer{cg}/libpod-{id}/freezer.state"
    ));
    if fz.exists() {
        assert_eq!(read_or_empty(&fz).trim(), "FROZEN");
    }
    assert_eq!(
        serde_json::from_str::<Value>(
            &std::process::Command::new(&p.bin)
                .args(["state", &id])
                .output()
                .map(|o| text(&o.stdout))
                .unwrap()
        )
        .unwrap()["status"],
        "paused"
    );
    p.ok(&["unpause", "h"]);
    assert_eq!(
        p.ok(&["inspect", "h", "--format", "{{.State.Status}}"])
            .trim(),
        "running"
    );
    if fz.exists() {
        assert_eq!(read_or_empty(&fz).trim(), "THAWED");
    }

    // update --memory: frun-oci's update, seen from inside.
    p.ok(&["update", "--memory", "64m", "h"]);
    let r: Value = serde_json::from_str(
        p.ok(&["exec", "h", "/usr/local/bin/checker", "report"])
            .trim(),
    )
    .unwrap();
    assert_eq!(
        r["cgroup"]["memory_limit"],
        (64u64 << 20).to_string(),
        "{}",
        r["cgroup"]
    );

    p.ok(&["rm", "-f", "-t", "0", "h"]);
    assert!(
        oci_ids(&p.oci_state()).is_empty(),
        "{:?}",
        oci_ids(&p.oci_state())
    );
}

#[test]
fn containerd_pauses_resumes_and_runs_a_runc_spec_bundle_with_frun_oci() {
    let Some(reg) = registry() else { return };
    if !have("containerd") || !have("ctr") || !have("containerd-shim-runc-v2") {
        unavailable("containerd is not installed (scripts/test.sh installs it)");
        return;
    }
    if !have("runc") {
        unavailable("runc is not installed (scripts/packages/test.txt lists it)");
        return;
    }
    let c = Containerd::start();
    let img = format!("{reg}/test/checker:latest");
    c.ok(&["images", "pull", "--plain-http", &img]);
    let bin = c.bin.display().to_string();
    let fifo = c.fifo_dir();

    // ctr task pause / resume.
    let cg1 = format!("{}/p1", c.f.cgroup_parent);
    c.ok(&[
        "run",
        "-d",
        "--null-io",
        "--fifo-dir",
        &fifo,
        "--runc-binary",
        &bin,
        "--cgroup",
        &cg1,
        &img,
        "p1",
        "/usr/local/bin/checker",
        "sleep",
        "1000",
    ]);
    let task = |state: &str| {
        c.ok(&["tasks", "ls"])
            .lines()
            .any(|l| l.starts_with("p1 ") && l.contains(state))
    };
    assert!(task("RUNNING"));
    c.ok(&["tasks", "pause", "p1"]);
    assert!(task("PAUSED"), "{}", c.ok(&["tasks", "ls"]));
    let fz = PathBuf::from(format!("/sys/fs/cgroup/freezer{cg1}/freezer.state"));
    if fz.exists() {
        assert_eq!(read_or_empty(&fz).trim(), "FROZEN");
    }
    c.ok(&["tasks", "resume", "p1"]);
    assert!(task("RUNNING"), "{}", c.ok(&["tasks", "ls"]));
    if fz.exists() {
        assert_eq!(read_or_empty(&fz).trim(), "THAWED");
    }
    c.ok(&["tasks", "kill", "-s", "KILL", "p1"]);
    wait_for(10, "the task to stop", || task("STOPPED").then_some(()));
    c.ok(&["tasks", "delete", "p1"]);
    c.ok(&["containers", "delete", "p1"]);

    // `ctr run --config` with `runc spec`'s config as it is (no cgroupsPath: frun-oci's
    // /frun-oci/ID), but for terminal=false, a command that reports, and an absolute root.
    let Some(b) = bundle(&c.f, "rspec", &["/bin/true"], None) else {
        return;
    };
    std::fs::remove_file(b.join("config.json")).unwrap();
    let out = std::process::Command::new("runc")
        .args(["spec", "--bundle"])
        .arg(&b)
        .output()
        .unwrap();
    assert!(out.status.success(), "runc spec: {}", text(&out.stderr));
    edit(&b, |s| {
        s["process"]["terminal"] = false.into();
        s["process"]["args"] = json!([
            "sh",
            "-c",
            "echo from-runc-spec; grep -E '^(NoNewPrivs|CapAmb)' /proc/self/status"
        ]);
        s["root"]["path"] = b.join("rootfs").display().to_string().into();
    });
    let id = format!("rs-{}", c.f.cgroup_parent.trim_start_matches("/frun-test-"));
    let _guard = CgroupGuard::new(format!("frun-oci/{id}"));
    let config = b.join("config.json");
    let out = c.run(&[
        "run",
        "--rm",
        "--fifo-dir",
        &fifo,
        "--runc-binary",
        &bin,
        "--config",
        config.to_str().unwrap(),
        &id,
    ]);
    assert!(
        out.status.success(),
        "{}: {}",
        out.status,
        text(&out.stderr)
    );
    let lines: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines,
        [
            "from-runc-spec",
            "CapAmb: 0000000000000000",
            "NoNewPrivs: 1"
        ]
    );
    assert!(c.ok(&["containers", "ls", "-q"]).trim().is_empty());
    assert!(oci_ids(&c.oci_state()).is_empty());
}
