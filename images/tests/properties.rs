//! Property-based tests of what parses foreign input: image references, manifests and
//! indexes, and the layer unpacker fed generated tar archives (links, whiteouts, sparse
//! entries, long names). Nothing panics; nothing is written outside the layer.
//!
//! Case counts are modest so that the suite stays fast on a small machine; raise them
//! with `PROPTEST_CASES` for a longer search.

use frun_images::{Digest, ImageRef, Platform};
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(cases),
        // No persistence files in the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---- references -------------------------------------------------------------------

/// Strings that look like references more often than random text does.
fn reference_like() -> impl Strategy<Value = String> {
    let part = "[a-zA-Z0-9._-]{0,12}";
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(part, 1..5).prop_map(|v| v.join("/")),
        (part, part, part).prop_map(|(a, b, c)| format!("{a}:{b}/{c}")),
        (part, part).prop_map(|(a, t)| format!("{a}:{t}")),
        (part, "[0-9a-f]{0,70}").prop_map(|(a, d)| format!("{a}@sha256:{d}")),
        "[ -~]{0,80}",
    ]
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn references_parse_without_panic_and_round_trip(s in reference_like()) {
        if let Ok(r) = s.parse::<ImageRef>() {
            let shown = r.to_string();
            let again: ImageRef = shown.parse().expect("a printed reference parses");
            prop_assert_eq!(again.to_string(), shown.clone());
            prop_assert!(!shown.chars().any(char::is_control), "{:?}", shown);
            let _ = r.endpoint(Some("mirror.example"));
        }
    }

    #[test]
    fn digests_and_platforms_parse_without_panic(s in any::<String>(), hex in "[0-9a-fA-F]{60,68}") {
        let _ = s.parse::<Digest>();
        let _ = s.parse::<Platform>();
        if let Ok(d) = format!("sha256:{hex}").parse::<Digest>() {
            prop_assert_eq!(d.hex().len(), 64);
            prop_assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        }
    }
}

// ---- manifests and indexes ----------------------------------------------------------

/// JSON documents shaped like manifests and indexes, with fields of the wrong type,
/// missing, or holding hostile strings.
fn json_value(depth: u32) -> BoxedStrategy<serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        any::<String>().prop_map(serde_json::Value::from),
        "sha256:[0-9a-f]{64}".prop_map(serde_json::Value::from),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    let keys = prop_oneof![
        Just("schemaVersion".to_string()),
        Just("mediaType".to_string()),
        Just("config".to_string()),
        Just("layers".to_string()),
        Just("manifests".to_string()),
        Just("digest".to_string()),
        Just("size".to_string()),
        Just("platform".to_string()),
        Just("os".to_string()),
        Just("architecture".to_string()),
        Just("rootfs".to_string()),
        Just("diff_ids".to_string()),
        "[a-z]{1,6}",
    ];
    prop_oneof![
        leaf,
        proptest::collection::vec(json_value(depth - 1), 0..4).prop_map(serde_json::Value::from),
        proptest::collection::btree_map(keys, json_value(depth - 1), 0..6)
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn manifest_and_index_decoders_never_panic(v in json_value(4), bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let text = serde_json::to_vec(&v).unwrap();
        for data in [&text[..], &bytes[..]] {
            if let Ok(m) = serde_json::from_slice::<ImageManifest>(data) {
                // What pull does with a decoded manifest: parse its digests.
                let _ = m.config().digest().to_string().parse::<Digest>();
                for l in m.layers() {
                    let _ = l.digest().to_string().parse::<Digest>();
                }
            }
            if let Ok(i) = serde_json::from_slice::<ImageIndex>(data) {
                for m in i.manifests() {
                    let _ = m.digest().to_string().parse::<Digest>();
                    if let Some(p) = m.platform() {
                        let _ = Platform {
                            os: p.os().to_string(),
                            architecture: p.architecture().to_string(),
                            variant: p.variant().clone(),
                        }
                        .to_string();
                    }
                }
            }
            if let Ok(c) = serde_json::from_slice::<ImageConfiguration>(data) {
                for d in c.rootfs().diff_ids() {
                    let _ = d.parse::<Digest>();
                }
            }
        }
    }
}

// ---- the unpacker -------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Entry {
    Dir(String),
    File(String, Vec<u8>),
    Symlink(String, String),
    Hardlink(String, String),
    Whiteout(String),
    Opaque(String),
    Sparse(String, u64),
}

/// Path components from a small alphabet, so that entries collide, with the hostile
/// ones (`..`, `.`, empty) and long names.
fn name() -> impl Strategy<Value = String> {
    let comp = prop_oneof![
        4 => "[abc]",
        1 => Just("..".to_string()),
        1 => Just(".".to_string()),
        1 => Just(String::new()),
        1 => "[x]{90,120}",
        1 => Just(".wh.a".to_string()),
    ];
    proptest::collection::vec(comp, 1..4).prop_map(|v| v.join("/"))
}

/// Link targets: inside names, climbing ones, and absolute paths into the test's own
/// directory outside the layer (`OUTSIDE` is replaced by it); never a host path.
fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => name(),
        1 => Just("../outside".to_string()),
        1 => Just("../../../outside".to_string()),
        1 => Just("OUTSIDE/outside".to_string()),
        1 => Just("OUTSIDE".to_string()),
        1 => Just("/".to_string()),
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        2 => name().prop_map(Entry::Dir),
        3 => (name(), proptest::collection::vec(any::<u8>(), 0..64)).prop_map(|(n, d)| Entry::File(n, d)),
        2 => (name(), target()).prop_map(|(n, t)| Entry::Symlink(n, t)),
        2 => (name(), target()).prop_map(|(n, t)| Entry::Hardlink(n, t)),
        1 => name().prop_map(Entry::Whiteout),
        1 => name().prop_map(Entry::Opaque),
        1 => (name(), 512u64..(64 << 20)).prop_map(|(n, s)| Entry::Sparse(n, s)),
    ]
}

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{v:0w$o}\0", w = field.len() - 1);
    field.copy_from_slice(s.as_bytes());
}

fn archive(entries: &[Entry], outside: &Path) -> Vec<u8> {
    let fix = |t: &str| t.replace("OUTSIDE", &outside.display().to_string());
    let mut b = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        h
    };
    for e in entries {
        // The builder refuses some names (`..`): such entries are then written raw.
        let r = match e {
            Entry::Dir(n) => b.append_data(&mut header(tar::EntryType::Directory), n, &[][..]),
            Entry::File(n, d) => {
                let mut h = header(tar::EntryType::Regular);
                h.set_size(d.len() as u64);
                b.append_data(&mut h, n, &d[..])
            }
            Entry::Symlink(n, t) => b.append_link(&mut header(tar::EntryType::Symlink), n, fix(t)),
            Entry::Hardlink(n, t) => b.append_link(&mut header(tar::EntryType::Link), n, fix(t)),
            Entry::Whiteout(n) => {
                let (dir, base) = n.rsplit_once('/').unwrap_or(("", n));
                let wh = format!("{dir}/.wh.{base}");
                b.append_data(&mut header(tar::EntryType::Regular), wh, &[][..])
            }
            Entry::Opaque(n) => b.append_data(
                &mut header(tar::EntryType::Regular),
                format!("{n}/.wh..wh..opq"),
                &[][..],
            ),
            Entry::Sparse(n, real) => {
                let mut h = header(tar::EntryType::GNUSparse);
                h.set_size(512);
                {
                    let g = h.as_gnu_mut().unwrap();
                    octal(&mut g.sparse[0].offset, real - 512);
                    octal(&mut g.sparse[0].numbytes, 512);
                    octal(&mut g.realsize, *real);
                }
                b.append_data(&mut h, n, &[b'x'; 512][..])
            }
        };
        if r.is_err() {
            // Raw header with the name bytes as they are (at most 100 of them).
            let mut h = header(tar::EntryType::Regular);
            let raw = match e {
                Entry::Dir(n) | Entry::File(n, _) | Entry::Whiteout(n) | Entry::Opaque(n) => n,
                Entry::Symlink(n, _) | Entry::Hardlink(n, _) | Entry::Sparse(n, _) => n,
            };
            let bytes = raw.as_bytes();
            let len = bytes.len().min(99);
            h.as_old_mut().name[..len].copy_from_slice(&bytes[..len]);
            if let Entry::Symlink(_, t) | Entry::Hardlink(_, t) = e {
                h.set_entry_type(if matches!(e, Entry::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                let t = fix(t);
                let tb = t.as_bytes();
                let tl = tb.len().min(99);
                h.as_old_mut().linkname[..tl].copy_from_slice(&tb[..tl]);
            }
            h.set_cksum();
            b.append(&h, &[][..]).unwrap();
        }
    }
    b.into_inner().unwrap()
}

/// Every path below `dir` (not following symlinks), with its kind and content.
fn snapshot(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let m = p.symlink_metadata().unwrap();
            let what = if m.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if m.file_type().is_symlink() {
                format!("link {:?}", std::fs::read_link(&p).unwrap())
            } else {
                format!("file {:?}", std::fs::read(&p).unwrap_or_default())
            };
            out.push((p, what));
        }
    }
    out.sort();
    out
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn unpacking_writes_nothing_outside_the_layer(entries in proptest::collection::vec(entry(), 1..12)) {
        // The unpacker sets owners and creates whiteout device nodes: root only.
        if !is_root() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "CI runs this as root");
            eprintln!("skipped: needs root");
            return Ok(());
        }
        let base = tempfile::tempdir().unwrap();
        let outside = base.path().join("outside_dir");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("outside"), b"keep").unwrap();
        std::fs::write(base.path().join("outside"), b"keep").unwrap();
        let layer = base.path().join("layer");
        std::fs::create_dir(&layer).unwrap();
        let before: Vec<_> = snapshot(base.path())
            .into_iter()
            .filter(|(p, _)| !p.starts_with(&layer))
            .collect();

        let tar = archive(&entries, &outside);
        // Refused or unpacked (about a fifth of the cases), the outside is the same.
        let _outcome = frun_images::unpack::unpack(&tar[..], &layer, 16 << 20);

        let after: Vec<_> = snapshot(base.path())
            .into_iter()
            .filter(|(p, _)| !p.starts_with(&layer))
            .collect();
        prop_assert_eq!(before, after);
    }
}
