//! The one rule for tests that cannot run everywhere (they need root, a registry, a
//! tool): outside CI such a test is skipped, saying why; in CI (`CI` set to anything but
//! "", "0" or "false") it fails, so that a root test never passes by not running.
//!
//! Public so that frun's unit tests and its integration tests use this same rule; it is
//! not part of the runtime's API.

/// Whether the tests run in CI, where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Skips (outside CI) or fails (in CI) a test that cannot run here, saying why.
pub fn unavailable(why: &str) {
    if in_ci() {
        panic!("required in CI: {why}");
    }
    eprintln!("SKIPPED: {why}");
}

/// For tests that need root: true when they may go on; otherwise [`unavailable`].
pub fn root_or_skip() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    unavailable("not root");
    false
}
