//! `exec`: another process in a running container, from a process JSON (`--process`,
//! as conmon and containerd-shim pass it) or from a command line.

use anyhow::{bail, Context};
use frun_runtime::{ExecOptions, Stdio};
use oci_spec::runtime::{Process, UserBuilder};
use std::path::PathBuf;
use std::process::ExitCode;

use super::lifecycle::{console_socket, wait_forwarding_signals};
use super::state::{write_pid_file, OciContainer, OciStatus};
use super::{ExecArgs, Global};
use crate::commands::exit_code;

pub fn exec(g: &Global, a: &ExecArgs) -> anyhow::Result<ExitCode> {
    let c = OciContainer::load(&g.root, &a.id)?;
    match c.status() {
        OciStatus::Stopped => bail!("cannot exec in a stopped container"),
        // Its process would be frozen before it got anywhere (runc refuses too).
        OciStatus::Paused => bail!("cannot exec in a paused container"),
        OciStatus::Created | OciStatus::Running => {}
    }
    let spec = c.spec()?;
    let mut process = match &a.process {
        Some(path) => {
            if !a.command.is_empty() {
                bail!("give either --process or a command, not both");
            }
            let data = std::fs::read(path).with_context(|| format!("reading {path:?}"))?;
            serde_json::from_slice::<Process>(&data)
                .with_context(|| format!("parsing the process {path:?}"))?
        }
        None => from_command_line(&spec, a)?,
    };
    super::compat::drop_unraisable_ambient(g, &mut process);
    if process.args().as_ref().is_none_or(|v| v.is_empty()) {
        bail!("the process has no args");
    }
    let terminal = process.terminal().unwrap_or(false);
    if terminal && a.console_socket.is_none() {
        bail!("process.terminal is true but no --console-socket was given");
    }
    let console = console_socket(a.console_socket.as_deref(), terminal)?;
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
    let started = frun_runtime::exec_with(
        c.saved.pid,
        &c.saved.cgroup,
        &process,
        seccomp.as_ref(),
        Stdio::default(),
        ExecOptions {
            console_socket: console,
            preserve_fds: a.preserve_fds,
        },
    )?;
    if let Some(pf) = &a.pid_file {
        write_pid_file(pf, started.pid)?;
    }
    if a.detach {
        // The process is reparented to the caller's subreaper when this one exits.
        return Ok(ExitCode::SUCCESS);
    }
    let exit = wait_forwarding_signals(&started)?;
    Ok(exit_code(exit.code))
}

/// `exec ID CMD...`: the container's own process with these args and overrides.
fn from_command_line(spec: &oci_spec::runtime::Spec, a: &ExecArgs) -> anyhow::Result<Process> {
    if a.command.is_empty() {
        bail!("exec needs --process FILE or a command");
    }
    let mut p = spec.process().clone().context("the spec has no process")?;
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    p.set_env(Some(crate::runspec::merge_env(
        p.env().clone().unwrap_or_default(),
        &a.env,
    )?));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(PathBuf::from(cwd));
    }
    if let Some(u) = &a.user {
        let (uid, gid): (u32, u32) = match u.split_once(':') {
            Some((u, g)) => (u.parse()?, g.parse()?),
            None => (u.parse()?, 0),
        };
        p.set_user(UserBuilder::default().uid(uid).gid(gid).build()?);
    }
    Ok(p)
}
