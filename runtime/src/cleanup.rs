//! A clean-up step after a failure, or one nothing waits on (removing what a failed
//! start left, a poststop hook, a marker file): its failure is logged with what it was,
//! never dropped silently, and never replaces the error the caller reports (STYLE.md,
//! rule 2). One place for the runtime and frun (which re-exports it as
//! `crate::cleanup`), so that such failures read alike in the log.

use std::path::Path;

/// Logs `r`'s failure as a clean-up of `what`; the caller goes on.
pub fn logged<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) {
    if let Err(e) = r {
        tracing::warn!("clean-up: {what}: {e:#}");
    }
}

/// Removes the file `path` if it is there; a failure other than its absence is logged.
pub fn remove_file(path: impl AsRef<Path>) {
    let path = path.as_ref();
    gone_or_logged("removing", path, std::fs::remove_file(path));
}

/// Removes the directory `path` and what is in it, if it is there; a failure other than
/// its absence is logged.
pub fn remove_dir_all(path: impl AsRef<Path>) {
    let path = path.as_ref();
    gone_or_logged("removing", path, std::fs::remove_dir_all(path));
}

fn gone_or_logged(op: &str, path: &Path, r: std::io::Result<()>) {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        r => logged(&format!("{op} {}", path.display()), r),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_absent_file_is_no_failure_and_a_present_one_goes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        super::remove_file(&f);
        std::fs::write(&f, b"x").unwrap();
        super::remove_file(&f);
        assert!(!f.exists());
        let d = dir.path().join("d/e");
        std::fs::create_dir_all(&d).unwrap();
        super::remove_dir_all(dir.path().join("d"));
        assert!(!d.exists());
        super::remove_dir_all(dir.path().join("d"));
    }
}
