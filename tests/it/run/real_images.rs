//! Real images.

use super::*;

fn mirror_frun() -> Option<Frun> {
    registry()?;
    let token = test_env("FRUN_TEST_REGISTRY_TOKEN")?;
    Some(Frun::new().env("FRUN_REGISTRY_MIRROR", &token).checked())
}

#[test]
fn alpine_runs_its_shell_and_package_database() {
    let Some(f) = mirror_frun() else { return };
    let out = f.ok(&[
        "run",
        "--rm",
        "-q",
        "alpine:3.20.3",
        "cat",
        "/etc/alpine-release",
    ]);
    assert_eq!(out, "3.20.3\n");
    let out = f.ok(&[
        "run",
        "--rm",
        "alpine:3.20.3",
        "/bin/sh",
        "-c",
        "echo $((1+2))",
    ]);
    assert_eq!(out, "3\n");
    let out = f.ok(&["run", "--rm", "alpine:3.20.3", "apk", "info"]);
    let pkgs: BTreeSet<&str> = out.lines().collect();
    for p in ["musl", "busybox", "alpine-baselayout", "apk-tools"] {
        assert!(pkgs.contains(p), "apk info lacks {p}: {out}");
    }
}

#[test]
fn arm64_image_is_refused_before_anything_is_set_up() {
    let Some(f) = mirror_frun() else { return };
    let out = f.run(&["run", "--rm", "hello-world"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains("linux/arm64") && err.contains("linux/amd64"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(
        f.cgroup_dirs().is_empty(),
        "a cgroup was made: {:?}",
        f.cgroup_dirs()
    );
}
