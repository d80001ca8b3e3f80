//! The image store repairs itself: corrupt local blobs are found, blamed on the local
//! copy (not the registry) and fetched again by the next pull.

use crate::common::*;
use sha2::Digest as _;
use std::path::PathBuf;

fn blob(f: &Frun, digest: &str) -> PathBuf {
    f.root()
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

fn verifies(path: &PathBuf, digest: &str) -> bool {
    let data = std::fs::read(path).unwrap();
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(&data))) == digest
}

#[test]
fn a_changed_config_blob_is_reported_by_gc_and_replaced_by_pull() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let reference = format!("{reg}/test/busybox:latest");
    f.ok(&["pull", "-q", &reference]);
    let config = f.record(&reference)["config_digest"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(blob(&f, &config), b"{\"changed\":true}").unwrap();
    // Pull verifies the local copy, fetches the config again and replaces it.
    f.ok(&["pull", "-q", &reference]);
    assert!(verifies(&blob(&f, &config), &config));
    // gc verifies recorded manifests and configs, and says what it removed.
    std::fs::write(blob(&f, &config), b"{\"changed\":true}").unwrap();
    let out = f.ok(&["gc"]);
    assert!(out.contains(&format!("corrupt blob {config}")), "{out}");
    f.ok(&["pull", "-q", &reference]);
    assert!(verifies(&blob(&f, &config), &config));
}

#[test]
fn a_corrupt_layer_blob_is_fetched_again_not_blamed_on_the_registry() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let reference = format!("{reg}/test/busybox:latest");
    f.ok(&["pull", "-q", &reference]);
    let rec = f.record(&reference);
    let digest = rec["layers"][0]["digest"].as_str().unwrap().to_string();
    let path = blob(&f, &digest);
    // Same size, different bytes; and the unpacked layer gone, so the pull reads the blob.
    let mut data = std::fs::read(&path).unwrap();
    let mid = data.len() / 2;
    for b in &mut data[mid..mid + 64] {
        *b ^= 0xff;
    }
    std::fs::write(&path, &data).unwrap();
    std::fs::remove_dir_all(&f.layer_dirs(&reference)[0]).unwrap();
    f.ok(&["pull", "-q", &reference]);
    assert!(verifies(&path, &digest), "the blob was fetched again");
    assert!(f.layer_dirs(&reference)[0].join("bin/busybox").is_file());
    // A blob of the wrong size is not reused either.
    std::fs::write(&path, b"short").unwrap();
    f.ok(&["pull", "-q", &reference]);
    assert!(verifies(&path, &digest));
}

/// A layer blob that is reused (its layer unpacked already) was only size-checked: a
/// rotten copy of the right size stayed forever. Now each pull hashes it, says which
/// local file was bad, and fetches it again.
#[test]
fn a_rotten_reused_layer_blob_is_named_and_fetched_again_by_pull() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let reference = format!("{reg}/test/busybox:latest");
    f.ok(&["pull", "-q", &reference]);
    let digest = f.record(&reference)["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let path = blob(&f, &digest);
    let layer = f.layer_dirs(&reference)[0].clone();
    let mut data = std::fs::read(&path).unwrap();
    let n = data.len();
    data[n / 3] ^= 0x01;
    std::fs::write(&path, &data).unwrap();
    let out = f.run(&["pull", "-q", &reference]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        verifies(&path, &digest),
        "the blob was fetched again: {err}"
    );
    assert!(
        err.contains(&path.display().to_string()) && err.contains("local copy"),
        "the message names the local file: {err}"
    );
    assert!(
        !err.contains("registry sent"),
        "the registry is not blamed: {err}"
    );
    assert!(
        layer.join("bin/busybox").is_file(),
        "the unpacked layer stays"
    );
    // Of the wrong size: the same, saying the sizes.
    std::fs::write(&path, b"short").unwrap();
    let out = f.run(&["pull", "-q", &reference]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(verifies(&path, &digest));
    assert!(
        err.contains(&path.display().to_string()) && err.contains("it is 5 bytes"),
        "{err}"
    );
    // An intact blob is reused quietly.
    let out = f.run(&["pull", "-q", &reference]);
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
}

#[test]
fn gc_says_what_partial_downloads_freed() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    f.ok(&["pull", "-q", &format!("{reg}/test/busybox:latest")]);
    let ingest = f
        .root()
        .join("ingest")
        .join(format!("{}.partial", "ab".repeat(32)));
    std::fs::write(&ingest, vec![7u8; 2_500_000]).unwrap();
    std::fs::write(f.root().join(".images.json.tmp-999999"), b"[").unwrap();
    let out = f.ok(&["gc"]);
    assert!(
        out.contains("2 leftovers") && out.contains("2.5MB freed"),
        "{out}"
    );
    assert!(!ingest.exists());
    assert!(!f.root().join(".images.json.tmp-999999").exists());
    assert_eq!(f.images().len(), 1);
}

/// A full disk: the pull fails at once (no retries of a local error) and names the file
/// it could not write. The store is a 400 kB tmpfs in a private mount namespace.
#[test]
fn a_full_disk_fails_the_pull_once_naming_the_file() {
    let Some(reg) = registry() else { return };
    let f = Frun::new().env("FRUN_RETRY_WINDOW", "30");
    let reference = format!("{reg}/test/busybox:latest");
    let inner = f.command(&["pull", "-q", &reference]);
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(r#"mkdir -p "$0" && mount -t tmpfs -o size=400k tmpfs "$0" && exec "$@""#)
        .arg(f.root())
        .arg(inner.get_program())
        .args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert_eq!(err.matches("No space left on device").count(), 1, "{err}");
    assert!(
        err.contains("/ingest/") || err.contains("/layers/tmp/"),
        "names the file: {err}"
    );
    assert!(
        !err.contains("attempts"),
        "a local error is not retried: {err}"
    );
}

/// `images.json` is a file on disk: a reference with terminal escapes in it (edited, or
/// written by something else) is shown escaped, never interpreted.
#[test]
fn image_listing_escapes_control_characters() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let reference = format!("{reg}/test/busybox:latest");
    f.ok(&["pull", "-q", &reference]);
    let path = f.root().join("images.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let evil = "evil\u{1b}]0;pwned\u{7}\u{1b}[32m\nfrun: pulled OK";
    let text = text.replace(
        &format!("\"{reference}\""),
        &serde_json::to_string(evil).unwrap(),
    );
    std::fs::write(&path, text).unwrap();
    let out = f.ok(&["images"]);
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
    assert!(out.contains("evil\\u{1b}]0;pwned"), "{out}");
    assert_eq!(out.lines().count(), 2, "one header, one image: {out}");
}
