//! A container's terminal (`process.terminal`, the OCI `--console-socket`): a pty made
//! from the container's own devpts instance, after the pivot; its master end goes to the
//! caller over a unix socket (SCM_RIGHTS, as runc sends it: conmon and containerd-shim
//! receive it there), its slave end becomes the process's stdio and controlling terminal.

use std::os::fd::{BorrowedFd, RawFd};

use crate::error::{Cause, SetupError};

type R<T> = Result<T, SetupError>;

fn last(op: &str) -> SetupError {
    SetupError::Console {
        op: op.into(),
        cause: Cause::last_os_error(),
    }
}

/// Makes the pty, sends its master over `socket`, and makes the slave this process's
/// stdio and controlling terminal. Runs inside the container (a session leader).
pub(crate) fn setup(socket: RawFd, size: Option<(u32, u32)>) -> R<()> {
    // SAFETY: plain syscalls on fds this function opens and owns; every pointer passed
    // points to a live local of the right type.
    unsafe {
        let master = libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if master < 0 {
            return Err(last("opening /dev/ptmx in the container"));
        }
        let unlock: libc::c_int = 0;
        if libc::ioctl(master, libc::TIOCSPTLCK, &unlock) != 0 {
            let e = last("unlocking the pty");
            libc::close(master);
            return Err(e);
        }
        let slave = libc::ioctl(
            master,
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if slave < 0 {
            let e = last("opening the pty's slave end");
            libc::close(master);
            return Err(e);
        }
        if let Some((height, width)) = size {
            let ws = libc::winsize {
                ws_row: height.min(u16::MAX as u32) as u16,
                ws_col: width.min(u16::MAX as u32) as u16,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            libc::ioctl(slave, libc::TIOCSWINSZ, &ws);
        }
        // The pty's name as the payload, as runc sends it.
        let sent =
            crate::fdpass::send_fds(&BorrowedFd::borrow_raw(socket), &[master], b"/dev/ptmx")
                .map_err(|e| SetupError::Console {
                    op: "sending the pty to the console socket".into(),
                    cause: e.into(),
                });
        libc::close(master);
        libc::close(socket);
        if let Err(e) = sent {
            libc::close(slave);
            return Err(e);
        }
        if libc::ioctl(slave, libc::TIOCSCTTY, 0) != 0 {
            let e = last("making the pty the controlling terminal");
            libc::close(slave);
            return Err(e);
        }
        for target in 0..3 {
            if libc::dup2(slave, target) < 0 {
                let e = last("pty as stdio");
                libc::close(slave);
                return Err(e);
            }
        }
        libc::close(slave);
    }
    Ok(())
}
