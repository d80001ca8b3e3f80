//! Named volumes: created and used, initialised from the image with its owners and
//! modes, refused removal while a container uses them, pruned when none does.

use crate::common::*;
use crate::logs::{image, wait_status};
use serde_json::Value;
use std::os::unix::fs::MetadataExt;

#[test]
fn a_new_volume_keeps_the_images_owner_so_the_app_user_can_write() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    // /home/app is uid 1000's in the image; the app runs as `app` (1000).
    let out = f.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-u",
        "app",
        "-v",
        "home:/home/app",
        &image(&reg, "checker"),
        "sh",
        "-c",
        "echo mine > /home/app/made && stat -c '%u %g %a' /home/app",
    ]);
    let data = f.root().join("volumes/home/_data");
    let m = std::fs::metadata(&data).unwrap();
    assert_eq!(
        out.trim(),
        format!("1000 {} {:o}", m.gid(), m.mode() & 0o7777)
    );
    assert_eq!(m.uid(), 1000, "the volume took the image's owner");
    assert_eq!(std::fs::metadata(data.join("made")).unwrap().uid(), 1000);
    let v: Value = serde_json::from_str(&f.ok(&["volume", "inspect", "home"])).unwrap();
    assert_eq!(v[0]["initialized_from"], "/home/app");
    assert_eq!(v[0]["mountpoint"], data.to_str().unwrap());
    // An existing volume is used as it is: the second run sees the first run's file.
    let out = f.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "home:/home/app",
        &image(&reg, "checker"),
        "cat",
        "/home/app/made",
    ]);
    assert_eq!(out, "mine\n");
}

#[test]
fn volumes_in_use_are_refused_removal_naming_the_container_and_prune_spares_them() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    assert_eq!(f.ok(&["volume", "create", "spare"]), "spare\n");
    let err = f.fails(&["volume", "create", "spare"]);
    assert!(err.contains("already exists"), "{err}");
    let err = f.fails(&["volume", "create", "../up"]);
    assert!(err.contains("invalid volume name"), "{err}");
    f.ok(&[
        "run",
        "-d",
        "--name",
        "user",
        "--network",
        "none",
        "-v",
        "busy:/data",
        &image(&reg, "checker"),
        "sleep",
        "300",
    ]);
    wait_status(&f, "user", "running");
    let ls: Value = serde_json::from_str(&f.ok(&["volume", "ls", "--format", "json"])).unwrap();
    let names: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["busy", "spare"]);
    assert_eq!(ls[0]["used_by"], serde_json::json!(["user"]));
    assert_eq!(f.ok(&["volume", "ls", "-q"]), "busy\nspare\n");
    let err = f.fails(&["volume", "rm", "busy"]);
    assert!(err.contains("busy") && err.contains("user"), "{err}");
    let out = f.ok(&["volume", "prune", "-f"]);
    assert!(out.contains("spare") && !out.contains("busy"), "{out}");
    assert!(f.root().join("volumes/busy/_data").is_dir());
    // A stopped container still uses its volume, as in Docker.
    f.ok(&["stop", "-t", "0", "user"]);
    assert!(f.fails(&["volume", "rm", "busy"]).contains("user"));
    f.ok(&["rm", "user"]);
    assert_eq!(f.ok(&["volume", "rm", "busy"]), "busy\n");
    assert_eq!(f.ok(&["volume", "ls", "-q"]), "");
    let err = f.fails(&["volume", "rm", "busy"]);
    assert!(err.contains("no such volume: busy"), "{err}");
}
