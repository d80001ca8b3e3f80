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
    /// More logging (--verbose, twice for more); RUST_LOG overrides. (`-v` is
    /// `run --volume`, as in Docker.)
    #[arg(long, global = true, action = clap::ArgAction::Count)]
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
    /// Absolute cgroup under which containers get theirs (PARENT/ID).
    #[arg(
        long,
        global = true,
        env = "FRUN_CGROUP_PARENT",
        default_value = "/frun"
    )]
    pub cgroup_parent: String,
    /// The bridge of `--network bridge`.
    #[arg(long, global = true, env = "FRUN_BRIDGE", default_value = "frun0")]
    pub bridge: String,
    /// The bridge's subnet (not podman's 10.88.0.0/16 nor Docker's 172.17.0.0/16).
    #[arg(
        long,
        global = true,
        env = "FRUN_SUBNET",
        default_value = "10.89.0.0/16"
    )]
    pub subnet: String,
}

impl Global {
    /// This frun binary as a command, given the global options that say which state it
    /// works on (roots, cgroup parent, bridge, subnet): how frun starts frun again (a
    /// container's holder, the supervisor, `exec` in the proxy, `up` at boot).
    pub fn frun_command(&self) -> anyhow::Result<std::process::Command> {
        use anyhow::Context;
        let exe = std::env::current_exe().context("finding the frun binary")?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--run-root")
            .arg(&self.run_root)
            .arg("--cgroup-parent")
            .arg(&self.cgroup_parent)
            .arg("--bridge")
            .arg(&self.bridge)
            .arg("--subnet")
            .arg(&self.subnet);
        Ok(cmd)
    }
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
    /// Run a command in a new container.
    Run(Box<RunArgs>),
    /// List containers.
    Ps(PsArgs),
    /// Stop running containers: the image's stop signal, then SIGKILL after a grace period.
    Stop(StopArgs),
    /// Remove containers.
    Rm(RmArgs),
    /// Run a command in a running container.
    Exec(ExecArgs),
    /// Show the output of a detached container.
    Logs(LogsArgs),
    /// What this host offers frun and what it lacks (kernel, cgroups, overlayfs,
    /// idmapped mounts, nft, swap, systemd), with what each missing piece disables.
    Info(FormatArgs),
    /// Hold one container: start it, keep its output, serve its ports, restart it
    /// (started by `run` and `up`; not for direct use). `__shim` is its name before 0.2.
    #[command(name = "__holder", alias = "__shim", hide = true)]
    Holder {
        id: String,
        /// Started again by its restart policy.
        #[arg(long)]
        restarted: bool,
    },
    /// The named steps where a test may stop frun (`FRUN_TEST_STOP_AT`); not for direct use.
    #[command(name = "__steps", hide = true)]
    Steps,
    /// Bring up the stack of a frun.toml (pull, create, start, publish); run again, it
    /// changes only what changed.
    Up(StackArgs),
    /// Stop and remove the stack's containers (volumes stay unless --volumes).
    Down(DownArgs),
    /// The stack's containers: role, image digest, health, uptime, restarts, address, ports.
    Status(StatusArgs),
    /// Replace the stack's app by IMAGE (default: its reference pulled again) with no
    /// failed request: start beside the old one, wait until healthy, repoint the proxy,
    /// drain, stop the old one. A failure leaves the old app serving.
    Swap(SwapArgs),
    /// Swap back to the previous deployment's image, from the store (no registry).
    Rollback(RollbackArgs),
    /// The stack's deployments: time, image, digest, outcome, step times.
    History(StatusArgs),
    /// The long-running supervisor of this state root (health checks, adoption); started
    /// by `frun up` when it does not run.
    Supervise {
        /// At boot: bring back the recorded stacks and the --restart containers.
        #[arg(long)]
        boot: bool,
        /// Serve Prometheus metrics on this address (IP:PORT), as a stack's
        /// `[metrics] listen` asks.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Print a systemd unit that runs `frun supervise` and brings the stacks back at boot.
    SystemdUnit,
    /// Manage named volumes.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Live resource use of running containers (CPU, memory, network, block I/O, pids).
    Stats(StatsArgs),
    /// The processes of a running container.
    Top(TopArgs),
    /// The full record of containers, images or volumes, as JSON.
    Inspect(InspectArgs),
    /// What happened to containers and stacks (start, die, oom, health, restart, swap,
    /// backup, restore), as Docker's: from --since, then new ones as they come until
    /// --until (without --until, until interrupted).
    Events(EventsArgs),
    /// Copy files between a running container and the host:
    /// `frun cp CONTAINER:PATH HOSTPATH` or `frun cp HOSTPATH CONTAINER:PATH`.
    Cp(CpArgs),
    /// Back up the stack's named volumes while the app runs (sqlite online backup,
    /// other files with the app briefly frozen) into one verified archive.
    Backup(BackupArgs),
    /// Restore a backup: verify it, keep a safety backup, stop the app, swap the volumes
    /// in, start the app.
    Restore(RestoreArgs),
    /// List the stack's backups: size, age, destination, verification.
    Backups(BackupsArgs),
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// The stack file.
    #[arg(short, long, default_value = "frun.toml")]
    pub file: PathBuf,
    /// The longest the app may stay frozen while the files that are not sqlite
    /// databases are copied (e.g. 500ms, 5s); past it the backup fails and the app is
    /// thawed. Default: [backup] freeze_max, else 5s.
    #[arg(long)]
    pub freeze_max: Option<String>,
    /// Also copy the archive there (repeatable): /path, sftp://[user@]host[:port]/path or
    /// s3://bucket/prefix[?endpoint=URL&region=R]. Default: [backup] to.
    #[arg(long = "to")]
    pub to: Vec<String>,
    /// Encrypt to this age public key (age1...; repeatable). Default: [backup] recipients.
    #[arg(long = "recipient")]
    pub recipients: Vec<String>,
    /// Encrypt with the passphrase on the first line of FILE. Default: [backup] passphrase_file.
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// The supervisor's scheduled backup ([backup] every): made only if due, its
    /// attempt and outcome recorded for `frun status`; exit 3 when not due, 75 when a
    /// swap/up/restore of the stack runs (tried again later).
    #[arg(long, hide = true)]
    pub scheduled: bool,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The stack file.
    #[arg(short, long, default_value = "frun.toml")]
    pub file: PathBuf,
    /// Do not keep a backup of the current data first.
    #[arg(long)]
    pub no_safety_backup: bool,
    /// Fetch the backup from this destination first (as --to names them): how a fresh
    /// machine gets its data back.
    #[arg(long)]
    pub from: Option<String>,
    /// The age identity file (AGE-SECRET-KEY-1... lines) that opens a backup encrypted to
    /// a public key. Default: [backup] identity_file.
    #[arg(long)]
    pub identity: Option<PathBuf>,
    /// The passphrase file that opens a backup encrypted with a passphrase. Default:
    /// [backup] passphrase_file.
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// A backup's name (as `frun backups` lists it), or `latest`.
    pub name: String,
}

#[derive(Args, Debug)]
pub struct BackupsArgs {
    /// The stack file.
    #[arg(short, long, default_value = "frun.toml")]
    pub file: PathBuf,
    /// List the backups in this destination instead of this machine's.
    #[arg(long)]
    pub from: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// One reading, then exit.
    #[arg(long)]
    pub no_stream: bool,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Containers (default: every running one).
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Show stored events from this time on: RFC 3339, a Unix time, or a duration ago
    /// (10m, 1h30m). Without it, only new events.
    #[arg(long)]
    pub since: Option<String>,
    /// Stop at this time (same forms; `0s` is now: print what is stored and exit).
    #[arg(long)]
    pub until: Option<String>,
    /// container=NAME|ID, event=KIND, type=container|stack, stack=, role=, image=
    /// (values of one key are alternatives; different keys must all hold).
    #[arg(short, long)]
    pub filter: Vec<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct TopArgs {
    pub container: String,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Output format (JSON only, as `docker inspect` without a template).
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct CpArgs {
    pub src: String,
    pub dest: String,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Run in the background and print the container id.
    #[arg(short, long)]
    pub detach: bool,
    #[arg(long)]
    pub name: Option<String>,
    /// Environment variable KEY=VALUE.
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Bind mount SRC:DST[:OPTS]; SRC is a host path or a volume name; OPTS is a comma
    /// list of ro, rw and idmap (with --uidmap: the volume's files owned by uid 0 on the
    /// host are seen as root in the container).
    #[arg(short, long = "volume")]
    pub volumes: Vec<String>,
    /// Run in a user namespace: container uid CONTAINER..+SIZE is host uid HOST..+SIZE
    /// (CONTAINER:HOST:SIZE, repeatable; podman's --uidmap). The image's layers are
    /// idmapped, never copied or chowned.
    #[arg(long = "uidmap", value_name = "CONTAINER:HOST:SIZE")]
    pub uidmap: Vec<String>,
    /// As --uidmap, for group ids (default: the same as --uidmap).
    #[arg(long = "gidmap", value_name = "CONTAINER:HOST:SIZE")]
    pub gidmap: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// User: name|uid[:group|gid], names looked up in the image.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Memory limit (e.g. 64m; at least 6m).
    #[arg(long)]
    pub memory: Option<String>,
    /// Memory plus swap (needs --memory): equal to --memory for no swap, -1 for
    /// unlimited swap; default twice --memory, as Docker's.
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// CPU limit in CPUs (e.g. 0.5; 0.01 to the host's CPUs).
    #[arg(long)]
    pub cpus: Option<String>,
    /// Maximum number of processes (1 to 4194304; 0 or -1: no limit).
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<String>,
    /// bridge (an address on frun's bridge, NAT to the outside), none (loopback only) or host.
    #[arg(long, default_value = "bridge")]
    pub network: String,
    /// Restart policy: no, on-failure[:N], always, unless-stopped (with -d).
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Signal for `stop` (default: the image's StopSignal, else SIGTERM).
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL (default 10).
    #[arg(long)]
    pub stop_timeout: Option<u64>,
    /// Publish a port: [IP:]HOST:CONTAINER[/tcp|udp] (a userspace forwarder in frun).
    #[arg(short, long = "publish")]
    pub publish: Vec<String>,
    /// Send a PROXY protocol v1 line before each forwarded TCP connection, so that the
    /// container sees the client's real address.
    #[arg(long)]
    pub proxy_protocol: bool,
    /// Pull quietly if the image is missing.
    #[arg(short, long)]
    pub quiet: bool,
    /// Keep stdin open and pass it to the container (without it, the container's stdin
    /// is /dev/null, as with Docker).
    #[arg(short, long)]
    pub interactive: bool,
    /// A terminal (pty) for the container: `-it` for a shell.
    #[arg(short, long)]
    pub tty: bool,
    /// Log rotation, as Docker's json-file driver: max-size=10m (default), max-file=3
    /// (default), compress=true|false (default false).
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    pub log_opts: Vec<String>,
    pub image: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Also stopped containers.
    #[arg(short, long)]
    pub all: bool,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Only ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// name=PART, status=created|running|exited, label=KEY[=VALUE] (repeatable; all must hold).
    #[arg(short, long)]
    pub filter: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait before SIGKILL (default: 10).
    #[arg(short, long, allow_hyphen_values = true)]
    pub time: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Kill a running container first.
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// User: name|uid[:group|gid], names looked up in the container's /etc/passwd and
    /// /etc/group.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Pass stdin to the process (without it, its stdin is /dev/null).
    #[arg(short, long)]
    pub interactive: bool,
    /// A terminal (pty) for the process.
    #[arg(short, long)]
    pub tty: bool,
    pub container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Keep following until the container exits.
    #[arg(short, long)]
    pub follow: bool,
    /// Show timestamps.
    #[arg(short, long)]
    pub timestamps: bool,
    /// Only the last N lines (or "all").
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Only lines at or after this time: RFC 3339, a Unix time, or a duration ago (10m, 1h30m).
    #[arg(long)]
    pub since: Option<String>,
    /// Only lines before this time (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// A container (name, id or id prefix), or a log group under ROOT/logs (a stack
    /// role's `<stack>-<role>`: all its kept generations, oldest first).
    pub container: String,
}

#[derive(Args, Debug)]
pub struct StackArgs {
    /// The stack file.
    #[arg(short, long, default_value = "frun.toml")]
    pub file: PathBuf,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct SwapArgs {
    /// The new image (default: the deployed reference, pulled again).
    pub image: Option<String>,
    #[arg(short, long, default_value = "frun.toml")]
    pub file: PathBuf,
    /// Swap even when the image's digest is the running one.
    #[arg(long)]
    pub force: bool,
    /// How long the old app may take to finish its requests (500ms, 30s, 1m).
    #[arg(long, default_value = "30s")]
    pub drain_timeout: String,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    #[arg(short, long, default_value = "frun.toml")]
    pub file: PathBuf,
    /// How long the old app may take to finish its requests (500ms, 30s, 1m).
    #[arg(long, default_value = "30s")]
    pub drain_timeout: String,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct DownArgs {
    #[arg(short, long, default_value = "frun.toml")]
    pub file: PathBuf,
    /// Remove the stack's named volumes too.
    #[arg(long)]
    pub volumes: bool,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[arg(short, long, default_value = "frun.toml")]
    pub file: PathBuf,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
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

#[derive(Subcommand, Debug)]
pub enum VolumeCommand {
    /// List volumes.
    Ls {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Only names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Create an empty volume (`run -v NAME:/path` makes one filled from the image).
    Create { name: String },
    /// Show volumes as JSON: mount point, creation, what filled it, containers using it.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes; one that a container uses is refused, naming the container.
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every volume no container uses.
    Prune {
        /// Accepted for Docker compatibility: frun does not ask.
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
