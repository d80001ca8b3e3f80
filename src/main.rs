//! frun: one binary that pulls images and runs a small web stack without Docker.
//!
//! `main` parses, runs, and turns an error into one message and an exit code; the work
//! is in the `images` and `runtime` crates, composed by the command modules.

mod backup;
mod cleanup;
mod cli;
mod commands;
mod containers;
mod events;
mod fault;
mod forward;
mod holder;
mod hosts;
mod limits;
mod logs;
mod metrics;
mod model;
mod net;
mod oci;
mod oom;
mod pidwatch;
mod progress;
mod runspec;
mod stack;
mod stats;
mod supervise;
mod sweep;
mod tool;
mod trim;
mod tty;
mod volumes;

/// For tests that need root: the one rule, [`frun_runtime::testing::root_or_skip`].
#[cfg(test)]
fn test_as_root() -> bool {
    frun_runtime::testing::root_or_skip()
}

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    if oci::invoked_as_oci() {
        return oci::main();
    }
    let cli = cli::Cli::parse();
    init_logging(cli.global.verbose);
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("frun: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn,libcgroups=error",
        1 => "info,frun=debug,frun_images=debug",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
