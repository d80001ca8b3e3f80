//! User and groups.

use super::*;

#[test]
fn image_user_groups_and_workdir_apply_and_u_overrides() {
    let Some((f, reg)) = run_test() else { return };
    let img = image(&reg, "checker-user");
    let r = report(&f, &[], &img);
    for k in ["uid", "gid", "euid", "egid"] {
        assert_eq!(r[k], 1000, "{k}");
    }
    let groups: BTreeSet<u64> = r["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_u64().unwrap())
        .filter(|g| *g != 1000)
        .collect();
    assert_eq!(groups, BTreeSet::from([2000]), "groups {}", r["groups"]);
    assert_eq!(r["cwd"], "/home/app");

    let r = report(&f, &["-u", "0"], &img);
    assert_eq!((r["uid"].as_u64(), r["euid"].as_u64()), (Some(0), Some(0)));
    assert_eq!(r["cwd"], "/home/app");

    // CVE-2024-40635: a uid above 2^31 must not wrap to root.
    let r = report(&f, &["-u", "2147483648"], &img);
    assert_eq!(r["uid"], 2147483648u64);
    assert_eq!(r["euid"], 2147483648u64);

    // exec -u: names from the running container's own /etc/passwd and /etc/group.
    f.ok(&["run", "-d", "--name", "u", "-u", "0", &img, "sleep", "300"]);
    wait_running(&f, "u");
    assert_eq!(f.ok(&["exec", "-u", "app", "u", "id", "-u"]), "1000\n");
    f.ok(&[
        "exec",
        "u",
        "sh",
        "-c",
        "echo late:x:1234:1234::/:/bin/sh >> /etc/passwd",
    ]);
    assert_eq!(f.ok(&["exec", "-u", "late", "u", "id", "-u"]), "1234\n");
    let e = f.fails(&["exec", "-u", "nobody-here", "u", "true"]);
    assert!(e.contains("unable to find user nobody-here"), "{e}");
    f.ok(&["rm", "-f", "u"]);
}

#[test]
fn invalid_users_fail_with_125_naming_the_value_and_leave_nothing() {
    let Some((f, reg)) = run_test() else { return };
    let img = image(&reg, "checker-user");
    f.ok(&["pull", "-q", &img]);
    for user in ["4294967295", "nosuchuser"] {
        let out = f.run(&["run", "--rm", "-u", user, &img, "checker", "report"]);
        assert_eq!(
            out.status.code(),
            Some(125),
            "-u {user}: {}",
            text(&out.stderr)
        );
        assert!(
            out.stdout.is_empty(),
            "the command ran: {}",
            text(&out.stdout)
        );
        let err = text(&out.stderr);
        assert!(
            err.contains(user),
            "-u {user}: error does not name it: {err}"
        );
        f.assert_clean();
    }
}
