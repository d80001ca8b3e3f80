//! `frun backup`, `frun restore`, `frun backups`, end to end: the family app image
//! (busybox httpd + sqlite3, as uid 1000) in a stack with two named volumes, the real
//! binary, the test run's network namespace. Writers inside the app insert rows as fast
//! as sqlite3 lets them while backups are taken; what a restore brings back is read
//! from the host with sqlite (integrity_check, and every row committed before the
//! backup began).

use crate::common::*;
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The family app with two volumes: `bkdb` (its sqlite databases, /var/db) and
/// `bkfiles` (plain files, /var/files).
pub(crate) struct Stack {
    pub(crate) dir: PathBuf,
    port: u16,
}

impl Stack {
    fn new(f: &Frun, reg: &str) -> Stack {
        Stack::with(f, reg, "")
    }

    /// With more of the file (e.g. a `[backup]` section) at its end.
    pub(crate) fn with(f: &Frun, reg: &str, extra: &str) -> Stack {
        let dir = f.dir.path().join("stack");
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        std::fs::write(
            dir.join("frun.toml"),
            format!(
                r#"name = "bk"

[app]
image = "{reg}/family/app:v1"
port = 8080
ports = ["127.0.0.1:{port}:8080"]
stop_grace = "1s"

[app.health]
http = "/"
interval = "200ms"

[data]
volumes = ["bkdb:/var/db", "bkfiles:/var/files"]
{extra}"#
            ),
        )
        .unwrap();
        Stack { dir, port }
    }

    pub(crate) fn file(&self) -> String {
        self.dir.join("frun.toml").display().to_string()
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub(crate) fn visit(&self) -> u64 {
        eventually_for(20, "a visit", || http_get(&self.addr(), "/cgi-bin/visit"))
            .trim()
            .parse()
            .unwrap()
    }
}

pub(crate) fn volume(f: &Frun, name: &str) -> PathBuf {
    f.root().join("volumes").join(name).join("_data")
}

/// A read of a live database from the host (sqlite's locks hold across the mount
/// namespaces: same inode), retried while sqlite says busy or locked (a read-only
/// connection can be told SQLITE_BUSY without its busy handler, e.g. while the writer's
/// connection recovers the WAL index); any other error, or busy for 30 s, fails the
/// test with sqlite's message.
fn read_db<T>(db: &Path, sql: &str, row: impl Fn(&rusqlite::Row) -> rusqlite::Result<T>) -> T {
    let try_once = || -> rusqlite::Result<T> {
        let c = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        c.busy_timeout(Duration::from_secs(10))?;
        c.query_row(sql, [], &row)
    };
    let start = std::time::Instant::now();
    loop {
        match try_once() {
            Ok(v) => return v,
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && start.elapsed() < Duration::from_secs(30) =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{}: {sql}: {e}", db.display()),
        }
    }
}

fn query(db: &Path, sql: &str) -> i64 {
    read_db(db, sql, |r| r.get::<_, Option<i64>>(0)).unwrap_or(0)
}

fn integrity(db: &Path) -> String {
    read_db(db, "PRAGMA integrity_check", |r| r.get::<_, String>(0))
}

/// Starts `sqlite3` in the app inserting rows 1, 2, 3... into `db` (a table `t`), each
/// its own transaction, as fast as it goes, until /tmp/stop exists in the container.
fn start_writer(f: &Frun, db: &str, wal: bool) -> std::process::Child {
    let mode = if wal { "PRAGMA journal_mode=WAL;" } else { "" };
    f.ok(&[
        "exec",
        "bk-app.1",
        "sqlite3",
        db,
        &format!(
            "{mode} CREATE TABLE t(id INTEGER PRIMARY KEY, at TEXT DEFAULT CURRENT_TIMESTAMP);"
        ),
    ]);
    let script = format!(
        "{{ echo '.timeout 20000'; i=0; while [ ! -e /tmp/stop ]; do i=$((i+1)); echo \"INSERT INTO t(id) VALUES($i);\"; done; }} | sqlite3 -bail {db}"
    );
    f.command(&["exec", "bk-app.1", "sh", "-c", &script])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

pub(crate) fn up(f: &Frun, s: &Stack) {
    f.ok(&["up", "-f", &s.file()]);
}

/// What every restored database must hold: rows 1..=n all there, nothing broken.
fn assert_holds(db: &Path, n: i64) {
    assert_eq!(integrity(db), "ok", "{}", db.display());
    let have = query(db, &format!("SELECT count(*) FROM t WHERE id <= {n}"));
    assert_eq!(
        have,
        n,
        "{}: rows committed before the backup began",
        db.display()
    );
}

#[test]
fn backups_while_writers_insert_restore_every_committed_row() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let s = Stack::new(&f, &reg);
    up(&f, &s);
    assert_eq!(s.visit(), 1);
    std::fs::write(volume(&f, "bkfiles").join("note.txt"), "first note\n").unwrap();

    // 1. Two writers: one database in rollback-journal mode, one in WAL mode.
    let db = volume(&f, "bkdb");
    let mut writers = vec![
        start_writer(&f, "/var/db/journal.sqlite3", false),
        start_writer(&f, "/var/db/wal.sqlite3", true),
    ];
    let names = ["journal.sqlite3", "wal.sqlite3"];
    wait_for(30, "rows from both writers", || {
        names
            .iter()
            .all(|n| query(&db.join(n), "SELECT max(id) FROM t") > 200)
            .then_some(())
    });

    // 2. Backups while they write; what was committed before each began, noted.
    let file = s.file();
    let mut taken = Vec::new();
    for _ in 0..3 {
        let before: Vec<i64> = names
            .iter()
            .map(|n| query(&db.join(n), "SELECT max(id) FROM t"))
            .collect();
        let b: Value =
            serde_json::from_str(&f.ok(&["backup", "-f", &file, "--format", "json"])).unwrap();
        assert_eq!(b["databases"], 3, "{b}");
        assert_eq!(b["verification"], "written", "{b}");
        taken.push((b["name"].as_str().unwrap().to_string(), before));
    }
    for w in &writers {
        assert!(alive(w.id() as i32), "a writer died during the backups");
    }
    let grown: Vec<i64> = names
        .iter()
        .map(|n| query(&db.join(n), "SELECT max(id) FROM t"))
        .collect();
    assert!(
        grown.iter().zip(&taken[0].1).all(|(a, b)| a > b),
        "the writers kept writing during the backups: {grown:?} vs {:?}",
        taken[0].1
    );

    // 3. The list has them, newest last.
    let list: Vec<Value> =
        serde_json::from_str(&f.ok(&["backups", "-f", &file, "--format", "json"])).unwrap();
    let listed: Vec<&str> = list.iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(
        listed,
        taken.iter().map(|t| t.0.as_str()).collect::<Vec<_>>()
    );
    let table = f.ok(&["backups", "-f", &file]);
    assert!(
        table.contains("written") && table.contains("local"),
        "{table}"
    );

    // 4. Each restored: integrity_check passes and every row committed before it began
    //    is there; the app answers on the restored data; the other volume came back too.
    std::fs::write(volume(&f, "bkfiles").join("note.txt"), "changed later\n").unwrap();
    for (name, before) in &taken {
        let out = f.ok(&["restore", "-f", &file, name, "--no-safety-backup"]);
        assert!(out.contains("App running: bk-app."), "{out}");
        for (n, rows) in names.iter().zip(before) {
            assert_holds(&db.join(n), *rows);
        }
        assert_eq!(integrity(&db.join("production.sqlite3")), "ok");
        assert_eq!(
            read(&volume(&f, "bkfiles").join("note.txt")),
            "first note\n"
        );
        assert!(s.visit() >= 2);
    }
    for w in &mut writers {
        let _ = w.wait();
    }

    // 5. The owner of the volume root and of the files is the app's (uid 1000): it writes.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&db).unwrap().uid(), 1000);
    assert_eq!(
        std::fs::metadata(db.join("production.sqlite3"))
            .unwrap()
            .uid(),
        1000
    );
    f.ok(&["down", "-f", &file]);
}

#[test]
fn a_backup_past_the_freeze_bound_fails_and_thaws_the_app() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let s = Stack::new(&f, &reg);
    up(&f, &s);
    assert_eq!(s.visit(), 1);
    // 64 MB of plain file: its copy takes longer than 1 ms whatever the disk. Changed
    // "later than now", as a file that keeps changing would be: not copied before the
    // freeze (see the pre-copy below), so while frozen.
    let big: Vec<u8> = (0..64u32 << 20).map(|i| (i % 253) as u8).collect();
    let big_path = volume(&f, "bkfiles").join("big.bin");
    std::fs::write(&big_path, &big).unwrap();
    let set_mtime = |t: std::time::SystemTime| {
        std::fs::File::options()
            .write(true)
            .open(&big_path)
            .unwrap()
            .set_modified(t)
            .unwrap()
    };
    set_mtime(std::time::SystemTime::now() + Duration::from_secs(3600));
    let file = s.file();
    let err = f.fails(&["backup", "-f", &file, "--freeze-max", "1ms"]);
    assert!(err.contains("freeze bound"), "{err}");
    assert!(err.contains("thawed"), "{err}");

    // The app is thawed (its cgroup says so, and it answers), nothing was left behind.
    let inspect: Value = serde_json::from_str(&f.ok(&["inspect", "bk-app.1"])).unwrap();
    let cg = inspect[0]["record"]["cgroup"].as_str().unwrap().to_string();
    let v1 = Path::new("/sys/fs/cgroup/freezer").join(cg.trim_start_matches('/'));
    if v1.join("freezer.state").exists() {
        assert_eq!(read(&v1.join("freezer.state")).trim(), "THAWED");
    } else {
        let v2 = Path::new("/sys/fs/cgroup").join(cg.trim_start_matches('/'));
        assert!(read(&v2.join("cgroup.events")).contains("frozen 0"));
    }
    assert_eq!(s.visit(), 2);
    let dir = f.root().join("backups/bk");
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lock")
        .collect();
    assert!(left.is_empty(), "left in {}: {left:?}", dir.display());

    // With room enough, the same backup succeeds and says how long the app was frozen,
    // and how many files it copied frozen: the big file, which changes "later".
    let backup = || -> Value {
        serde_json::from_str(&f.ok(&["backup", "-f", &file, "--format", "json"])).unwrap()
    };
    let b = backup();
    assert_eq!(b["files"].as_u64().unwrap(), 2, "{b}");
    assert!(b["timings"]["frozen_ms"].is_u64(), "{b}");
    assert_eq!(b["timings"]["frozen_files"].as_u64(), Some(1), "{b}");

    // A file left alone for a while is copied before the freeze, not while frozen
    // (its last change more than a second before the backup: see backup::precopy);
    // and the archive holds it all the same.
    set_mtime(std::time::SystemTime::now() - Duration::from_secs(3600));
    std::thread::sleep(Duration::from_millis(1500));
    let b = backup();
    assert_eq!(b["timings"]["frozen_files"].as_u64(), Some(0), "{b}");
    let name = b["name"].as_str().unwrap().to_string();
    std::fs::write(&big_path, b"changed after the backup").unwrap();
    f.ok(&["restore", "-f", &file, &name, "--no-safety-backup"]);
    assert!(
        std::fs::read(&big_path).unwrap() == big,
        "the restored big.bin differs"
    );
    assert_eq!(s.visit(), 3);
    f.ok(&["down", "-f", &file]);
}

#[test]
fn a_damaged_archive_is_refused_and_the_live_data_stays() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let s = Stack::new(&f, &reg);
    up(&f, &s);
    assert_eq!(s.visit(), 1);
    let file = s.file();
    let b: Value =
        serde_json::from_str(&f.ok(&["backup", "-f", &file, "--format", "json"])).unwrap();
    let name = b["name"].as_str().unwrap().to_string();
    assert_eq!(s.visit(), 2);
    let dir = f.root().join("backups/bk");
    let archive = dir.join(format!("{name}.tar.zst"));
    let good = std::fs::read(&archive).unwrap();
    let live = volume(&f, "bkdb").join("production.sqlite3");
    let app_pid = || -> Value {
        let v: Value = serde_json::from_str(&f.ok(&["inspect", "bk-app.1"])).unwrap();
        v[0]["state"]["pid"].clone()
    };
    let pid_before = app_pid();
    assert!(pid_before.is_i64());

    let mut corrupt = good.clone();
    corrupt[good.len() / 2] ^= 0x01;
    let cases: [(&str, Vec<u8>, bool); 4] = [
        ("one byte changed", corrupt.clone(), true),
        ("one byte changed, no summary", corrupt, false),
        ("cut short", good[..good.len() * 2 / 3].to_vec(), true),
        (
            "cut short, no summary",
            good[..good.len() - 7].to_vec(),
            false,
        ),
    ];
    let summary = dir.join(format!("{name}.json"));
    let summary_text = std::fs::read(&summary).unwrap();
    for (what, bytes, keep_summary) in cases {
        std::fs::write(&archive, &bytes).unwrap();
        if keep_summary {
            std::fs::write(&summary, &summary_text).unwrap();
        } else {
            let _ = std::fs::remove_file(&summary);
        }
        let err = f.fails(&["restore", "-f", &file, &name]);
        assert!(err.contains("refused"), "{what}: {err}");
        assert!(err.contains("live data was not touched"), "{what}: {err}");
        // Live data as it was, the app never stopped, nothing staged left.
        assert_eq!(query(&live, "SELECT count(*) FROM visits"), 2, "{what}");
        assert_eq!(app_pid(), pid_before, "{what}");
        assert!(!f.root().join("volumes/bkdb/_restore").exists(), "{what}");
        assert!(!dir.join("restore.json").exists(), "{what}");
        // The list says so.
        let list: Vec<Value> =
            serde_json::from_str(&f.ok(&["backups", "-f", &file, "--format", "json"])).unwrap();
        assert_eq!(list[0]["verification"], "failed", "{what}: {list:?}");
    }
    // The archive as written restores: the one visit it holds.
    std::fs::write(&archive, &good).unwrap();
    std::fs::write(&summary, &summary_text).unwrap();
    f.ok(&["restore", "-f", &file, &name]);
    assert_eq!(query(&live, "SELECT count(*) FROM visits"), 1);
    let list: Vec<Value> =
        serde_json::from_str(&f.ok(&["backups", "-f", &file, "--format", "json"])).unwrap();
    assert_eq!(list[0]["verification"], "verified", "{list:?}");
    assert_eq!(
        list[1]["reason"], "pre-restore",
        "the safety backup: {list:?}"
    );
    f.ok(&["down", "-f", &file]);
}

/// A restore killed at each point (a test hook SIGKILLs frun there) leaves all old or
/// all new data across both volumes, and the next `frun up` finishes or undoes it.
#[test]
fn a_restore_killed_at_any_point_leaves_old_or_new_data_and_up_repairs_it() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let s = Stack::new(&f, &reg);
    up(&f, &s);
    let file = s.file();
    let notes = volume(&f, "bkfiles").join("note.txt");
    let live = volume(&f, "bkdb").join("production.sqlite3");
    // The backup holds 1 visit and note "new".
    assert_eq!(s.visit(), 1);
    std::fs::write(&notes, "new\n").unwrap();
    let b: Value =
        serde_json::from_str(&f.ok(&["backup", "-f", &file, "--format", "json"])).unwrap();
    let name = b["name"].as_str().unwrap().to_string();

    let state = || -> (i64, String) {
        let v = volume(&f, "bkdb").join("production.sqlite3");
        (
            query(&v, "SELECT count(*) FROM visits"),
            read(&volume(&f, "bkfiles").join("note.txt")),
        )
    };
    for (point, restored) in [
        ("staged", false),
        ("stopped", false),
        ("swapped-1", true),
        ("cleaned", true),
    ] {
        // The live data differs from the backup: more visits, another note.
        let now = s.visit();
        assert!(now >= 2);
        std::fs::write(volume(&f, "bkfiles").join("note.txt"), "old\n").unwrap();
        let old = state();
        let out = f
            .command(&["restore", "-f", &file, &name, "--no-safety-backup"])
            .env("FRUN_TEST_STOP_AT", format!("restore.{point}"))
            .output()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(9), "{point}: {out:?}");
        // The next up finishes or undoes it; the app serves again.
        let up_out = f.run(&["up", "-f", &file]);
        assert!(up_out.status.success(), "{point}: {up_out:?}");
        let got = state();
        if restored {
            assert_eq!(got, (1, "new\n".to_string()), "{point}");
        } else {
            assert_eq!(got, old, "{point}");
        }
        assert_eq!(integrity(&live), "ok", "{point}");
        for v in ["bkdb", "bkfiles"] {
            assert!(
                !f.root().join("volumes").join(v).join("_restore").exists(),
                "{point}: {v}"
            );
        }
        assert!(
            !f.root().join("backups/bk/restore.json").exists(),
            "{point}"
        );
        assert!(
            s.visit() > got.0 as u64,
            "{point}: the app serves on the data"
        );
    }
    f.ok(&["down", "-f", &file]);
}

/// Encrypted to a public key (from `[backup]`) and with a passphrase (flag); retention
/// after success; every wrong or missing key refused with the live data untouched; no
/// secret ever printed.
#[test]
fn encrypted_backups_open_only_with_their_key_and_retention_keeps_the_newest() {
    use age::secrecy::ExposeSecret;
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let id = age::x25519::Identity::generate();
    let secret = id.to_string().expose_secret().to_string();
    let keys = f.dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let key = keys.join("backup.key");
    std::fs::write(&key, format!("{secret}\n")).unwrap();
    let wrong = keys.join("wrong.key");
    std::fs::write(
        &wrong,
        format!(
            "{}\n",
            age::x25519::Identity::generate()
                .to_string()
                .expose_secret()
        ),
    )
    .unwrap();
    let pass = keys.join("pass");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let bad_pass = keys.join("bad-pass");
    std::fs::write(&bad_pass, "incorrect horse\n").unwrap();
    let s = Stack::with(
        &f,
        &reg,
        &format!(
            "\n[backup]\nkeep = 2\nrecipients = [\"{}\"]\n",
            id.to_public()
        ),
    );
    up(&f, &s);
    let file = s.file();
    let live = volume(&f, "bkdb").join("production.sqlite3");
    let printed = std::cell::RefCell::new(String::new());
    let run_ok = |args: &[&str]| {
        let out = f.run(args);
        printed.borrow_mut().push_str(&text(&out.stdout));
        printed.borrow_mut().push_str(&text(&out.stderr));
        assert!(out.status.success(), "{args:?}: {out:?}");
        text(&out.stdout)
    };

    // 1. Three backups (1, 2, 3 visits): retention keeps the newest two, each sealed.
    let mut names = Vec::new();
    for i in 1..=3 {
        assert_eq!(s.visit(), i);
        let b: Value =
            serde_json::from_str(&run_ok(&["backup", "-f", &file, "--format", "json"])).unwrap();
        assert_eq!(b["encrypted"], true, "{b}");
        names.push(b["name"].as_str().unwrap().to_string());
        if i == 3 {
            assert_eq!(b["removed"], serde_json::json!([names[0]]), "{b}");
        }
    }
    let dir = f.root().join("backups/bk");
    assert!(!dir.join(format!("{}.tar.zst.age", names[0])).exists());
    let sealed = dir.join(format!("{}.tar.zst.age", names[2]));
    assert!(std::fs::read(&sealed)
        .unwrap()
        .starts_with(b"age-encryption.org/v1\n"));
    let list: Vec<Value> =
        serde_json::from_str(&run_ok(&["backups", "-f", &file, "--format", "json"])).unwrap();
    assert_eq!(list.len(), 2, "{list:?}");

    // 2. Refused without the key, with another key: live data (3 visits) untouched.
    assert_eq!(s.visit(), 4);
    for (extra, why) in [
        (vec![], "--identity"),
        (vec!["--identity", wrong.to_str().unwrap()], "another key"),
    ] {
        let mut args = vec!["restore", "-f", &file, &names[1], "--no-safety-backup"];
        args.extend(extra);
        let out = f.run(&args);
        printed.borrow_mut().push_str(&text(&out.stderr));
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(err.contains(why) && err.contains("refused"), "{err}");
        assert_eq!(query(&live, "SELECT count(*) FROM visits"), 4);
    }
    // With it: the backup's 2 visits are back.
    run_ok(&[
        "restore",
        "-f",
        &file,
        &names[1],
        "--identity",
        key.to_str().unwrap(),
    ]);
    assert_eq!(query(&live, "SELECT count(*) FROM visits"), 2);

    // 3. A passphrase (flag) instead: the wrong one refused, the right one opens.
    let b: Value = serde_json::from_str(&run_ok(&[
        "backup",
        "-f",
        &file,
        "--passphrase-file",
        pass.to_str().unwrap(),
        "--format",
        "json",
    ]))
    .unwrap();
    let name = b["name"].as_str().unwrap().to_string();
    assert_eq!(s.visit(), 3);
    let out = f.run(&[
        "restore",
        "-f",
        &file,
        &name,
        "--no-safety-backup",
        "--passphrase-file",
        bad_pass.to_str().unwrap(),
    ]);
    printed.borrow_mut().push_str(&text(&out.stderr));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("wrong passphrase"), "{out:?}");
    assert_eq!(query(&live, "SELECT count(*) FROM visits"), 3);
    run_ok(&[
        "restore",
        "-f",
        &file,
        &name,
        "--no-safety-backup",
        "--passphrase-file",
        pass.to_str().unwrap(),
    ]);
    assert_eq!(query(&live, "SELECT count(*) FROM visits"), 2);

    // 4. Nothing printed a secret.
    for secret in [secret.as_str(), "correct horse", "incorrect horse"] {
        assert!(!printed.borrow().contains(secret), "a secret was printed");
    }
    f.ok(&["down", "-f", &file]);
}

/// Debian's sshd on the test netns's loopback, root's key login only, and an ssh_config
/// (host alias `backuphost`, its host key pinned) for frun's sftp (`FRUN_SSH_CONFIG`).
struct Sshd {
    child: std::process::Child,
    config: PathBuf,
}

impl Sshd {
    fn start(dir: &Path) -> Option<Sshd> {
        if !Path::new("/usr/sbin/sshd").exists() {
            unavailable("no /usr/sbin/sshd: scripts/install-packages.sh scripts/packages/test.txt installs openssh-server");
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let keygen = |path: &Path| {
            let out = std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(path)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        };
        let host_key = dir.join("host_key");
        let user_key = dir.join("user_key");
        keygen(&host_key);
        keygen(&user_key);
        std::fs::copy(dir.join("user_key.pub"), dir.join("authorized_keys")).unwrap();
        let port = free_port();
        let cfg = dir.join("sshd_config");
        std::fs::write(
            &cfg,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nAuthorizedKeysFile {ak}\nPidFile {pid}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n",
                hk = host_key.display(),
                ak = dir.join("authorized_keys").display(),
                pid = dir.join("sshd.pid").display(),
            ),
        )
        .unwrap();
        // sshd's privilege separation directory (Debian's unit makes it at boot).
        std::fs::create_dir_all("/run/sshd").unwrap();
        let child = std::process::Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        let host_pub = read(&dir.join("host_key.pub"));
        let known = dir.join("known_hosts");
        std::fs::write(&known, format!("[127.0.0.1]:{port} {host_pub}")).unwrap();
        let config = dir.join("ssh_config");
        std::fs::write(
            &config,
            format!(
                "Host backuphost\n  HostName 127.0.0.1\n  Port {port}\n  User root\n  IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {known}\n  StrictHostKeyChecking yes\n  BatchMode yes\n",
                key = user_key.display(),
                known = known.display()
            ),
        )
        .unwrap();
        wait_for(10, "sshd listening", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Some(Sshd { child, config })
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An S3 server that checks SigV4 signatures: s3s-fs (crates.io; `scripts/install-test-tools.sh`
/// builds it into `FRUN_TEST_TOOLS`, default /var/cache/frun-test-tools), over a directory.
struct S3Server {
    child: std::process::Child,
    port: u16,
}

const S3_KEY: &str = "frun-test-key";
const S3_SECRET: &str = "frun-test-secret-0123456789";

impl S3Server {
    fn start(dir: &Path) -> Option<S3Server> {
        let tools = std::env::var("FRUN_TEST_TOOLS")
            .unwrap_or_else(|_| "/var/cache/frun-test-tools".into());
        let bin = Path::new(&tools).join("bin/s3s-fs");
        if !bin.exists() {
            unavailable(&format!(
                "no {}: scripts/install-test-tools.sh builds the S3 test server (s3s-fs)",
                bin.display()
            ));
            return None;
        }
        std::fs::create_dir_all(dir.join("bucket")).unwrap();
        let port = free_port();
        let child = std::process::Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", S3_KEY, "--secret-key", S3_SECRET])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.with_extension("log")).unwrap())
            .spawn()
            .unwrap();
        wait_for(10, "s3s-fs listening", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Some(S3Server { child, port })
    }

    fn url(&self) -> String {
        format!("s3://bucket/frun?endpoint=http://127.0.0.1:{}", self.port)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 40 MB that do not compress (so the archive goes up to S3 in parts).
fn noise(path: &Path, bytes: usize) {
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut data = Vec::with_capacity(bytes);
    while data.len() < bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(path, data).unwrap();
}

fn sha256_of(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// A destination kind's round trip: a stack with 1 visit and 40 MB of noise backed up
/// `--to` the destination, listed there, then restored `--from` it into a fresh state
/// root (up first, as on a new machine) with the data and the app back.
fn round_trip(reg: &str, dest: &str, env: &dyn Fn(Frun) -> Frun) {
    let f = env(Frun::new());
    let s = Stack::new(&f, reg);
    up(&f, &s);
    let file = s.file();
    assert_eq!(s.visit(), 1);
    let big = volume(&f, "bkfiles").join("big.bin");
    noise(&big, 40 << 20);
    let big_sha = sha256_of(&big);
    let b: Value =
        serde_json::from_str(&f.ok(&["backup", "-f", &file, "--to", dest, "--format", "json"]))
            .unwrap();
    let name = b["name"].as_str().unwrap().to_string();
    assert!(
        b["size"].as_u64().unwrap() > 32 << 20,
        "above the multipart size: {b}"
    );
    assert_eq!(
        b["destinations"],
        serde_json::json!([dest.split('?').next().unwrap()]),
        "{b}"
    );
    let remote: Vec<Value> =
        serde_json::from_str(&f.ok(&["backups", "-f", &file, "--from", dest, "--format", "json"]))
            .unwrap();
    assert_eq!(remote.len(), 1, "{dest}: {remote:?}");
    assert_eq!(remote[0]["name"], name.as_str());
    assert_eq!(remote[0]["size"], b["size"]);
    assert_eq!(remote[0]["here"], true);
    f.ok(&["down", "-f", &file]);

    let g = env(Frun::new());
    let s2 = Stack::new(&g, reg);
    up(&g, &s2);
    let out = g.ok(&["restore", "-f", &s2.file(), "--from", dest, "latest"]);
    assert!(out.contains(&format!("Restored {name}")), "{dest}: {out}");
    let live = volume(&g, "bkdb").join("production.sqlite3");
    assert_eq!(query(&live, "SELECT count(*) FROM visits"), 1, "{dest}");
    assert_eq!(
        sha256_of(&volume(&g, "bkfiles").join("big.bin")),
        big_sha,
        "{dest}"
    );
    assert_eq!(s2.visit(), 2, "{dest}: the app serves the restored data");
    let list: Vec<Value> =
        serde_json::from_str(&g.ok(&["backups", "-f", &s2.file(), "--format", "json"])).unwrap();
    let fetched = list.iter().find(|b| b["name"] == name.as_str()).unwrap();
    assert_eq!(fetched["verification"], "verified", "{dest}: {fetched}");
    g.ok(&["down", "-f", &s2.file()]);
}

/// Through Debian's sshd and the system's sftp (keys and known_hosts from an ssh_config).
#[test]
fn a_backup_copied_over_sftp_restores_on_a_fresh_state_root() {
    let Some(reg) = registry() else { return };
    let work = tempfile::Builder::new()
        .prefix("frun-sftp-")
        .tempdir()
        .unwrap();
    let Some(sshd) = Sshd::start(&work.path().join("ssh")) else {
        return;
    };
    let dest = format!("sftp://backuphost{}", work.path().join("remote").display());
    round_trip(&reg, &dest, &|f: Frun| {
        f.env("FRUN_SSH_CONFIG", sshd.config.to_str().unwrap())
    });
}

/// Through an S3 server that checks SigV4 (the archive goes up in parts); a wrong
/// secret is refused by the server, and frun says the archive stayed here.
#[test]
fn a_backup_copied_to_s3_restores_on_a_fresh_state_root() {
    let Some(reg) = registry() else { return };
    let work = tempfile::Builder::new()
        .prefix("frun-s3-")
        .tempdir()
        .unwrap();
    let Some(s3) = S3Server::start(&work.path().join("s3")) else {
        return;
    };
    let env = |f: Frun| {
        f.env("AWS_ACCESS_KEY_ID", S3_KEY)
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    };
    round_trip(&reg, &s3.url(), &env);

    let f = env(Frun::new()).env("AWS_SECRET_ACCESS_KEY", "not-the-secret");
    let s = Stack::new(&f, &reg);
    up(&f, &s);
    let err = f.fails(&["backup", "-f", &s.file(), "--to", &s3.url()]);
    assert!(
        err.contains("is written here") && err.contains("403"),
        "{err}"
    );
    f.ok(&["down", "-f", &s.file()]);
}
