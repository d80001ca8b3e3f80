//! `frun pull`, `images`, `rmi`, `gc`, `login` against the test registries.

use crate::common::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    let n = rustix::fs::lgetxattr(p, name, &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

#[test]
fn pull_oci_image_lists_it_and_unpacks_it() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let reference = format!("{reg}/test/busybox:latest");
    let out = f.ok(&["pull", &format!("{reg}/test/busybox")]);
    assert!(out.contains(&reference), "summary names the image: {out}");
    let images = f.images();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0]["reference"], reference.as_str());
    assert!(images[0]["digest"].as_str().unwrap().starts_with("sha256:"));
    assert!(images[0]["size"].as_u64().unwrap() > 100_000);
    let layers = f.layer_dirs(&reference);
    assert_eq!(layers.len(), 1);
    let busybox = layers[0].join("bin/busybox");
    assert!(busybox.metadata().unwrap().permissions().mode() & 0o111 != 0);
    assert_eq!(
        std::fs::read_link(layers[0].join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert!(read(&layers[0].join("etc/passwd")).contains("app:x:1000"));
    // Pulling again finds everything in place.
    f.ok(&["pull", "--quiet", &reference]);
    assert!(f.scratch().is_empty());
}

#[test]
fn pull_docker_schema2_manifest() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let reference = format!("{reg}/test/busybox:v2s2");
    f.ok(&["pull", "-q", &reference]);
    let rec = f.record(&reference);
    let mt = rec["layers"][0]["media_type"].as_str().unwrap();
    assert_eq!(mt, "application/vnd.docker.image.rootfs.diff.tar.gzip");
    assert!(f.layer_dirs(&reference)[0].join("bin/busybox").is_file());
}

#[test]
fn layers_keep_metadata_and_whiteouts_work_in_overlayfs() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let reference = format!("{reg}/test/layers:latest");
    f.ok(&["pull", "-q", &reference]);
    let l = f.layer_dirs(&reference);
    assert_eq!(l.len(), 4, "gzip, gzip, zstd and plain tar layers");
    let data = l[0].join("data");
    let a = data.join("a").symlink_metadata().unwrap();
    assert_eq!(a.mode() & 0o7777, 0o640);
    assert_eq!((a.uid(), a.gid()), (1000, 1000));
    assert_eq!(a.mtime(), 1577836800);
    assert_eq!(
        xattr(&data.join("a"), "user.frun").as_deref(),
        Some(&b"hello"[..])
    );
    let hard = data.join("hard").symlink_metadata().unwrap();
    assert_eq!(hard.ino(), a.ino(), "hard link shares the inode");
    assert_eq!(
        std::fs::read_link(data.join("link")).unwrap(),
        Path::new("a")
    );
    assert!(data
        .join("fifo")
        .symlink_metadata()
        .unwrap()
        .file_type()
        .is_fifo());
    let null = data.join("null").symlink_metadata().unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    assert_eq!(
        data.join("suid").metadata().unwrap().mode() & 0o7777,
        0o4755
    );
    assert_eq!(
        data.join("empty").metadata().unwrap().mode() & 0o7777,
        0o700
    );
    // Layer 2: OCI whiteouts became overlayfs whiteouts.
    let wh = l[1].join("data/b").symlink_metadata().unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert_eq!(
        xattr(&l[1].join("data/sub"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(read(&l[2].join("zstd.txt")), "zstd\n");
    assert_eq!(read(&l[3].join("plain.txt")), "plain\n");

    // And overlayfs reads them so: mount the layers in a private mount namespace.
    let lower: Vec<String> = l.iter().rev().map(|p| p.display().to_string()).collect();
    let mnt = f.dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let script = format!(
        "mount -t overlay overlay -o lowerdir={} {} && cd {} && ls data data/sub && cat data/a",
        lower.join(":"),
        mnt.display(),
        mnt.display()
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<&str> = text.lines().collect();
    assert!(
        !names.contains(&"b"),
        "whited-out file is hidden: {names:?}"
    );
    assert!(
        names.contains(&"y") && !names.contains(&"x"),
        "opaque dir hides lower: {names:?}"
    );
    assert!(text.contains("alpha"));
}

#[test]
fn index_picks_the_platform() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let reference = format!("{reg}/test/multi:latest");
    f.ok(&["pull", "-q", &reference]);
    assert_eq!(
        read(&f.layer_dirs(&reference)[0].join("platform")),
        "linux/amd64\n"
    );
    let rec = f.record(&reference);
    assert_eq!(rec["platform"]["architecture"], "amd64");
    assert!(rec["index_digest"].is_string());

    f.ok(&["pull", "-q", "--platform", "linux/arm64/v8", &reference]);
    assert_eq!(
        read(&f.layer_dirs(&reference)[0].join("platform")),
        "linux/arm64/v8\n"
    );
    f.ok(&["pull", "-q", "--platform", "linux/arm/v7", &reference]);
    assert_eq!(
        read(&f.layer_dirs(&reference)[0].join("platform")),
        "linux/arm/v7\n"
    );

    let err = f.fails(&["pull", "--platform", "linux/s390x", &reference]);
    assert!(
        err.contains("linux/s390x") && err.contains("linux/arm64/v8"),
        "{err}"
    );
    let err = f.fails(&["pull", "--platform", "linux", &reference]);
    assert!(err.contains("\"linux\""), "{err}");
}

#[test]
fn basic_auth_registry_needs_login() {
    let Some(_) = registry() else { return };
    let Some(reg) = test_env("FRUN_TEST_REGISTRY_BASIC") else {
        return;
    };
    let f = Frun::new();
    let reference = format!("{reg}/test/busybox:latest");
    let err = f.fails(&["pull", &reference]);
    assert!(err.contains(&reference), "{err}");
    assert!(f.images().is_empty());

    let login = |pw: &str| {
        let mut c = f.command(&["login", &reg, "-u", "frun", "--password-stdin"]);
        c.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(pw.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let bad = login("wrong\n");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains(&reg));
    assert!(
        !f.docker_config().join("config.json").exists(),
        "failed login saves nothing"
    );
    assert!(login("secret\n").status.success());
    let cfg = read(&f.docker_config().join("config.json"));
    assert!(cfg.contains(&reg));
    f.ok(&["pull", "-q", &reference]);
}

#[test]
fn docker_hub_style_token_auth_with_library_names() {
    let Some(_) = registry() else { return };
    let Some(reg) = test_env("FRUN_TEST_REGISTRY_TOKEN") else {
        return;
    };
    // The test registry plays Docker Hub: bearer tokens from a separate issuer,
    // anonymous pulls of public repositories, credentials for private ones.
    let f = Frun::new().env("FRUN_REGISTRY_MIRROR", &reg);
    let out = f.ok(&["pull", "alpine:3.20.3"]);
    assert!(out.contains("docker.io/library/alpine:3.20.3"), "{out}");
    let layers = f.layer_dirs("docker.io/library/alpine:3.20.3");
    assert_eq!(read(&layers[0].join("etc/alpine-release")), "3.20.3\n");
    assert!(
        layers[0].join("lib/apk/db/installed").is_file(),
        "apk database intact"
    );
    f.ok(&["pull", "-q", "alpine"]);
    f.record("docker.io/library/alpine:latest");

    // hello-world is arm64 only: pulling works and records its platform.
    f.ok(&["pull", "-q", "hello-world"]);
    let rec = f.record("docker.io/library/hello-world:latest");
    assert_eq!(rec["platform"]["architecture"], "arm64");
    // Asked explicitly for amd64, the pull refuses it, naming both platforms.
    let err = f.fails(&["pull", "--platform", "linux/amd64", "hello-world"]);
    assert!(
        err.contains("linux/amd64") && err.contains("arm64"),
        "{err}"
    );

    let err = f.fails(&["pull", "private/busybox"]);
    assert!(err.contains("docker.io/private/busybox"), "{err}");
    let mut c = f.command(&["login", "-u", "frun", "--password-stdin"]);
    c.stdin(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"secret").unwrap();
    assert!(child.wait().unwrap().success());
    assert!(read(&f.docker_config().join("config.json")).contains("https://index.docker.io/v1/"));
    f.ok(&["pull", "-q", "private/busybox"]);
    assert!(f.layer_dirs("docker.io/private/busybox:latest")[0]
        .join("bin/busybox")
        .is_file());
}

fn assert_nothing_visible(f: &Frun, reference: &str) {
    let images = f.images();
    assert!(
        images.iter().all(|i| i["reference"] != reference),
        "{images:?}"
    );
    assert!(f.scratch().is_empty(), "scratch left: {:?}", f.scratch());
    let layers = std::fs::read_dir(f.root().join("layers/sha256"))
        .unwrap()
        .count();
    assert_eq!(layers, 0, "no layer became visible");
}

#[test]
fn corrupted_blob_fails_naming_the_digest() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let reference = format!("{reg}/test/corrupt:latest");
    let err = f.fails(&["pull", &reference]);
    assert!(
        err.contains("failed verification") && err.contains("sha256:"),
        "{err}"
    );
    assert_nothing_visible(&f, &reference);
    // The corrupt blob is not kept under its digest nor as a partial download.
    assert!(std::fs::read_dir(f.root().join("ingest"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn wrong_diff_id_fails_and_keeps_nothing() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let reference = format!("{reg}/test/badiff:latest");
    let err = f.fails(&["pull", &reference]);
    assert!(err.contains("diff_id"), "{err}");
    assert_nothing_visible(&f, &reference);
}

#[test]
fn decompression_bomb_stops_at_the_cap() {
    let Some(reg) = registry() else { return };
    let f = Frun::new().env("FRUN_MAX_LAYER_SIZE", "64m");
    let reference = format!("{reg}/test/bomb:latest");
    let err = f.fails(&["pull", &reference]);
    assert!(err.contains("decompression cap"), "{err}");
    assert_nothing_visible(&f, &reference);
}

/// Pulls `hostile/<name>`: it either fails, or lands entirely inside its layer
/// directory; nothing outside changes (sentinels keep their values).
fn hostile(name: &str) {
    let Some(reg) = registry() else { return };
    // The sentinels are fixed host paths that the images aim at: one test at a time.
    static SENTINELS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = SENTINELS.lock().unwrap_or_else(|e| e.into_inner());
    // Sentinels where the attacks aim, outside the store.
    let victim = Path::new("/tmp/victim");
    let target = Path::new("/tmp/frun-hostile-target");
    let mut made = Vec::new();
    for p in [victim, target] {
        if !p.exists() {
            std::fs::write(p, "sentinel").unwrap();
            made.push(p);
        }
    }
    let host_inodes: Vec<(u64, u64)> = ["/etc/passwd", "/tmp/frun-hostile-target"]
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p).unwrap();
            (m.dev(), m.ino())
        })
        .collect();
    let passwd_before = std::fs::read("/etc/passwd").unwrap();
    let f = Frun::new();
    let reference = format!("{reg}/hostile/{name}:latest");
    let out = f.run(&["pull", "-q", &reference]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        let layers = f.layer_dirs(&reference);
        for file in files_below(&layers[0]) {
            let m = layers[0].join(&file).symlink_metadata().unwrap();
            assert!(
                !host_inodes.contains(&(m.dev(), m.ino())),
                "{name}: {file:?} is a host file"
            );
        }
    } else {
        assert!(
            stderr.contains("sha256:"),
            "{name}: error names the layer: {stderr}"
        );
        assert_nothing_visible(&f, &reference);
    }
    // Nothing escaped: not next to the store, not at the filesystem root, not in /tmp.
    for leftover in files_below(f.dir.path()) {
        let s = leftover.to_string_lossy();
        assert!(
            !s.contains("escape") || s.starts_with("root/layers/sha256/"),
            "{name}: escaped to {leftover:?}"
        );
    }
    for dir in ["/", "/tmp", "/var/tmp", "/etc"] {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            assert!(!n.starts_with("escape"), "{name}: {dir}/{n} was written");
        }
    }
    let survived = |p: &Path| std::fs::read_to_string(p).ok();
    assert_eq!(
        survived(victim).as_deref(),
        Some("sentinel"),
        "{name}: {victim:?}"
    );
    assert_eq!(
        survived(target).as_deref(),
        Some("sentinel"),
        "{name}: {target:?}"
    );
    assert_eq!(
        std::fs::read("/etc/passwd").unwrap(),
        passwd_before,
        "{name}"
    );
    for p in made {
        let _ = std::fs::remove_file(p);
    }
}

macro_rules! hostile_tests {
    ($($test:ident => $name:literal,)*) => {
        $( #[test] fn $test() { hostile($name) } )*

        /// Every hostile image the image builder makes has its test here.
        #[test]
        fn every_hostile_image_has_a_test() {
            let Some(_) = registry() else { return };
            let Some(images) = test_env("FRUN_TEST_IMAGES") else { return };
            let list = read(&Path::new(&images).join("hostile.txt"));
            let mut built: Vec<&str> = list.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            let mut tested = vec![$($name),*];
            built.sort();
            tested.sort();
            assert_eq!(built, tested);
        }
    };
}

hostile_tests! {
    dotdot_path_is_refused => "dotdot",
    absolute_path_lands_inside_root => "absolute",
    absolute_symlink_then_write_stays_inside_root => "symlink-abs",
    relative_symlink_then_write_stays_inside_root => "symlink-rel",
    chained_relative_symlinks_stay_inside_root => "symlink-chain",
    lexically_harmless_symlink_chain_stays_inside_root => "symlink-chain2",
    symlink_named_dot_stays_inside_root => "symlink-dot",
    symlink_named_slash_stays_inside_root => "symlink-slash",
    hardlink_to_outside_is_refused => "hardlink-out",
    hardlink_to_absolute_path_stays_inside_root => "hardlink-abs",
    hardlink_then_write_leaves_host_file_alone => "hardlink-write",
    whiteout_through_symlinked_parent_stays_inside_root => "whiteout-symlink",
    whiteout_of_the_root_is_refused => "whiteout-root",
    whiteout_of_the_parent_is_refused => "whiteout-parent",
    pax_path_override_stays_inside_root => "pax-path",
}

#[test]
fn dropped_connections_resume_with_ranges() {
    let Some(reg) = registry() else { return };
    let proxy = Proxy::start(&reg);
    // Every blob response is cut after 3 MB, four times over; the 48 MB layer still arrives.
    proxy.cut_after(3 << 20, 4);
    let f = Frun::new();
    let reference = format!("{}/test/big:latest", proxy.addr);
    f.ok(&["pull", "-q", &reference]);
    let layer = &f.layer_dirs(&reference)[0];
    assert_eq!(layer.join("big.bin").metadata().unwrap().len(), 48 << 20);
    // Resumed, not restarted: far less than 4 extra copies crossed the proxy.
    let sent = proxy.sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent < (48 << 20) + (8 << 20), "sent {sent}");
}

#[test]
fn registry_dying_mid_pull_leaves_nothing_and_the_next_pull_completes() {
    let Some(reg) = registry() else { return };
    let proxy = Proxy::start(&reg);
    proxy.throttle(64 << 10); // ~6 MB/s
    let f = Frun::new().env("FRUN_RETRY_WINDOW", "3");
    let reference = format!("{}/test/big:latest", proxy.addr);
    let child = f
        .command(&["pull", "-q", &reference])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(60, "4 MiB through the proxy", || {
        (proxy.sent.load(std::sync::atomic::Ordering::SeqCst) > 4 << 20).then_some(())
    });
    proxy.kill();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("sha256:"), "names the blob: {err}");
    assert_nothing_visible(&f, &reference);
    // The partial download stays for the next pull to resume.
    let partial = std::fs::read_dir(f.root().join("ingest"))
        .unwrap()
        .flatten()
        .next()
        .expect("partial ingest");
    assert!(partial.metadata().unwrap().len() > 0);
    proxy.revive();
    proxy.throttle(0);
    let before = proxy.sent.load(std::sync::atomic::Ordering::SeqCst);
    f.ok(&["pull", "-q", &reference]);
    let after = proxy.sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(after - before < 47 << 20, "resumed from the partial file");
    assert_eq!(
        f.layer_dirs(&reference)[0]
            .join("big.bin")
            .metadata()
            .unwrap()
            .len(),
        48 << 20
    );
}

#[test]
fn kill_9_mid_pull_then_pull_again_completes() {
    let Some(reg) = registry() else { return };
    let proxy = Proxy::start(&reg);
    proxy.throttle(64 << 10);
    let f = Frun::new();
    let reference = format!("{}/test/big:latest", proxy.addr);
    for threshold in [1u64 << 20, 6 << 20] {
        let mut child = f.command(&["pull", "-q", &reference]).spawn().unwrap();
        let start = proxy.sent.load(std::sync::atomic::Ordering::SeqCst);
        wait_for(60, "the pull to pass the threshold", || {
            (proxy.sent.load(std::sync::atomic::Ordering::SeqCst) > start + threshold).then_some(())
        });
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert!(f.images().is_empty());
        assert_eq!(
            std::fs::read_dir(f.root().join("layers/sha256"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(
            std::fs::read_dir(f.root().join("blobs/sha256"))
                .unwrap()
                .count(),
            0,
            "no manifest recorded before its layers"
        );
    }
    proxy.throttle(0);
    f.ok(&["pull", "-q", &reference]);
    assert!(f.scratch().is_empty());
    assert_eq!(
        f.layer_dirs(&reference)[0]
            .join("big.bin")
            .metadata()
            .unwrap()
            .len(),
        48 << 20
    );
    // gc after a crash cleans nothing that is in use.
    f.ok(&["gc"]);
    assert!(f.layer_dirs(&reference)[0].join("big.bin").is_file());
}

#[test]
fn two_pulls_at_once_are_safe() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let reference = format!("{reg}/test/layers:latest");
    let children: Vec<_> = (0..3)
        .map(|_| f.command(&["pull", "-q", &reference]).spawn().unwrap())
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    assert_eq!(f.images().len(), 1);
    assert_eq!(f.layer_dirs(&reference).len(), 4);
    assert!(f.scratch().is_empty());
}

#[test]
fn rmi_and_gc_remove_only_unused_content() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let busybox = format!("{reg}/test/busybox:latest");
    let layers = format!("{reg}/test/layers:latest");
    f.ok(&["pull", "-q", &busybox]);
    f.ok(&["pull", "-q", &layers]);
    let gone = f.layer_dirs(&layers);
    let kept = f.layer_dirs(&busybox);
    let out = f.ok(&["rmi", &layers]);
    assert!(out.contains(&layers));
    let stats: serde_json::Value =
        serde_json::from_str(&f.ok(&["gc", "--format", "json"])).unwrap();
    assert_eq!(stats["layers"], 4);
    assert!(stats["blobs"].as_u64().unwrap() >= 6, "{stats}");
    assert!(gone.iter().all(|d| !d.exists()));
    assert!(kept[0].join("bin/busybox").is_file());
    let err = f.fails(&["rmi", &layers]);
    assert!(err.contains("no such image"), "{err}");
    // Removal by digest prefix works too.
    let digest = f.images()[0]["digest"].as_str().unwrap().to_string();
    f.ok(&["rmi", &digest[7..19]]);
    assert!(f.images().is_empty());
}

#[test]
fn bad_references_and_missing_images_are_named() {
    let Some(reg) = registry() else { return };
    let f = Frun::new().env("FRUN_RETRY_WINDOW", "2");
    let err = f.fails(&["pull", "Not/Valid"]);
    assert!(err.contains("\"Not/Valid\""), "{err}");
    let reference = format!("{reg}/test/nosuch:latest");
    let err = f.fails(&["pull", &reference]);
    assert!(err.contains(&reference), "{err}");
    let err = f.fails(&["pull", "127.0.0.1:1/nothing:here"]);
    assert!(err.contains("127.0.0.1:1/nothing:here"), "{err}");
    // A wrong digest in the reference is caught against the manifest: in front of the
    // registry, a proxy asks for `latest` where frun asks for the all-zero digest, so
    // that the registry answers with a real manifest (the registry alone would answer
    // "not found", which names the repository too and never reaches the check).
    let d = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    // What `latest` really is (the index, if the image has one), from a pull of its own.
    let latest = format!("{reg}/test/busybox:latest");
    f.ok(&["pull", "-q", &latest]);
    let rec = f.record(&latest);
    let real = rec["index_digest"]
        .as_str()
        .or(rec["manifest_digest"].as_str())
        .expect("digest")
        .to_string();
    f.ok(&["rmi", &latest]);
    let front = rewriting_proxy(&reg, d, "latest");
    let err = f.fails(&["pull", &format!("{front}/test/busybox@{d}")]);
    assert!(
        err.contains(d) && err.contains(&real),
        "the digest check was not reached (it names the digest asked for and the one served): {err}"
    );
    assert!(f.images().is_empty());
}

/// A TCP relay to `upstream` on a loopback port of its own that replaces `from` with `to`
/// in what clients send (HTTP request lines are small: one read holds them whole).
fn rewriting_proxy(upstream: &str, from: &str, to: &str) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (upstream, from, to) = (upstream.to_string(), from.to_string(), to.to_string());
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                continue;
            };
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (from, to) = (from.clone(), to.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 << 10];
                while let Ok(n) = c_in.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buf[..n]).replace(&from, &to);
                    if s_out.write_all(text.as_bytes()).is_err() {
                        break;
                    }
                }
                let _ = s_out.shutdown(std::net::Shutdown::Write);
            });
            let (mut s_in, mut c_out) = (server, client);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s_in, &mut c_out);
                let _ = c_out.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

#[test]
fn quiet_pull_prints_nothing() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let out = f.ok(&["pull", "--quiet", &format!("{reg}/test/busybox")]);
    assert!(out.is_empty(), "{out}");
}
