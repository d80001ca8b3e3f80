//! The archive file: tar, compressed with zstd (level 1, frame checksum on, compressed
//! in a worker thread).
//!
//! Entries: `volumes/<volume>/` (the volume's root directory), `volumes/<volume>/<path>`
//! for every directory, file and symlink below it, and last `manifest.json`. Owners,
//! modes and times are in the headers and in the manifest; the manifest's sha256 and
//! size of each file are computed while the file is written into the archive (one read).
//!
//! Writing goes to a temp file in the destination directory, fsynced, renamed, and the
//! directory fsynced: a crash leaves the old set of archives or the new one. The file's
//! writeback follows the writing a few megabytes behind ([`WriteBehind`]).
//!
//! Reading ([`extract`]) trusts nothing: each path must be `volumes/<valid name>/...`
//! with plain components, a file's parent must be a directory the archive itself made
//! (so no symlink of the archive is ever followed), files are created with `O_EXCL`,
//! and only once the manifest (last) matches every entry (kind, size, sha256, link
//! target), and nothing more, are owners, modes and times applied.

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use super::{FileEntry, Kind, Manifest};

/// One entry to write: the manifest's entry and, for a file, where its content is.
pub struct Staged {
    pub entry: FileEntry,
    pub content: Option<PathBuf>,
}

/// A writer that hashes and counts what passes through.
struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    n: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A file written with its own writeback kept going behind it: each [`BEHIND`] bytes
/// written are sent to the disk at once (`sync_file_range`), and the chunk before them
/// waited for. Dirty pages of the archive never pile up, so the final fsync is short,
/// and the app's own small fsyncs never queue behind hundreds of megabytes of it (the
/// kernel would otherwise write them all at once, at the fsync or at its next flush).
struct WriteBehind {
    file: std::fs::File,
    /// Bytes written so far; where the last writeback started began and ended.
    written: u64,
    started: (u64, u64),
}

/// The writeback chunk: a few milliseconds of a disk's writing.
const BEHIND: u64 = 4 << 20;

impl WriteBehind {
    fn new(file: std::fs::File) -> WriteBehind {
        WriteBehind {
            file,
            written: 0,
            started: (0, 0),
        }
    }

    fn into_inner(self) -> std::fs::File {
        self.file
    }
}

impl Write for WriteBehind {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        let (prev, end) = self.started;
        if self.written - end >= BEHIND {
            use std::os::fd::AsRawFd;
            let fd = self.file.as_raw_fd();
            // Only advice: where it fails, the final fsync writes it all.
            // SAFETY: sync_file_range on the file descriptor this writer owns.
            unsafe {
                // The chunk before: written out, waited for.
                if end > prev {
                    libc::sync_file_range(
                        fd,
                        prev as i64,
                        (end - prev) as i64,
                        libc::SYNC_FILE_RANGE_WAIT_BEFORE
                            | libc::SYNC_FILE_RANGE_WRITE
                            | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                    );
                }
                // This one: started.
                libc::sync_file_range(
                    fd,
                    end as i64,
                    (self.written - end) as i64,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.started = (end, self.written);
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// A reader that hashes and counts what passes through.
struct HashReader<R> {
    inner: R,
    hasher: Sha256,
    n: u64,
}

/// The archive file's own hash, read through a reader that another reader (age's) owns.
struct SharedHashReader<R> {
    inner: R,
    state: std::rc::Rc<std::cell::RefCell<Sha256>>,
}

impl<R: Read> Read for SharedHashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.state.borrow_mut().update(&buf[..n]);
        Ok(n)
    }
}

/// The compressed stream's way to the file: as it is, or through age.
enum Sealed<W: Write> {
    Plain(W),
    Age(age::stream::StreamWriter<W>),
}

impl<W: Write> Write for Sealed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sealed::Plain(w) => w.write(buf),
            Sealed::Age(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sealed::Plain(w) => w.flush(),
            Sealed::Age(w) => w.flush(),
        }
    }
}

impl<W: Write> Sealed<W> {
    /// Ends age's last chunk; gives the file's writer back.
    fn finish(self) -> std::io::Result<W> {
        match self {
            Sealed::Plain(w) => Ok(w),
            Sealed::Age(w) => w.finish(),
        }
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
}

/// The archive written: its path, size and sha256.
pub struct Written {
    pub size: u64,
    pub sha256: String,
}

fn tar_path(volume: &str, rel: &str) -> String {
    if rel.is_empty() {
        format!("volumes/{volume}/")
    } else {
        format!("volumes/{volume}/{rel}")
    }
}

fn header(e: &FileEntry, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(e.mode & 0o7777);
    h.set_uid(e.uid as u64);
    h.set_gid(e.gid as u64);
    h.set_mtime(e.mtime.max(0) as u64);
    h
}

/// Writes `path` (atomically) from the staged volumes; fills in each file's size and
/// sha256 in `manifest` (whose volumes must list the same entries, in order), and
/// appends the manifest last. With an encryptor, the compressed stream is sealed by age.
/// `ready` runs once the file is complete and durable, before it takes its name: an
/// error there abandons it; what it returns is shown after the archive's size.
pub fn write(
    path: &Path,
    manifest: &mut Manifest,
    staged: &[(String, Vec<Staged>)],
    encryptor: Option<age::Encryptor>,
    ready: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<Written> {
    let mut note = String::new();
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    // On a terminal: a bar of the files' bytes as they are compressed.
    let total: u64 = staged
        .iter()
        .flat_map(|(_, es)| es)
        .filter_map(|s| s.content.as_ref())
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let step = crate::progress::Step::bytes("archiving", total);
    let result = (|| -> anyhow::Result<Written> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        let counted = HashWriter {
            inner: std::io::BufWriter::with_capacity(1 << 20, WriteBehind::new(file)),
            hasher: Sha256::new(),
            n: 0,
        };
        let sealed = match encryptor {
            Some(e) => Sealed::Age(e.wrap_output(counted)?),
            None => Sealed::Plain(counted),
        };
        let mut zst = zstd::stream::write::Encoder::new(sealed, 1)?;
        zst.include_checksum(true)?;
        // Compressed by one worker thread of libzstd while this one reads and hashes
        // the files and hashes and writes what comes out (one pass over the data, two
        // cores busy); the frame is the same format.
        zst.multithread(1)?;
        let mut tar = tar::Builder::new(zst);
        tar.mode(tar::HeaderMode::Complete);

        // 1. The volumes' entries, in order; file hashes computed as they are read.
        for (vi, (volume, entries)) in staged.iter().enumerate() {
            for (ei, s) in entries.iter().enumerate() {
                let e = &s.entry;
                let name = tar_path(volume, &e.path);
                match e.kind {
                    Kind::Dir => {
                        let mut h = header(e, tar::EntryType::Directory, 0);
                        tar.append_data(&mut h, &name, std::io::empty())
                            .with_context(|| format!("archiving {name}"))?;
                    }
                    Kind::Symlink => {
                        let mut h = header(e, tar::EntryType::Symlink, 0);
                        let target = e.target.as_deref().unwrap_or_default();
                        tar.append_link(&mut h, &name, target)
                            .with_context(|| format!("archiving {name}"))?;
                    }
                    Kind::File => {
                        let content = s.content.as_ref().context("a staged file has no content")?;
                        let f = std::fs::File::open(content)
                            .with_context(|| format!("opening {}", content.display()))?;
                        let size = f.metadata()?.len();
                        let mut h = header(e, tar::EntryType::Regular, size);
                        let mut r = HashReader {
                            inner: crate::progress::StepReader {
                                inner: f,
                                step: step.clone(),
                            },
                            hasher: Sha256::new(),
                            n: 0,
                        };
                        tar.append_data(&mut h, &name, &mut r)
                            .with_context(|| format!("archiving {name}"))?;
                        if r.n != size {
                            bail!("{} changed size while it was archived", content.display());
                        }
                        let m = &mut manifest.volumes[vi].files[ei];
                        m.size = size;
                        m.sha256 = Some(hex::encode(r.hasher.finalize()));
                    }
                }
            }
        }

        // 2. The manifest, last.
        let data = serde_json::to_vec_pretty(&manifest)?;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(chrono::Utc::now().timestamp().max(0) as u64);
        tar.append_data(&mut h, "manifest.json", data.as_slice())?;

        // 3. Ends of the tar, the zstd frame; the file made durable, then renamed.
        let zst = tar.into_inner()?;
        let mut counted = zst.finish()?.finish()?;
        counted.flush()?;
        let file = counted
            .inner
            .into_inner()
            .map_err(|e| anyhow::anyhow!("writing {}: {}", tmp.display(), e.error()))?
            .into_inner();
        file.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        note = ready()?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
        frun_images::fsutil::sync_dir(dir)?;
        Ok(Written {
            size: counted.n,
            sha256: hex::encode(counted.hasher.finalize()),
        })
    })();
    match &result {
        Ok(w) => step.done(&format!("{} archive{note}", super::human_size(w.size))),
        Err(_) => {
            step.abandon();
            crate::cleanup::remove_file(&tmp);
        }
    }
    result
}

/// `volumes/<volume>/<rel>` split and checked: plain components only.
fn split_path(p: &Path) -> anyhow::Result<(String, String)> {
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(
                s.to_str()
                    .with_context(|| format!("archive path {p:?} is not UTF-8"))?
                    .to_string(),
            ),
            Component::CurDir => {}
            _ => bail!("archive path {p:?} leaves its directory"),
        }
    }
    if parts.len() < 2 || parts[0] != "volumes" || !crate::containers::valid_name(&parts[1]) {
        bail!("unexpected archive entry {p:?}");
    }
    Ok((parts[1].clone(), parts[2..].join("/")))
}

/// What one extracted entry was.
struct Seen {
    kind: Kind,
    size: u64,
    sha256: Option<String>,
    target: Option<String>,
}

/// Reads the archive at `path` whole, extracting volume `v` into the new directory
/// `target(v)` (which must not exist), and checks it against its manifest (and, when
/// given, the archive file's sha256). Owners, modes and times are set once all
/// matched. The databases' integrity is checked by the caller ([`check_databases`]).
/// On error, what was extracted stays for the caller to remove.
pub fn extract(
    path: &Path,
    expect_sha256: Option<&str>,
    keys: &super::crypt::Decrypt,
    mut target: impl FnMut(&str) -> anyhow::Result<PathBuf>,
) -> anyhow::Result<(Manifest, BTreeMap<String, PathBuf>)> {
    let encrypted = super::crypt::is_encrypted(path)?;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let file_hash = std::rc::Rc::new(std::cell::RefCell::new(Sha256::new()));
    // On a terminal: a bar of the archive's bytes as they are read and checked.
    let step = crate::progress::Step::bytes("verifying", file.metadata().map_or(0, |m| m.len()));
    let hashed = SharedHashReader {
        inner: std::io::BufReader::with_capacity(
            1 << 20,
            crate::progress::StepReader {
                inner: file,
                step: step.clone(),
            },
        ),
        state: file_hash.clone(),
    };
    let plain: Box<dyn Read> = if encrypted {
        Box::new(keys.open(hashed)?)
    } else {
        Box::new(hashed)
    };
    let mut zst = zstd::stream::read::Decoder::new(plain)?;
    let mut roots: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut dirs: BTreeSet<(String, String)> = BTreeSet::new();
    let mut seen: BTreeMap<(String, String), Seen> = BTreeMap::new();
    let mut manifest: Option<Manifest> = None;

    // 1. Every entry, checked as it comes.
    {
        let mut tar = tar::Archive::new(&mut zst);
        for entry in tar.entries().context("reading the archive")? {
            let mut entry = entry.context("reading the archive")?;
            let p = entry
                .path()
                .context("reading an entry's path")?
                .into_owned();
            if manifest.is_some() {
                bail!("entry {p:?} after the manifest");
            }
            if p == Path::new("manifest.json") {
                let mut data = Vec::new();
                entry.read_to_end(&mut data)?;
                manifest = Some(serde_json::from_slice(&data).context("reading manifest.json")?);
                continue;
            }
            let (vol, rel) = split_path(&p)?;
            let key = (vol.clone(), rel.clone());
            if seen.contains_key(&key) {
                bail!("entry {p:?} appears twice");
            }
            if !roots.contains_key(&vol) {
                if !rel.is_empty() {
                    bail!("entry {p:?} comes before its volume's root");
                }
                let dir = target(&vol)?;
                roots.insert(vol.clone(), dir);
            }
            let root = &roots[&vol];
            let dest = if rel.is_empty() {
                root.clone()
            } else {
                let parent = rel.rsplit_once('/').map_or("", |(a, _)| a).to_string();
                if !dirs.contains(&(vol.clone(), parent)) {
                    bail!("entry {p:?}: its directory is not in the archive before it");
                }
                root.join(&rel)
            };
            let kind = entry.header().entry_type();
            let s = if kind.is_dir() {
                std::fs::create_dir(&dest)
                    .with_context(|| format!("creating {}", dest.display()))?;
                dirs.insert(key.clone());
                Seen {
                    kind: Kind::Dir,
                    size: 0,
                    sha256: None,
                    target: None,
                }
            } else if kind.is_symlink() {
                let link = entry
                    .link_name()?
                    .context("a symlink without a target")?
                    .to_str()
                    .context("a symlink target that is not UTF-8")?
                    .to_string();
                std::os::unix::fs::symlink(&link, &dest)
                    .with_context(|| format!("creating {}", dest.display()))?;
                Seen {
                    kind: Kind::Symlink,
                    size: 0,
                    sha256: None,
                    target: Some(link),
                }
            } else if kind.is_file() {
                use std::os::unix::fs::OpenOptionsExt;
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&dest)
                    .with_context(|| format!("creating {}", dest.display()))?;
                let mut w = HashWriter {
                    inner: std::io::BufWriter::with_capacity(1 << 20, f),
                    hasher: Sha256::new(),
                    n: 0,
                };
                std::io::copy(&mut entry, &mut w)
                    .with_context(|| format!("extracting {}", p.display()))?;
                w.flush()?;
                Seen {
                    kind: Kind::File,
                    size: w.n,
                    sha256: Some(hex::encode(w.hasher.finalize())),
                    target: None,
                }
            } else {
                bail!("entry {p:?} is of a kind frun does not write ({kind:?})");
            };
            seen.insert(key, s);
        }
    }

    // 2. The rest of the stream: the zstd frame's end and checksum; the file's hash.
    std::io::copy(&mut zst, &mut std::io::sink()).context("reading the archive's end")?;
    let mut plain = zst.finish().into_inner();
    std::io::copy(&mut plain, &mut std::io::sink()).context("reading the archive's end")?;
    drop(plain);
    if let Some(want) = expect_sha256.filter(|s| !s.is_empty()) {
        let got = hex::encode(file_hash.borrow().clone().finalize());
        if got != want {
            bail!("the archive's sha256 is {got}, its summary says {want}: it changed since it was written");
        }
    }

    // 3. The manifest matches the entries, exactly.
    let manifest = manifest.context("the archive has no manifest.json (truncated?)")?;
    if manifest.format != super::FORMAT {
        bail!(
            "archive format {} (this frun reads {})",
            manifest.format,
            super::FORMAT
        );
    }
    let mut listed = BTreeSet::new();
    for v in &manifest.volumes {
        for f in &v.files {
            let key = (v.name.clone(), f.path.clone());
            let s = seen.get(&key).with_context(|| {
                format!(
                    "{}:{} is in the manifest, not in the archive",
                    v.name, f.path
                )
            })?;
            let ok = s.kind == f.kind
                && match f.kind {
                    Kind::File => s.size == f.size && s.sha256 == f.sha256,
                    Kind::Symlink => s.target == f.target,
                    Kind::Dir => true,
                };
            if !ok {
                bail!(
                    "{}:{} does not match its checksum in the manifest",
                    v.name,
                    f.path
                );
            }
            listed.insert(key);
        }
    }
    if let Some((v, p)) = seen.keys().find(|k| !listed.contains(*k)) {
        bail!("{v}:{p} is in the archive, not in the manifest");
    }

    // 4. Owners, modes, times: files and links first, directories deepest first.
    for v in &manifest.volumes {
        let root = roots
            .get(&v.name)
            .with_context(|| format!("volume {} is in the manifest, not in the archive", v.name))?;
        let mut dirs: Vec<&FileEntry> = Vec::new();
        for f in &v.files {
            if f.kind == Kind::Dir {
                dirs.push(f);
            } else {
                apply_meta(&root.join(&f.path), f)?;
            }
        }
        dirs.sort_by_key(|d| {
            std::cmp::Reverse(d.path.matches('/').count() + usize::from(!d.path.is_empty()))
        });
        for d in dirs {
            let p = if d.path.is_empty() {
                root.clone()
            } else {
                root.join(&d.path)
            };
            apply_meta(&p, d)?;
        }
    }
    step.done("checksums match");
    Ok((manifest, roots))
}

/// Owner, mode (not of a symlink) and modification time of an extracted entry.
fn apply_meta(p: &Path, f: &FileEntry) -> anyhow::Result<()> {
    use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};
    rustix::fs::chownat(
        CWD,
        p,
        Some(rustix::fs::Uid::from_raw(f.uid)),
        Some(rustix::fs::Gid::from_raw(f.gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .with_context(|| format!("chown {}", p.display()))?;
    if f.kind != Kind::Symlink {
        rustix::fs::chmod(p, rustix::fs::Mode::from_raw_mode(f.mode & 0o7777))
            .with_context(|| format!("chmod {}", p.display()))?;
    }
    let t = Timespec {
        tv_sec: f.mtime,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        CWD,
        p,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .with_context(|| format!("setting the time of {}", p.display()))?;
    Ok(())
}

/// `integrity_check` of every database the manifest lists, in the extracted volumes.
pub fn check_databases(
    manifest: &Manifest,
    roots: &BTreeMap<String, PathBuf>,
) -> anyhow::Result<usize> {
    let mut n = 0;
    for v in &manifest.volumes {
        for f in v.files.iter().filter(|f| f.sqlite) {
            let root = roots
                .get(&v.name)
                .context("a volume of the manifest is missing")?;
            super::sqlite::integrity_check(&root.join(&f.path))?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::{Timings, VolumeManifest};

    fn fe(path: &str, kind: Kind) -> FileEntry {
        FileEntry {
            path: path.into(),
            kind,
            mode: if kind == Kind::Dir { 0o755 } else { 0o640 },
            uid: 1000,
            gid: 1000,
            mtime: 1_700_000_000,
            size: 0,
            sha256: None,
            target: None,
            sqlite: false,
        }
    }

    /// A small archive of one volume: a directory, a file (1 MB of varied bytes), a link.
    fn make(dir: &Path) -> (PathBuf, Written) {
        let content = dir.join("content");
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&content, &data).unwrap();
        let mut link = fe("sub/link", Kind::Symlink);
        link.target = Some("../file".into());
        let entries = vec![
            Staged {
                entry: fe("", Kind::Dir),
                content: None,
            },
            Staged {
                entry: fe("file", Kind::File),
                content: Some(content),
            },
            Staged {
                entry: fe("sub", Kind::Dir),
                content: None,
            },
            Staged {
                entry: link,
                content: None,
            },
        ];
        let mut manifest = Manifest {
            format: crate::backup::FORMAT,
            stack: "s".into(),
            name: "n".into(),
            created: "2026-12-02T00:00:00Z".into(),
            frun_version: "0".into(),
            reason: "manual".into(),
            app: None,
            volumes: vec![VolumeManifest {
                name: "db".into(),
                files: entries.iter().map(|s| s.entry.clone()).collect(),
            }],
            timings: Timings::default(),
        };
        let path = dir.join("a.tar.zst");
        let w = write(
            &path,
            &mut manifest,
            &[("db".into(), entries)],
            None,
            || Ok(String::new()),
        )
        .unwrap();
        (path, w)
    }

    #[test]
    fn an_archive_reads_back_whole_with_owners_modes_and_links() {
        if !crate::test_as_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (path, w) = make(dir.path());
        let out = dir.path().join("out");
        let (m, roots) = extract(&path, Some(&w.sha256), &Default::default(), |v| {
            std::fs::create_dir_all(&out)?;
            Ok(out.join(v))
        })
        .unwrap();
        assert_eq!(m.volumes[0].files.len(), 4);
        let root = &roots["db"];
        assert_eq!(std::fs::read(root.join("file")).unwrap().len(), 1_000_000);
        assert_eq!(
            std::fs::read_link(root.join("sub/link")).unwrap(),
            Path::new("../file")
        );
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(root.join("file")).unwrap();
        assert_eq!(
            (md.uid(), md.mode() & 0o7777, md.mtime()),
            (1000, 0o640, 1_700_000_000)
        );
        assert_eq!(std::fs::metadata(root).unwrap().mode() & 0o7777, 0o755);
    }

    #[test]
    fn a_changed_or_cut_archive_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (path, w) = make(dir.path());
        let good = std::fs::read(&path).unwrap();
        let mut n = 0;
        let mut try_bytes = |bytes: &[u8], sha: Option<&str>| {
            n += 1;
            std::fs::write(&path, bytes).unwrap();
            let out = dir.path().join(format!("out{n}"));
            extract(&path, sha, &Default::default(), |v| {
                std::fs::create_dir_all(&out)?;
                Ok(out.join(v))
            })
            .map(|_| ())
        };
        // One byte flipped in the middle: refused even without the file's own sha256.
        let mut bad = good.clone();
        bad[good.len() / 2] ^= 0x40;
        assert!(try_bytes(&bad, None).is_err());
        // Cut short, at several places.
        for cut in [good.len() - 1, good.len() - 20, good.len() / 2, 100] {
            assert!(try_bytes(&good[..cut], None).is_err(), "cut at {cut}");
        }
        // A garbage tail: caught by the archive's sha256.
        let mut tail = good.clone();
        tail.extend_from_slice(b"junk");
        assert!(try_bytes(&tail, Some(&w.sha256)).is_err());
        assert!(try_bytes(&good, Some(&w.sha256)).is_ok() || !crate::test_as_root());
    }
}
