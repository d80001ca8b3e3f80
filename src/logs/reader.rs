//! The reader: `frun logs` over a container's rotated files (and over the generations
//! of a stack role), with `--tail`, `--since`, `--until`, `-t` and `-f`.
//!
//! Memory is bounded by `--tail` (a ring of N entries), never by the log's size: files
//! are read line by line, gzipped ones through a decoder.
//!
//! `-f` waits on inotify on the log's directory, with a one-second timeout: a write
//! wakes it at once and it reads only what was appended (from the offset it keeps on
//! its open file), and the timeout lets it notice that the container ended. Polling the
//! size instead would cost a wake-up every interval for every follower and add that
//! interval's delay to each line. A rotation is seen as `container.log` naming another
//! inode: the old file (still open, even if renamed or compressed away) is read to its
//! end first, then the new one from its start, so no entry is lost or shown twice. The
//! files there at the start are all opened before any is read, and read by descriptor:
//! reading them by name while a fast writer rotates skipped one and read another twice.

use super::{io, LogError, LOG_FILE, MAX_LINE};

/// The longest entry line the writer makes: 16 KiB of text, each byte escaped as
/// `\\u0000` at worst, and the fields.
const MAX_ENTRY: usize = MAX_LINE * 6 + 256;
use chrono::{DateTime, Utc};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One entry as the writer wrote it.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Entry {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// What `frun logs` asks for.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// Only the last N entries (`--tail N`); all with `None`.
    pub tail: Option<usize>,
    /// Entries at or after this time (`--since`).
    pub since: Option<DateTime<Utc>>,
    /// Entries before this time (`--until`).
    pub until: Option<DateTime<Utc>>,
}

impl ReadOptions {
    fn wants(&self, e: &Entry) -> bool {
        if self.since.is_none() && self.until.is_none() {
            return true;
        }
        let Ok(t) = DateTime::parse_from_rfc3339(&e.time) else {
            return false;
        };
        let t = t.with_timezone(&Utc);
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u)
    }
}

/// `--since`/`--until` as Docker takes them: RFC 3339, a Unix time (`1700000000`,
/// `1700000000.5`), or a duration before `now` (`10m`, `1h30m`, `45s`, `2d`).
pub fn parse_time(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, LogError> {
    let bad = || LogError::Time(s.to_string());
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return Err(bad());
        }
        let nanos = (secs.fract() * 1e9) as u32;
        return DateTime::from_timestamp(secs.trunc() as i64, nanos).ok_or_else(bad);
    }
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(bad()),
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        num.clear();
    }
    if !num.is_empty() || s.is_empty() {
        return Err(bad());
    }
    let d = chrono::Duration::try_seconds(total as i64).ok_or_else(bad)?;
    now.checked_sub_signed(d).ok_or_else(bad)
}

/// The log files of one container directory, oldest first: `container.log.N[.gz]` down
/// to `.1`, then `container.log`.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(&format!("{LOG_FILE}.")) else {
                continue;
            };
            let (num, gz) = match rest.strip_suffix(".gz") {
                Some(n) => (n, true),
                None => (rest, false),
            };
            let Ok(n) = num.parse::<u32>() else { continue };
            // While `.1` is being compressed both exist: the plain one is whole.
            if gz && dir.join(format!("{LOG_FILE}.{n}")).exists() {
                continue;
            }
            rotated.push((n, e.path()));
        }
    }
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut out: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    let current = dir.join(LOG_FILE);
    if current.exists() {
        out.push(current);
    }
    out
}

/// [`files`], if the listing is whole: the rotated files numbered 1 to N without a gap.
/// A rotation renames every file while a directory is being read, and a renamed file
/// can then be missed under both its names (readdir gives no promise about entries
/// that change meanwhile); a gap also shows a rotation half done. Either way: list
/// again.
fn complete_files(dir: &Path) -> Option<Vec<PathBuf>> {
    let list = files(dir);
    let index = |p: &PathBuf| -> Option<u32> {
        let name = p.file_name()?.to_str()?;
        let rest = name.strip_prefix(&format!("{LOG_FILE}."))?;
        rest.strip_suffix(".gz").unwrap_or(rest).parse().ok()
    };
    let rotated: Vec<u32> = list.iter().filter_map(index).collect();
    // Oldest first: N, N-1, ..., 1.
    let n = rotated.len() as u32;
    rotated
        .iter()
        .enumerate()
        .all(|(i, k)| *k == n - i as u32)
        .then_some(list)
}

/// Calls `f` for each entry of `path` (gzip read through a decoder). A line that does
/// not parse (torn by a crash) is skipped with a warning.
fn each_in_file(path: &Path, f: &mut dyn FnMut(Entry)) -> Result<(), LogError> {
    let file = match File::open(path) {
        Ok(f) => f,
        // Rotated away between listing and opening: its entries moved on, and a reader
        // without -f accepts that.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("opening", path)(e)),
    };
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut r = BufReader::new(reader);
    let mut line = Vec::new();
    let mut n = 0;
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)
            .map_err(io("reading", path))?
            == 0
        {
            return Ok(());
        }
        n += 1;
        match serde_json::from_slice::<Entry>(&line) {
            Ok(e) => f(e),
            Err(e) => {
                tracing::warn!(path = %path.display(), line = n, error = %e, "skipping a log line")
            }
        }
    }
}

/// Every entry of one container directory, oldest first (`up` shows the last lines of
/// an app that never became ready).
pub fn read_entries(dir: &Path) -> Result<Vec<Entry>, LogError> {
    let mut out = Vec::new();
    for f in files(dir) {
        each_in_file(&f, &mut |e| out.push(e))?;
    }
    Ok(out)
}

/// Where entries go: stdout's to `out`, stderr's to `err`, as `docker logs` does.
pub struct Sink<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    pub timestamps: bool,
}

impl Sink<'_> {
    fn put(&mut self, e: &Entry) -> std::io::Result<()> {
        let w: &mut dyn Write = if e.stream == "stderr" {
            &mut *self.err
        } else {
            &mut *self.out
        };
        if self.timestamps {
            write!(w, "{} ", e.time)?;
        }
        w.write_all(e.log.as_bytes())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        self.err.flush()
    }
}

/// Prints the entries of `dirs` (generations, oldest first) that `opts` selects.
pub fn print(dirs: &[PathBuf], opts: &ReadOptions, sink: &mut Sink) -> anyhow::Result<()> {
    let mut ring = std::collections::VecDeque::new();
    let mut failed: Option<std::io::Error> = None;
    for dir in dirs {
        for f in files(dir) {
            each_in_file(&f, &mut |e| {
                if !opts.wants(&e) || failed.is_some() {
                    return;
                }
                match opts.tail {
                    Some(0) => {}
                    Some(n) => {
                        if ring.len() == n {
                            ring.pop_front();
                        }
                        ring.push_back(e);
                    }
                    None => {
                        if let Err(x) = sink.put(&e) {
                            failed = Some(x);
                        }
                    }
                }
            })?;
            if let Some(e) = failed.take() {
                return Err(e.into());
            }
        }
    }
    for e in &ring {
        sink.put(e)?;
    }
    sink.flush()?;
    Ok(())
}

/// The open current file of a followed log, read from `offset` on.
struct Followed {
    file: File,
    ino: u64,
    offset: u64,
    /// Bytes of a line not yet ended (the writer writes whole lines, but a read can land
    /// between two writes' pages).
    partial: Vec<u8>,
    /// The file's first line, once read: how this file is found again after rotations.
    first: Vec<u8>,
}

impl Followed {
    fn from_file(file: File, path: &Path) -> Result<Followed, LogError> {
        let ino = file.metadata().map_err(io("reading", path))?.ino();
        Ok(Followed {
            file,
            ino,
            offset: 0,
            partial: Vec::new(),
            first: Vec::new(),
        })
    }

    fn open(path: &Path) -> Result<Option<Followed>, LogError> {
        match File::open(path) {
            Ok(file) => {
                let ino = file.metadata().map_err(io("reading", path))?.ino();
                Ok(Some(Followed {
                    file,
                    ino,
                    offset: 0,
                    partial: Vec::new(),
                    first: Vec::new(),
                }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("opening", path)(e)),
        }
    }

    /// Whole new lines since the last read.
    fn read_new(&mut self, path: &Path, f: &mut dyn FnMut(Entry)) -> Result<(), LogError> {
        self.file
            .seek(SeekFrom::Start(self.offset))
            .map_err(io("reading", path))?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.file.read(&mut buf).map_err(io("reading", path))?;
            if n == 0 {
                return Ok(());
            }
            self.offset += n as u64;
            self.partial.extend_from_slice(&buf[..n]);
            let end = match self.partial.iter().rposition(|b| *b == b'\n') {
                Some(p) => p + 1,
                None => continue,
            };
            if self.first.is_empty() {
                let p = self
                    .partial
                    .iter()
                    .position(|b| *b == b'\n')
                    .expect("a line");
                self.first = self.partial[..=p].to_vec();
            }
            for line in self.partial[..end].split(|b| *b == b'\n') {
                if line.is_empty() {
                    continue;
                }
                if let Ok(e) = serde_json::from_slice::<Entry>(line) {
                    f(e);
                }
            }
            self.partial.drain(..end);
        }
    }
}

fn is_gz(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "gz")
}

/// The first line of an open log file (through the decoder for `.gz`); the file is
/// rewound for whoever reads it next.
fn first_line(file: &mut File, gz: bool) -> Option<Vec<u8>> {
    file.seek(SeekFrom::Start(0)).ok()?;
    let reader: Box<dyn Read + '_> = if gz {
        Box::new(flate2::read::GzDecoder::new(&mut *file))
    } else {
        Box::new(&mut *file)
    };
    let mut line = Vec::new();
    BufReader::new(reader)
        .take(MAX_ENTRY as u64)
        .read_until(b'\n', &mut line)
        .ok()?;
    file.seek(SeekFrom::Start(0)).ok()?;
    line.ends_with(b"\n").then_some(line)
}

/// Every log file of `dir`, oldest first (as [`files`]), opened: a listing that a
/// rotation changed while it was being opened (a name that vanished, or names that now
/// point to other files) is made again. A writer rotating faster than the files can be
/// opened, 1000 times in a row, leaves what the last try opened.
fn open_all(dir: &Path) -> Vec<(PathBuf, File)> {
    let mut last = Vec::new();
    for _ in 0..1000 {
        let mut opened = Vec::new();
        let Some(names) = complete_files(dir) else {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        let mut vanished = false;
        for p in names {
            match File::open(&p) {
                Ok(f) => opened.push((p, f)),
                Err(_) => vanished = true,
            }
        }
        let same = |p: &Path, f: &File| match (std::fs::metadata(p), f.metadata()) {
            (Ok(a), Ok(b)) => a.ino() == b.ino(),
            _ => false,
        };
        if !vanished && opened.iter().all(|(p, f)| same(p, f)) {
            return opened;
        }
        last = opened;
        std::thread::sleep(Duration::from_millis(1));
    }
    last
}

/// What comes after a followed file that was rotated: compressed files to read whole,
/// then a plain file to follow, all already open.
struct Next {
    whole: Vec<File>,
    follow: Option<Followed>,
}

/// After the file whose first line is `first` (read to its end), in order. Files are
/// known by their first entry (its time has nanoseconds), not by name (a rotation
/// renames them all) nor inode (a compression frees one, and the next file often gets
/// the same number). Names are read and then opened: a rotation in between is seen as
/// an opened file whose first line is not the one listed, and the listing is redone.
fn after(dir: &Path, first: &[u8], ours: Option<&File>) -> Result<Next, LogError> {
    let current = dir.join(LOG_FILE);
    // A follower more than a few rotations behind a writer that rotates every few
    // milliseconds may need many tries; each costs a few opens.
    for _ in 0..1000 {
        // 1. The files with their first lines, from the newest back to ours.
        //    A name that went away meanwhile (`.1` once its `.1.gz` is whole): again.
        //    (Opened before the names are checked again below.)
        let mut list: Vec<(PathBuf, File, Option<Vec<u8>>)> = Vec::new();
        let mut vanished = false;
        let Some(names) = complete_files(dir) else {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        for p in names.into_iter().rev() {
            match File::open(&p) {
                Ok(mut f) => {
                    let line = first_line(&mut f, is_gz(&p));
                    let ours = line.as_deref() == Some(first);
                    list.push((p, f, line));
                    if ours {
                        break;
                    }
                }
                Err(_) => vanished = true,
            }
        }
        list.reverse();
        // 2. The listing holds only if no name changed file while it was made (a
        //    rotation renames them all); the current file may be empty yet, a rotated
        //    one never is.
        let same = |p: &Path, f: &File| match (std::fs::metadata(p), f.metadata()) {
            (Ok(a), Ok(b)) => a.ino() == b.ino(),
            _ => false,
        };
        let stable = !vanished
            && list
                .iter()
                .all(|(p, f, l)| same(p, f) && (l.is_some() || *p == current));
        if !stable {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let pos = match first.is_empty() {
            true => None,
            false => list
                .iter()
                .rposition(|(_, _, l)| l.as_deref() == Some(first)),
        };
        // Ours not found while it is still linked (a listing that missed it): again.
        let linked = ours.is_some_and(|f| f.metadata().is_ok_and(|m| m.nlink() > 0));
        if pos.is_none() && linked && !first.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        // Ours rotated out of the kept files (or never had a line): the current one.
        let Some(pos) = pos else {
            return Ok(Next {
                whole: Vec::new(),
                follow: Followed::open(&current)?,
            });
        };
        let rest = list.split_off(pos + 1);
        let mut whole = Vec::new();
        let mut follow = None;
        for (p, f, _) in rest {
            if is_gz(&p) && follow.is_none() {
                whole.push(f);
            } else if follow.is_none() {
                let ino = f.metadata().map_err(io("reading", &p))?.ino();
                follow = Some(Followed {
                    file: f,
                    ino,
                    offset: 0,
                    partial: Vec::new(),
                    first: Vec::new(),
                });
            }
        }
        if follow.is_none() {
            follow = Followed::open(&current)?;
        }
        return Ok(Next { whole, follow });
    }
    Ok(Next {
        whole: Vec::new(),
        follow: Followed::open(&current)?,
    })
}

/// [`each_in_file`] for an open file, gzipped or plain, from its start.
fn each_in_open(
    mut file: File,
    gz: bool,
    path: &Path,
    f: &mut dyn FnMut(Entry),
) -> Result<(), LogError> {
    file.seek(SeekFrom::Start(0)).map_err(io("reading", path))?;
    let reader: Box<dyn Read> = match gz {
        true => Box::new(flate2::read::GzDecoder::new(file)),
        false => Box::new(file),
    };
    let mut r = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)
            .map_err(io("reading", path))?
            == 0
        {
            return Ok(());
        }
        if let Ok(e) = serde_json::from_slice::<Entry>(&line) {
            f(e);
        }
    }
}

/// `frun logs -f`: what [`print`] would print of `dir`, then every new entry until
/// `running()` says the container ended (and what it wrote last is read).
pub fn follow(
    dir: &Path,
    opts: &ReadOptions,
    sink: &mut Sink,
    mut running: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    use rustix::fs::inotify;
    let path = dir.join(LOG_FILE);
    // 1. Watch first, then open: a write between the two still wakes the loop. The
    //    directory may not exist yet (`logs -f` right after `run -d`, before the
    //    supervisor opened the log): made here so that there is something to watch.
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let ino = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)?;
    inotify::add_watch(
        &ino,
        dir,
        inotify::WatchFlags::MODIFY | inotify::WatchFlags::CREATE | inotify::WatchFlags::MOVED_TO,
    )
    .map_err(|e| io("watching", dir)(e.into()))?;

    // 2. The rotated files, then the current one up to now, through --tail.
    let mut ring = std::collections::VecDeque::new();
    let keep = |e: Entry, ring: &mut std::collections::VecDeque<Entry>| {
        if !opts.wants(&e) {
            return;
        }
        match opts.tail {
            Some(0) => {}
            Some(n) => {
                if ring.len() == n {
                    ring.pop_front();
                }
                ring.push_back(e);
            }
            None => ring.push_back(e),
        }
    };
    //    Every file is opened first and read by descriptor: a rotation meanwhile
    //    renames them all, and reading by name would then skip one file and read
    //    another twice (the bug once seen as "lines 8080-8515 missing").
    let mut all = open_all(dir);
    let mut current = match all.last() {
        Some((p, _)) if *p == path => {
            let (_, file) = all.pop().expect("a last file");
            Some(Followed::from_file(file, &path)?)
        }
        _ => None,
    };
    // The first line of the last file read to its end: where to go on from.
    let mut last_first: Vec<u8> = Vec::new();
    for (p, mut file) in all {
        if let Some(l) = first_line(&mut file, is_gz(&p)) {
            last_first = l;
        }
        each_in_open(file, is_gz(&p), &p, &mut |e| keep(e, &mut ring))?;
    }
    if let Some(c) = current.as_mut() {
        c.read_new(&path, &mut |e| keep(e, &mut ring))?;
    }
    for e in ring.drain(..) {
        sink.put(&e)?;
    }
    sink.flush()?;

    // 3. New entries as they come.
    let mut events = [0u8; 4096];
    loop {
        let alive = running();
        let mut put_err = None;
        let mut put = |e: Entry| {
            if put_err.is_none() && opts.wants(&e) {
                if let Err(x) = sink.put(&e) {
                    put_err = Some(x);
                }
            }
        };
        // Read the current file to its end; if the name now points to a new file (a
        // rotation, or the first file appearing), go on with that one from its start.
        loop {
            if let Some(c) = current.as_mut() {
                c.read_new(&path, &mut put)?;
            }
            let now_ino = std::fs::metadata(&path).ok().map(|m| m.ino());
            match (&current, now_ino) {
                (Some(c), Some(i)) if c.ino != i => {
                    // Rotated: ours is whole now (the writer writes only to the current
                    // file); what it got since the last read comes first.
                    let c = current.as_mut().expect("matched Some");
                    c.read_new(&path, &mut put)?;
                    // Several rotations may have passed: the files after ours, in order.
                    last_first = c.first.clone();
                    let next = after(dir, &last_first, Some(&c.file))?;
                    for f in next.whole {
                        each_in_open(f, true, dir, &mut put)?;
                    }
                    current = next.follow;
                }
                // No file followed: the first one appearing, or the current one missing
                // when we last looked (between a rotation's rename and its new file):
                // what follows the last file read, which is not always the current one.
                (None, Some(_)) => {
                    let next = after(dir, &last_first, None)?;
                    for f in next.whole {
                        each_in_open(f, true, dir, &mut put)?;
                    }
                    current = next.follow;
                }
                _ => break,
            }
        }
        if let Some(e) = put_err {
            return Err(e.into());
        }
        sink.flush()?;
        if !alive {
            return Ok(());
        }
        // 4. Sleep until the directory changes, or a second passes.
        let mut fds = [rustix::event::PollFd::new(
            &ino,
            rustix::event::PollFlags::IN,
        )];
        let timeout = rustix::event::Timespec::try_from(Duration::from_secs(1))
            .expect("one second is a valid timespec");
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        while rustix::io::read(&ino, &mut events).is_ok_and(|n| n > 0) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::writer::Stream;
    use crate::logs::{LogConfig, LogWriter, Meta};

    fn meta() -> Meta {
        Meta {
            id: "abc".into(),
            name: "t".into(),
            created: "2026-01-01T00:00:00Z".into(),
            keep: 0,
        }
    }

    fn printed(dirs: &[PathBuf], opts: &ReadOptions) -> (String, String) {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        print(
            dirs,
            opts,
            &mut Sink {
                out: &mut o,
                err: &mut e,
                timestamps: false,
            },
        )
        .unwrap();
        (String::from_utf8(o).unwrap(), String::from_utf8(e).unwrap())
    }

    #[test]
    fn times_parse_as_docker_takes_them() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let t = |s| parse_time(s, now).unwrap().to_rfc3339();
        assert_eq!(t("10m"), "2026-12-01T11:50:00+00:00");
        assert_eq!(t("1h30m"), "2026-12-01T10:30:00+00:00");
        assert_eq!(t("2d"), "2026-11-29T12:00:00+00:00");
        assert_eq!(t("1700000000"), "2023-11-14T22:13:20+00:00");
        assert_eq!(t("2026-12-01T10:00:00+01:00"), "2026-12-01T09:00:00+00:00");
        for bad in ["", "10x", "m", "yesterday", "-5", "1h30"] {
            let e = parse_time(bad, now).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn tail_since_until_and_streams_across_rotated_files() {
        let t = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            max_size: 4096,
            max_file: 50,
            ..Default::default()
        };
        let w = LogWriter::open(t.path(), &cfg, &meta()).unwrap();
        for i in 0..500 {
            let s = if i % 2 == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            w.line(s, &format!("n{i}\n"));
        }
        drop(w);
        assert!(files(t.path()).len() > 3, "rotated");
        let dirs = [t.path().to_path_buf()];
        let (o, e) = printed(&dirs, &ReadOptions::default());
        assert_eq!(o.lines().count(), 250);
        assert_eq!(e.lines().count(), 250);
        assert!(o.starts_with("n0\nn2\n") && e.ends_with("n497\nn499\n"));
        let (o, e) = printed(
            &dirs,
            &ReadOptions {
                tail: Some(3),
                ..Default::default()
            },
        );
        assert_eq!((o.as_str(), e.as_str()), ("n498\n", "n497\nn499\n"));
        // --since / --until against the entries' own times.
        let all = read_entries(t.path()).unwrap();
        let at = |i: usize| {
            DateTime::parse_from_rfc3339(&all[i].time)
                .unwrap()
                .with_timezone(&Utc)
        };
        let (o, e) = printed(
            &dirs,
            &ReadOptions {
                since: Some(at(100)),
                until: Some(at(400)),
                ..Default::default()
            },
        );
        let n = o.lines().count() + e.lines().count();
        let want = all
            .iter()
            .filter(|x| x.time >= all[100].time && x.time < all[400].time)
            .count();
        assert_eq!(n, want);
        assert!((1..=300).contains(&n), "{n}");
        let (o, _) = printed(
            &dirs,
            &ReadOptions {
                tail: Some(1),
                ..Default::default()
            },
        );
        assert_eq!(o, "");
    }

    #[test]
    fn follow_waits_for_a_log_not_made_yet() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("later");
        let writer = {
            let dir = dir.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                let w = LogWriter::open(&dir, &LogConfig::default(), &meta()).unwrap();
                w.line(Stream::Stdout, "hello\n");
            })
        };
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let mut sink = Sink {
            out: &mut o,
            err: &mut e,
            timestamps: false,
        };
        let mut polls = 0;
        follow(&dir, &ReadOptions::default(), &mut sink, || {
            polls += 1;
            !writer.is_finished() || polls < 2
        })
        .unwrap();
        assert_eq!(String::from_utf8(o).unwrap(), "hello\n");
    }

    #[test]
    fn follow_sees_every_entry_across_rotations() {
        follow_across_rotations(false);
    }

    #[test]
    fn follow_sees_every_entry_across_compressed_rotations() {
        follow_across_rotations(true);
    }

    fn follow_across_rotations(compress: bool) {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().to_path_buf();
        let cfg = LogConfig {
            max_size: 16 * 1024,
            max_file: 100,
            compress,
            ..Default::default()
        };
        let w = LogWriter::open(&dir, &cfg, &meta()).unwrap();
        w.line(Stream::Stdout, "before\n");
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (w, done) = (w.clone(), done.clone());
            std::thread::spawn(move || {
                for i in 0..20_000 {
                    w.line(Stream::Stdout, &format!("{i}\n"));
                }
                done.store(true, std::sync::atomic::Ordering::SeqCst);
            })
        };
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let mut sink = Sink {
            out: &mut o,
            err: &mut e,
            timestamps: false,
        };
        follow(&dir, &ReadOptions::default(), &mut sink, || {
            !done.load(std::sync::atomic::Ordering::SeqCst)
        })
        .unwrap();
        writer.join().unwrap();
        let o = String::from_utf8(o).unwrap();
        let mut lines = o.lines();
        assert_eq!(lines.next(), Some("before"));
        for (i, l) in lines.enumerate() {
            assert_eq!(l, i.to_string());
        }
        assert_eq!(o.lines().count(), 20_001);
        assert!(files(&dir).len() > 5);
        assert_eq!(
            files(&dir)
                .iter()
                .any(|f| f.extension().is_some_and(|e| e == "gz")),
            compress
        );
    }
}
