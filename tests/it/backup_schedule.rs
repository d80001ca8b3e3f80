//! Scheduled backups (`[backup] every`): the supervisor of a real state root makes them
//! on its own, spaced by `every`, with retention; a failed one shows in `frun status`
//! and as an event until a later one succeeds; a supervisor killed with `kill -9` and
//! started again neither loses a due backup nor makes it twice. The stack is the family
//! app of `backup.rs` (two named volumes).

use crate::backup::{up, Stack};
use crate::common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::time::Duration;

/// The backup events of the state root, oldest first.
pub(crate) fn backup_events(f: &Frun) -> Vec<Value> {
    read_or_empty(&f.root().join("events/events.jsonl"))
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["kind"] == "backup")
        .collect()
}

pub(crate) fn scheduled_ok(f: &Frun) -> Vec<Value> {
    backup_events(f)
        .into_iter()
        .filter(|e| e["attrs"]["reason"] == "scheduled" && e["attrs"]["outcome"] == "ok")
        .collect()
}

fn time(v: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("{v:?}")))
        .unwrap_or_else(|e| panic!("{v:?}: {e}"))
}

/// The names `frun backups` lists.
pub(crate) fn listed(f: &Frun, s: &Stack) -> Vec<String> {
    let rows: Vec<Value> =
        serde_json::from_str(&f.ok(&["backups", "-f", &s.file(), "--format", "json"])).unwrap();
    rows.iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

fn supervisor_pid(f: &Frun) -> Option<i32> {
    let mut s =
        std::os::unix::net::UnixStream::connect(f.dir.path().join("run/supervise.sock")).ok()?;
    writeln!(s, "ping").ok()?;
    let mut a = String::new();
    s.read_to_string(&mut a).ok()?;
    a.trim().strip_prefix("pong ")?.parse().ok()
}

pub(crate) fn supervisor_log(f: &Frun) -> String {
    read_or_empty(&f.dir.path().join("run/supervise.log"))
}

pub(crate) fn schedule(f: &Frun) -> Value {
    serde_json::from_str(&read_or_empty(&f.root().join("backups/bk/schedule.json")))
        .unwrap_or(Value::Null)
}

#[test]
fn the_supervisor_makes_scheduled_backups_spaced_by_every_with_retention() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let s = Stack::with(
        &f,
        &reg,
        "\n[backup]\nevery = \"2s\"\njitter = \"0s\"\nkeep = 2\n",
    );
    up(&f, &s);
    assert_eq!(s.visit(), 1);

    // 1. Three scheduled backups, nobody asking for them.
    let made = wait_for(180, "three scheduled backups", || {
        let e = scheduled_ok(&f);
        (e.len() >= 3).then_some(e)
    });

    // 2. Each began once due, and was due `every` after the previous one began.
    for w in made.windows(2) {
        let (a, b) = (&w[0]["attrs"], &w[1]["attrs"]);
        assert!(time(&b["began"]) >= time(&b["due"]), "{b:?}");
        assert!(
            time(&b["due"]) >= time(&a["began"]) + chrono::Duration::seconds(2),
            "due 2s after the previous began: {a:?} then {b:?}"
        );
    }

    // 3. Retention (keep = 2): the first ones are gone, the newest is there.
    let names = listed(&f, &s);
    for old in &made[..made.len() - 2] {
        let n = old["attrs"]["name"].as_str().unwrap();
        assert!(!names.iter().any(|x| x == n), "{n} kept: {names:?}");
    }
    let newest = made.last().unwrap()["attrs"]["name"].as_str().unwrap();
    assert!(names.iter().any(|x| x == newest), "{newest}: {names:?}");
    let st = schedule(&f);
    assert_eq!(st["outcome"], "ok", "{st}");
    assert!(supervisor_log(&f).contains("scheduled backup made"));

    // 4. The app served throughout.
    assert_eq!(s.visit(), 2);
    f.ok(&["down", "-f", &s.file()]);
}

#[test]
fn a_supervisor_killed_and_restarted_neither_loses_nor_doubles_a_scheduled_backup() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let s = Stack::with(&f, &reg, "");
    up(&f, &s);

    // 1. No supervisor, then a schedule: a backup is due (there is none yet).
    let pid = supervisor_pid(&f).expect("a supervisor after up");
    kill9(pid);
    wait_for(20, "the supervisor to end", || {
        supervisor_pid(&f).is_none().then_some(())
    });
    let file = s.dir.join("frun.toml");
    let text = read(&file);
    std::fs::write(
        &file,
        format!("{text}\n[backup]\nevery = \"1h\"\njitter = \"0s\"\n"),
    )
    .unwrap();
    assert!(listed(&f, &s).is_empty());

    // 2. A new supervisor makes the due backup (not lost); it is killed while that
    //    backup runs (or just after).
    up(&f, &s);
    let st = wait_for(120, "the scheduled attempt to begin", || {
        let st = schedule(&f);
        (!st["running"].is_null() || !st["outcome"].is_null()).then_some(st)
    });
    kill9(supervisor_pid(&f).expect("the second supervisor"));
    wait_for(20, "the supervisor to end", || {
        supervisor_pid(&f).is_none().then_some(())
    });
    let next_due = time(&st["next_due"]);
    assert!(
        next_due >= time(&st["last_attempt"]) + chrono::Duration::hours(1),
        "{st}"
    );

    // 3. A third supervisor: the attempt finishes (its child outlived the supervisor),
    //    and nothing more is made: it was done.
    let scans = supervisor_log(&f)
        .matches("scheduling backups of the stack")
        .count();
    up(&f, &s);
    wait_for(60, "the third supervisor to read the schedule", || {
        (supervisor_log(&f)
            .matches("scheduling backups of the stack")
            .count()
            > scans)
            .then_some(())
    });
    let st = wait_for(120, "the attempt to end", || {
        let st = schedule(&f);
        st["running"].is_null().then_some(st)
    });
    assert_eq!(st["outcome"], "ok", "{st}");
    // More than one rescan of the stacks (every 2 s) for a double to show.
    std::thread::sleep(Duration::from_secs(5));
    let ok = scheduled_ok(&f);
    assert_eq!(ok.len(), 1, "one scheduled backup: {ok:#?}");
    assert_eq!(listed(&f, &s).len(), 1);
    assert_eq!(schedule(&f)["next_due"], st["next_due"]);
    f.ok(&["down", "-f", &s.file()]);
}

/// The app row of `frun status --format json`, and the table.
pub(crate) fn status(f: &Frun, s: &Stack) -> (Value, String) {
    let rows: Vec<Value> =
        serde_json::from_str(&f.ok(&["status", "-f", &s.file(), "--format", "json"])).unwrap();
    let app = rows
        .into_iter()
        .find(|r| r["role"] == "app")
        .expect("an app row");
    (app, f.ok(&["status", "-f", &s.file()]))
}

#[test]
fn a_failed_scheduled_backup_shows_in_status_and_events_until_one_succeeds() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    // The destination is a plain file: no directory can be made there.
    let dest = f.dir.path().join("dest");
    std::fs::write(&dest, "not a directory\n").unwrap();
    let s = Stack::with(
        &f,
        &reg,
        &format!(
            "\n[backup]\nevery = \"2s\"\njitter = \"0s\"\nto = [\"{}\"]\n",
            dest.display()
        ),
    );
    up(&f, &s);

    // 1. Failed: in status (JSON and table), as an event, in the supervisor's log.
    let (app, table) = wait_for(180, "a failed scheduled backup in frun status", || {
        let (app, table) = status(&f, &s);
        (app["backup"]["outcome"] == "failed").then_some((app, table))
    });
    let error = app["backup"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(error.contains(&dest.display().to_string()), "{app:#}");
    assert!(app["backup"]["failures"].as_u64() >= Some(1), "{app:#}");
    assert!(!app["backup"]["next_due"].is_null(), "{app:#}");
    assert!(table.contains("LAST SCHEDULED BACKUP FAILED"), "{table}");
    let list = f.ok(&["backups", "-f", &s.file()]);
    assert!(list.contains("Last scheduled backup FAILED"), "{list}");
    let failed: Vec<Value> = backup_events(&f)
        .into_iter()
        .filter(|e| e["attrs"]["reason"] == "scheduled" && e["attrs"]["outcome"] == "failed")
        .collect();
    assert!(!failed.is_empty(), "{:#?}", backup_events(&f));
    assert!(
        failed[0]["attrs"]["error"]
            .as_str()
            .is_some_and(|e| e.contains(&dest.display().to_string())),
        "{failed:#?}"
    );
    assert!(wait_for(30, "the failure in the supervisor's log", || {
        let log = supervisor_log(&f);
        log.contains("scheduled backup failed").then_some(log)
    })
    .contains("WARN"));

    // 2. The destination fixed: a later scheduled backup succeeds, and the failure
    //    is no longer shown.
    std::fs::remove_file(&dest).unwrap();
    std::fs::create_dir(&dest).unwrap();
    let (app, table) = wait_for(180, "a successful scheduled backup in frun status", || {
        let (app, table) = status(&f, &s);
        (app["backup"]["outcome"] == "ok").then_some((app, table))
    });
    assert!(app["backup"]["error"].is_null(), "{app:#}");
    assert_eq!(app["backup"]["failures"], 0, "{app:#}");
    let name = app["backup"]["last_backup"].as_str().unwrap().to_string();
    assert!(!table.contains("FAILED"), "{table}");
    let list = f.ok(&["backups", "-f", &s.file()]);
    assert!(
        !list.contains("FAILED") && list.contains("Last scheduled backup: ok"),
        "{list}"
    );
    assert!(table.contains(&name), "{table}");
    assert!(
        std::fs::read_dir(dest.join("bk"))
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(&name)),
        "{name} copied to {}",
        dest.display()
    );
    f.ok(&["down", "-f", &s.file()]);
}

/// Runs `frun ARGS` with a deadline: a deadlock fails the test instead of hanging it.
fn ok_within(f: &Frun, secs: u64, args: &[&str]) -> String {
    let mut child = f
        .command(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            assert!(st.success(), "frun {args:?}: {}", text(&out.stderr));
            return text(&out.stdout);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "frun {args:?} did not end within {secs} s (a deadlock?): {}",
                text(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_scheduled_backup_steps_aside_while_the_stack_changes_and_a_swap_with_its_own_backup_never_deadlocks(
) {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    // No published port (a swap needs a proxy for those): the app alone.
    let dir = f.dir.path().join("stack");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("frun.toml").display().to_string();
    std::fs::write(
        &file,
        format!(
            r#"name = "bk"

[app]
image = "{reg}/family/app:v1"
port = 8080
stop_grace = "1s"

[app.health]
http = "/"
interval = "200ms"

[data]
volumes = ["bkdb:/var/db"]

[backup]
every = "2s"
jitter = "0s"
before_swap = true
"#
        ),
    )
    .unwrap();
    f.ok(&["up", "-f", &file]);
    wait_for(120, "a scheduled backup", || {
        (!scheduled_ok(&f).is_empty()).then_some(())
    });

    // 1. The stack's change lock held (as by an up, swap or restore): the scheduled
    //    backup steps aside, none is made, and it comes once the lock is free.
    let lock = f.root().join("stacks/bk/lock");
    let holder = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .unwrap();
    rustix::fs::flock(&holder, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let aside = |f: &Frun| supervisor_log(f).matches("stepped aside").count();
    let first = wait_for(60, "the scheduled backup to step aside", || {
        let n = aside(&f);
        (n > 0).then_some(n)
    });
    let made = scheduled_ok(&f).len();
    wait_for(60, "it to step aside again", || {
        (aside(&f) > first).then_some(())
    });
    assert_eq!(
        scheduled_ok(&f).len(),
        made,
        "a backup while the lock was held"
    );
    drop(holder);
    wait_for(120, "a scheduled backup once the lock is free", || {
        (scheduled_ok(&f).len() > made).then_some(())
    });

    // 2. A swap with its backup (before_swap) while backups are scheduled every 2 s:
    //    it ends (no deadlock), its backup is made, and the schedule goes on after it.
    ok_within(
        &f,
        300,
        &["swap", &format!("{reg}/family/app:v2"), "-f", &file],
    );
    let evs = backup_events(&f);
    assert!(
        evs.iter()
            .any(|e| e["attrs"]["reason"] == "before-swap" && e["attrs"]["outcome"] == "ok"),
        "{evs:#?}"
    );
    let after = scheduled_ok(&f).len();
    wait_for(120, "a scheduled backup after the swap", || {
        (scheduled_ok(&f).len() > after).then_some(())
    });
    f.ok(&["down", "-f", &file]);
}
