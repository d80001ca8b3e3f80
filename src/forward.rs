//! The userspace port forwarder: publishes a host port by accepting connections (or UDP
//! datagrams) and relaying them to a container's address. No iptables DNAT, no process
//! per port: it lives in the container's supervising process, on one thread.
//!
//! The target is switchable while it runs ([`Target::set`]): new connections go to the
//! new address, open ones finish where they are. That is what a zero-downtime swap
//! needs. TCP keeps half-close (one side's FIN is passed on while the other direction
//! goes on). UDP keeps one upstream socket per client address, dropped after an idle
//! timeout. Optionally a PROXY protocol v1 line tells the target who the client really is.
//!
//! What a connection costs is mostly the kernel's work for the second TCP connection, so
//! the forwarder keeps that small:
//! - The upstream socket is made inside the container's network namespace (the thread
//!   moves there, see [`Target::in_netns`]) and connects to the container's address from
//!   there: local traffic of that namespace, over its loopback, with no veth, bridge or
//!   host firewall hooks on the way. The server sees the container's own address as the
//!   peer (Docker's proxy shows the bridge's; rootlesskit's 127.0.0.1).
//! - The client's first bytes, when they are already there (the client speaks first in
//!   most protocols), go out right after the connect with the handshake's last ACK on
//!   them (TCP_DEFER_ACCEPT on a connecting socket delays that ACK).
//! - Small reads go through one buffer of the thread: a recv and a send, no pipes. When
//!   the peer's FIN is already in, the last bytes go with MSG_MORE, so that the FIN
//!   passed on rides on them. A read that fills the buffer marks a bulk flow, which goes
//!   on with `splice(2)` through a pipe, never through user memory.
//! - The listener has TCP_NODELAY, which accepted sockets inherit.
//! - The forwarder's thread runs with SCHED_BATCH: woken by a packet, it does not preempt
//!   the task running on that CPU (the client, the server, the app) but runs at the next
//!   scheduling point, and then handles in one go everything that came meanwhile. On a
//!   saturated host that is fewer context switches for everyone (measured with wrk and
//!   busybox httpd on 2 cores: about a fifth less forwarder CPU per request, up to a
//!   tenth more requests/s). The price, only when every CPU is busy: a forwarded packet
//!   may wait until the running task blocks or its time slice ends (a few ms). On a CPU
//!   with idle time nothing changes.
//!
//! Failures a user meets (a target that refuses, a container that is gone) are told to
//! the user through [`Complaints`], at most one message per interval.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;

/// A network namespace, held by an open handle (it lives while the handle does).
pub struct Netns {
    file: std::fs::File,
    id: (u64, u64),
}

impl Netns {
    pub fn open(path: &Path) -> io::Result<Netns> {
        let file = std::fs::File::open(path)?;
        let m = file.metadata()?;
        Ok(Netns {
            id: (m.dev(), m.ino()),
            file,
        })
    }
}

thread_local! {
    /// The namespace this thread moved to, and the one it came from.
    static MOVED: RefCell<Option<(Arc<Netns>, Netns)>> = const { RefCell::new(None) };
}

/// Moves this thread into `ns` (`None`: back where it started) so that the sockets it
/// makes next live there; nothing to do when it is there already, as it is for every
/// connection but the first after a retarget.
fn enter(ns: Option<&Arc<Netns>>) -> io::Result<()> {
    MOVED.with_borrow_mut(|moved| {
        let setns = |f: &std::fs::File| {
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
        };
        match (ns, moved.take()) {
            (None, None) => Ok(()),
            (Some(want), Some((cur, home))) if cur.id == want.id => {
                *moved = Some((cur, home));
                Ok(())
            }
            (Some(want), was) => {
                let home = match was {
                    Some((cur, home)) => {
                        // Put back until the move is done: a failed setns leaves the
                        // thread where it was.
                        let r = setns(&want.file);
                        *moved = Some(if r.is_ok() {
                            (want.clone(), home)
                        } else {
                            (cur, home)
                        });
                        return r;
                    }
                    None => Netns::open(Path::new("/proc/thread-self/ns/net"))?,
                };
                setns(&want.file)?;
                *moved = Some((want.clone(), home));
                Ok(())
            }
            (None, Some((cur, home))) => {
                let r = setns(&home.file);
                if r.is_err() {
                    *moved = Some((cur, home));
                }
                r
            }
        }
    })
}

/// Where new connections go: an address, and the network namespace to connect from
/// (`None`: the forwarder's own).
#[derive(Clone)]
struct Dest {
    addr: SocketAddr,
    netns: Option<Arc<Netns>>,
}

/// Where new connections go; cheap to clone, switched atomically.
#[derive(Clone)]
pub struct Target {
    tx: Arc<watch::Sender<Dest>>,
}

impl Target {
    /// `addr`, reached from the forwarder's own network namespace.
    pub fn new(addr: SocketAddr) -> Target {
        Target {
            tx: Arc::new(watch::channel(Dest { addr, netns: None }).0),
        }
    }

    /// `addr` of a container, reached from inside the container's namespace `netns`,
    /// where it is a local address.
    pub fn in_netns(addr: SocketAddr, netns: Arc<Netns>) -> Target {
        Target {
            tx: Arc::new(
                watch::channel(Dest {
                    addr,
                    netns: Some(netns),
                })
                .0,
            ),
        }
    }

    #[cfg_attr(not(test), allow(dead_code))]
    pub fn get(&self) -> SocketAddr {
        self.tx.borrow().addr
    }

    fn dest(&self) -> Dest {
        self.tx.borrow().clone()
    }

    /// New connections go to `addr` (reached from the forwarder's own namespace) from
    /// now on; open ones stay where they are.
    // The stack's swap (frun swap) is the caller; until it lands, the tests are.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn set(&self, addr: SocketAddr) {
        self.switch(Dest { addr, netns: None });
    }

    /// As [`Target::set`], to a container's `addr` reached from inside its `netns`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn set_in_netns(&self, addr: SocketAddr, netns: Arc<Netns>) {
        self.switch(Dest {
            addr,
            netns: Some(netns),
        });
    }

    fn switch(&self, dest: Dest) {
        let addr = dest.addr;
        let old = self.tx.send_replace(dest);
        if old.addr != addr {
            tracing::info!(target = %addr, was = %old.addr, "forwarder retargeted");
        }
    }
}

/// Options of one published port.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpOptions {
    /// Send a PROXY protocol v1 header before the client's bytes.
    pub proxy_protocol: bool,
}

/// How the forwarder tells the user something (a line starting with `frun:`).
pub type Say = Arc<dyn Fn(&str) + Send + Sync>;

/// Failures of one published port, told to the user: the first at once, then at most
/// one message per interval, which counts the ones held back meanwhile, so that a
/// target refusing under load does not flood the log.
pub struct Complaints {
    say: Say,
    every: Duration,
    quiet: Mutex<Quiet>,
}

#[derive(Default)]
struct Quiet {
    last: Option<Instant>,
    held: u64,
    last_text: String,
}

impl Complaints {
    pub fn new(say: Say, every: Duration) -> Complaints {
        Complaints {
            say,
            every,
            quiet: Mutex::default(),
        }
    }

    fn complain(&self, text: String) {
        let now = Instant::now();
        let mut q = self.quiet.lock().unwrap_or_else(|e| e.into_inner());
        if q.last.is_some_and(|t| now.duration_since(t) < self.every) {
            q.held += 1;
            q.last_text = text;
            return;
        }
        let held = std::mem::take(&mut q.held);
        q.last = Some(now);
        drop(q);
        self.tell(&text, held);
    }

    /// Tells what was held back, if anything (when the forwarder stops).
    pub fn flush(&self) {
        let mut q = self.quiet.lock().unwrap_or_else(|e| e.into_inner());
        let held = std::mem::take(&mut q.held);
        let text = std::mem::take(&mut q.last_text);
        drop(q);
        if held > 0 {
            self.tell(&text, held - 1);
        }
    }

    fn tell(&self, text: &str, more: u64) {
        let text = if more > 0 {
            format!("{text} (and {more} more like it since the last message)")
        } else {
            text.to_string()
        };
        (self.say)(&text);
    }
}

/// One published TCP port as the forwarder serves it.
pub struct TcpPort {
    pub target: Target,
    pub opts: TcpOptions,
    pub complaints: Arc<Complaints>,
}

/// Accepts on `listener` forever, relaying each connection to the current target.
pub async fn serve_tcp(listener: TcpListener, port: Arc<TcpPort>) -> io::Result<()> {
    // Accepted sockets inherit it: no setsockopt per connection.
    setsockopt_int(
        listener.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_NODELAY,
        1,
    )?;
    let local = listener.local_addr()?;
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(c) => c,
            // Out of fds or memory: back off instead of spinning.
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let port = port.clone();
        tokio::spawn(async move {
            if let Err(e) = relay_tcp(client, peer, local, &port).await {
                tracing::debug!(client = %peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// Bytes of a small read; a read that fills it marks a bulk flow.
const CHUNK: usize = 16 << 10;

thread_local! {
    /// The buffer of small reads: a recv into it is followed by a send out of it at
    /// once, with no await between, so one per thread serves every connection.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; CHUNK]);
}

async fn relay_tcp(
    client: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    port: &TcpPort,
) -> io::Result<()> {
    let to = port.target.dest();
    // The client's first bytes, if it has sent them yet (before the connect: they can
    // then go out with the handshake's last ACK).
    let mut first = Vec::new();
    if port.opts.proxy_protocol {
        first.extend_from_slice(proxy_v1_header(peer, client.local_addr()?).as_bytes());
    }
    let header = first.len();
    let mut client_eof = false;
    SCRATCH.with_borrow_mut(|buf| match recv(client.as_raw_fd(), buf) {
        Ok(0) => {
            client_eof = true;
            Ok(())
        }
        Ok(n) => {
            first.extend_from_slice(&buf[..n]);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e),
    })?;

    let upstream = match connect(&to, first.len() > header) {
        Ok(s) => s,
        Err(e) => return Err(connect_failed(&client, local, &to, e, port)),
    };
    // Next door the handshake is over by now, and the first bytes go at once; if not
    // (EAGAIN), they wait for the connect to finish.
    let mut sent = None;
    if !first.is_empty() {
        match send(upstream.as_raw_fd(), &first, client_eof) {
            Ok(n) => sent = Some(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(connect_failed(&client, local, &to, e, port)),
        }
    }
    let upstream = TcpStream::from_std(upstream)?;
    match sent {
        Some(n) => drop(first.drain(..n)),
        None => {
            upstream.writable().await?;
            if let Some(e) = upstream.take_error()? {
                return Err(connect_failed(&client, local, &to, e, port));
            }
        }
    }
    // Both directions at once; each ends with a FIN passed on (half-close). The first
    // error (a reset) ends both.
    let done = AtomicBool::new(false);
    let up = one_way(&client, &upstream, first, client_eof, &done);
    let down = one_way(&upstream, &client, Vec::new(), false, &done);
    tokio::try_join!(up, down).map(|_| ())
}

/// Tells the user why the connection to the target failed, and resets the client's
/// connection: a client sees that it failed, not an empty answer.
fn connect_failed(
    client: &TcpStream,
    local: SocketAddr,
    to: &Dest,
    e: io::Error,
    port: &TcpPort,
) -> io::Error {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt(2) on a socket fd `client` owns, with a linger struct and its size.
    unsafe {
        libc::setsockopt(
            client.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    port.complaints.complain(connect_failure_text(
        &format!("port {local}"),
        to.addr,
        &e,
        "tcp",
    ));
    e
}

/// The message for a failed connect (or a UDP target that answers "port unreachable").
fn connect_failure_text(what: &str, to: SocketAddr, e: &io::Error, proto: &str) -> String {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => format!(
            "frun: {what}: {to} refused the {}: nothing listens on {proto} port {} in the container",
            if proto == "udp" {
                "datagrams (port unreachable)"
            } else {
                "connection"
            },
            to.port()
        ),
        Some(
            libc::ENETUNREACH
            | libc::EHOSTUNREACH
            | libc::EHOSTDOWN
            | libc::ETIMEDOUT
            | libc::EADDRNOTAVAIL,
        ) => format!(
            "frun: {what}: cannot reach {to} ({e}): the container is gone or has lost its network"
        ),
        _ => format!("frun: {what}: connecting to {to} failed: {e}"),
    }
}

/// `PROXY TCP4 <src> <dst> <sport> <dport>\r\n` (or TCP6).
pub fn proxy_v1_header(src: SocketAddr, dst: SocketAddr) -> String {
    let fam = if src.is_ipv4() && dst.is_ipv4() {
        "TCP4"
    } else {
        "TCP6"
    };
    let ip = |a: SocketAddr| match (fam, a) {
        ("TCP6", SocketAddr::V4(v4)) => v4.ip().to_ipv6_mapped().to_string(),
        (_, a) => a.ip().to_string(),
    };
    format!(
        "PROXY {fam} {} {} {} {}\r\n",
        ip(src),
        ip(dst),
        src.port(),
        dst.port()
    )
}

/// A non-blocking TCP socket connecting to `to` from its namespace. With `defer_ack`
/// (the first bytes are at hand) the handshake's last ACK waits for them.
fn connect(to: &Dest, defer_ack: bool) -> io::Result<std::net::TcpStream> {
    enter(to.netns.as_ref())?;
    let domain = if to.addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: socket(2) with constant arguments; the fd is owned at once.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    setsockopt_int(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    if defer_ack {
        // Only saves a packet; failing it changes nothing else.
        let _ = setsockopt_int(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, 1);
    }
    let (addr, len) = sockaddr(to.addr);
    // SAFETY: connect(2) with a sockaddr_storage holding an address of `len` bytes.
    let r = unsafe { libc::connect(fd.as_raw_fd(), std::ptr::addr_of!(addr).cast(), len) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
    }
    Ok(std::net::TcpStream::from(fd))
}

fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all zeroes is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is bigger than sockaddr_in and aligned for it.
            unsafe { std::ptr::write(std::ptr::addr_of_mut!(ss).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is bigger than sockaddr_in6 and aligned for it.
            unsafe { std::ptr::write(std::ptr::addr_of_mut!(ss).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: setsockopt(2) with a pointer to an int and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            std::ptr::addr_of!(value).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A syscall's result, retried on EINTR.
fn cvt(mut f: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        let n = f();
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: recv(2) into a buffer borrowed mutably, at most its length.
    cvt(|| unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) })
}

/// send(2); with `more` the bytes may wait for what follows (the FIN, see `one_way`).
fn send(fd: RawFd, buf: &[u8], more: bool) -> io::Result<usize> {
    let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
    // SAFETY: send(2) from a borrowed buffer, at most its length.
    cvt(|| unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), flags) })
}

/// Passes the FIN on: shutdown(2) of `to`'s write side, unless the other direction is
/// over already: then both are, and closing the sockets (next) sends it.
fn finish(to: &TcpStream, done: &AtomicBool) -> io::Result<()> {
    if !done.swap(true, Ordering::Relaxed) {
        // SAFETY: shutdown(2) of a socket fd owned by `to`.
        unsafe { libc::shutdown(to.as_raw_fd(), libc::SHUT_WR) };
    }
    Ok(())
}

/// One direction of a connection: `from`'s bytes to `to` (after `held`, which came
/// before), then the FIN (`eof`: it came already). Small reads go through the thread's
/// buffer; a read that fills it hands the rest of the flow to `splice_rest`.
async fn one_way(
    from: &TcpStream,
    to: &TcpStream,
    mut held: Vec<u8>,
    mut eof: bool,
    done: &AtomicBool,
) -> io::Result<()> {
    let (ffd, tfd) = (from.as_raw_fd(), to.as_raw_fd());
    let mut closing = eof;
    loop {
        while !held.is_empty() {
            let n = to
                .async_io(Interest::WRITABLE, || send(tfd, &held, closing))
                .await?;
            held.drain(..n);
        }
        if eof {
            return finish(to, done);
        }
        let ready = from.ready(Interest::READABLE).await?;
        // The peer's FIN is in: what is left to read is all there is, and the FIN that
        // follows can ride on its last segment (MSG_MORE keeps it for the shutdown).
        closing = ready.is_read_closed();
        let bulk = SCRATCH.with_borrow_mut(|buf| -> io::Result<bool> {
            let n = match from.try_io(Interest::READABLE, || recv(ffd, buf)) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            };
            if n == 0 {
                eof = true;
                return Ok(false);
            }
            let sent = match send(tfd, &buf[..n], closing) {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => return Err(e),
            };
            held.extend_from_slice(&buf[sent..n]);
            Ok(n == buf.len())
        })?;
        if bulk {
            while !held.is_empty() {
                let n = to
                    .async_io(Interest::WRITABLE, || send(tfd, &held, false))
                    .await?;
                held.drain(..n);
            }
            return splice_rest(from, to, done).await;
        }
    }
}

/// A pipe for splice(2), closed on drop.
struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    capacity: usize,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
        // A bigger pipe moves more per splice; failure just leaves the default.
        // SAFETY: fcntl on a pipe fd this function owns.
        let capacity = unsafe {
            libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
            libc::fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ)
        };
        Ok(Pipe {
            r,
            w,
            capacity: if capacity > 0 {
                capacity as usize
            } else {
                65536
            },
        })
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: splice between two fds owned by the caller; no memory is passed.
    cvt(|| unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    })
}

/// The rest of a bulk flow: `from` to `to` through a pipe until `from` reaches EOF,
/// then the FIN. The pipe is always drained before it is filled again, so a would-block
/// always comes from the socket, whose readiness tokio then awaits.
async fn splice_rest(from: &TcpStream, to: &TcpStream, done: &AtomicBool) -> io::Result<()> {
    let pipe = Pipe::new()?;
    loop {
        let n = from
            .async_io(Interest::READABLE, || {
                splice(from.as_raw_fd(), pipe.w.as_raw_fd(), pipe.capacity)
            })
            .await?;
        if n == 0 {
            return finish(to, done);
        }
        let mut held = n;
        while held > 0 {
            held -= to
                .async_io(Interest::WRITABLE, || {
                    splice(pipe.r.as_raw_fd(), to.as_raw_fd(), held)
                })
                .await?;
        }
    }
}

/// One published UDP port as the forwarder serves it.
pub struct UdpPort {
    pub target: Target,
    /// A flow is forgotten after this long without a reply.
    pub idle: Duration,
    pub complaints: Arc<Complaints>,
}

type Flows = Arc<Mutex<std::collections::HashMap<SocketAddr, Arc<UdpSocket>>>>;

/// Relays UDP datagrams: one upstream socket per client, forgotten after `idle`.
pub async fn serve_udp(socket: UdpSocket, port: Arc<UdpPort>) -> io::Result<()> {
    let socket = Arc::new(socket);
    let local = socket.local_addr()?;
    let flows: Flows = Arc::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, client) = socket.recv_from(&mut buf).await?;
        let known = flows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&client)
            .cloned();
        let upstream = match known {
            Some(u) => u,
            None => {
                let to = port.target.dest();
                let u = match udp_upstream(&to) {
                    Ok(u) => Arc::new(u),
                    Err(e) => {
                        port.complaints.complain(connect_failure_text(
                            &format!("port {local}/udp"),
                            to.addr,
                            &e,
                            "udp",
                        ));
                        continue;
                    }
                };
                flows
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(client, u.clone());
                // Replies flow back until the client has been quiet for `idle`.
                let (u2, s2, flows2, port2) =
                    (u.clone(), socket.clone(), flows.clone(), port.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        match tokio::time::timeout(port2.idle, u2.recv(&mut buf)).await {
                            Ok(Ok(n)) => {
                                let _ = s2.send_to(&buf[..n], client).await;
                            }
                            // ICMP port unreachable: nothing listens there.
                            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                                port2.complaints.complain(connect_failure_text(
                                    &format!("port {local}/udp"),
                                    to.addr,
                                    &e,
                                    "udp",
                                ));
                                break;
                            }
                            Ok(Err(_)) | Err(_) => break,
                        }
                    }
                    flows2
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&client);
                });
                u
            }
        };
        let _ = upstream.send(&buf[..n]).await;
    }
}

/// A UDP socket connected to `to`, made in its namespace.
fn udp_upstream(to: &Dest) -> io::Result<UdpSocket> {
    enter(to.netns.as_ref())?;
    let bind: SocketAddr = if to.addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = std::net::UdpSocket::bind(bind)?;
    s.set_nonblocking(true)?;
    s.connect(to.addr)?;
    UdpSocket::from_std(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

    async fn echo_server(tag: &'static [u8]) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut data = Vec::new();
                    s.read_to_end(&mut data).await.unwrap();
                    s.write_all(tag).await.unwrap();
                    s.write_all(&data).await.unwrap();
                });
            }
        });
        addr
    }

    /// What the forwarder told the user.
    #[derive(Clone, Default)]
    struct Heard(Arc<Mutex<Vec<String>>>);

    impl Heard {
        fn complaints(&self) -> Arc<Complaints> {
            let heard = self.0.clone();
            Arc::new(Complaints::new(
                Arc::new(move |s: &str| heard.lock().unwrap().push(s.to_string())),
                Duration::from_secs(3600),
            ))
        }

        fn lines(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
    }

    async fn start_heard(target: &Target, opts: TcpOptions, heard: &Heard) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let port = TcpPort {
            target: target.clone(),
            opts,
            complaints: heard.complaints(),
        };
        tokio::spawn(serve_tcp(l, Arc::new(port)));
        addr
    }

    async fn start(target: &Target, opts: TcpOptions) -> SocketAddr {
        start_heard(target, opts, &Heard::default()).await
    }

    /// The client half-closes after sending; the server answers after reading to EOF:
    /// only a forwarder that passes the FIN on and keeps the other direction open
    /// lets this finish.
    async fn round_trip(front: SocketAddr, payload: &[u8]) -> Vec<u8> {
        let mut c = TcpStream::connect(front).await.unwrap();
        c.write_all(payload).await.unwrap();
        c.shutdown().await.unwrap();
        let mut out = Vec::new();
        c.read_to_end(&mut out).await.unwrap();
        out
    }

    /// A small request, half-closed at once, and a small answer: the buffered path, with
    /// the FIN passed on after the bytes (in one segment with them).
    #[tokio::test]
    async fn tcp_half_close_small() {
        let backend = echo_server(b"A:").await;
        let front = start(&Target::new(backend), TcpOptions::default()).await;
        for payload in [&b""[..], b"x", b"GET / HTTP/1.0\r\n\r\n"] {
            assert_eq!(round_trip(front, payload).await, [b"A:", payload].concat());
        }
    }

    /// The client sends in pieces, some before the forwarder has connected, some after,
    /// and waits for each answer: the first bytes go with the connect, the rest follow.
    #[tokio::test]
    async fn tcp_conversation() {
        // Answers each line with the line upper-cased, until EOF.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let (r, mut w) = s.into_split();
            let mut lines = tokio::io::BufReader::new(r).lines();
            while let Some(line) = lines.next_line().await.unwrap() {
                w.write_all(format!("{}\n", line.to_uppercase()).as_bytes())
                    .await
                    .unwrap();
            }
        });
        let front = start(&Target::new(backend), TcpOptions::default()).await;
        let c = TcpStream::connect(front).await.unwrap();
        let (r, mut w) = c.into_split();
        let mut lines = tokio::io::BufReader::new(r).lines();
        for word in ["one", "two", "three"] {
            w.write_all(format!("{word}\n").as_bytes()).await.unwrap();
            let got = lines.next_line().await.unwrap().unwrap();
            assert_eq!(got, word.to_uppercase());
        }
        w.shutdown().await.unwrap();
        assert!(lines.next_line().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn tcp_half_close_and_bulk() {
        let backend = echo_server(b"A:").await;
        let target = Target::new(backend);
        let front = start(&target, TcpOptions::default()).await;
        let payload: Vec<u8> = (0..8 << 20).map(|i| (i % 251) as u8).collect();
        let out = round_trip(front, &payload).await;
        assert_eq!(&out[..2], b"A:");
        assert_eq!(&out[2..], &payload[..]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retarget_under_load_loses_nothing() {
        let a = echo_server(b"A:").await;
        let b = echo_server(b"B:").await;
        let target = Target::new(a);
        let front = start(&target, TcpOptions::default()).await;
        let client = tokio::spawn(async move {
            let mut seen = (0, 0);
            for i in 0..400u32 {
                let out = round_trip(front, &i.to_be_bytes()).await;
                assert_eq!(&out[2..], &i.to_be_bytes(), "request {i} answered intact");
                match &out[..2] {
                    b"A:" => seen.0 += 1,
                    b"B:" => seen.1 += 1,
                    other => panic!("unexpected {other:?}"),
                }
            }
            seen
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        target.set(b);
        let (on_a, on_b) = client.await.unwrap();
        assert!(
            on_b > 0,
            "new connections went to the new target ({on_a} on A)"
        );
        assert_eq!(target.get(), b);
    }

    #[tokio::test]
    async fn proxy_protocol_header_comes_first() {
        let backend = echo_server(b"").await;
        let front = start(
            &Target::new(backend),
            TcpOptions {
                proxy_protocol: true,
            },
        )
        .await;
        let out = round_trip(front, b"GET").await;
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("PROXY TCP4 127.0.0.1 127.0.0.1 "),
            "{text}"
        );
        assert!(text.ends_with("\r\nGET"), "{text}");
    }

    /// A target that refuses: the client's connection is reset, and the user is told,
    /// once for many connections, then with the count of the others.
    #[tokio::test]
    async fn refused_target_resets_the_client_and_is_told_once() {
        // A port nobody listens on.
        let dead = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let heard = Heard::default();
        let port = TcpPort {
            target: Target::new(dead),
            opts: TcpOptions::default(),
            complaints: heard.complaints(),
        };
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = l.local_addr().unwrap();
        let port = Arc::new(port);
        tokio::spawn(serve_tcp(l, port.clone()));
        for i in 0..20 {
            let mut c = TcpStream::connect(front).await.unwrap();
            let r = async {
                if i % 2 == 0 {
                    // Some clients speak first (the reset may meet the write), some wait.
                    c.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
                }
                c.read(&mut [0u8; 8]).await
            }
            .await;
            assert!(
                matches!(&r, Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe)),
                "{r:?}"
            );
        }
        let said = heard.lines();
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].starts_with(&format!(
                "frun: port {front}: {dead} refused the connection"
            )) && said[0].contains(&format!("nothing listens on tcp port {}", dead.port())),
            "{said:?}"
        );
        port.complaints.flush();
        let said = heard.lines();
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(
            said[1].ends_with("(and 18 more like it since the last message)"),
            "{said:?}"
        );
    }

    #[tokio::test]
    async fn udp_flows_per_client() {
        let backend = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let baddr = backend.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let (n, from) = backend.recv_from(&mut buf).await.unwrap();
                let mut reply = b"re:".to_vec();
                reply.extend_from_slice(&buf[..n]);
                backend.send_to(&reply, from).await.unwrap();
            }
        });
        let front = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let faddr = front.local_addr().unwrap();
        let port = UdpPort {
            target: Target::new(baddr),
            idle: Duration::from_secs(5),
            complaints: Heard::default().complaints(),
        };
        tokio::spawn(serve_udp(front, Arc::new(port)));
        for who in [b"one", b"two"] {
            let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            c.send_to(who, faddr).await.unwrap();
            let mut buf = [0u8; 64];
            let (n, from) = tokio::time::timeout(Duration::from_secs(5), c.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(from, faddr);
            assert_eq!(&buf[..n], [&b"re:"[..], &who[..]].concat().as_slice());
        }
    }

    /// Root only: a target inside another network namespace (this test's, made on a
    /// thread of its own) is reached from inside it, where 127.0.0.1 is not ours;
    /// retargeting moves the forwarder's thread back and forth. After the stop, the
    /// port refuses.
    #[test]
    fn target_in_another_namespace_and_stop() {
        if !crate::test_as_root() {
            return;
        }
        use std::io::{Read, Write};
        // A server answering `tag` to each of `n` connections, on `l`.
        fn answer(l: std::net::TcpListener, tag: &'static str, n: usize) {
            for _ in 0..n {
                let (mut s, _) = l.accept().unwrap();
                s.write_all(tag.as_bytes()).unwrap();
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let inside = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let up = std::process::Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()
                .unwrap();
            assert!(up.success());
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let ns = Netns::open(Path::new("/proc/thread-self/ns/net")).unwrap();
            tx.send((l.local_addr().unwrap(), Arc::new(ns))).unwrap();
            answer(l, "inside", 2);
        });
        let (in_addr, ns) = rx.recv().unwrap();
        let out = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let out_addr = out.local_addr().unwrap();
        let outside = std::thread::spawn(move || answer(out, "outside", 1));

        let front = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let front_addr = front.local_addr().unwrap();
        let publish = Publish {
            host_ip: front_addr.ip(),
            host_port: front_addr.port(),
            container_port: in_addr.port(),
            udp: false,
            proxy_protocol: false,
        };
        let heard = Heard::default();
        let f = super::start(
            vec![Bound::Tcp(front, publish)],
            in_addr.ip(),
            Some(ns.clone()),
            Arc::new(move |s: &str| heard.0.lock().unwrap().push(s.to_string())),
        )
        .unwrap();
        let get = || {
            let mut s = std::net::TcpStream::connect(front_addr)?;
            let mut got = String::new();
            s.read_to_string(&mut got)?;
            Ok::<_, io::Error>(got)
        };
        assert_eq!(get().unwrap(), "inside");
        f.targets()[0].set(out_addr);
        assert_eq!(get().unwrap(), "outside");
        f.targets()[0].set_in_netns(in_addr, ns);
        assert_eq!(get().unwrap(), "inside");
        inside.join().unwrap();
        outside.join().unwrap();
        f.stop();
        let e = get().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
    }

    #[test]
    fn publish_specs_parse() {
        let p: Publish = "8080:80".parse().unwrap();
        assert_eq!(p.to_string(), "0.0.0.0:8080:80/tcp");
        let p: Publish = "127.0.0.1:5353:53/udp".parse().unwrap();
        assert!(p.udp && p.host_port == 5353 && p.container_port == 53);
        let p: Publish = "[::1]:8443:443".parse().unwrap();
        assert_eq!(p.to_string(), "[::1]:8443:443/tcp");
        for bad in [
            "80",
            "x:80",
            "8080:80/sctp",
            "0:80",
            "70000:80",
            "1.2.3:80:80",
        ] {
            let e = bad.parse::<Publish>().unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn port_in_use_is_named() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let p: Publish = format!("127.0.0.1:{port}:80").parse().unwrap();
        let err = bind_all(&[p]).err().unwrap().to_string();
        assert!(
            err.contains("already in use") && err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
    }

    #[test]
    fn proxy_header_formats() {
        let h = proxy_v1_header(
            "10.0.0.1:5000".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap(),
        );
        assert_eq!(h, "PROXY TCP4 10.0.0.1 10.0.0.2 5000 80\r\n");
    }
}

/// One `-p [IP:]HOST:CONTAINER[/tcp|udp]`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Publish {
    pub host_ip: std::net::IpAddr,
    pub host_port: u16,
    pub container_port: u16,
    pub udp: bool,
    #[serde(default)]
    pub proxy_protocol: bool,
}

impl std::str::FromStr for Publish {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Publish> {
        let bad = || {
            anyhow::anyhow!("invalid port mapping {s:?}: expected [IP:]HOST:CONTAINER[/tcp|udp]")
        };
        let (spec, proto) = match s.rsplit_once('/') {
            Some((a, "tcp")) => (a, false),
            Some((a, "udp")) => (a, true),
            Some(_) => return Err(bad()),
            None => (s, false),
        };
        let (ip, host, container) = match spec.rsplitn(3, ':').collect::<Vec<_>>().as_slice() {
            [c, h] => ("0.0.0.0", *h, *c),
            [c, h, ip] => (*ip, *h, *c),
            _ => return Err(bad()),
        };
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad);
        Ok(Publish {
            host_ip: ip.parse().map_err(|_| bad())?,
            host_port: port(host)?,
            container_port: port(container)?,
            udp: proto,
            proxy_protocol: false,
        })
    }
}

impl std::fmt::Display for Publish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ip = match self.host_ip {
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        };
        write!(
            f,
            "{ip}:{}:{}/{}",
            self.host_port,
            self.container_port,
            if self.udp { "udp" } else { "tcp" }
        )
    }
}

/// A bound host socket, ready to forward.
pub enum Bound {
    Tcp(std::net::TcpListener, Publish),
    Udp(std::net::UdpSocket, Publish),
}

/// Binds every published port now, so that a taken port fails the start with a clear
/// message instead of a container without its port.
pub fn bind_all(ports: &[Publish]) -> anyhow::Result<Vec<Bound>> {
    let mut out = Vec::new();
    for p in ports {
        let addr = SocketAddr::new(p.host_ip, p.host_port);
        let r = if p.udp {
            std::net::UdpSocket::bind(addr).map(|s| Bound::Udp(s, p.clone()))
        } else {
            std::net::TcpListener::bind(addr).map(|s| Bound::Tcp(s, p.clone()))
        };
        match r {
            Ok(b) => out.push(b),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                let who = port_owner(p.host_port, p.udp)
                    .map(|w| format!(" (by {w})"))
                    .unwrap_or_default();
                anyhow::bail!(
                    "cannot publish {p}: port {} is already in use{who}",
                    p.host_port
                );
            }
            Err(e) => anyhow::bail!("cannot publish {p}: {e}"),
        }
    }
    Ok(out)
}

/// `pid NNN (comm)` of the process holding a listening socket on `port`, if visible.
fn port_owner(port: u16, udp: bool) -> Option<String> {
    let tables = if udp {
        ["/proc/net/udp", "/proc/net/udp6"]
    } else {
        ["/proc/net/tcp", "/proc/net/tcp6"]
    };
    let mut inodes = Vec::new();
    for t in tables {
        for line in std::fs::read_to_string(t).ok()?.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f
                .get(1)?
                .rsplit(':')
                .next()
                .and_then(|h| u16::from_str_radix(h, 16).ok());
            // 0A is LISTEN for TCP; any bound UDP socket counts.
            if local_port == Some(port) && (udp || f.get(3) == Some(&"0A")) {
                inodes.push(format!("socket:[{}]", f.get(9)?));
            }
        }
    }
    for proc_dir in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = proc_dir.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(proc_dir.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path()) {
                if inodes.iter().any(|i| link.as_os_str() == i.as_str()) {
                    let comm =
                        std::fs::read_to_string(proc_dir.path().join("comm")).unwrap_or_default();
                    return Some(format!("pid {pid} ({})", comm.trim()));
                }
            }
        }
    }
    None
}

/// The forwarder of one container's published ports, on a thread of its own; stopped
/// (its ports closed) by [`Forwarder::stop`] or on drop.
pub struct Forwarder {
    targets: Vec<Target>,
    complaints: Vec<Arc<Complaints>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Forwarder {
    /// The targets of the published ports, in their order (for retargeting).
    // The stack's swap is the caller; until it lands, the tests are.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Closes the published ports, so that a client is refused from now on, and ends
    /// the open connections; returns once they are closed. What was held back of the
    /// complaints is told now.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for c in &self.complaints {
            c.flush();
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.shut();
    }
}

/// Forwards every bound port to `ip` (reached from inside `netns`, the container's
/// network namespace, if given) on a runtime of its own thread. Failures to reach the
/// container are told through `say`.
pub fn start(
    bound: Vec<Bound>,
    ip: std::net::IpAddr,
    netns: Option<Arc<Netns>>,
    say: Say,
) -> anyhow::Result<Forwarder> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut targets = Vec::new();
    let mut complaints = Vec::new();
    for b in bound {
        let p = match &b {
            Bound::Tcp(_, p) | Bound::Udp(_, p) => p,
        };
        let addr = SocketAddr::new(ip, p.container_port);
        let target = match &netns {
            Some(ns) => Target::in_netns(addr, ns.clone()),
            None => Target::new(addr),
        };
        targets.push(target.clone());
        let c = Arc::new(Complaints::new(say.clone(), COMPLAIN_EVERY));
        complaints.push(c.clone());
        let _g = rt.enter();
        let what = p.to_string();
        match b {
            Bound::Tcp(l, p) => {
                l.set_nonblocking(true)?;
                let port = Arc::new(TcpPort {
                    target,
                    opts: TcpOptions {
                        proxy_protocol: p.proxy_protocol,
                    },
                    complaints: c,
                });
                let l = TcpListener::from_std(l)?;
                rt.spawn(async move {
                    if let Err(e) = serve_tcp(l, port).await {
                        tracing::warn!(port = %what, error = %e, "the forwarder of this port stopped");
                    }
                });
            }
            Bound::Udp(s, _) => {
                s.set_nonblocking(true)?;
                let port = Arc::new(UdpPort {
                    target,
                    idle: Duration::from_secs(60),
                    complaints: c,
                });
                let s = UdpSocket::from_std(s)?;
                rt.spawn(async move {
                    if let Err(e) = serve_udp(s, port).await {
                        tracing::warn!(port = %what, error = %e, "the forwarder of this port stopped");
                    }
                });
            }
        }
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("frun-forward".into())
        .spawn(move || {
            // No wakeup preemption: see the module's docs.
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: sched_setscheduler(2) of the calling thread (0), with a valid param.
            if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
                tracing::debug!(error = %io::Error::last_os_error(), "SCHED_BATCH for the forwarder");
            }
            let _ = rt.block_on(rx);
            // Dropping the runtime drops its tasks: listeners and connections close.
            drop(rt);
        })?;
    Ok(Forwarder {
        targets,
        complaints,
        stop: Some(tx),
        thread: Some(thread),
    })
}

/// At most one message per this long per published port about failures to reach it.
const COMPLAIN_EVERY: Duration = Duration::from_secs(10);
