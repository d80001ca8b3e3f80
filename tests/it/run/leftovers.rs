//! Nothing left behind, across every way a container ends.

use super::*;

#[test]
fn nothing_is_left_after_exit_stop_and_rm() {
    let Some((f, reg)) = run_test() else { return };
    let img = image(&reg, "checker");
    f.ok(&["pull", "-q", &img]);
    let vol = f.dir.path().join("v");
    std::fs::create_dir(&vol).unwrap();
    let v = format!("{}:/v", vol.display());
    // Foreground, then rm.
    f.ok(&[
        "run", "--name", "a", "-v", &v, "--memory", "32m", &img, "checker", "exit", "0",
    ]);
    assert!(
        f.child_cgroups().is_empty(),
        "cgroup outlived its container: {:?}",
        f.child_cgroups()
    );
    f.ok(&["rm", "a"]);
    f.assert_clean();
    // Detached, stopped, then rm.
    f.ok(&[
        "run", "-d", "--name", "b", "-v", &v, &img, "checker", "sleep", "300",
    ]);
    wait_running(&f, "b");
    assert!(
        !f.child_cgroups().is_empty(),
        "a running container has a cgroup"
    );
    f.ok(&["stop", "-t", "1", "b"]);
    assert!(
        f.child_cgroups().is_empty(),
        "cgroup outlived stop: {:?}",
        f.child_cgroups()
    );
    f.ok(&["rm", "b"]);
    f.assert_clean();
    // Detached with live children, rm -f.
    f.ok(&[
        "run",
        "-d",
        "--name",
        "c",
        &img,
        "sh",
        "-c",
        "sleep 300 & sleep 300 & exec checker sleep 300",
    ]);
    wait_running(&f, "c");
    f.ok(&["rm", "-f", "c"]);
    f.assert_clean();
    // Detached --rm that exits by itself.
    f.ok(&[
        "run", "-d", "--rm", "--name", "d", &img, "checker", "exit", "0",
    ]);
    wait_for(10, "the --rm container to go", || {
        f.container_dirs().is_empty().then_some(())
    });
}
