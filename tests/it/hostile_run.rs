//! Volumes that would reach the host's files (issue 15, item 5): a bind on `/dev` must
//! not get device nodes made or files unlinked in it (they were the host directory's),
//! and volumes on `/` or into `/proc` are refused before anything exists.

use crate::common::*;
use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// Name -> (kind, rdev, content) of each entry of `dir`.
fn listing(dir: &Path) -> BTreeMap<String, (String, u64, String)> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            let kind = if m.file_type().is_char_device() {
                "char"
            } else if m.file_type().is_symlink() {
                "symlink"
            } else if m.is_dir() {
                "dir"
            } else {
                "file"
            };
            let content = if m.is_file() {
                std::fs::read_to_string(e.path()).unwrap_or_default()
            } else {
                String::new()
            };
            (
                e.file_name().to_string_lossy().into_owned(),
                (kind.to_string(), m.rdev(), content),
            )
        })
        .collect()
}

/// `-v HOSTDIR:/dev` wrote null, zero, full, random, urandom, tty and the fd/std*
/// links into HOSTDIR, unlinking its own `stdout` for one; they stayed after the
/// container exited. (`-v /dev:/dev` did it to the host's /dev.)
#[test]
fn a_volume_on_dev_gets_no_device_nodes_written_into_the_host_directory() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let img = format!("{reg}/test/checker");
    let dir = f.dir.path().join("hostdev");
    std::fs::create_dir(&dir).unwrap();
    // A null device of its own (frun masks paths with the container's /dev/null, which
    // it checks), a file named like one of /dev's links, and one of the directory's own.
    let st = std::process::Command::new("mknod")
        .arg(dir.join("null"))
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(dir.join("stdout"), "the host's file\n").unwrap();
    std::fs::write(dir.join("marker"), "mine\n").unwrap();
    let before = listing(&dir);
    let vol = format!("{}:/dev", dir.display());
    let out = f.run(&[
        "run", "--rm", "-q", "-v", &vol, &img, "checker", "exit", "0",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // (The volume parsing lets /dev through: this is the runtime skipping its /dev
    // set-up for a bind there, which frun-oci specs get too.)
    assert_eq!(listing(&dir), before, "the host directory changed");
    // Without a null device there, the masks cannot be made: refused, saying why, and
    // still nothing written.
    std::fs::remove_file(dir.join("null")).unwrap();
    let before = listing(&dir);
    let out = f.run(&[
        "run", "--rm", "-q", "-v", &vol, &img, "checker", "exit", "0",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("no /dev/null to mask paths with"), "{err}");
    assert_eq!(listing(&dir), before, "the host directory changed");
}

/// `-v X:/` (Docker refuses it) and `-v X:/proc/sys` (runc refuses binds into /proc)
/// were accepted: refused with the flag named, exit 125, nothing created.
#[test]
fn volumes_on_the_root_or_into_proc_are_refused() {
    let f = Frun::new();
    let dir = f.dir.path().join("vol");
    std::fs::create_dir(&dir).unwrap();
    for (dst, want) in [
        ("/", "the destination cannot be /"),
        ("/proc/sys", "/proc/sys is inside /proc"),
        ("/proc", "/proc is inside /proc"),
        (
            "/proc/self/../sysrq-trigger",
            "/proc/sysrq-trigger is inside /proc",
        ),
    ] {
        let vol = format!("{}:{dst}", dir.display());
        let out = f.run(&[
            "run",
            "--rm",
            "-v",
            &vol,
            "127.0.0.1:1/never-pulled",
            "true",
        ]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{vol}: {err}");
        assert!(err.contains(want), "{vol}: {err}");
        assert!(err.contains(&format!("-v {vol:?}")), "{vol}: {err}");
    }
    let left: Vec<_> = std::fs::read_dir(f.root().join("containers"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

/// The address a container got, from inside it.
fn address(f: &Frun, name: &str) -> String {
    let out = f.ok(&["exec", name, "cat", "/etc/hosts"]);
    // Its own line: ADDRESS<TAB>HOSTNAME, the first after localhost's.
    out.lines()
        .find(|l| l.starts_with("10."))
        .and_then(|l| l.split('\t').next())
        .unwrap_or_default()
        .to_string()
}

/// A corrupt `leases.json` failed every bridge run with a bare parse error; deleting it
/// gave the next container a running one's address. Both are rebuilt from the
/// container records, with a warning that says so.
#[test]
fn corrupt_or_deleted_leases_never_hand_out_a_running_containers_address() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let image = format!("{reg}/test/busybox");
    f.ok(&["run", "-d", "--name", "first", &image, "sleep", "60"]);
    let first = address(&f, "first");
    assert!(first.starts_with("10."), "{first:?}");
    let leases = f.root().join("network").join("leases.json");
    std::fs::write(&leases, "{\"leases\": {\"x\": ").unwrap();
    let out = f.run(&["run", "-d", "--name", "second", &image, "sleep", "60"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("is corrupt"), "{err}");
    assert!(
        err.contains("rebuilt 1 lease(s) from the container records"),
        "{err}"
    );
    let second = address(&f, "second");
    assert_ne!(second, first);
    std::fs::remove_file(&leases).unwrap();
    let out = f.run(&["run", "-d", "--name", "third", &image, "sleep", "60"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("is missing: rebuilt 2 lease(s)"), "{err}");
    let third = address(&f, "third");
    assert!(
        third != first && third != second,
        "{first} {second} {third}"
    );
    f.ok(&["rm", "-f", "first", "second", "third"]);
}
