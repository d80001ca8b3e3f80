//! A scheduled backup that runs past `[backup] timeout` is killed by the supervisor,
//! recorded as failed (in `frun status`, as an event, in the supervisor's log), and the
//! schedule goes on: once nothing holds it up any more, the next one is made. The hang
//! is real: another holder of the stack's backup lock (as a backup stuck on a dead
//! destination would be), which the scheduled child waits for.

use crate::backup::{up, Stack};
use crate::backup_schedule::{backup_events, listed, schedule, status, supervisor_log};
use crate::common::*;

#[test]
fn a_scheduled_backup_past_its_timeout_is_killed_and_recorded_as_failed() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let s = Stack::with(&f, &reg, "");
    up(&f, &s);

    // 1. The stack's backup lock held (`frun up` takes it too, so after it), then a
    //    schedule with a 2 s timeout, which the supervisor reads within its rescan:
    //    every scheduled backup waits for the lock.
    let dir = f.root().join("backups/bk");
    std::fs::create_dir_all(&dir).unwrap();
    let holder = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .unwrap();
    rustix::fs::flock(&holder, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let file = s.dir.join("frun.toml");
    let text = read(&file);
    std::fs::write(
        &file,
        format!("{text}\n[backup]\nevery = \"2s\"\njitter = \"0s\"\ntimeout = \"2s\"\n"),
    )
    .unwrap();

    // 2. Killed past its timeout: the supervisor says so, the child is gone (reaped),
    //    and the attempt is recorded as failed with the reason.
    let line = wait_for(120, "the supervisor to kill a scheduled backup", || {
        supervisor_log(&f)
            .lines()
            .find(|l| l.contains("scheduled backup took too long: killing it"))
            .map(str::to_string)
    });
    let pid: i32 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"));
    assert!(line.contains("timeout_s=2"), "{line}");
    wait_for(30, "the killed child to be reaped", || {
        (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    });
    let killed = "killed after 2 s (the timeout of a scheduled backup)";
    let (app, table) = wait_for(60, "the killed backup in frun status", || {
        let (app, table) = status(&f, &s);
        (app["backup"]["outcome"] == "failed").then_some((app, table))
    });
    assert_eq!(app["backup"]["error"], killed, "{app:#}");
    assert!(app["backup"]["failures"].as_u64() >= Some(1), "{app:#}");
    assert!(table.contains("LAST SCHEDULED BACKUP FAILED"), "{table}");
    assert!(
        backup_events(&f)
            .iter()
            .any(|e| e["attrs"]["reason"] == "scheduled"
                && e["attrs"]["outcome"] == "failed"
                && e["attrs"]["error"] == killed),
        "{:#?}",
        backup_events(&f)
    );
    assert!(listed(&f, &s).is_empty(), "no backup was made");
    assert_eq!(schedule(&f)["outcome"], "failed");

    // 3. The app served throughout; with the lock free, the next scheduled backup is
    //    made and the failure is no longer shown.
    assert_eq!(s.visit(), 1);
    drop(holder);
    let (app, _) = wait_for(180, "a scheduled backup once the lock is free", || {
        let (app, table) = status(&f, &s);
        (app["backup"]["outcome"] == "ok").then_some((app, table))
    });
    assert!(app["backup"]["error"].is_null(), "{app:#}");
    assert!(!listed(&f, &s).is_empty());
    f.ok(&["down", "-f", &s.file()]);
}
