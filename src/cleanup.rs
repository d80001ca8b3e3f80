//! A clean-up step after a failure, or one nothing waits on (removing what a failed
//! start left, a poststop hook, a marker file): its failure is logged with what it was,
//! never dropped silently, and never replaces the error the caller reports (STYLE.md,
//! rule 2). One function for every module, so that such failures read alike in the log.

/// Logs `r`'s failure as a clean-up of `what`; the caller goes on.
pub fn logged<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) {
    if let Err(e) = r {
        tracing::warn!("clean-up: {what}: {e:#}");
    }
}
