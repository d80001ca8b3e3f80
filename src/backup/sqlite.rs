//! sqlite databases on a volume: found by their header, copied while the app writes
//! with sqlite's online backup API, and checked with `PRAGMA integrity_check`.
//!
//! The copy is one `sqlite3_backup_step(-1)`: one read transaction over the whole
//! database, so the copy is the database as one commit left it. In WAL mode a reader
//! never blocks the writer, so the app does not wait at all; in rollback-journal mode
//! the writer waits (its own busy timeout) while the pages are copied. Copying in
//! smaller steps would let a busy writer restart the copy forever (sqlite restarts a
//! step-wise backup whenever another connection writes), so it is not done.
//!
//! The source is opened read-only: this connection never writes to, checkpoints or
//! deletes anything of the live database (the app's files stay the app's).

use anyhow::{bail, Context};
use rusqlite::{backup::StepResult, Connection, OpenFlags};
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

/// The first 16 bytes of every sqlite 3 database file.
const HEADER: &[u8; 16] = b"SQLite format 3\0";

/// How long the backup waits for a lock (each attempt) and at most overall.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY_BOUND: Duration = Duration::from_secs(60);

/// Whether `path` is a sqlite database: its header, or (a new WAL-mode database whose
/// pages are all in its log still) an empty file beside a `-wal` file with a WAL header.
pub fn is_database(path: &Path) -> bool {
    let mut head = [0u8; 16];
    let read = std::fs::File::open(path).and_then(|mut f| f.read(&mut head));
    match read {
        Ok(16) => &head == HEADER,
        Ok(0) => {
            let mut wal = path.as_os_str().to_owned();
            wal.push("-wal");
            let mut magic = [0u8; 4];
            std::fs::File::open(Path::new(&wal))
                .and_then(|mut f| f.read_exact(&mut magic))
                .is_ok()
                && (magic == [0x37, 0x7f, 0x06, 0x82] || magic == [0x37, 0x7f, 0x06, 0x83])
        }
        _ => false,
    }
}

/// The files sqlite keeps beside a database while it is open: never copied (the online
/// backup has their content), never restored.
pub const COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// Copies the live database `src` to the new scratch file `dst` (which must not exist)
/// with the online backup API, retrying while the database is locked (bounded). The
/// caller checks the copy ([`integrity_check`]) and makes durable what it keeps.
pub fn copy(src: &Path, dst: &Path) -> anyhow::Result<()> {
    // 1. The live database, read-only, waiting for locks as the app's writers do.
    let source = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening the database {}", src.display()))?;
    source.busy_timeout(BUSY_TIMEOUT)?;
    let mut dest = Connection::open_with_flags(
        dst,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("creating {}", dst.display()))?;
    // A scratch copy: no journal, no fsync (the archive made from it is what is made
    // durable). With them, sqlite's commit of the copy wrote and synced it twice.
    dest.execute_batch("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;")
        .with_context(|| format!("setting up {}", dst.display()))?;

    // 2. One step over every page, retried while busy or locked, within the bound.
    let deadline = Instant::now() + RETRY_BOUND;
    {
        let backup = rusqlite::backup::Backup::new(&source, &mut dest)
            .with_context(|| format!("starting the online backup of {}", src.display()))?;
        loop {
            match backup
                .step(-1)
                .with_context(|| format!("online backup of {}", src.display()))?
            {
                StepResult::Done => break,
                StepResult::More => continue,
                StepResult::Busy | StepResult::Locked => {
                    if Instant::now() > deadline {
                        bail!(
                            "online backup of {}: the database stayed locked for {} s",
                            src.display(),
                            RETRY_BOUND.as_secs()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => continue,
            }
        }
    }
    dest.close()
        .map_err(|(_, e)| e)
        .with_context(|| format!("closing {}", dst.display()))?;
    drop(source);

    Ok(())
}

/// The journal mode of the database at `path` (`wal`, `delete`, ...), lowercase.
pub fn journal_mode(path: &Path) -> anyhow::Result<String> {
    let db = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening the database {}", path.display()))?;
    db.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = db
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .with_context(|| format!("reading the journal mode of {}", path.display()))?;
    Ok(mode.to_ascii_lowercase())
}

/// `PRAGMA integrity_check` of a database file nobody else uses (opened immutable:
/// no lock, no `-wal` or `-shm` made beside it).
pub fn integrity_check(path: &Path) -> anyhow::Result<()> {
    let uri = format!("file:{}?immutable=1", uri_escape(&path.to_string_lossy()));
    let db = Connection::open_with_flags(
        &uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {}", path.display()))?;
    let mut stmt = db.prepare("PRAGMA integrity_check")?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect())
        .with_context(|| format!("integrity_check of {}", path.display()))?;
    if lines != ["ok"] {
        let shown: Vec<&str> = lines.iter().take(5).map(String::as_str).collect();
        bail!(
            "integrity_check of {} failed: {}",
            path.display(),
            shown.join("; ")
        );
    }
    Ok(())
}

/// A path made safe for a `file:` URI (`%`, `?` and `#` escaped).
fn uri_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' | '?' | '#' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_is_found_by_its_header_and_copied_while_another_connection_writes() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("live.db");
        let w = Connection::open(&src).unwrap();
        w.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
            .unwrap();
        for i in 0..500 {
            w.execute("INSERT INTO t(v) VALUES (?1)", [format!("row {i}")])
                .unwrap();
        }
        assert!(is_database(&src));
        std::fs::write(dir.path().join("notes.txt"), "SQLite format 2 no").unwrap();
        assert!(!is_database(&dir.path().join("notes.txt")));

        // A write transaction open in WAL mode does not stop the copy, nor is it in it.
        w.execute_batch("BEGIN; INSERT INTO t(v) VALUES ('uncommitted');")
            .unwrap();
        let dst = dir.path().join("copy.db");
        copy(&src, &dst).unwrap();
        integrity_check(&dst).unwrap();
        w.execute_batch("COMMIT").unwrap();
        let c = Connection::open(&dst).unwrap();
        let n: i64 = c
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 500);
    }

    #[test]
    fn a_damaged_database_fails_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.db");
        let c = Connection::open(&p).unwrap();
        c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); CREATE INDEX i ON t(v);")
            .unwrap();
        for i in 0..2000 {
            c.execute("INSERT INTO t(v) VALUES (?1)", [format!("value {i}")])
                .unwrap();
        }
        drop(c);
        integrity_check(&p).unwrap();
        // Overwrite the middle of the file (index and table pages) with garbage.
        let mut data = std::fs::read(&p).unwrap();
        let mid = data.len() / 2;
        for b in &mut data[mid..mid + 8192] {
            *b = 0x5a;
        }
        std::fs::write(&p, data).unwrap();
        assert!(integrity_check(&p).is_err());
    }
}
