//! The command line, parsed by clap into plain structs; validation of values that clap
//! cannot check happens in the command modules before any work starts.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "frun",
    version,
    about = "Pull images and run a small web stack without Docker"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// State root: images, layers, containers, volumes.
    #[arg(
        long,
        global = true,
        env = "FRUN_ROOT",
        default_value = "/var/lib/frun"
    )]
    pub root: PathBuf,
    /// Runtime state: sockets, pid files.
    #[arg(
        long,
        global = true,
        env = "FRUN_RUN_ROOT",
        default_value = "/run/frun"
    )]
    pub run_root: PathBuf,
    /// More logging (-v, -vv); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Registries (host[:port]) that may be reached over plain HTTP; loopback ones always may.
    #[arg(
        long = "insecure-registry",
        global = true,
        env = "FRUN_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure_registries: Vec<String>,
    /// A registry (host[:port]) that serves Docker Hub images instead of registry-1.docker.io.
    #[arg(long, global = true, env = "FRUN_REGISTRY_MIRROR")]
    pub registry_mirror: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Pull an image from a registry into the local store.
    Pull(PullArgs),
    /// List pulled images.
    Images(FormatArgs),
    /// Remove images (their content stays until `frun gc`).
    Rmi {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove blobs and layers that no image uses.
    Gc(FormatArgs),
    /// Check credentials against a registry and save them in Docker's config.json.
    Login(LoginArgs),
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Image reference: alpine, user/app:tag, host:port/name:tag, name@sha256:...
    pub image: String,
    /// Platform os/arch[/variant], e.g. linux/arm64/v8 (default: this host's).
    #[arg(long)]
    pub platform: Option<String>,
    /// No progress and no summary.
    #[arg(short, long)]
    pub quiet: bool,
    /// Cap on one layer's unpacked size, in bytes (k, m, g suffixes allowed).
    #[arg(long, env = "FRUN_MAX_LAYER_SIZE", default_value = "8g")]
    pub max_layer_size: String,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Registry host[:port]; Docker Hub if omitted.
    pub server: Option<String>,
    #[arg(short, long)]
    pub username: String,
    /// Password (prefer --password-stdin: a password on the command line is visible to others).
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Args, Debug)]
pub struct FormatArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}
