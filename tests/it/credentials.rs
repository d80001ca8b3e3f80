//! Where credentials go: the verbose log names the host that receives them.

use crate::common::*;
use std::io::Write;

#[test]
fn verbose_log_names_the_host_credentials_are_sent_to() {
    let Some(_) = registry() else { return };
    let (Some(reg), Some(issuer)) = (
        test_env("FRUN_TEST_REGISTRY_TOKEN"),
        test_env("FRUN_TEST_TOKEN_ISSUER"),
    ) else {
        return;
    };
    let f = Frun::new().env("FRUN_REGISTRY_MIRROR", &reg);
    let mut c = f.command(&["login", "-u", "frun", "--password-stdin"]);
    c.stdin(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"secret").unwrap();
    assert!(child.wait().unwrap().success());
    let out = f.run(&["--verbose", "pull", "-q", "private/busybox"]);
    // The logger colours its fields (even into a pipe): read the text without the escapes.
    let log = strip_ansi(&String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{log}");
    let host = issuer.rsplit_once(':').map_or(issuer.as_str(), |(h, _)| h);
    let line = log
        .lines()
        .find(|l| l.contains("sending credentials"))
        .unwrap_or_else(|| panic!("no log line says where credentials go:\n{log}"));
    assert!(line.contains(&format!("to={host}")), "{line}");
    assert!(line.contains("token service"), "{line}");
    assert!(!log.contains("secret"), "the password is never logged");
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ ... final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
