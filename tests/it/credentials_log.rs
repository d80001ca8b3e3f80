//! Where credentials go is told (issue 15, item 8): with `--verbose`, a pull that sends
//! them says to which host and port, and whether that is the registry itself or the
//! token service it named.

use crate::common::*;

#[test]
fn the_verbose_log_names_the_host_that_gets_the_credentials() {
    let Some(_) = registry() else { return };
    let Some(reg) = test_env("FRUN_TEST_REGISTRY_TOKEN") else {
        return;
    };
    let Some(issuer) = test_env("FRUN_TEST_TOKEN_ISSUER") else {
        return;
    };
    let f = Frun::new();
    let mut c = f.command(&["login", &reg, "-u", "frun", "--password-stdin"]);
    c.stdin(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"secret").unwrap();
    assert!(child.wait().unwrap().success());
    let out = f.run(&["--verbose", "pull", "-q", &format!("{reg}/private/busybox")]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("sending credentials"))
        .unwrap_or_else(|| panic!("no word of the credentials: {err}"));
    assert!(
        line.contains("token service") && line.contains(&format!("to={issuer}")),
        "{line}"
    );
    // Without --verbose, nothing of it.
    let out = f.run(&["pull", "-q", &format!("{reg}/private/busybox")]);
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}
