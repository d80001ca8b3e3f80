//! Seccomp: frun's default profile (in OCI form, so it shows in `config.json` like any
//! other) and the compiler from an OCI `LinuxSeccomp` to BPF, built on seccompiler.
//!
//! seccompiler gives each filter one match action, while an OCI profile gives each rule
//! its own; so a profile becomes a few stacked filters, one per action. The kernel runs
//! them all and keeps the most restrictive verdict, which is exactly the OCI meaning as
//! long as no syscall appears under two actions of the same kind.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;
use std::str::FromStr;

/// Syscalls the default profile refuses with EPERM: what Docker's and podman's profiles
/// refuse to a container without CAP_SYS_ADMIN, CAP_SYS_MODULE, CAP_SYS_TIME, ...:
/// kernel modules and kexec, mounts and namespaces, keyrings, BPF and perf, clock
/// changes, swap, reboot, raw I/O ports, handle-based opens (the "shocker" escape),
/// userfaultfd, io_uring.
pub const DENIED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "migrate_pages",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "personality",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "syslog",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vhangup",
    "_sysctl",
    "sysfs",
    "adjtimex",
    "lsm_set_self_attr",
];

/// `clone` flags that create namespaces: refused, as `unshare` is.
const CLONE_NS_FLAGS: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWCGROUP as u64,
];

fn syscall(names: &[&str], action: LinuxSeccompAction, errno: Option<u32>) -> LinuxSyscall {
    let mut b = LinuxSyscallBuilder::default()
        .names(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .action(action);
    if let Some(e) = errno {
        b = b.errno_ret(e);
    }
    b.build().expect("syscall rule")
}

/// frun's default profile: allow by default, refuse the dangerous.
pub fn default_profile() -> LinuxSeccomp {
    let mut syscalls = vec![syscall(
        DENIED,
        LinuxSeccompAction::ScmpActErrno,
        Some(libc::EPERM as u32),
    )];
    for flag in CLONE_NS_FLAGS {
        let arg = LinuxSeccompArgBuilder::default()
            .index(0usize)
            .value(*flag)
            .value_two(*flag)
            .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
            .build()
            .expect("arg");
        let mut s = syscall(
            &["clone"],
            LinuxSeccompAction::ScmpActErrno,
            Some(libc::EPERM as u32),
        );
        s.set_args(Some(vec![arg]));
        syscalls.push(s);
    }
    // clone3's flags live in memory, out of BPF's reach: answer ENOSYS so that libc
    // falls back to clone, whose flags are checked (Docker does the same).
    syscalls.push(syscall(
        &["clone3"],
        LinuxSeccompAction::ScmpActErrno,
        Some(libc::ENOSYS as u32),
    ));
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(vec![Arch::ScmpArchX86_64, Arch::ScmpArchAarch64])
        .syscalls(syscalls)
        .build()
        .expect("seccomp profile")
}

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp action {0:?} is not supported")]
    Action(LinuxSeccompAction),
    #[error("seccomp rule for {syscall}: {reason}")]
    Rule { syscall: String, reason: String },
    #[error("seccomp filter: {0}")]
    Filter(String),
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<SeccompAction, SeccompError> {
    use LinuxSeccompAction as A;
    Ok(match a {
        A::ScmpActAllow => SeccompAction::Allow,
        A::ScmpActErrno => SeccompAction::Errno(errno.unwrap_or(libc::EPERM as u32)),
        A::ScmpActKill | A::ScmpActKillThread => SeccompAction::KillThread,
        A::ScmpActKillProcess => SeccompAction::KillProcess,
        A::ScmpActTrap => SeccompAction::Trap,
        A::ScmpActLog => SeccompAction::Log,
        A::ScmpActTrace => SeccompAction::Trace(errno.unwrap_or(0)),
        other => return Err(SeccompError::Action(other)),
    })
}

fn target_arch() -> TargetArch {
    #[cfg(target_arch = "aarch64")]
    {
        TargetArch::aarch64
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        TargetArch::x86_64
    }
}

/// Loads one compiled filter into the calling thread, without setting no_new_privs
/// (seccompiler's `apply_filter` always sets it): a process that keeps
/// CAP_SYS_ADMIN may load a filter without it, and `process.noNewPrivileges: false`
/// means the container's program must be able to gain privileges through execve
/// (setuid binaries, file capabilities), as runc has it. With no_new_privs wanted,
/// the caller sets it first.
pub(crate) fn load(prog: &BpfProgram) -> std::io::Result<()> {
    if prog.is_empty() {
        return Ok(());
    }
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: the kernel copies the program in (`copy_from_user`) and keeps no pointer
    // to `prog`, which outlives the call; seccompiler's `sock_filter` has the kernel's
    // layout (u16, u8, u8, u32), as libc's does.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &fprog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Compiles an OCI profile into the filters to load, in order.
pub fn compile(profile: &LinuxSeccomp) -> Result<Vec<BpfProgram>, SeccompError> {
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    // Per action (its Debug form is a fine key): syscall number -> rules.
    // `None`: the syscall matches whatever its arguments.
    type Rules = BTreeMap<i64, Option<Vec<SeccompRule>>>;
    let mut groups: BTreeMap<String, (SeccompAction, Rules)> = BTreeMap::new();
    for s in profile.syscalls().iter().flatten() {
        let act = action(s.action(), s.errno_ret())?;
        let mut conditions = Vec::new();
        for a in s.args().iter().flatten() {
            let op = match a.op() {
                LinuxSeccompOperator::ScmpCmpNe => SeccompCmpOp::Ne,
                LinuxSeccompOperator::ScmpCmpLt => SeccompCmpOp::Lt,
                LinuxSeccompOperator::ScmpCmpLe => SeccompCmpOp::Le,
                LinuxSeccompOperator::ScmpCmpEq => SeccompCmpOp::Eq,
                LinuxSeccompOperator::ScmpCmpGe => SeccompCmpOp::Ge,
                LinuxSeccompOperator::ScmpCmpGt => SeccompCmpOp::Gt,
                LinuxSeccompOperator::ScmpCmpMaskedEq => SeccompCmpOp::MaskedEq(a.value()),
            };
            let value = match a.op() {
                LinuxSeccompOperator::ScmpCmpMaskedEq => a.value_two().unwrap_or(0),
                _ => a.value(),
            };
            let c = SeccompCondition::new(a.index() as u8, SeccompCmpArgLen::Qword, op, value)
                .map_err(|e| SeccompError::Rule {
                    syscall: s.names().join(","),
                    reason: e.to_string(),
                })?;
            conditions.push(c);
        }
        let key = format!("{act:?}");
        let entry = groups
            .entry(key)
            .or_insert_with(|| (act.clone(), BTreeMap::new()));
        for name in s.names() {
            // Names this kernel architecture lacks are skipped, as libseccomp does.
            let Ok(nr) = syscalls::Sysno::from_str(name) else {
                continue;
            };
            let slot = entry
                .1
                .entry(nr.id() as i64)
                .or_insert_with(|| Some(Vec::new()));
            if conditions.is_empty() {
                *slot = None;
            } else if let Some(rules) = slot {
                let rule =
                    SeccompRule::new(conditions.clone()).map_err(|e| SeccompError::Rule {
                        syscall: name.clone(),
                        reason: e.to_string(),
                    })?;
                rules.push(rule);
            }
        }
    }
    let mut programs = Vec::new();
    let build = |rules: Rules, mismatch: SeccompAction, matched: SeccompAction| {
        let rules = rules
            .into_iter()
            .map(|(nr, r)| (nr, r.unwrap_or_default()))
            .collect();
        let filter = SeccompFilter::new(rules, mismatch, matched, target_arch())
            .map_err(|e| SeccompError::Filter(e.to_string()))?;
        BpfProgram::try_from(filter).map_err(|e| SeccompError::Filter(e.to_string()))
    };
    // The default first: filters installed later win ties between equal actions.
    if default != SeccompAction::Allow {
        let allowed = groups
            .remove(&format!("{:?}", SeccompAction::Allow))
            .map(|(_, r)| r)
            .unwrap_or_default();
        programs.push(build(allowed, default.clone(), SeccompAction::Allow)?);
    } else {
        groups.remove(&format!("{:?}", SeccompAction::Allow));
    }
    for (_, (act, rules)) in groups {
        if act == default || rules.is_empty() {
            continue;
        }
        programs.push(build(rules, SeccompAction::Allow, act)?);
    }
    Ok(programs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profile_compiles() {
        let progs = compile(&default_profile()).unwrap();
        // EPERM rules and the ENOSYS rule for clone3.
        assert_eq!(progs.len(), 2);
        assert!(progs.iter().all(|p| !p.is_empty()));
    }

    #[test]
    fn allowlist_profiles_compile() {
        let profile = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActErrno)
            .syscalls(vec![
                syscall(
                    &["read", "write", "exit_group", "no_such_syscall"],
                    LinuxSeccompAction::ScmpActAllow,
                    None,
                ),
                syscall(&["getpid"], LinuxSeccompAction::ScmpActKillProcess, None),
            ])
            .build()
            .unwrap();
        assert_eq!(compile(&profile).unwrap().len(), 2);
    }
}
