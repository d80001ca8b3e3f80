//! Waiting for a process that is not our child to end, without polling `/proc`.
//!
//! A stop waits for the container's process, then for its holder: polling their
//! `/proc/PID/stat` every 10 ms cost each stop about 5 ms per wait on average, and a
//! wake-up every 10 ms on a box whose CPUs are busy serving. A pidfd (Linux 5.3) turns
//! readable the moment the process exits, so the wait ends then. The pid is checked
//! against its recorded start time after the pidfd is opened, so a pid reused by
//! another process is never watched (nor signalled). Without pidfds (an older kernel)
//! the same calls signal by pid and poll, as frun did before.

use crate::containers::pid_start;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

/// A process: its pid and start time, and a pidfd where the kernel has them.
pub struct Watched {
    pid: i32,
    start: u64,
    fd: Option<OwnedFd>,
}

impl Watched {
    /// `pid`, if it is alive and (when given) started at `start`.
    pub fn open(pid: i32, start: Option<u64>) -> Option<Watched> {
        // Opened first, checked second: the pidfd then names this process even if the
        // pid is reused later.
        let fd = pidfd_open(Pid::from_raw(pid)?, PidfdFlags::empty()).ok();
        let now = pid_start(pid)?;
        if start.is_some_and(|s| s != now) {
            return None;
        }
        Some(Watched {
            pid,
            start: now,
            fd,
        })
    }

    fn alive(&self) -> bool {
        pid_start(self.pid) == Some(self.start)
    }

    /// Sends `sig` (a raw signal number; SIGTERM when it is not one).
    pub fn signal(&self, sig: i32) {
        let sig = Signal::from_named_raw(sig).unwrap_or(Signal::TERM);
        let r = match &self.fd {
            Some(fd) => pidfd_send_signal(fd, sig),
            None if self.alive() => {
                rustix::process::kill_process(Pid::from_raw(self.pid).expect("pid > 0"), sig)
            }
            None => Ok(()),
        };
        if let Err(e) = r {
            if e != rustix::io::Errno::SRCH {
                tracing::debug!(error = %e, pid = self.pid, "signalling a process");
            }
        }
    }

    /// True once the process has exited (a zombie counts), waiting at most `timeout`.
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let Some(fd) = &self.fd else {
            while self.alive() {
                if Instant::now() >= deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            return true;
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ts = Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: left.subsec_nanos() as i64,
            };
            let mut fds = [PollFd::new(fd, PollFlags::IN)];
            match poll(&mut fds, Some(&ts)) {
                Ok(n) if n > 0 => return true,
                Ok(_) => return false,
                Err(rustix::io::Errno::INTR) if !left.is_zero() => continue,
                Err(_) => return !self.alive(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child that lives long enough to be watched.
    fn sleeper() -> std::process::Child {
        std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap()
    }

    #[test]
    fn a_wait_ends_when_the_process_does_and_a_wrong_start_is_refused() {
        let mut child = sleeper();
        let pid = child.id() as i32;
        let start = pid_start(pid);
        assert!(Watched::open(pid, start.map(|s| s + 1)).is_none());
        let w = Watched::open(pid, start).expect("alive");
        assert!(!w.wait(Duration::from_millis(20)), "still running");
        w.signal(libc::SIGKILL);
        assert!(w.wait(Duration::from_secs(10)), "ended");
        child.wait().unwrap();
        assert!(Watched::open(pid, start).is_none(), "gone");
    }

    #[test]
    fn without_a_pidfd_it_signals_by_pid_and_polls() {
        let mut child = sleeper();
        let pid = child.id() as i32;
        let mut w = Watched::open(pid, None).expect("alive");
        w.fd = None;
        assert!(!w.wait(Duration::from_millis(20)), "still running");
        w.signal(libc::SIGKILL);
        child.wait().unwrap();
        assert!(w.wait(Duration::from_secs(10)), "ended");
    }
}
