//! Volumes.

use super::*;

#[test]
fn volumes_bind_host_dirs_rw_and_ro_and_named_volumes_persist() {
    let Some((f, reg)) = run_test() else { return };
    let img = image(&reg, "checker");
    let host = f.dir.path().join("shared");
    std::fs::create_dir(&host).unwrap();
    let vol = format!("{}:/data", host.display());
    let out = f.run(&[
        "run",
        "--rm",
        "-v",
        &vol,
        &img,
        "sh",
        "-c",
        "echo from-inside > /data/made && cat /data/made",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(host.join("made")).unwrap(),
        "from-inside\n"
    );

    let ro = format!("{}:/data:ro", host.display());
    let out = f.run(&[
        "run",
        "--rm",
        "-v",
        &ro,
        &img,
        "sh",
        "-c",
        "cat /data/made; echo x > /data/other",
    ]);
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stdout),
        "from-inside\n",
        "read-only volume is readable"
    );
    assert!(
        text(&out.stderr).contains("Read-only file system"),
        "{}",
        text(&out.stderr)
    );
    assert!(!host.join("other").exists());

    f.ok(&[
        "run",
        "--rm",
        "-v",
        "keep:/vol",
        &img,
        "sh",
        "-c",
        "echo persisted > /vol/file",
    ]);
    let out = f.ok(&["run", "--rm", "-v", "keep:/vol", &img, "cat", "/vol/file"]);
    assert_eq!(out, "persisted\n");
    assert!(f.root().join("volumes/keep/_data/file").is_file());
}

/// The uid of a file or of a process (`/proc/PID`), as the host sees it.
fn host_uid(p: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{p:?}: {e}"))
        .uid()
}

#[test]
fn user_namespace_maps_ids_idmaps_the_layers_and_idmap_volumes() {
    let Some((f, reg)) = run_test() else { return };
    let img = image(&reg, "checker");
    let map = [
        "--uidmap",
        "0:200000:65536",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
    ];

    // From the inside: a user namespace of its own with the mapping, root in it with
    // Docker's capabilities (of that namespace), the usual masks and read-only paths, and
    // its own cgroup's limits (the mounts a namespace's root cannot make itself came from
    // frun's side).
    let r = report(&f, &map, &img);
    let cg = &r["cgroup"];
    assert_eq!(cg["memory_limit"], "67108864", "{cg}");
    assert_eq!(cg["pids_limit"], "50", "{cg}");
    assert_ne!(r["namespaces"]["user"], host_ns("user").as_str());
    for ns in NEW_NAMESPACES {
        assert_ne!(r["namespaces"][ns].as_str().unwrap(), host_ns(ns), "{ns}");
    }
    assert_eq!((r["uid"].as_u64(), r["gid"].as_u64()), (Some(0), Some(0)));
    let mask: u64 = DOCKER_CAPS.iter().map(|(b, _)| 1u64 << b).sum();
    let eff = u64::from_str_radix(r["caps"]["CapEff"].as_str().unwrap(), 16).unwrap();
    assert_eq!(eff, mask);
    assert_masked_and_read_only(&r, true);

    // The maps; image files owned by root are root's; /dev/null works; new files are
    // the namespace's root's.
    let out = f.ok(&[
        "run",
        "--rm",
        "--uidmap",
        "0:200000:65536",
        "--gidmap",
        "0:300000:65536",
        &img,
        "sh",
        "-c",
        "cat /proc/self/uid_map /proc/self/gid_map; stat -c '%u:%g' /bin/busybox /etc; \
         echo x > /dev/null && touch /new && stat -c '%u:%g' /new; id -u",
    ]);
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(
        words,
        ["0", "200000", "65536", "0", "300000", "65536", "0:0", "0:0", "0:0", "0"],
        "{out}"
    );

    // sysfs shows the container's own network namespace (the bridge's), or the host's
    // with --network host.
    let links = || -> BTreeSet<String> {
        std::fs::read_to_string("/proc/self/net/dev")
            .unwrap()
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next().map(|n| n.trim().to_string()))
            .collect()
    };
    let ls_net = |extra: &[&str]| {
        let mut args = vec!["run", "--rm", "--uidmap", "0:200000:65536"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[&img, "ls", "/sys/class/net"]);
        let mut v: Vec<String> = f.ok(&args).split_whitespace().map(String::from).collect();
        v.sort();
        v
    };
    assert_eq!(ls_net(&[]), ["eth0", "lo"]);
    // (The links of this process's network namespace: /proc/net/dev follows it, the
    // host's /sys does not. Other tests' veths come and go meanwhile.)
    let links_before = links();
    let seen: BTreeSet<String> = ls_net(&["--network", "host"]).into_iter().collect();
    let links_after = links();
    assert!(seen.contains("lo") && !seen.contains("eth0"), "{seen:?}");
    // Another test's veth pair can be here for a moment only, between the two looks: its
    // two ends (`veth<id>`, `p<id>`) are made here before one moves into its container.
    let transient = |l: &String| {
        let id = l.strip_prefix("veth").or_else(|| l.strip_prefix('p'));
        id.is_some_and(|id| id.len() == 11 && id.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    assert!(
        seen.iter()
            .filter(|l| !transient(l))
            .all(|l| links_before.contains(l) || links_after.contains(l)),
        "{seen:?} not among {links_before:?} / {links_after:?}"
    );
    assert!(
        links_before
            .intersection(&links_after)
            .all(|l| seen.contains(l)),
        "{seen:?} lacks some of {links_before:?}"
    );

    // From the outside: the process runs as the mapped host uid, its files in the upper
    // directory belong to it, the shared layers are untouched; exec joins the namespace.
    f.ok(&[
        "run",
        "-d",
        "--name",
        "u",
        "--uidmap",
        "0:200000:65536",
        &img,
        "sh",
        "-c",
        "touch /made-inside; exec sleep 300",
    ]);
    let pid = wait_running(&f, "u");
    assert_eq!(host_uid(Path::new(&format!("/proc/{pid}"))), 200000);
    let id = find(&f, "u")["id"].as_str().unwrap().to_string();
    let upper = f.root().join("containers").join(&id).join("upper");
    wait_for(10, "the file made inside", || {
        upper.join("made-inside").exists().then_some(())
    });
    assert_eq!(host_uid(&upper.join("made-inside")), 200000);
    assert_eq!(host_uid(&upper), 200000);
    for layer in f.layer_dirs(&format!("{img}:latest")) {
        for file in std::iter::once(PathBuf::new()).chain(files_below(&layer)) {
            let file = layer.join(file);
            assert!(host_uid(&file) < 200000, "{file:?} was chowned");
        }
    }
    let out = f.ok(&["exec", "u", "sh", "-c", "id -u; cat /proc/self/uid_map"]);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["0", "0", "200000", "65536"]
    );
    f.ok(&["rm", "-f", "u"]);

    // Volumes: a host directory owned by the host's root is not the namespace's root's
    // (writing fails); with :idmap it is, and what the container writes is the host
    // root's on disk.
    let host = f.dir.path().join("vol");
    std::fs::create_dir(&host).unwrap();
    let out = f.run(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/data", host.display()),
        "--uidmap",
        "0:200000:65536",
        &img,
        "touch",
        "/data/x",
    ]);
    assert!(!out.status.success(), "an unmapped volume was writable");
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out.stderr)
    );
    let idm = format!("{}:/data:idmap", host.display());
    let out = f.ok(&[
        "run",
        "--rm",
        "-v",
        &idm,
        "--uidmap",
        "0:200000:65536",
        &img,
        "sh",
        "-c",
        "echo hi > /data/made && stat -c '%u' /data/made",
    ]);
    assert_eq!(out.trim(), "0");
    assert_eq!(host_uid(&host.join("made")), 0);

    // Ids the maps do not cover are refused before anything starts, naming the flag.
    let e = f.fails(&[
        "run",
        "--rm",
        "--uidmap",
        "0:200000:1000",
        "-u",
        "4242",
        &img,
        "true",
    ]);
    assert!(e.contains("uid 4242 is not mapped by --uidmap"), "{e}");
    let e = f.fails(&["run", "--rm", "--uidmap", "0:200000", &img, "true"]);
    assert!(e.contains("invalid --uidmap \"0:200000\""), "{e}");
    let e = f.fails(&["run", "--rm", "-v", &idm, &img, "true"]);
    assert!(e.contains("idmap needs a user namespace"), "{e}");
}
