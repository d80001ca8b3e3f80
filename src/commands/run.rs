//! `frun run` and `frun exec`: a description from the flags, the container created,
//! and its holder (`crate::holder`) started in this process or a new one.

use anyhow::{bail, Context};
use frun_runtime::Stdio;
use nix::sys::signal::{self, Signal};
use std::path::PathBuf;
use std::process::ExitCode;

use super::exit_code;
use crate::cli::{ExecArgs, Global, RunArgs};
use crate::containers::{Containers, Status};
use crate::holder::{self, code, holder_command, start_detached, StartFailed, EXIT_FRUN_ERROR};
use crate::model::Description;
use crate::runspec;

/// `frun run`: a failure before the container's command runs (a bad flag, an unknown
/// user, an image for another platform, a name in use) exits 125, as Docker's does, so
/// that a caller can tell it from the command's own exit code.
pub fn run(g: &Global, args: RunArgs) -> anyhow::Result<ExitCode> {
    match run_container(g, args) {
        Ok(code) => Ok(code),
        Err(e) => {
            if let Some(f) = e.downcast_ref::<StartFailed>() {
                eprint!("{}", f.message);
                return Ok(code(f.code));
            }
            eprintln!("frun: error: {e:#}");
            Ok(ExitCode::from(EXIT_FRUN_ERROR))
        }
    }
}

fn run_container(g: &Global, args: RunArgs) -> anyhow::Result<ExitCode> {
    // 1. Flags to a validated description, before anything exists.
    let d = Description::from_run(&args)?;
    // 2. The container: image, record, network, spec.
    let c = crate::model::create(g, &d, args.quiet)?;
    // 3. Its holder starts and supervises it: in this very process for a foreground
    //    run, which saves starting frun a second time, unless something made it
    //    multi-threaded (a pull does) and so unfit to fork a container; in a new
    //    process otherwise (a detached run must outlive this command).
    if !args.detach && frun_runtime::single_threaded() {
        return Ok(holder::run(g, &c.record.id, false).unwrap_or_else(|e| {
            // As `frun __holder` would end.
            eprintln!("frun: error: {e:#}");
            ExitCode::FAILURE
        }));
    }
    if args.detach {
        start_detached(g, &c)?;
        println!("{}", c.record.id);
        return Ok(ExitCode::SUCCESS);
    }
    let mut child = holder_command(g, &c.record.id)?
        .spawn()
        .context("starting the container's holder")?;
    // Ctrl-C reaches the holder too (same process group); it stops the container, and
    // this process waits for the exit code instead of dying first.
    // SAFETY: replacing the disposition of SIGINT/SIGTERM with SIG_IGN has no handler.
    unsafe {
        let _ = signal::signal(Signal::SIGINT, signal::SigHandler::SigIgn);
    }
    let status = child.wait()?;
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => exit_code(c),
        (None, Some(s)) => exit_code(128 + s),
        _ => ExitCode::FAILURE,
    })
}

pub fn exec(g: &Global, args: ExecArgs) -> anyhow::Result<ExitCode> {
    let containers = Containers::open(&g.root)?;
    let c = containers.find(&args.container)?;
    let st = c.state()?;
    if st.status != Status::Running {
        bail!("container {} is not running", c.record.name);
    }
    let pid = st.pid.context("running container without a pid")?;
    let spec = c.spec()?;
    let mut process = spec
        .process()
        .clone()
        .context("the container's spec has no process")?;
    if args.command.is_empty() {
        bail!("no command given");
    }
    process.set_args(Some(args.command.clone()));
    process.set_env(Some(runspec::merge_env(
        process.env().clone().unwrap_or_default(),
        &args.env,
    )?));
    if let Some(w) = &args.workdir {
        process.set_cwd(PathBuf::from(w));
    }
    if let Some(u) = &args.user {
        // Names are looked up in the running container's own files, as Docker does
        // (resolved inside its root: a symlinked /etc/passwd cannot point out of it).
        let root = [PathBuf::from(format!("/proc/{pid}/root"))];
        let (uid, gid, extra) = runspec::resolve_user(
            u,
            runspec::read_image_file(&root, "etc/passwd").as_deref(),
            runspec::read_image_file(&root, "etc/group").as_deref(),
        )
        .with_context(|| format!("--user {u:?}"))?;
        let user = oci_spec::runtime::UserBuilder::default()
            .uid(uid)
            .gid(gid)
            .additional_gids(extra)
            .build()?;
        process.set_user(user);
    }
    process.set_terminal(Some(args.tty));
    process.set_console_size(None);
    if args.tty {
        process.set_console_size(crate::tty::console_size());
        crate::tty::block_winch()?;
        let mut env = process.env().clone().unwrap_or_default();
        if !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        process.set_env(Some(env));
    }
    let (console, console_theirs) = match args.tty {
        true => {
            let (ours, theirs) = crate::tty::console_pair()?;
            (Some(ours), Some(theirs))
        }
        false => (None, None),
    };
    let stdio = match (args.tty, args.interactive) {
        (false, false) => Stdio {
            stdin: Some(std::fs::File::open("/dev/null")?.into()),
            ..Default::default()
        },
        _ => Stdio::default(),
    };
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
    let started = frun_runtime::exec_with(
        pid,
        &c.record.cgroup,
        &process,
        seccomp.as_ref(),
        stdio,
        frun_runtime::ExecOptions {
            preserve_fds: 0,
            console_socket: console_theirs,
        },
    )?;
    // SAFETY: ignoring SIGINT installs no handler; the exec'd process has its own session.
    unsafe {
        let _ = signal::signal(Signal::SIGINT, signal::SigHandler::SigIgn);
    }
    let relay = match &console {
        Some(sock) => Some(crate::tty::relay(
            crate::tty::recv_master(sock)?,
            args.interactive,
        )?),
        None => None,
    };
    let exit = frun_runtime::wait(&started)?;
    if let Some(r) = relay {
        r.finish();
    }
    Ok(exit_code(exit.code))
}
