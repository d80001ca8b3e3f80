//! A scheduled backup's long work runs in the machine's background: the calling thread
//! (and the threads it starts meanwhile: the integrity check, libzstd's worker) at the
//! lowest CPU priority and the idle I/O class, so the app keeps its CPU and disk while
//! the database is copied and the archive compressed, hashed and written (restic and
//! borg advise `nice`/`ionice` for unattended backups). The guard puts back what the
//! thread had for the work that must be quick: the copy while the app is frozen, and a
//! database copy in rollback-journal mode, which the app's writers wait for.
//!
//! Only scheduled backups: nobody waits for them. A `frun backup` someone runs is at
//! normal priority: measured on a 2-core machine shared with other builds
//! (scripts/bench/backup.sh), the background class made the backup 1.3-3x slower
//! there (it yields to every other task, not only the app's) with no measurable gain
//! in the app's longest request; with the machine nearly idle it cost no time and
//! shortened the app's longest request during a backup only a little (~105 -> ~93 ms).
//!
//! CPU: `SCHED_IDLE` rather than `nice 19`: a nice value only weighs against tasks of
//! the same cgroup, while the app runs in its own; a `SCHED_IDLE` task is preempted by
//! a waking normal task whatever its cgroup (at the level where their groups meet).
//! I/O: the idle class (`ioprio_set`), honoured by the bfq and mq-deadline schedulers
//! for the I/O this thread submits itself (its reads, its fsync's writeback).

/// `ioprio_set`'s "who": one thread (0: the calling one).
const IOPRIO_WHO_PROCESS: libc::c_int = 1;
const IOPRIO_CLASS_SHIFT: libc::c_int = 13;
const IOPRIO_CLASS_IDLE: libc::c_int = 3;

/// The calling thread in the background until dropped.
pub struct Background {
    policy: libc::c_int,
    param: libc::sched_param,
    ioprio: libc::c_int,
    active: bool,
}

impl Background {
    /// Lowers the calling thread's CPU and I/O priority. Failing to (a kernel or
    /// sandbox without the calls) only costs the app some latency: logged, not fatal.
    pub fn enter() -> Background {
        // SAFETY: sched_getscheduler/sched_getparam of the calling thread (0) write
        // only into the local `param`.
        let policy = unsafe { libc::sched_getscheduler(0) };
        let mut param = libc::sched_param { sched_priority: 0 };
        // SAFETY: as above; `param` is a valid, writable sched_param.
        let got = unsafe { libc::sched_getparam(0, &mut param) };
        // SAFETY: ioprio_get(IOPRIO_WHO_PROCESS, 0) reads the calling thread's I/O
        // priority; no memory is passed.
        let ioprio =
            unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0) } as libc::c_int;
        let mut b = Background {
            policy,
            param,
            ioprio,
            active: false,
        };
        if policy < 0 || got < 0 || ioprio < 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "reading this thread's priority");
            return b;
        }
        let idle = libc::sched_param { sched_priority: 0 };
        // SAFETY: sets the calling thread's (0) policy from a valid sched_param.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &idle) } < 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "SCHED_IDLE");
        }
        // SAFETY: ioprio_set of the calling thread (0); no memory is passed.
        if unsafe {
            libc::syscall(
                libc::SYS_ioprio_set,
                IOPRIO_WHO_PROCESS,
                0,
                IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
            )
        } < 0
        {
            tracing::debug!(error = %std::io::Error::last_os_error(), "ioprio idle");
        }
        b.active = true;
        b
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if !self.active {
            return;
        }
        // SAFETY: the calling thread's (0) policy and I/O priority set back to what
        // `enter` read (`param` a valid sched_param).
        unsafe {
            libc::sched_setscheduler(0, self.policy, &self.param);
            libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, self.ioprio);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's scheduling policy and I/O priority class.
    fn now() -> (libc::c_int, libc::c_int) {
        // SAFETY: both read the calling thread's (0) settings; no memory is passed.
        let (policy, io) = unsafe {
            (
                libc::sched_getscheduler(0),
                libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0) as libc::c_int,
            )
        };
        (policy, io >> IOPRIO_CLASS_SHIFT)
    }

    #[test]
    fn the_thread_is_idle_inside_and_as_before_after() {
        let before = now();
        {
            let _b = Background::enter();
            assert_eq!(now(), (libc::SCHED_IDLE, IOPRIO_CLASS_IDLE));
            // A thread started meanwhile inherits it.
            let inner = std::thread::spawn(now).join().unwrap();
            assert_eq!(inner, (libc::SCHED_IDLE, IOPRIO_CLASS_IDLE));
        }
        assert_eq!(now(), before);
    }
}
