//! `frun info`: its JSON checked against what the test can see of the host by itself
//! (`/proc`, `stat -f`, `PATH`), and its idmap verdict against a real `--uidmap` run.

use crate::common::{is_root, registry, unavailable, Frun};
use std::process::Command;

fn info(f: &Frun) -> serde_json::Value {
    let out = f.ok(&["info", "--format", "json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("info json: {e}\n{out}"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim()
        .to_string()
}

/// `stat -fc %T PATH`: the filesystem type as coreutils names it.
fn fs_type(path: &str) -> String {
    let out = Command::new("stat")
        .args(["-fc", "%T", path])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn feature<'a>(info: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    info["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no feature {name:?} in {info:#}"))
}

#[test]
fn info_json_says_what_the_host_shows() {
    let f = Frun::new();
    let i = info(&f);

    // Kernel and init, as /proc has them.
    assert_eq!(i["kernel"]["release"], read("/proc/sys/kernel/osrelease"));
    assert_eq!(i["kernel"]["version"], read("/proc/sys/kernel/version"));
    let init = read("/proc/1/comm");
    assert_eq!(i["init"], init.as_str());
    assert_eq!(i["systemd"], init == "systemd");
    assert_eq!(feature(&i, "systemd")["ok"], init == "systemd");

    // The cgroup layout, as `stat -f` tells it: cgroup2 at the top is v2; a tmpfs with a
    // cgroup2 `unified` beside the v1 hierarchies is hybrid; otherwise v1.
    let layout = match fs_type("/sys/fs/cgroup").as_str() {
        "cgroup2fs" => "v2",
        "tmpfs" if fs_type("/sys/fs/cgroup/unified") == "cgroup2fs" => "hybrid",
        "tmpfs" => "v1",
        other => panic!("/sys/fs/cgroup is {other}"),
    };
    assert_eq!(i["cgroup"]["layout"], layout, "{i:#}");
    let controllers: Vec<String> = i["cgroup"]["controllers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let mut expected: Vec<String> = if layout == "v2" {
        read("/sys/fs/cgroup/cgroup.controllers")
            .split_whitespace()
            .map(String::from)
            .collect()
    } else {
        // Every v1 controller that is enabled in /proc/cgroups and has a hierarchy
        // mounted under /sys/fs/cgroup (alone or co-mounted, e.g. cpu,cpuacct).
        let mounted: Vec<String> = std::fs::read_dir("/sys/fs/cgroup")
            .unwrap()
            .flatten()
            .filter(|e| fs_type(&e.path().to_string_lossy()) == "cgroupfs")
            .flat_map(|e| {
                e.file_name()
                    .to_string_lossy()
                    .split(',')
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect();
        read("/proc/cgroups")
            .lines()
            .skip(1)
            .filter_map(|l| {
                let v: Vec<&str> = l.split_whitespace().collect();
                (v.get(3) == Some(&"1") && mounted.iter().any(|m| m == v[0]))
                    .then(|| v[0].to_string())
            })
            .collect()
    };
    let mut got = controllers.clone();
    got.sort();
    expected.sort();
    expected.dedup();
    assert_eq!(got, expected, "{i:#}");
    for c in ["memory", "pids", "cpu"] {
        let ok = controllers.iter().any(|x| x == c);
        assert_eq!(
            feature(&i, &format!("cgroup {c} controller"))["ok"],
            ok,
            "{i:#}"
        );
    }

    // Swap, as /proc/meminfo has it (kB there).
    let swap_kb: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("SwapTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert_eq!(i["swap"]["total_bytes"], swap_kb * 1024);

    // nft: found exactly where `command -v` finds it.
    let nft = Command::new("sh")
        .args(["-c", "command -v nft"])
        .output()
        .unwrap();
    let nft_path = String::from_utf8_lossy(&nft.stdout).trim().to_string();
    let n = feature(&i, "nft");
    assert_eq!(n["ok"], nft.status.success(), "{n}");
    if nft.status.success() {
        assert_eq!(n["detail"], nft_path.as_str());
    }

    // The roots are the ones given; the store's filesystem is the one it lies on (the
    // root does not exist yet: its parent's).
    assert_eq!(i["store_root"], f.root().to_string_lossy().as_ref());
    assert_eq!(
        i["run_root"],
        f.dir.path().join("run").to_string_lossy().as_ref()
    );
    assert_eq!(i["cgroup_parent"], f.cgroup_parent.as_str());
    let store_fs = fs_type(&f.dir.path().to_string_lossy());
    let named = match store_fs.as_str() {
        "ext2/ext3" => "ext4",
        other => other,
    };
    assert_eq!(i["store_filesystem"], named, "stat -f says {store_fs}");

    // Every missing piece says what it disables and how to get it; nothing else does.
    for feat in i["features"].as_array().unwrap() {
        let missing = feat["ok"] == false;
        for key in ["disables", "how"] {
            assert_eq!(
                feat[key].as_str().is_some_and(|s| !s.is_empty()),
                missing,
                "{feat}"
            );
        }
    }
    // The probes left nothing in the directory they used.
    let left: Vec<_> = std::fs::read_dir(f.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.iter()
            .all(|n| !n.to_string_lossy().starts_with(".frun-probe")),
        "{left:?}"
    );
}

#[test]
fn info_table_names_the_kernel_layout_and_missing_pieces() {
    let f = Frun::new();
    let i = info(&f);
    let table = f.ok(&["info"]);
    assert!(
        table.contains(&format!(
            "Kernel:          {}",
            read("/proc/sys/kernel/osrelease")
        )),
        "{table}"
    );
    assert!(
        table.contains(&format!(
            "Cgroups:         {}",
            i["cgroup"]["layout"].as_str().unwrap()
        )),
        "{table}"
    );
    for feat in i["features"].as_array().unwrap() {
        let name = feat["name"].as_str().unwrap();
        let mark = if feat["ok"] == true {
            "ok     "
        } else {
            "MISSING"
        };
        assert!(
            table.contains(&format!("  {mark} {name}: ")),
            "{name}: {table}"
        );
        if let Some(d) = feat["disables"].as_str() {
            assert!(table.contains(&format!("disables: {d}")), "{table}");
        }
    }
}

/// The idmap probes say what a real `--uidmap` start meets: where they find every
/// piece, the start works; where one is missing, it fails.
#[test]
fn info_idmap_verdict_agrees_with_a_uidmap_run() {
    if !is_root() {
        unavailable("not root: the idmap probes and --uidmap need root");
        return;
    }
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let i = info(&f);
    let all = [
        "user namespaces",
        "idmapped mounts",
        "overlayfs over idmapped layers",
    ]
    .iter()
    .all(|n| feature(&i, n)["ok"] == true);
    let img = format!("{reg}/test/busybox");
    f.ok(&["pull", "-q", &img]);
    let i = info(&f); // now probed on the store's own filesystem
    let all_after = [
        "user namespaces",
        "idmapped mounts",
        "overlayfs over idmapped layers",
    ]
    .iter()
    .all(|n| feature(&i, n)["ok"] == true);
    assert_eq!(all, all_after, "{i:#}");
    let out = f.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--uidmap",
        "0:100000:65536",
        &img,
        "true",
    ]);
    assert_eq!(
        out.status.success(),
        all_after,
        "info says {i:#}\nbut the run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `frun ARGS` as `f` runs it, in a mount namespace of its own where
/// /etc/systemd/system is an empty tmpfs that `setup` (a shell snippet, `$UNIT` the
/// text of `frun systemd-unit` in a file) fills: the host's unit files stay untouched.
fn with_unit_files(f: &Frun, unit: &std::path::Path, setup: &str, args: &[&str]) -> String {
    let inner = f.command(args);
    let script = format!(
        "mount -t tmpfs frun-test /etc/systemd/system && cd /etc/systemd/system && {{ {setup}; }} && exec \"$@\""
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(script)
        .arg("sh")
        .arg(inner.get_program())
        .args(inner.get_args())
        .env("UNIT", unit);
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{setup}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn info_says_whether_the_boot_unit_is_installed_enabled_and_current() {
    if !is_root() {
        unavailable("not root: a mount namespace with its own /etc/systemd/system");
        return;
    }
    let f = Frun::new();
    let unit = f.dir.path().join("frun.service");
    std::fs::write(&unit, f.ok(&["systemd-unit"])).unwrap();
    let boot = |setup: &str| {
        let text = with_unit_files(&f, &unit, setup, &["info", "--format", "json"]);
        let i: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("info json: {e}\n{text}"));
        i["boot_unit"].clone()
    };
    let want = |path: Option<&str>, enabled: bool, current: bool| serde_json::json!({"path": path, "enabled": enabled, "current": current});
    // systemd's other unit directories hold none (the host's packages bring none).
    let etc = "/etc/systemd/system/frun.service";
    let enable = "mkdir multi-user.target.wants && ln -s ../frun.service multi-user.target.wants/";
    assert_eq!(boot("true"), want(None, false, false));
    assert_eq!(
        boot("cp \"$UNIT\" frun.service"),
        want(Some(etc), false, true)
    );
    assert_eq!(
        boot(&format!("cp \"$UNIT\" frun.service && {enable}")),
        want(Some(etc), true, true)
    );
    // A unit for other roots (or an older one) is not this command's.
    assert_eq!(
        boot(&format!(
            "sed 's/--root /--root \\/elsewhere/' \"$UNIT\" >frun.service && {enable}"
        )),
        want(Some(etc), true, false)
    );
    // A link whose unit is gone enables nothing.
    assert_eq!(boot(enable), want(None, false, false));

    // The table says what to do.
    let t = with_unit_files(&f, &unit, "true", &["info"]);
    assert!(t.contains("Boot unit:       not installed: stacks do not come back after a reboot (to install: frun systemd-unit >/etc/systemd/system/frun.service && systemctl enable --now frun)"), "{t}");
    let t = with_unit_files(&f, &unit, "cp \"$UNIT\" frun.service", &["info"]);
    assert!(
        t.contains(&format!("Boot unit:       {etc}, NOT enabled")),
        "{t}"
    );
}
