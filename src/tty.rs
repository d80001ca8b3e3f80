//! `-t`: a container's terminal, as `docker run -it` gives it. The runtime makes a pty in
//! the container's own devpts and sends its master end over a socket pair
//! ([`console_pair`], [`recv_master`]); frun then relays the user's terminal to it
//! ([`relay`]): raw mode while it runs, keystrokes in, output out, window size changes
//! (SIGWINCH) passed on. Detached, the master's output goes to the container's log.

use anyhow::Context;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::termios::{self, SetArg, Termios};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// A connected socket pair: the first end is frun's, the second the runtime's
/// (`SpawnOptions::console_socket`).
pub fn console_pair() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("making the console socket pair")
}

/// The pty master the container's process sent over `sock`.
pub fn recv_master(sock: &OwnedFd) -> anyhow::Result<OwnedFd> {
    let (fds, _name) =
        frun_runtime::fdpass::recv_fds(sock).context("receiving the container's terminal")?;
    fds.into_iter()
        .next()
        .context("the container sent no terminal")
}

/// The terminal's settings before raw mode; restored when dropped.
pub struct RawMode {
    fd: RawFd,
    saved: Termios,
}

impl RawMode {
    /// Puts the terminal on `fd` in raw mode (Ctrl-C and the rest go to the container
    /// as bytes), or with `output_only` only turns off its output processing (the
    /// container's pty already turned each newline into CR LF); `None` when `fd` is no
    /// terminal.
    pub fn enter(fd: RawFd, output_only: bool) -> Option<RawMode> {
        // SAFETY: `fd` is one of this process's stdio descriptors, open for its lifetime.
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        let saved = termios::tcgetattr(b).ok()?;
        let mut raw = saved.clone();
        if output_only {
            raw.output_flags.remove(termios::OutputFlags::OPOST);
        } else {
            termios::cfmakeraw(&mut raw);
        }
        termios::tcsetattr(b, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: as in `enter`.
        let b = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = termios::tcsetattr(b, SetArg::TCSANOW, &self.saved);
    }
}

/// The window size of the caller's terminal: stdin's, else stdout's.
fn window_size() -> Option<libc::winsize> {
    [0, 1].into_iter().find_map(|fd| {
        // SAFETY: TIOCGWINSZ writes into a zeroed winsize local (plain integers).
        let (ok, ws) = unsafe {
            let mut ws: libc::winsize = std::mem::zeroed();
            (libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) == 0, ws)
        };
        (ok && ws.ws_row > 0).then_some(ws)
    })
}

/// Gives the pty `to` the caller's window size (if the caller has a terminal).
fn copy_size(to: &impl AsFd) {
    if let Some(ws) = window_size() {
        // SAFETY: TIOCSWINSZ reads a winsize local.
        unsafe { libc::ioctl(to.as_fd().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
}

/// The caller's window size for the container's pty from its very start
/// (`process.consoleSize`).
pub fn console_size() -> Option<oci_spec::runtime::Box> {
    let ws = window_size()?;
    oci_spec::runtime::BoxBuilder::default()
        .height(u64::from(ws.ws_row))
        .width(u64::from(ws.ws_col))
        .build()
        .ok()
}

/// A relay between this process's stdio and the pty `master`, running in threads.
pub struct Relay {
    output: std::thread::JoinHandle<()>,
    _raw: Option<RawMode>,
}

impl Relay {
    /// Waits until the container's side of the pty is closed and everything it wrote
    /// has been copied out, then restores the terminal.
    pub fn finish(self) {
        let _ = self.output.join();
    }
}

/// Starts relaying: the pty's output to stdout; with `interactive`, stdin to the pty
/// (and raw mode if stdin is a terminal). SIGWINCH must already be blocked in every
/// thread of this process (see [`block_winch`]): a thread here waits for it.
pub fn relay(master: OwnedFd, interactive: bool) -> anyhow::Result<Relay> {
    let raw = match interactive {
        true => RawMode::enter(0, false),
        false => RawMode::enter(1, true),
    };
    if interactive {
        let to = master.try_clone()?;
        std::thread::spawn(move || {
            let mut to = std::fs::File::from(to);
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 4096];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    let sized = master.try_clone()?;
    std::thread::spawn(move || {
        let set = winch_set();
        while set.wait().is_ok() {
            copy_size(&sized);
        }
    });
    let output = std::thread::spawn(move || {
        let mut from = std::fs::File::from(master);
        let mut out = std::io::stdout();
        let mut buf = [0u8; 16384];
        // EIO once every slave fd is closed: the container is done with it.
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
                break;
            }
        }
    });
    Ok(Relay { output, _raw: raw })
}

fn winch_set() -> nix::sys::signal::SigSet {
    let mut s = nix::sys::signal::SigSet::empty();
    s.add(nix::sys::signal::Signal::SIGWINCH);
    s
}

/// Blocks SIGWINCH in the calling thread (and so in every thread it starts later), so
/// that [`relay`]'s thread can wait for it.
pub fn block_winch() -> anyhow::Result<()> {
    winch_set().thread_block().context("blocking SIGWINCH")
}
