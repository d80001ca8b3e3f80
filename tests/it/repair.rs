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
