//! A container's terminal (`process.terminal`, the OCI `--console-socket`): a pty made
//! from the container's own devpts instance, after the pivot; its master end goes to the
//! caller over a unix socket (SCM_RIGHTS, as runc sends it: conmon and containerd-shim
//! receive it there), its slave end becomes the process's stdio and controlling terminal.

use std::os::fd::RawFd;

type R<T> = Result<T, String>;

fn last(op: &str) -> String {
    format!("{op}: {}", std::io::Error::last_os_error())
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
        let sent = send_fd(socket, master, b"/dev/ptmx");
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

/// Sends `fd` over the unix socket `socket` with `name` as the payload.
fn send_fd(socket: RawFd, fd: RawFd, name: &[u8]) -> R<()> {
    // SAFETY: the msghdr points at locals that outlive the call; the control buffer is
    // sized with CMSG_SPACE for one fd and aligned as a cmsghdr.
    unsafe {
        let mut iov = libc::iovec {
            iov_base: name.as_ptr() as *mut libc::c_void,
            iov_len: name.len(),
        };
        let space = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
        let mut control = vec![0u64; space.div_ceil(8)];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut RawFd, fd);
        if libc::sendmsg(socket, &msg, 0) < 0 {
            return Err(last("sending the pty to the console socket"));
        }
    }
    Ok(())
}
