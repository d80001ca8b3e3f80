//! The writer: a container's output streams into json-file entries, rotated.
//!
//! One [`LogWriter`] per container, shared by the threads that copy its streams (and by
//! the supervisor's own `frun:` messages). Reads are bounded: [`LogWriter::copy`] reads
//! into one 16 KiB buffer and writes each full line, or the whole buffer when no newline
//! came, as an entry of its own (Docker's cut), so memory stays flat whatever the
//! container writes. All entries of one read go to the file in one `write`, which keeps
//! a fast writer cheap; the rotation check is per entry, under the lock, so an entry is
//! never split across files and none is lost at the boundary.

use super::{io, rotations, LogConfig, LogError, Meta, LOG_FILE, MAX_LINE, META_FILE};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The two streams a container has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// `"stderr"` is stderr; anything else stdout.
    pub fn parse(s: &str) -> Stream {
        if s == "stderr" {
            Stream::Stderr
        } else {
            Stream::Stdout
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

#[derive(serde::Serialize)]
struct Entry<'a> {
    log: &'a str,
    stream: &'a str,
    time: &'a str,
}

struct Inner {
    dir: PathBuf,
    config: LogConfig,
    file: File,
    size: u64,
    /// Rotations so far (also in the rotation lock file, for followers).
    rotations: u64,
    /// The gzip of the last rotated file, running beside the writer; joined before the
    /// next rotation renames that file.
    compressing: Option<std::thread::JoinHandle<()>>,
}

/// A container's log, open for appending. Cheap to clone (one file, one lock).
#[derive(Clone)]
pub struct LogWriter {
    inner: Arc<Mutex<Inner>>,
}

impl LogWriter {
    /// Opens (creating) `dir/container.log` for the container `meta` describes, and
    /// records `meta` beside it.
    pub fn open(dir: &Path, config: &LogConfig, meta: &Meta) -> Result<LogWriter, LogError> {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let meta_path = dir.join(META_FILE);
        if !meta_path.exists() {
            let data = serde_json::to_vec(meta).expect("meta serializes");
            frun_images::fsutil::write_atomic(&meta_path, &data)
                .map_err(|e| io("writing", &meta_path)(std::io::Error::other(e)))?;
        }
        let rotations = rotations::create(dir)?;
        let path = dir.join(LOG_FILE);
        let file = open_append(&path)?;
        let size = file.metadata().map_err(io("reading", &path))?.len();
        // Compressions a crash interrupted are done now, beside the writer as usual.
        let plain = unfinished_compressions(dir);
        let compressing = (config.compress && !plain.is_empty()).then(|| {
            let dir = dir.to_path_buf();
            std::thread::spawn(move || {
                for p in plain {
                    if let Err(e) = gzip(&dir, &p) {
                        tracing::warn!(error = %e, "compressing a rotated log");
                    }
                }
            })
        });
        Ok(LogWriter {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_path_buf(),
                config: config.clone(),
                file,
                size,
                rotations,
                compressing,
            })),
        })
    }

    /// Copies `from` (a pipe or pty master) into entries of `stream` until it ends.
    /// Memory: one buffer of [`MAX_LINE`] bytes.
    pub fn copy(&self, mut from: impl Read, stream: Stream) {
        let mut buf = vec![0u8; MAX_LINE];
        let mut len = 0;
        loop {
            let n = match from.read(&mut buf[len..]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // EIO: a pty whose other side closed.
                Err(_) => break,
            };
            len += n;
            let (entries, used) = cut(&buf[..len], len == buf.len());
            if !entries.is_empty() {
                self.write_entries(stream, &entries);
            }
            buf.copy_within(used..len, 0);
            len -= used;
        }
        if len > 0 {
            self.write_entries(stream, &[&buf[..len]]);
        }
    }

    /// One entry (a message of frun's own goes to the container's log this way).
    pub fn line(&self, stream: Stream, text: &str) {
        self.write_entries(stream, &[text.as_bytes()]);
    }

    fn write_entries(&self, stream: Stream, entries: &[&[u8]]) {
        let time = crate::containers::now();
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let mut out = Vec::with_capacity(entries.iter().map(|e| e.len() + 80).sum());
        for e in entries {
            let text = String::from_utf8_lossy(e);
            let start = out.len();
            serde_json::to_writer(
                &mut out,
                &Entry {
                    log: &text,
                    stream: stream.as_str(),
                    time: &time,
                },
            )
            .expect("entry serializes");
            out.push(b'\n');
            // Would this entry pass max-size? Write what came before, then rotate.
            if inner.size + (out.len() as u64) > inner.config.max_size
                && inner.size + start as u64 > 0
            {
                let before = out[..start].to_vec();
                inner.append(&before);
                out.drain(..start);
                if let Err(e) = inner.rotate() {
                    tracing::warn!(error = %e, "rotating the container's log");
                }
            }
        }
        inner.append(&out);
    }
}

impl Inner {
    fn append(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        match self.file.write_all(data) {
            Ok(()) => self.size += data.len() as u64,
            // A full disk loses output, as Docker's driver does; say it once per write.
            Err(e) => tracing::warn!(error = %e, "writing the container's log"),
        }
    }

    /// `container.log` becomes `.1` (gzipped beside the writer if asked), `.1` becomes
    /// `.2`, ..., the oldest beyond `max-file` goes. With `max-file` 1 the file is
    /// replaced by an empty one (not truncated: a follower still holding it reads it to
    /// its end). Readers see all of it or none of it ([`rotations`]).
    fn rotate(&mut self) -> Result<(), LogError> {
        let path = self.dir.join(LOG_FILE);
        // 1. The last compression ends first: its own last step takes the lock.
        if let Some(t) = self.compressing.take() {
            let _ = t.join();
        }
        // 2. No reader is listing the files, and none starts until the lock is dropped.
        let lock = rotations::exclusive(&self.dir)?;
        let rotated = |i: u32| -> [PathBuf; 2] {
            let p = self.dir.join(format!("{LOG_FILE}.{i}"));
            [p.with_extension(format!("{i}.gz")), p]
        };
        let first = self.dir.join(format!("{LOG_FILE}.1"));
        if self.config.max_file <= 1 {
            std::fs::remove_file(&path).map_err(io("removing", &path))?;
        } else {
            // 3. The oldest goes.
            for p in rotated(self.config.max_file - 1) {
                match std::fs::remove_file(&p) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(io("removing", &p)(e))
                    }
                    _ => {}
                }
            }
            // 4. The others move up one.
            for i in (1..self.config.max_file - 1).rev() {
                for (from, to) in rotated(i).into_iter().zip(rotated(i + 1)) {
                    match std::fs::rename(&from, &to) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            return Err(io("renaming", &from)(e))
                        }
                        _ => {}
                    }
                }
            }
            // 5. The current file becomes `.1`.
            std::fs::rename(&path, &first).map_err(io("renaming", &path))?;
        }
        // 6. Counted (a follower finds its file by the count), and a new current file.
        self.rotations += 1;
        rotations::set_count(&lock, &self.dir, self.rotations)?;
        self.file = open_append(&path)?;
        self.size = 0;
        drop(lock);
        super::points::reached(&self.dir, "rotated");
        // 7. Compression beside the writer: a reader sees `.1` until `.1.gz` is whole.
        if self.config.compress && self.config.max_file > 1 {
            let dir = self.dir.clone();
            self.compressing = Some(std::thread::spawn(move || {
                if let Err(e) = gzip(&dir, &first) {
                    tracing::warn!(error = %e, "compressing a rotated log");
                }
            }));
        }
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(t) = self.compressing.take() {
            let _ = t.join();
        }
    }
}

fn open_append(path: &Path) -> Result<File, LogError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io("opening", path))
}

/// What a crash (of the writer, or of the host) left of compressions: their temp files,
/// removed here, and the rotated files still plain, returned.
fn unfinished_compressions(dir: &Path) -> Vec<PathBuf> {
    let mut plain = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&format!("{LOG_FILE}.")) else {
            continue;
        };
        if rest.ends_with(".gz.tmp") {
            let _ = std::fs::remove_file(e.path());
        } else if rest.parse::<u64>().is_ok() {
            plain.push(e.path());
        }
    }
    plain
}

/// `F` → `F.gz` (temp + rename), then `F` goes; those two steps under the rotation lock,
/// so that a reader lists and opens either `F` or `F.gz`.
fn gzip(dir: &Path, path: &Path) -> Result<(), LogError> {
    let gz = path.with_extension(format!(
        "{}.gz",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let tmp = gz.with_extension("gz.tmp");
    let mut input = File::open(path).map_err(io("opening", path))?;
    let out = File::create(&tmp).map_err(io("creating", &tmp))?;
    let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    std::io::copy(&mut input, &mut enc).map_err(io("compressing", path))?;
    enc.finish()
        .and_then(|f| f.sync_all())
        .map_err(io("writing", &tmp))?;
    let _lock = rotations::exclusive(dir)?;
    std::fs::rename(&tmp, &gz).map_err(io("renaming", &tmp))?;
    std::fs::remove_file(path).map_err(io("removing", path))
}

/// Cuts `buf` into entries: each line with its newline; when `full` and no newline is
/// left, the rest as one partial entry (Docker's 16 KiB cut), ending on a UTF-8
/// boundary when one is near. Returns the entries and how many bytes they used.
fn cut(buf: &[u8], full: bool) -> (Vec<&[u8]>, usize) {
    let mut entries = Vec::new();
    let mut start = 0;
    while let Some(p) = buf[start..].iter().position(|b| *b == b'\n') {
        entries.push(&buf[start..start + p + 1]);
        start += p + 1;
    }
    if full && start == 0 {
        // Do not cut a multi-byte character in two: end before an incomplete one.
        let mut end = buf.len();
        for back in 1..=buf.len().min(3) {
            let b = buf[buf.len() - back];
            if b & 0xC0 == 0x80 {
                continue;
            }
            let need = match b {
                0xF0.. => 4,
                0xE0.. => 3,
                0xC0.. => 2,
                _ => 1,
            };
            if need > back {
                end = buf.len() - back;
            }
            break;
        }
        entries.push(&buf[..end]);
        start = end;
    }
    (entries, start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::reader::{read_entries, Entry as ReadEntry};

    fn meta() -> Meta {
        Meta {
            id: "abc".into(),
            name: "t".into(),
            created: "2026-01-01T00:00:00Z".into(),
            keep: 0,
        }
    }

    fn all(dir: &Path) -> Vec<ReadEntry> {
        read_entries(dir).unwrap()
    }

    #[test]
    fn lines_are_cut_at_16_kib_and_join_back() {
        let t = tempfile::tempdir().unwrap();
        let w = LogWriter::open(t.path(), &LogConfig::default(), &meta()).unwrap();
        let mut input = vec![b'x'; 40_000];
        input.push(b'\n');
        input.extend_from_slice(b"short\nend");
        w.copy(&input[..], Stream::Stdout);
        let e = all(t.path());
        let sizes: Vec<usize> = e.iter().map(|e| e.log.len()).collect();
        assert_eq!(sizes, [16384, 16384, 40_001 - 32768, 6, 3]);
        let joined: String = e.iter().map(|e| e.log.as_str()).collect();
        assert_eq!(joined.as_bytes(), &input[..]);
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        let s = "aé".repeat(4); // 61 c3 a9 61 c3 a9 ...
        let (e, used) = cut(&s.as_bytes()[..5], true);
        assert_eq!((e, used), (vec![&b"a\xc3\xa9a"[..]], 4));
        let (e, used) = cut(&s.as_bytes()[..6], true);
        assert_eq!((e[0].len(), used), (6, 6));
        let (e, used) = cut(b"ab\ncd", true);
        assert_eq!((e, used), (vec![&b"ab\n"[..]], 3));
        let (e, used) = cut(b"ab\ncd", false);
        assert_eq!(used, 3);
        assert_eq!(e.len(), 1);
    }

    #[test]
    fn rotation_keeps_every_entry_up_to_max_file() {
        let t = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            max_size: 4096,
            max_file: 100,
            ..Default::default()
        };
        let w = LogWriter::open(t.path(), &cfg, &meta()).unwrap();
        let text: String = (0..2000).map(|i| format!("line {i}\n")).collect();
        w.copy(text.as_bytes(), Stream::Stderr);
        drop(w);
        let e = all(t.path());
        assert_eq!(e.len(), 2000);
        for (i, e) in e.iter().enumerate() {
            assert_eq!(e.log, format!("line {i}\n"));
            assert_eq!(e.stream, "stderr");
        }
        // Each file within the bound.
        for f in std::fs::read_dir(t.path()).unwrap().flatten() {
            assert!(f.metadata().unwrap().len() <= 4096, "{:?}", f.path());
        }
    }

    #[test]
    fn rotation_drops_the_oldest_and_compresses() {
        let t = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            max_size: 4096,
            max_file: 3,
            compress: true,
            ..Default::default()
        };
        let w = LogWriter::open(t.path(), &cfg, &meta()).unwrap();
        let text: String = (0..2000).map(|i| format!("line {i}\n")).collect();
        w.copy(text.as_bytes(), Stream::Stdout);
        drop(w);
        let mut names: Vec<String> = std::fs::read_dir(t.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "container.log",
                "container.log.1.gz",
                "container.log.2.gz",
                "meta.json",
                "rotations.lock"
            ]
        );
        let e = all(t.path());
        // The newest entries, consecutive, ending with the last.
        let first: usize = e[0].log.trim_start_matches("line ").trim().parse().unwrap();
        for (i, e) in e.iter().enumerate() {
            assert_eq!(e.log, format!("line {}\n", first + i));
        }
        assert_eq!(first + e.len(), 2000);
    }

    /// A crash in the middle of a compression left `.2` plain and a temp file: the next
    /// writer (the container restarted) finishes the job.
    #[test]
    fn compressions_a_crash_interrupted_are_finished_at_open() {
        let t = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            max_size: 4096,
            max_file: 5,
            compress: true,
            ..Default::default()
        };
        let w = LogWriter::open(t.path(), &cfg, &meta()).unwrap();
        let text: String = (0..300).map(|i| format!("line {i}\n")).collect();
        w.copy(text.as_bytes(), Stream::Stdout);
        drop(w);
        // As a crash would leave it: .2 not compressed yet, half a temp file of it.
        let gz = t.path().join("container.log.2.gz");
        let plain = t.path().join("container.log.2");
        let mut d = flate2::read::GzDecoder::new(File::open(&gz).unwrap());
        std::io::copy(&mut d, &mut File::create(&plain).unwrap()).unwrap();
        std::fs::remove_file(&gz).unwrap();
        std::fs::write(t.path().join("container.log.2.gz.tmp"), b"\x1f\x8b").unwrap();
        drop(LogWriter::open(t.path(), &cfg, &meta()).unwrap());
        let mut names: Vec<String> = std::fs::read_dir(t.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("container.log."))
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "container.log.1.gz",
                "container.log.2.gz",
                "container.log.3.gz",
                "container.log.4.gz"
            ]
        );
        let e = all(t.path());
        let first: usize = e[0].log.trim_start_matches("line ").trim().parse().unwrap();
        for (i, e) in e.iter().enumerate() {
            assert_eq!(e.log, format!("line {}\n", first + i));
        }
        assert_eq!(first + e.len(), 300);
    }

    /// A reader stopped while it holds the rotation lock (SIGSTOP in its listing) does
    /// not stop the writer: after a bounded wait it rotates without the lock.
    #[test]
    fn a_reader_stuck_in_its_listing_does_not_stop_the_writer() {
        let t = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            max_size: 4096,
            max_file: 3,
            ..Default::default()
        };
        let w = LogWriter::open(t.path(), &cfg, &meta()).unwrap();
        let stuck = rotations::shared(t.path()).unwrap().expect("the lock file");
        let text: String = (0..200).map(|i| format!("line {i}\n")).collect();
        w.copy(text.as_bytes(), Stream::Stdout);
        drop(stuck);
        drop(w);
        assert!(t.path().join("container.log.2").exists());
        assert_eq!(all(t.path()).last().unwrap().log, "line 199\n");
    }

    #[test]
    fn max_file_one_keeps_one_file() {
        let t = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            max_size: 4096,
            max_file: 1,
            ..Default::default()
        };
        let w = LogWriter::open(t.path(), &cfg, &meta()).unwrap();
        let text: String = (0..2000).map(|i| format!("line {i}\n")).collect();
        w.copy(text.as_bytes(), Stream::Stdout);
        let len = std::fs::metadata(t.path().join(LOG_FILE)).unwrap().len();
        assert!(len <= 4096 && len > 0);
        assert_eq!(all(t.path()).last().unwrap().log, "line 1999\n");
    }
}
