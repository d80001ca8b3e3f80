//! frun's own log (tracing, on stderr) has colour codes only at a terminal: written to a
//! pipe or a file (journald, `2>log`), its lines are plain text.

use crate::common::*;

#[test]
fn logs_to_a_pipe_carry_no_ansi_escapes() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    // `command` clears RUST_LOG; set it on the command itself.
    let out = f
        .command(&["pull", "-q", &format!("{reg}/test/busybox:latest")])
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("DEBUG"), "debug log lines on stderr: {err}");
    assert!(!err.contains('\u{1b}'), "no escape sequences: {err}");
}
