//! `registry_auth` in frun.toml (issue 11): a role's image from a registry that needs
//! credentials (the token registry's `private/busybox`), the credentials given by
//! reference, `file:` (a config.json that `frun login` wrote) or `env:` (USER:PASSWORD in
//! a variable), and the secret never shown: not by `up`, its errors, `status` or
//! `inspect`.

use crate::common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

/// A stack whose app is `image` with `auth_line` in its `[app]` table.
fn stack(f: &Frun, image: &str, auth_line: &str) -> PathBuf {
    write_stack_file(
        f,
        &format!(
            "name = \"priv\"\n\n[app]\nimage = \"{image}\"\ncommand = [\"sleep\", \"600\"]\nstop_grace = \"1s\"\n{auth_line}\n"
        ),
    )
}

fn up(f: &Frun, file: &Path) -> Output {
    f.run(&["up", "-f", file.to_str().unwrap()])
}

/// Everything a user can print about the stack: no secret in it.
fn assert_nothing_shows(f: &Frun, file: &Path, secret: &str) {
    let file = file.to_str().unwrap();
    for args in [
        vec!["status", "-f", file, "--format", "json"],
        vec!["status", "-f", file],
        vec!["inspect", "priv-app.1"],
        vec!["ps", "-a", "--format", "json"],
    ] {
        let out = f.run(&args);
        let all = text(&out.stdout) + &text(&out.stderr);
        assert!(
            !all.contains(secret),
            "frun {args:?} shows the secret:\n{all}"
        );
    }
}

#[test]
fn registry_auth_by_file_or_env_pulls_a_private_image_and_never_shows_the_secret() {
    let Some(_) = registry() else { return };
    let (Some(reg), Some(user), Some(password)) = (
        test_env("FRUN_TEST_REGISTRY_TOKEN"),
        test_env("FRUN_TEST_REGISTRY_USER"),
        test_env("FRUN_TEST_REGISTRY_PASSWORD"),
    ) else {
        return;
    };
    let image = format!("{reg}/private/busybox");
    let f = Frun::new().checked();

    // 1. Without credentials the registry refuses (what the rest proves is not free).
    let file = stack(&f, &image, "");
    let out = up(&f, &file);
    assert!(!out.status.success(), "pulled without credentials: {out:?}");

    // 2. A bad reference: told at its line and column, nothing started.
    let file = stack(&f, &image, "registry_auth = \"vault:x\"");
    let out = up(&f, &file);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("frun.toml:7:17: registry_auth") && err.contains("file:PATH"),
        "{err}"
    );

    // 3. file: a config.json written by `frun login` (DOCKER_CONFIG=DIR), relative to
    //    the stack file; the user's own config.json (the fixture's) stays empty.
    let creds_dir = f.dir.path().join("stack/creds");
    let mut login = f.command(&["login", "-u", &user, "--password-stdin", &reg]);
    login.env("DOCKER_CONFIG", &creds_dir).stdin(Stdio::piped());
    let mut child = login.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "frun login");
    assert!(!f.docker_config().join("config.json").exists());
    let file = stack(&f, &image, "registry_auth = \"file:creds/config.json\"");
    let out = up(&f, &file);
    assert!(out.status.success(), "up with file: {}", text(&out.stderr));
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(!all.contains(&password), "{all}");
    assert_nothing_shows(&f, &file, &password);
    f.ok(&["down", "-f", file.to_str().unwrap()]);
    f.ok(&["rmi", &image]);

    // 4. env: unset, then not USER:PASSWORD, then wrong, then right; the value never
    //    shows, right or wrong.
    let file = stack(&f, &image, "registry_auth = \"env:FRUN_TEST_STACK_CREDS\"");
    let out = up(&f, &file);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("frun.toml:7:17: registry_auth env:FRUN_TEST_STACK_CREDS")
            && err.contains("FRUN_TEST_STACK_CREDS is not set"),
        "{err}"
    );
    let wrong = "frun:wr0ng-pa55word";
    for (value, what) in [
        ("no-colon-wr0ng", "USER:PASSWORD"),
        (wrong, "frun.toml:7:17"),
    ] {
        let out = f
            .command(&["up", "-f", file.to_str().unwrap()])
            .env("FRUN_TEST_STACK_CREDS", value)
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert!(!out.status.success(), "up with {value:?} succeeded");
        assert!(err.contains(what), "{err}");
        assert!(!err.contains("wr0ng"), "the value shows: {err}");
    }
    let out = f
        .command(&["up", "-f", file.to_str().unwrap()])
        .env("FRUN_TEST_STACK_CREDS", format!("{user}:{password}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "up with env: {}", text(&out.stderr));
    assert!(!text(&out.stderr).contains(&password));
    assert_nothing_shows(&f, &file, &password);
    // Converged: a second up finds the image in the store and needs no credentials.
    let out = up(&f, &file);
    assert!(out.status.success(), "{}", text(&out.stderr));
    f.ok(&["down", "-f", file.to_str().unwrap()]);
}
