//! TCP: accepting on a published port and relaying each connection to the current
//! target, both directions at once with half-close. Small reads go through one buffer
//! of the thread; a bulk flow goes on with `splice(2)` through a pipe (see the module
//! documentation of `forward` for why each step is the way it is).

use rustix::net::{self as rnet, sockopt};
use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};

use super::complaints::{connect_failure_text, Complaints};
use super::counters::PortCounters;
use super::gate::{accept_through, Gate};
use super::netns::enter;
use super::target::{Dest, Target};

/// Options of one published port.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpOptions {
    /// Send a PROXY protocol v1 header before the client's bytes.
    pub proxy_protocol: bool,
}

/// One published TCP port as the forwarder serves it.
pub struct TcpPort {
    pub target: Target,
    pub opts: TcpOptions,
    pub complaints: Arc<Complaints>,
    pub counters: Arc<PortCounters>,
    /// Whether it accepts now (see `gate`).
    pub gate: Arc<Gate>,
}

/// Accepts on `listener` forever while `port.gate` is open, relaying each connection
/// to the current target.
pub async fn serve_tcp(listener: TcpListener, port: Arc<TcpPort>) -> io::Result<()> {
    // Accepted sockets inherit it: no setsockopt per connection.
    sockopt::set_tcp_nodelay(&listener, true)?;
    let local = listener.local_addr()?;
    let mut changes = port.gate.watch();
    loop {
        let (accepted, inside) =
            accept_through(&port.gate, &mut changes, || listener.accept()).await;
        let (client, peer) = match accepted {
            Ok(c) => c,
            // Out of fds or memory: back off instead of spinning.
            Err(e) => {
                drop(inside);
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Counted before the gate lets a pause through: a drain sees it.
        let open = port.counters.accept();
        drop(inside);
        let port = port.clone();
        tokio::spawn(async move {
            let _open = open;
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
    SCRATCH.with_borrow_mut(|buf| match recv(client.as_fd(), buf) {
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

    let client_first = (first.len() - header) as u64;
    let upstream = match connect(&to, first.len() > header) {
        Ok(s) => s,
        Err(e) => return Err(connect_failed(&client, local, &to, e, port)),
    };
    // Next door the handshake is over by now, and the first bytes go at once; if not
    // (EAGAIN), they wait for the connect to finish.
    let mut sent = None;
    if !first.is_empty() {
        match send(upstream.as_fd(), &first, client_eof) {
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
    // The client's first bytes, read before the connect, count as carried now.
    PortCounters::add(&port.counters.bytes_in, client_first);
    let up = one_way(
        &client,
        &upstream,
        first,
        client_eof,
        &done,
        &port.counters.bytes_in,
    );
    let down = one_way(
        &upstream,
        &client,
        Vec::new(),
        false,
        &done,
        &port.counters.bytes_out,
    );
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
    // A zero linger: the close resets the connection.
    let _ = sockopt::set_socket_linger(client, Some(Duration::ZERO));
    PortCounters::add(&port.counters.failed, 1);
    port.complaints.complain(connect_failure_text(
        &format!("port {local}"),
        to.addr,
        &e,
        "tcp",
    ));
    e
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
pub(super) fn connect(to: &Dest, defer_ack: bool) -> io::Result<std::net::TcpStream> {
    enter(to.netns.as_ref())?;
    let domain = if to.addr.is_ipv4() {
        rnet::AddressFamily::INET
    } else {
        rnet::AddressFamily::INET6
    };
    let fd = rnet::socket_with(
        domain,
        rnet::SocketType::STREAM,
        rnet::SocketFlags::NONBLOCK | rnet::SocketFlags::CLOEXEC,
        None,
    )?;
    sockopt::set_tcp_nodelay(&fd, true)?;
    if defer_ack {
        // Only saves a packet; failing it changes nothing else.
        let _ = set_defer_accept(&fd);
    }
    match rnet::connect(&fd, &to.addr) {
        Ok(()) | Err(rustix::io::Errno::INPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(std::net::TcpStream::from(fd))
}

/// TCP_DEFER_ACCEPT on a connecting socket (rustix has no wrapper for it).
fn set_defer_accept(fd: &OwnedFd) -> io::Result<()> {
    let value: libc::c_int = 1;
    // SAFETY: setsockopt(2) on a socket fd the caller owns, with a pointer to an int and
    // its size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            std::ptr::addr_of!(value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A system call's result, retried on EINTR.
fn retry<T>(mut f: impl FnMut() -> rustix::io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(rustix::io::Errno::INTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    retry(|| rnet::recv(fd, &mut *buf, rnet::RecvFlags::empty()).map(|(n, _)| n))
}

/// send(2); with `more` the bytes may wait for what follows (the FIN, see `one_way`).
fn send(fd: BorrowedFd<'_>, buf: &[u8], more: bool) -> io::Result<usize> {
    let mut flags = rnet::SendFlags::NOSIGNAL;
    if more {
        flags |= rnet::SendFlags::MORE;
    }
    retry(|| rnet::send(fd, buf, flags))
}

/// Passes the FIN on: shutdown(2) of `to`'s write side, unless the other direction is
/// over already: then both are, and closing the sockets (next) sends it.
fn finish(to: &TcpStream, done: &AtomicBool) -> io::Result<()> {
    if !done.swap(true, Ordering::Relaxed) {
        let _ = rnet::shutdown(to, rnet::Shutdown::Write);
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
    carried: &AtomicU64,
) -> io::Result<()> {
    let (ffd, tfd) = (from.as_fd(), to.as_fd());
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
            PortCounters::add(carried, n as u64);
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
            return splice_rest(from, to, done, carried).await;
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
        let _ = rustix::pipe::fcntl_setpipe_size(&w, 1 << 20);
        let capacity = rustix::pipe::fcntl_getpipe_size(&w).unwrap_or(65536);
        Ok(Pipe { r, w, capacity })
    }
}

fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    use rustix::pipe::SpliceFlags;
    retry(|| {
        rustix::pipe::splice(
            from,
            None,
            to,
            None,
            len,
            SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
        )
    })
}

/// The rest of a bulk flow: `from` to `to` through a pipe until `from` reaches EOF,
/// then the FIN. The pipe is always drained before it is filled again, so a would-block
/// always comes from the socket, whose readiness tokio then awaits.
async fn splice_rest(
    from: &TcpStream,
    to: &TcpStream,
    done: &AtomicBool,
    carried: &AtomicU64,
) -> io::Result<()> {
    let pipe = Pipe::new()?;
    loop {
        let n = from
            .async_io(Interest::READABLE, || {
                splice(from.as_fd(), pipe.w.as_fd(), pipe.capacity)
            })
            .await?;
        if n == 0 {
            return finish(to, done);
        }
        PortCounters::add(carried, n as u64);
        let mut held = n;
        while held > 0 {
            held -= to
                .async_io(Interest::WRITABLE, || {
                    splice(pipe.r.as_fd(), to.as_fd(), held)
                })
                .await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::testutil::{echo_server, round_trip, start, Heard};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

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

    /// Connections accepted and open, refused ones failed, bytes each way: a small
    /// exchange (buffered) and a bulk one (spliced) both counted whole.
    #[tokio::test]
    async fn counters_count_connections_and_bytes_each_way() {
        let backend = echo_server(b"A:").await;
        let counters = Arc::new(PortCounters::default());
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = l.local_addr().unwrap();
        let target = Target::new(backend);
        let port = TcpPort {
            target: target.clone(),
            opts: TcpOptions::default(),
            complaints: crate::forward::testutil::Heard::default().complaints(),
            counters: counters.clone(),
            gate: crate::forward::gate::Gate::new(true),
        };
        tokio::spawn(serve_tcp(l, Arc::new(port)));
        let bulk = vec![7u8; 3 << 20];
        round_trip(front, b"hello").await;
        round_trip(front, &bulk).await;
        // Nothing listens here: a failed connection.
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        target.set(dead);
        let _ = round_trip_lossy(front).await;
        // The relay tasks end right after the client saw EOF: wait for the counts.
        let mut s = counters.snapshot("p");
        for _ in 0..500 {
            if s.open == 0 && s.failed == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            s = counters.snapshot("p");
        }
        let sent = 5 + bulk.len() as u64;
        assert_eq!(
            s,
            crate::forward::Snapshot {
                port: "p".into(),
                open: 0,
                accepted: 3,
                failed: 1,
                bytes_in: sent,
                bytes_out: sent + 4,
            }
        );
    }

    /// A client of a connection that may be reset.
    async fn round_trip_lossy(front: SocketAddr) -> std::io::Result<Vec<u8>> {
        let mut c = TcpStream::connect(front).await?;
        c.write_all(b"x").await?;
        let mut out = Vec::new();
        c.read_to_end(&mut out).await?;
        Ok(out)
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
            counters: Default::default(),
            gate: crate::forward::gate::Gate::new(true),
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

    #[test]
    fn proxy_header_formats() {
        let h = proxy_v1_header(
            "10.0.0.1:5000".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap(),
        );
        assert_eq!(h, "PROXY TCP4 10.0.0.1 10.0.0.2 5000 80\r\n");
    }
}
