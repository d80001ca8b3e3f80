//! `frun cp` with a stopped container, as Docker allows: its own files (the overlay
//! of its image and what it wrote) both ways, mounted for the copy only, symlinks kept
//! inside it; a path in one of its volumes is refused, naming the volume's directory.

use crate::common::*;
use crate::logs::image;

#[test]
fn cp_reaches_a_stopped_containers_files_both_ways_but_not_its_volumes() {
    let Some(reg) = registry() else { return };
    let f = Frun::new().checked();
    let out = f.run(&[
        "run",
        "-q",
        "--name",
        "done",
        "-v",
        "cpvol:/data",
        &image(&reg, "busybox"),
        "sh",
        "-c",
        "echo made > /made; echo inside > /secret; ln -s ../../../../secret /rel; echo v > /data/v",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let host = f.dir.path().join("host");
    std::fs::create_dir_all(&host).unwrap();

    // 1. Out: what it wrote, and a relative symlink resolved inside it, not on the host.
    f.ok(&["cp", "done:/made", host.join("made").to_str().unwrap()]);
    assert_eq!(read(&host.join("made")), "made\n");
    f.ok(&["cp", "done:/rel", host.join("rel").to_str().unwrap()]);
    assert_eq!(read(&host.join("rel")), "inside\n");
    // A file of the image itself (a lower layer).
    f.ok(&["cp", "done:/bin/busybox", host.join("bb").to_str().unwrap()]);
    assert!(std::fs::metadata(host.join("bb")).unwrap().len() > 100_000);

    // 2. In: lands in the container's upper directory, and comes back out the same.
    std::fs::write(host.join("in"), "from the host\n").unwrap();
    f.ok(&["cp", host.join("in").to_str().unwrap(), "done:/in"]);
    let ps: serde_json::Value =
        serde_json::from_str(&f.ok(&["ps", "-a", "--format", "json"])).unwrap();
    let id = ps[0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        read(&f.root().join("containers").join(&id).join("upper/in")),
        "from the host\n"
    );
    f.ok(&["cp", "done:/in", host.join("back").to_str().unwrap()]);
    assert_eq!(read(&host.join("back")), "from the host\n");

    // 3. A volume's path: refused, naming where its files are.
    let err = f.fails(&["cp", "done:/data/v", host.join("v").to_str().unwrap()]);
    assert!(
        err.contains("is in the mount /data") && err.contains("volumes/cpvol"),
        "{err}"
    );
    assert!(!host.join("v").exists());

    // 4. Nothing stays mounted (the overlay was detached, gone with its fd).
    assert!(f.new_mounts().is_empty(), "{:?}", f.new_mounts());
    f.ok(&["rm", "done"]);
}
