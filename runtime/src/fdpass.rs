//! Passing file descriptors over a unix socket (SCM_RIGHTS), one message at a time: the
//! pty master a container sends to its caller (`--console-socket`), the mounts a parent
//! makes for a container in a user namespace.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Sends `fds` over the unix socket `sock` in one message, with `payload` (not empty:
/// a stream socket carries no message of zero bytes) as its data.
pub fn send_fds(sock: &impl AsFd, fds: &[RawFd], payload: &[u8]) -> std::io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let iov = [IoSlice::new(payload)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(
        sock.as_fd().as_raw_fd(),
        &iov,
        cmsgs,
        MsgFlags::empty(),
        None,
    )?;
    Ok(())
}

/// Receives one message of [`send_fds`]: its fds (close-on-exec) and up to 64 bytes of
/// its payload.
pub fn recv_fds(sock: &impl AsFd) -> std::io::Result<(Vec<OwnedFd>, Vec<u8>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 64];
    let mut iov = [IoSliceMut::new(&mut buf)];
    // SCM_MAX_FD: the most one message can carry.
    let mut space = nix::cmsg_space!([RawFd; 253]);
    let msg = recvmsg::<()>(
        sock.as_fd().as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: the kernel just installed these fds in this process for us.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    let n = msg.bytes;
    Ok((fds, buf[..n].to_vec()))
}
