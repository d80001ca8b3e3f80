//! `frun-oci`: the OCI runtime command line (runc's), spoken when the binary is invoked
//! under that name (a symlink to frun), so that podman (through conmon) and containerd
//! (through containerd-shim-runc-v2) can drive frun's runtime.
//!
//! Process model, as runc's: `create` forks the container's first process, which sets
//! everything up (namespaces, mounts, cgroup, user, capabilities) and then waits at a
//! start gate, a FIFO in the state directory (runc's `exec.fifo`); `create` writes the
//! pid file and exits, so the waiting process is reparented to the caller's subreaper
//! (conmon, containerd-shim), which reaps it. `start` writes one byte into the FIFO and
//! removes it: the process goes on to seccomp and `execve`. There is no supervisor of
//! frun's own: the state on disk (`ROOT/ID/state.json`) and the process are the truth.
//! `run` is create + start in one, and stays in the foreground as the parent.

mod compat;
mod exec;
mod hooks;
mod lifecycle;
mod resources;
mod state;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The name the binary answers to as an OCI runtime.
pub const NAME: &str = "frun-oci";

/// True when argv[0]'s basename is `frun-oci`.
pub fn invoked_as_oci() -> bool {
    std::env::args_os()
        .next()
        .map(|a| Path::new(&a).file_name() == Some(std::ffi::OsStr::new(NAME)))
        .unwrap_or(false)
}

#[derive(Parser, Debug)]
#[command(
    name = "frun-oci",
    about = "frun's OCI runtime (runc's command line)",
    disable_version_flag = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// State directory of this runtime.
    #[arg(long, global = true, default_value = "/run/frun-oci")]
    pub root: PathBuf,
    /// Where to write errors and warnings (besides stderr for errors).
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Format of the --log file.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Use systemd for cgroups: accepted; frun manages cgroupfs directly, and a
    /// `slice:prefix:name` cgroups path is placed under /frun-oci.
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    #[arg(long, global = true)]
    pub debug: bool,
    /// Accepted for compatibility (runc's --rootless=true|false|auto); only `false`
    /// and `auto` as root work.
    #[arg(long, global = true, hide = true)]
    pub rootless: Option<String>,
    /// Accepted for compatibility; checkpointing is not supported.
    #[arg(long, global = true, hide = true)]
    pub criu: Option<String>,
    /// Print the version.
    #[arg(short = 'v', long = "version")]
    pub version: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container: set up, waiting for `start`.
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Create and start a container, and wait for it in the foreground.
    Run(RunArgs),
    /// The state of a container, as JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to the container's first process, or to all.
    Kill {
        #[arg(short, long)]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Delete a container's state and cgroup.
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Run a process in a running container.
    Exec(ExecArgs),
    /// List containers.
    #[command(alias = "ls")]
    List {
        #[arg(short, long, default_value = "table")]
        format: String,
        #[arg(short, long)]
        quiet: bool,
    },
    /// The pids of a container's processes.
    Ps {
        #[arg(short, long, default_value = "table")]
        format: String,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Freeze every process of a running container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Change the resources (limits) of a running container.
    Update(UpdateArgs),
    /// What a container uses (CPU, memory, pids), as JSON lines.
    Events(EventsArgs),
    /// What this runtime supports, as JSON.
    Features,
    /// Print the version.
    Version,
}

#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    /// The bundle: a directory with config.json.
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Write the container's pid (host view) here.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// A unix socket to send the terminal's master end to (process.terminal).
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Accepted: frun always uses pivot_root.
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted: frun creates no session keyring.
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass this many extra fds (3, 4, ...) on to the container's process.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    /// Accepted for compatibility (create always returns once the container waits).
    #[arg(short, long, hide = true)]
    pub detach: bool,
    pub id: String,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Do not remove the container's state after it exits.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Args, Debug, Clone)]
pub struct UpdateArgs {
    /// The resources as OCI `linux.resources` JSON (`-` for stdin); flags go over it.
    #[arg(short, long)]
    pub resources: Option<String>,
    /// Memory limit in bytes (k, m, g suffixes; -1: none).
    #[arg(long)]
    pub memory: Option<String>,
    /// Memory plus swap limit (-1: none).
    #[arg(long)]
    pub memory_swap: Option<String>,
    #[arg(long)]
    pub memory_reservation: Option<String>,
    /// CPU shares (relative weight).
    #[arg(long, alias = "cpu-share")]
    pub cpu_shares: Option<u64>,
    /// CPU CFS quota, microseconds per period.
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU CFS period, microseconds.
    #[arg(long)]
    pub cpu_period: Option<u64>,
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Maximum number of processes (0 or -1: none).
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<String>,
    pub id: String,
}

#[derive(Args, Debug, Clone)]
pub struct EventsArgs {
    /// Print the figures once and exit.
    #[arg(long)]
    pub stats: bool,
    /// Time between two readings (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s")]
    pub interval: String,
    pub id: String,
}

#[derive(Args, Debug, Clone)]
pub struct ExecArgs {
    /// The process, as an OCI process JSON file.
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Return once the process runs (it is reparented to the caller's subreaper).
    #[arg(short, long)]
    pub detach: bool,
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Allocate a terminal (with CMD).
    #[arg(short, long)]
    pub tty: bool,
    /// Working directory (with CMD).
    #[arg(long)]
    pub cwd: Option<String>,
    /// Environment variables (with CMD).
    #[arg(short, long)]
    pub env: Vec<String>,
    /// uid[:gid] (with CMD).
    #[arg(short, long)]
    pub user: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    pub id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Entry point when invoked as `frun-oci`.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let g = cli.global.clone();
    init_logging(&g);
    let command = match (cli.command, g.version) {
        (_, true) | (Some(Command::Version), _) => {
            print_version();
            return ExitCode::SUCCESS;
        }
        (None, false) => {
            eprintln!("{NAME}: no command given (try --help)");
            return ExitCode::FAILURE;
        }
        (Some(c), false) => c,
    };
    let result = match command {
        Command::Create(a) => lifecycle::create(&g, &a),
        Command::Start { id } => lifecycle::start(&g, &id),
        Command::Run(a) => lifecycle::run(&g, &a),
        Command::State { id } => lifecycle::state(&g, &id),
        Command::Kill { all, id, signal } => lifecycle::kill(&g, &id, signal.as_deref(), all),
        Command::Delete { force, id } => lifecycle::delete(&g, &id, force),
        Command::Exec(a) => exec::exec(&g, &a),
        Command::List { format, quiet } => lifecycle::list(&g, &format, quiet),
        Command::Ps { format, id, .. } => lifecycle::ps(&g, &id, &format),
        Command::Pause { id } => resources::pause(&g, &id),
        Command::Resume { id } => resources::resume(&g, &id),
        Command::Update(a) => resources::update(&g, &a),
        Command::Events(a) => resources::events(&g, &a),
        Command::Features => lifecycle::features(),
        Command::Version => unreachable!("handled above"),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}");
            log_line(&g, "error", &msg);
            eprintln!("{NAME}: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn print_version() {
    // "NAME version X" first, as runc prints it: callers read that line.
    println!("{NAME} version {}", env!("CARGO_PKG_VERSION"));
    println!("commit: frun");
    println!("spec: {}", state::OCI_VERSION);
}

/// Tracing goes to the --log file when there is one (the caller's stderr may be the
/// container's), else to stderr.
fn init_logging(g: &Global) {
    use tracing_subscriber::EnvFilter;
    let default = if g.debug {
        "debug"
    } else {
        "warn,libcgroups=error"
    };
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let file = g.log.as_ref().and_then(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok()
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    // A JSON log file must hold JSON lines only (containerd decodes it line by line):
    // tracing's text lines go to it only in text mode.
    let _ = match (file, g.log_format) {
        (Some(f), LogFormat::Text) => builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(f))
            .try_init(),
        (Some(_), LogFormat::Json) if !g.debug => builder.with_writer(std::io::sink).try_init(),
        _ => builder.with_writer(std::io::stderr).try_init(),
    };
}

/// One line in the --log file, as runc (logrus) writes it: containerd and conmon read the
/// last `"level":"error"` line's `msg` as the reason of a failure.
pub fn log_line(g: &Global, level: &str, msg: &str) {
    let Some(path) = &g.log else { return };
    let time = crate::containers::now();
    let line = match g.log_format {
        LogFormat::Json => {
            serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
        }
        LogFormat::Text => format!("time={time:?} level={level} msg={msg:?}"),
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// A warning: to the log file if any, else stderr.
pub fn warn(g: &Global, msg: &str) {
    if g.log.is_some() {
        log_line(g, "warning", msg);
    } else {
        eprintln!("{NAME}: warning: {msg}");
    }
}
