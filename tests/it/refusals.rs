//! A feature the host lacks is refused in the words of `frun info` (issue 8): the refusal
//! quotes the feature's name, what `frun info` found, what its absence disables and how
//! to get it, and nothing is left created. The hosts here are made to lack the feature
//! for real, for frun's process alone: `nft` off its PATH; the pids controller out of
//! its mount namespace (on v1 and hybrid hosts its hierarchy unmounted there; on a v2
//! host a cgroup namespace rooted where pids is not delegated, with cgroup2 mounted
//! afresh).

use crate::common::*;
use serde_json::Value;
use std::process::{Command, Output};

/// `frun info --format json`'s feature `name`, from `out`.
fn feature(out: &Output, name: &str) -> Value {
    assert!(out.status.success(), "frun info: {out:?}");
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    info["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no feature {name:?} in {info}"))
        .clone()
}

/// Asserts that `err` (a refusal's stderr) says what `frun info` says of `f`, missing.
fn refused_as_info_says(err: &str, f: &Value) {
    assert_eq!(f["ok"], false, "{f}");
    let s = |k: &str| f[k].as_str().unwrap_or_else(|| panic!("no {k} in {f}"));
    let first = format!("this host lacks {} ({})", s("name"), s("detail"));
    for part in [first.as_str(), s("disables"), s("how"), "frun info"] {
        assert!(err.contains(part), "the refusal lacks {part:?}:\n{err}");
    }
}

#[test]
fn without_nft_a_bridged_run_is_refused_as_frun_info_says_and_nothing_is_left() {
    let Some(reg) = registry() else { return };
    let f = Frun::new().checked();
    let image = format!("{reg}/test/busybox");
    f.ok(&["pull", "-q", &image]);
    let empty = f.dir.path().join("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let info = f
        .command(&["info", "--format", "json"])
        .env("PATH", &empty)
        .output()
        .unwrap();
    let nft = feature(&info, "nft");
    let out = f
        .command(&["run", "--rm", "--name", "nonft", &image, "true"])
        .env("PATH", &empty)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    refused_as_info_says(&text(&out.stderr), &nft);
    assert_eq!(f.ok(&["ps", "-a", "--format", "json"]).trim(), "[]");
}

/// `frun ARGS` as `f` runs it, in a mount namespace of its own whose cgroup mounts lack
/// the pids controller (see the file's comment).
fn without_pids_controller(f: &Frun, args: &[&str]) -> Output {
    let inner = f.command(args);
    // CGROUP2_SUPER_MAGIC
    #[allow(clippy::unnecessary_cast)]
    let v2 = rustix::fs::statfs("/sys/fs/cgroup").unwrap().f_type as u64 == 0x6367_7270;
    let script = if v2 {
        // The test's own cgroup parent, delegating memory and cpu (when the root hands
        // them down) but not pids, and a leaf below it that becomes the namespace's root.
        r#"P=$1; shift
           mkdir -p "$P/ns"
           for c in memory cpu; do
               if grep -qw "$c" /sys/fs/cgroup/cgroup.subtree_control; then echo "+$c" >"$P/cgroup.subtree_control"; fi
           done
           echo $$ >"$P/ns/cgroup.procs"
           exec unshare --cgroup --mount --propagation private sh -c 'umount -l /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$@"' sh "$@""#
    } else {
        r#"shift
           exec unshare --mount --propagation private sh -c 'umount /sys/fs/cgroup/pids && exec "$@"' sh "$@""#
    };
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .arg("sh")
        .arg(format!("/sys/fs/cgroup{}", f.cgroup_parent))
        .arg(inner.get_program())
        .args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.output().unwrap()
}

#[test]
fn without_the_pids_controller_pids_limit_is_refused_as_frun_info_says_and_nothing_is_left() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let image = format!("{reg}/test/busybox");
    f.ok(&["pull", "-q", &image]);
    let info = without_pids_controller(&f, &["info", "--format", "json"]);
    let pids = feature(&info, "cgroup pids controller");
    let out = without_pids_controller(
        &f,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--pids-limit",
            "10",
            &image,
            "true",
        ],
    );
    assert!(!out.status.success(), "{out:?}");
    refused_as_info_says(&text(&out.stderr), &pids);
    assert_eq!(f.ok(&["ps", "-a", "--format", "json"]).trim(), "[]");
    assert!(f.container_dirs().is_empty(), "{:?}", f.container_dirs());
}
