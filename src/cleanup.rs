//! A clean-up step after a failure, or one nothing waits on: its failure is logged with
//! what it was, never dropped silently (see `frun_runtime::cleanup`, the one
//! implementation for the runtime and frun).

pub use frun_runtime::cleanup::{logged, remove_dir_all, remove_file};
