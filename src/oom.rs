//! Whom the kernel's OOM killer struck in a container, told from how the container's
//! own first process ended and from the cgroup's count of OOM kills (v2
//! `memory.events`, v1 `memory.oom_control`). The count alone does not say which
//! process went: a shell whose child was killed can go on and exit 0, and the container
//! was not "killed by the kernel". Only an init that died of SIGKILL while the count
//! went up was (the kernel's OOM killer sends SIGKILL, and nothing tells apart a
//! `kill -9` that came at the same moment).

use nix::sys::signal::Signal;

/// What the OOM killer did to a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OomVerdict {
    /// Nothing: no OOM kill in its cgroup.
    None,
    /// The container's own first process was killed (and with it the container).
    InitKilled,
    /// Only other processes in it were, this many.
    OthersKilled(u64),
}

/// The verdict for an init that ended with `signal` (`None`: it exited) in a cgroup
/// with `oom_kills` OOM kills.
pub fn oom_verdict(signal: Option<i32>, oom_kills: u64) -> OomVerdict {
    match (signal, oom_kills) {
        (_, 0) => OomVerdict::None,
        (Some(s), _) if s == Signal::SIGKILL as i32 => OomVerdict::InitKilled,
        (_, n) => OomVerdict::OthersKilled(n),
    }
}

impl OomVerdict {
    /// The `frun:` line to tell the user, if any, for container `name` with memory
    /// limit `limit` (as the user gave it).
    pub fn message(&self, name: &str, limit: Option<&str>) -> Option<String> {
        let limit = limit.unwrap_or("none");
        match self {
            OomVerdict::None => None,
            OomVerdict::InitKilled => Some(format!(
                "frun: container {name} was killed by the kernel: out of memory (limit {limit})"
            )),
            OomVerdict::OthersKilled(n) => Some(format!(
                "frun: {n} process{} in container {name} {} killed by the kernel: out of memory (limit {limit})",
                if *n == 1 { "" } else { "es" },
                if *n == 1 { "was" } else { "were" },
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_init_killed_by_sigkill_is_the_container_killed() {
        assert_eq!(oom_verdict(Some(9), 1), OomVerdict::InitKilled);
        assert_eq!(oom_verdict(None, 1), OomVerdict::OthersKilled(1));
        assert_eq!(oom_verdict(Some(15), 2), OomVerdict::OthersKilled(2));
        assert_eq!(oom_verdict(Some(9), 0), OomVerdict::None);
        assert_eq!(oom_verdict(None, 0), OomVerdict::None);
        assert_eq!(
            oom_verdict(None, 1).message("web", Some("64m")).unwrap(),
            "frun: 1 process in container web was killed by the kernel: out of memory (limit 64m)"
        );
        assert_eq!(
            oom_verdict(None, 3).message("web", None).unwrap(),
            "frun: 3 processes in container web were killed by the kernel: out of memory (limit none)"
        );
        assert!(oom_verdict(Some(9), 1)
            .message("web", Some("64m"))
            .unwrap()
            .starts_with("frun: container web was killed by the kernel: out of memory"));
        assert_eq!(oom_verdict(None, 0).message("web", None), None);
    }
}
