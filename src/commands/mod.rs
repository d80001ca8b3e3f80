//! One module per command group, each a thin layer over a library call.

mod backup;
mod cp;
mod events;
pub mod images;
mod run;
mod stack;
mod stop;

pub use crate::holder::{end_holder_of, start_detached, stop_and_wait};
pub use crate::hosts::{host_resolv_conf, hosts_file, refresh_hosts};
pub use stop::remove_container;
mod info;
mod inspect;
mod logs;
mod ps;
mod stats;
mod volume;

use crate::cli::{Cli, Command, Global};
use std::process::ExitCode;

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = cli.global;
    match cli.command {
        Command::Pull(args) => images::pull(&g, args),
        Command::Images(args) => images::list(&g, args.format),
        Command::Rmi { images } => images::rmi(&g, &images),
        Command::Gc(args) => images::gc(&g, args.format),
        Command::Login(args) => images::login(&g, args),
        Command::Run(args) => run::run(&g, *args),
        Command::Ps(args) => ps::ps(&g, args),
        Command::Stop(args) => stop::stop(&g, args),
        Command::Rm(args) => stop::rm(&g, args),
        Command::Exec(args) => run::exec(&g, args),
        Command::Logs(args) => logs::logs(&g, args),
        Command::Info(args) => info::info(&g, args.format),
        Command::Volume(cmd) => volume::volume(&g, cmd),
        Command::Stats(args) => stats::stats(&g, args),
        Command::Top(args) => stats::top(&g, args),
        Command::Inspect(args) => inspect::inspect(&g, args),
        Command::Cp(args) => cp::cp(&g, args),
        Command::Events(args) => events::events(&g, args),
        Command::Backup(args) => backup::backup(&g, args),
        Command::Restore(args) => backup::restore(&g, args),
        Command::Backups(args) => backup::backups(&g, args),
        Command::Holder { id, restarted } => crate::holder::run(&g, &id, restarted),
        Command::Steps => crate::fault::list(),
        Command::Up(args) => stack::up(&g, args),
        Command::Down(args) => stack::down(&g, args),
        Command::Status(args) => stack::status(&g, args),
        Command::Swap(args) => stack::swap(&g, args),
        Command::Rollback(args) => stack::rollback(&g, args),
        Command::History(args) => stack::history(&g, args),
        Command::Supervise { boot, metrics } => crate::supervise::run(&g, boot, metrics),
        Command::SystemdUnit => stack::systemd_unit(&g),
    }
}

/// A process's exit code as this process's own (clamped to 0..=255), for the commands
/// that end as their container's process did (`run`, `exec`, and `frun-oci`'s).
pub fn exit_code(c: i32) -> ExitCode {
    ExitCode::from(c.clamp(0, 255) as u8)
}

/// A runtime for the commands that talk to the network.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // rustls needs one crypto provider per process; ring builds without a C toolchain
    // beyond what cc gives, and quickly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// The registry settings the global options describe.
pub fn registry_config(g: &Global) -> frun_images::RegistryConfig {
    let docker_config_dir = std::env::var_os("DOCKER_CONFIG")
        .map(Into::into)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".docker")));
    frun_images::RegistryConfig {
        insecure: g
            .insecure_registries
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        docker_hub_mirror: g.registry_mirror.clone().filter(|m| !m.is_empty()),
        docker_config_dir,
        auth: None,
        // The run root: kept until a reboot, then found again by one ping.
        challenges: Some(g.run_root.join("registries")),
    }
}
