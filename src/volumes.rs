//! Named volumes: `ROOT/volumes/<name>/_data` (what containers mount) beside
//! `ROOT/volumes/<name>/volume.json` (when it was made, and from what), as Docker lays
//! them out.
//!
//! A new volume mounted where the image has content is initialised from it, as Docker
//! does: the image's directory at the mount point (its files, owners, modes, symlinks,
//! merged across layers with whiteouts honoured) is copied in before the first mount,
//! so that `/var/db` owned by uid 1000 in the image stays writable by an app running as
//! 1000 (a bare new directory would be root's: FACTS.md). This happens once, when the
//! volume is created; later mounts use what is there. The copy is made in a temporary
//! directory and renamed into place, so a crash leaves either no volume or a whole one.
//!
//! Whether a volume is in use is read from the container records (their specs name the
//! host paths they mount): the records are the truth, nothing else needs updating.

use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("invalid volume name {0:?}: use letters, digits, '_', '.', '-', starting with a letter or digit")]
    Name(String),
    #[error("no such volume: {0}")]
    NotFound(String),
    #[error("volume {name} is in use by container {container}: remove the container first")]
    InUse { name: String, container: String },
    #[error("volume {0} already exists")]
    Exists(String),
    #[error("{op} {path}: {cause}")]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError {
    let path = path.to_path_buf();
    move |cause| VolumeError::Io { op, path, cause }
}

/// What `volume.json` records.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VolumeMeta {
    pub name: String,
    /// RFC 3339.
    pub created: String,
    /// The image path it was initialised from (`/var/db`), if any.
    #[serde(default)]
    pub initialized_from: Option<String>,
}

/// A volume as `ls` and `inspect` show it.
#[derive(Clone, Debug, Serialize)]
pub struct Volume {
    pub name: String,
    pub mountpoint: PathBuf,
    pub created: String,
    pub initialized_from: Option<String>,
    /// Containers (names) whose records mount it.
    pub used_by: Vec<String>,
}

pub fn volumes_dir(root: &Path) -> PathBuf {
    root.join("volumes")
}

/// The directory containers mount for volume `name`.
pub fn data_dir(root: &Path, name: &str) -> PathBuf {
    volumes_dir(root).join(name).join("_data")
}

fn check_name(name: &str) -> Result<(), VolumeError> {
    if crate::containers::valid_name(name) {
        Ok(())
    } else {
        Err(VolumeError::Name(name.to_string()))
    }
}

/// The volume `name`, made if missing, and its data directory. A new volume is filled
/// from the image's content at `target` (`lower_dirs` top layer first, as
/// `ImageStore::overlay_mount` gives them); an existing one is used as it is.
///
/// `frun run -v name:/path` and a stack's data role call this before the container's
/// spec is written.
pub fn prepare(
    root: &Path,
    name: &str,
    lower_dirs: &[PathBuf],
    target: &str,
) -> Result<PathBuf, VolumeError> {
    check_name(name)?;
    let data = data_dir(root, name);
    if data.is_dir() {
        return Ok(data);
    }
    create(root, name, lower_dirs, Some(target))?;
    Ok(data)
}

/// Makes volume `name` (`volume create`, or [`prepare`] with the image's content at
/// `target`). Fails with [`VolumeError::Exists`] if it exists.
pub fn create(
    root: &Path,
    name: &str,
    lower_dirs: &[PathBuf],
    target: Option<&str>,
) -> Result<PathBuf, VolumeError> {
    check_name(name)?;
    let dir = volumes_dir(root).join(name);
    if dir.join("_data").exists() {
        return Err(VolumeError::Exists(name.to_string()));
    }
    // 1. A temporary directory beside the final one: the rename makes it whole at once.
    let parent = volumes_dir(root);
    std::fs::create_dir_all(&parent).map_err(io("creating", &parent))?;
    let tmp = parent.join(format!(".{name}.new-{}", std::process::id()));
    crate::cleanup::remove_dir_all(&tmp);
    let tmp_data = tmp.join("_data");
    std::fs::create_dir_all(&tmp_data).map_err(io("creating", &tmp_data))?;
    let result = (|| {
        // 2. The image's content at the mount point, with owners and modes.
        let from = match target {
            Some(t) => copy_up(lower_dirs, t, &tmp_data)?.then(|| t.to_string()),
            None => None,
        };
        // 3. The record, then the rename.
        let meta = VolumeMeta {
            name: name.to_string(),
            created: crate::containers::now(),
            initialized_from: from,
        };
        let path = tmp.join("volume.json");
        frun_images::fsutil::write_atomic(&path, &serde_json::to_vec_pretty(&meta).expect("json"))
            .map_err(|e| io("writing", &path)(std::io::Error::other(e)))?;
        // A directory of a crashed earlier attempt without `_data` is replaced.
        if dir.exists() && !dir.join("_data").exists() {
            crate::cleanup::remove_dir_all(&dir);
        }
        std::fs::rename(&tmp, &dir).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists
                || e.raw_os_error() == Some(libc::ENOTEMPTY)
            {
                VolumeError::Exists(name.to_string())
            } else {
                io("renaming", &tmp)(e)
            }
        })
    })();
    if let Err(e) = result {
        crate::cleanup::remove_dir_all(&tmp);
        return Err(e);
    }
    Ok(dir.join("_data"))
}

/// The merged view of the image at `target` (`lower_dirs` top first) copied into
/// `dest`, which takes the directory's owner and mode. Returns whether the image has a
/// directory there. Nothing outside a layer is followed: symlinks are copied as links,
/// and a symlink on the way to `target` means no content (the mount replaces it).
fn copy_up(lower_dirs: &[PathBuf], target: &str, dest: &Path) -> Result<bool, VolumeError> {
    let rel: PathBuf = Path::new(target)
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect();
    // The layers that have `rel` as a real directory, down to the first that hides the
    // rest: a whiteout, an opaque directory, a file or a symlink at or above `rel`.
    let mut layers = Vec::new();
    for l in lower_dirs {
        match walk(l, &rel) {
            Walk::Missing => continue,
            Walk::Hidden => break,
            Walk::Dir(p) => {
                let opaque = is_opaque(&p);
                layers.push(p);
                if opaque {
                    break;
                }
            }
        }
    }
    let Some(top) = layers.first() else {
        return Ok(false);
    };
    copy_owner_mode(top, dest)?;
    merge_into(&layers, dest)?;
    Ok(true)
}

enum Walk {
    /// `rel` is a real directory of this layer.
    Dir(PathBuf),
    /// This layer has nothing at `rel` or above it: lower layers show through.
    Missing,
    /// A file, symlink or whiteout at or above `rel`: lower layers are hidden.
    Hidden,
}

/// `rel` in one layer, component by component, never following a link.
fn walk(layer: &Path, rel: &Path) -> Walk {
    let mut p = layer.to_path_buf();
    for c in rel.components() {
        p.push(c);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Walk::Hidden,
            Err(_) => {
                let oci_whiteout = whiteout_of(&p).is_some_and(|w| w.exists());
                return if oci_whiteout {
                    Walk::Hidden
                } else {
                    Walk::Missing
                };
            }
        }
    }
    Walk::Dir(p)
}

/// The OCI form of a whiteout (`.wh.NAME`); frun's unpacker writes overlayfs's instead
/// (a 0:0 character device named NAME), which [`walk`] sees as a non-directory.
fn whiteout_of(p: &Path) -> Option<PathBuf> {
    let name = p.file_name()?;
    let mut wh = OsString::from(".wh.");
    wh.push(name);
    Some(p.with_file_name(wh))
}

fn is_whiteout(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    matches!(
        xattr_get(dir, "trusted.overlay.opaque").as_deref(),
        Some(b"y")
    ) || dir.join(".wh..wh..opq").exists()
}

fn xattr_get(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 16];
    let n = rustix::fs::lgetxattr(p, name, &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

fn copy_owner_mode(from: &Path, to: &Path) -> Result<(), VolumeError> {
    let m = std::fs::symlink_metadata(from).map_err(io("reading", from))?;
    std::os::unix::fs::lchown(to, Some(m.uid()), Some(m.gid())).map_err(io("chown", to))?;
    if !m.file_type().is_symlink() {
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(io("chmod", to))?;
    }
    Ok(())
}

/// Copies the union of `dirs` (top first) into `dest`: an entry of an upper directory
/// hides the same name below; whiteouts hide and are not copied.
fn merge_into(dirs: &[PathBuf], dest: &Path) -> Result<(), VolumeError> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, d) in dirs.iter().enumerate() {
        let rd = std::fs::read_dir(d).map_err(io("listing", d))?;
        for e in rd {
            let e = e.map_err(io("listing", d))?;
            let name = e.file_name();
            let name_s = name.to_string_lossy();
            if name_s == ".wh..wh..opq" {
                continue;
            }
            if let Some(hidden) = name_s.strip_prefix(".wh.") {
                seen.insert(OsString::from(hidden));
                continue;
            }
            if !seen.insert(name.clone()) {
                continue;
            }
            let src = e.path();
            let m = std::fs::symlink_metadata(&src).map_err(io("reading", &src))?;
            if is_whiteout(&m) {
                continue;
            }
            let to = dest.join(&name);
            if m.is_dir() {
                std::fs::create_dir(&to).map_err(io("creating", &to))?;
                copy_owner_mode(&src, &to)?;
                // The same directory in lower layers merges, unless this one is opaque.
                let mut below = vec![src.clone()];
                if !is_opaque(&src) {
                    for lower in &dirs[i + 1..] {
                        let p = lower.join(&name);
                        match std::fs::symlink_metadata(&p) {
                            Ok(lm) if lm.is_dir() => {
                                let opaque = is_opaque(&p);
                                below.push(p);
                                if opaque {
                                    break;
                                }
                            }
                            _ => break,
                        }
                    }
                }
                merge_into(&below, &to)?;
            } else if m.file_type().is_symlink() {
                let target = std::fs::read_link(&src).map_err(io("reading", &src))?;
                std::os::unix::fs::symlink(&target, &to).map_err(io("creating", &to))?;
                copy_owner_mode(&src, &to)?;
            } else if m.is_file() {
                std::fs::copy(&src, &to).map_err(io("copying", &src))?;
                copy_owner_mode(&src, &to)?;
            } else {
                // Device nodes, FIFOs, sockets: not data; Docker copies them, frun leaves
                // them out of a volume (they would be host devices).
                tracing::debug!(path = %src.display(), "not copied into the volume");
            }
        }
    }
    Ok(())
}

fn read_meta(root: &Path, name: &str) -> Option<VolumeMeta> {
    let data = std::fs::read(volumes_dir(root).join(name).join("volume.json")).ok()?;
    serde_json::from_slice(&data).ok()
}

/// Every volume, by name. A directory without `_data` (a crash before the rename can
/// leave only `.NAME.new-PID`, which is hidden) is not a volume.
pub fn list(root: &Path, users: &[(String, Vec<PathBuf>)]) -> Result<Vec<Volume>, VolumeError> {
    let dir = volumes_dir(root);
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io("listing", &dir)(e)),
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !e.path().join("_data").is_dir() {
            continue;
        }
        out.push(describe(root, &name, users)?);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// One volume; `users` are (container name, host paths it mounts).
pub fn describe(
    root: &Path,
    name: &str,
    users: &[(String, Vec<PathBuf>)],
) -> Result<Volume, VolumeError> {
    check_name(name)?;
    let data = data_dir(root, name);
    if !data.is_dir() {
        return Err(VolumeError::NotFound(name.to_string()));
    }
    let meta = read_meta(root, name);
    let created = meta.as_ref().map(|m| m.created.clone()).unwrap_or_else(|| {
        std::fs::metadata(&data)
            .ok()
            .and_then(|m| m.modified().ok())
            .map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339())
            .unwrap_or_default()
    });
    let used_by = users
        .iter()
        .filter(|(_, paths)| paths.iter().any(|p| p == &data))
        .map(|(c, _)| c.clone())
        .collect();
    Ok(Volume {
        name: name.to_string(),
        mountpoint: data,
        created,
        initialized_from: meta.and_then(|m| m.initialized_from),
        used_by,
    })
}

/// Removes volume `name`, refused while a container (running or not, as Docker) uses it.
pub fn remove(
    root: &Path,
    name: &str,
    users: &[(String, Vec<PathBuf>)],
) -> Result<(), VolumeError> {
    let v = describe(root, name, users)?;
    if let Some(c) = v.used_by.first() {
        return Err(VolumeError::InUse {
            name: name.to_string(),
            container: c.clone(),
        });
    }
    // Renamed away first: a half-removed volume is never seen as a volume.
    let dir = volumes_dir(root).join(name);
    let gone = volumes_dir(root).join(format!(".{name}.rm-{}", std::process::id()));
    std::fs::rename(&dir, &gone).map_err(io("renaming", &dir))?;
    std::fs::remove_dir_all(&gone).map_err(io("removing", &gone))
}

/// Removes every volume no container uses; returns their names and the bytes freed.
pub fn prune(
    root: &Path,
    users: &[(String, Vec<PathBuf>)],
) -> Result<(Vec<String>, u64), VolumeError> {
    let mut names = Vec::new();
    let mut bytes = 0;
    for v in list(root, users)? {
        if v.used_by.is_empty() {
            let size = du(&v.mountpoint);
            remove(root, &v.name, users)?;
            bytes += size;
            names.push(v.name);
        }
    }
    // Leftovers of interrupted creates and removals.
    if let Ok(rd) = std::fs::read_dir(volumes_dir(root)) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with('.') && (n.contains(".new-") || n.contains(".rm-")) {
                crate::cleanup::remove_dir_all(e.path());
            }
        }
    }
    Ok((names, bytes))
}

/// Bytes used under `p` (files' allocated blocks; links not followed).
pub fn du(p: &Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    let mut n = m.blocks() * 512;
    if m.is_dir() {
        if let Ok(rd) = std::fs::read_dir(p) {
            n += rd.flatten().map(|e| du(&e.path())).sum::<u64>();
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkdir(p: &Path, mode: u32, uid: u32) {
        std::fs::create_dir_all(p).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        if crate::test_as_root() {
            std::os::unix::fs::lchown(p, Some(uid), Some(uid)).unwrap();
        }
    }

    #[test]
    fn a_new_volume_takes_the_images_content_owners_and_modes() {
        let t = tempfile::tempdir().unwrap();
        let (lower, upper, root) = (
            t.path().join("l0"),
            t.path().join("l1"),
            t.path().join("root"),
        );
        // Bottom layer: /var/db (1000, 0750) with a.txt and old.txt and sub/x.
        mkdir(&lower.join("var/db/sub"), 0o755, 1000);
        mkdir(&lower.join("var/db"), 0o750, 1000);
        std::fs::write(lower.join("var/db/a.txt"), "lower a").unwrap();
        std::fs::write(lower.join("var/db/old.txt"), "old").unwrap();
        std::fs::write(lower.join("var/db/sub/x"), "x").unwrap();
        // Top layer: replaces a.txt, whites out old.txt, adds a link.
        mkdir(&upper.join("var/db"), 0o770, 1000);
        std::fs::write(upper.join("var/db/a.txt"), "upper a").unwrap();
        std::fs::write(upper.join("var/db/.wh.old.txt"), "").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", upper.join("var/db/link")).unwrap();
        let data = prepare(&root, "db", &[upper.clone(), lower.clone()], "/var/db").unwrap();
        let m = std::fs::metadata(&data).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o770, "the top layer's mode");
        if crate::test_as_root() {
            assert_eq!((m.uid(), m.gid()), (1000, 1000));
            assert_eq!(std::fs::metadata(data.join("sub")).unwrap().uid(), 1000);
        }
        assert_eq!(
            std::fs::read_to_string(data.join("a.txt")).unwrap(),
            "upper a"
        );
        assert!(!data.join("old.txt").exists(), "whiteout honoured");
        assert!(!data.join(".wh.old.txt").exists());
        assert_eq!(std::fs::read_to_string(data.join("sub/x")).unwrap(), "x");
        assert_eq!(
            std::fs::read_link(data.join("link")).unwrap(),
            Path::new("/etc/passwd"),
            "a link stays a link"
        );
        let meta = read_meta(&root, "db").unwrap();
        assert_eq!(meta.initialized_from.as_deref(), Some("/var/db"));
        // Existing: used as it is.
        std::fs::write(data.join("mine"), "kept").unwrap();
        let again = prepare(&root, "db", &[upper], "/var/db").unwrap();
        assert_eq!(std::fs::read_to_string(again.join("mine")).unwrap(), "kept");
        // Nothing of the work left beside it.
        let left: Vec<_> = std::fs::read_dir(volumes_dir(&root))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, [OsString::from("db")]);
    }

    #[test]
    fn a_mount_point_missing_from_the_image_or_behind_a_link_gives_an_empty_volume() {
        let t = tempfile::tempdir().unwrap();
        let (layer, root) = (t.path().join("l"), t.path().join("root"));
        std::fs::create_dir_all(layer.join("real/dir")).unwrap();
        std::fs::write(layer.join("real/dir/f"), "f").unwrap();
        std::os::unix::fs::symlink("real", layer.join("link")).unwrap();
        let d = prepare(&root, "a", std::slice::from_ref(&layer), "/nothing/here").unwrap();
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
        let d = prepare(&root, "b", std::slice::from_ref(&layer), "/link/dir").unwrap();
        assert_eq!(
            std::fs::read_dir(&d).unwrap().count(),
            0,
            "no link followed"
        );
        assert!(read_meta(&root, "b").unwrap().initialized_from.is_none());
    }

    #[test]
    fn remove_refuses_a_volume_in_use_naming_the_container_and_prune_spares_it() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        create(root, "used", &[], None).unwrap();
        create(root, "free", &[], None).unwrap();
        assert!(matches!(
            create(root, "free", &[], None),
            Err(VolumeError::Exists(_))
        ));
        assert!(matches!(
            create(root, "../x", &[], None),
            Err(VolumeError::Name(_))
        ));
        let users = vec![("web".to_string(), vec![data_dir(root, "used")])];
        let e = remove(root, "used", &users).unwrap_err().to_string();
        assert!(e.contains("used") && e.contains("web"), "{e}");
        let names: Vec<String> = list(root, &users)
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect();
        assert_eq!(names, ["free", "used"]);
        let (pruned, _) = prune(root, &users).unwrap();
        assert_eq!(pruned, ["free"]);
        assert!(data_dir(root, "used").is_dir());
        remove(root, "used", &[]).unwrap();
        assert!(matches!(
            remove(root, "used", &[]),
            Err(VolumeError::NotFound(_))
        ));
        assert!(list(root, &[]).unwrap().is_empty());
    }
}
