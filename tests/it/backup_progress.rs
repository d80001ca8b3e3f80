//! Progress of `frun backup`, `frun restore` and their copies: bars on a terminal
//! (run under util-linux's `script`, which gives the command a pty), nothing on stderr
//! in a script, and only the JSON with `--format json`.

use crate::backup::{up, volume, Stack};
use crate::common::*;
use serde_json::Value;
use std::process::Command;

/// `frun ARGS` with a pty as its stdin/stdout/stderr: what a user at a terminal sees.
fn on_terminal(f: &Frun, args: &[&str]) -> String {
    let c = f.command(args);
    let quote = |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', "'\\''"));
    let mut line = quote(c.get_program());
    for a in c.get_args() {
        line.push(' ');
        line.push_str(&quote(a));
    }
    let mut s = Command::new("script");
    s.args(["-qec", &line, "/dev/null"])
        .stdin(std::process::Stdio::null());
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => s.env(k, v),
            None => s.env_remove(k),
        };
    }
    let out = s.output().expect("script (util-linux)");
    let text = text(&out.stdout);
    assert!(out.status.success(), "frun {args:?} on a terminal:\n{text}");
    text
}

#[test]
fn backup_and_restore_show_progress_on_a_terminal_and_nothing_in_scripts() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let s = Stack::with(&f, &reg, "");
    up(&f, &s);
    // A database and a few MB of plain data, so that every step has something to do.
    let db = rusqlite::Connection::open(volume(&f, "bkdb").join("app.sqlite3")).unwrap();
    db.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    drop(db);
    let mut x = 0x9e3779b97f4a7c15u64;
    let noise: Vec<u8> = (0..8 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(volume(&f, "bkfiles").join("noise.bin"), noise).unwrap();
    let dest = f.dir.path().join("dest");
    let file = s.file();
    let dest_s = dest.display().to_string();

    // 1. In a script: the JSON alone on stdout, nothing on stderr; the table too.
    let out = f
        .command(&["backup", "-f", &file, "--to", &dest_s, "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("only JSON on stdout");
    assert_eq!(v["databases"], 1, "{v:#}");
    assert_eq!(text(&out.stderr), "", "nothing on stderr in a script");
    let out = f.command(&["backup", "-f", &file]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "", "nothing on stderr in a script");
    assert_eq!(
        text(&out.stdout).lines().count(),
        1,
        "{}",
        text(&out.stdout)
    );

    // 2. On a terminal: a line per step (database, archive, upload).
    let shown = on_terminal(&f, &["backup", "-f", &file, "--to", &dest_s]);
    for step in [
        "database app.sqlite3",
        "integrity_check ok",
        "archiving",
        &format!("upload to {dest_s}"),
        "sent",
    ] {
        assert!(shown.contains(step), "{step:?} not shown:\n{shown}");
    }
    // With --format json, on a terminal too: the JSON and no bar.
    let json = on_terminal(&f, &["backup", "-f", &file, "--format", "json"]);
    assert!(!json.contains("archiving"), "{json}");
    let v: Value = serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(v["databases"], 1);

    // 3. A restore on a terminal: the archive's check.
    let shown = on_terminal(
        &f,
        &[
            "restore",
            "-f",
            &file,
            "--no-safety-backup",
            "--from",
            &dest_s,
            "latest",
        ],
    );
    assert!(shown.contains("verifying"), "{shown}");
    assert!(shown.contains("checksums match"), "{shown}");
    assert!(shown.contains("Restored"), "{shown}");
    f.ok(&["down", "-f", &file]);
}
