//! The userspace port forwarder: publishes a host port by accepting connections (or UDP
//! datagrams) and relaying them to a container's address. No iptables DNAT, no process
//! per port: it lives in frun's supervising process.
//!
//! The target is switchable while it runs ([`Target::set`]): new connections go to the
//! new address, open ones finish where they are. That is what a zero-downtime swap
//! needs. TCP keeps half-close (one side's FIN is passed on while the other direction
//! goes on); bulk data moves with `splice(2)` through a pipe, never through user memory.
//! UDP keeps one upstream socket per client address, dropped after an idle timeout.
//! Optionally a PROXY protocol v1 line tells the target who the client really is.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;

/// Where new connections go; cheap to clone, switched atomically.
#[derive(Clone)]
pub struct Target {
    tx: Arc<watch::Sender<SocketAddr>>,
}

impl Target {
    pub fn new(addr: SocketAddr) -> Target {
        Target {
            tx: Arc::new(watch::channel(addr).0),
        }
    }

    pub fn get(&self) -> SocketAddr {
        *self.tx.borrow()
    }

    /// New connections go to `addr` from now on; open ones stay where they are.
    // The stack's swap (frun swap) is the caller; until it lands, the tests are.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn set(&self, addr: SocketAddr) {
        let old = self.tx.send_replace(addr);
        if old != addr {
            tracing::info!(target = %addr, was = %old, "forwarder retargeted");
        }
    }
}

/// Options of one published port.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpOptions {
    /// Send a PROXY protocol v1 header before the client's bytes.
    pub proxy_protocol: bool,
}

/// Accepts on `listener` forever, relaying each connection to the current target.
pub async fn serve_tcp(listener: TcpListener, target: Target, opts: TcpOptions) -> io::Result<()> {
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
        let to = target.get();
        tokio::spawn(async move {
            if let Err(e) = relay_tcp(client, peer, to, opts).await {
                tracing::debug!(client = %peer, target = %to, error = %e, "connection ended with an error");
            }
        });
    }
}

async fn relay_tcp(
    client: TcpStream,
    peer: SocketAddr,
    to: SocketAddr,
    opts: TcpOptions,
) -> io::Result<()> {
    let _ = client.set_nodelay(true);
    let mut upstream = match TcpStream::connect(to).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(client = %peer, target = %to, error = %e, "target refused the connection");
            return Err(e);
        }
    };
    let _ = upstream.set_nodelay(true);
    if opts.proxy_protocol {
        let local = client.local_addr()?;
        upstream
            .write_all(proxy_v1_header(peer, local).as_bytes())
            .await?;
    }
    let (c_r, c_w) = (&client, &client);
    let (u_r, u_w) = (&upstream, &upstream);
    // Both directions at once; each ends with a FIN passed on (half-close).
    let up = splice_one_way(c_r, u_w);
    let down = splice_one_way(u_r, c_w);
    // The first error (a reset) ends both directions.
    tokio::try_join!(up, down).map(|_| ())
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

fn splice(from: i32, to: i32, len: usize) -> io::Result<usize> {
    // SAFETY: splice between two fds owned by the caller; no memory is passed.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Moves bytes from `from` to `to` through a pipe until `from` reaches EOF, then shuts
/// down `to`'s write side. The pipe is always drained before it is filled again, so
/// a would-block always comes from the socket, whose readiness tokio then awaits.
async fn splice_one_way(from: &TcpStream, to: &TcpStream) -> io::Result<()> {
    let pipe = Pipe::new()?;
    loop {
        let n = from
            .async_io(Interest::READABLE, || {
                splice(from.as_raw_fd(), pipe.w.as_raw_fd(), pipe.capacity)
            })
            .await?;
        if n == 0 {
            // Half-close: pass the FIN on, keep the other direction open.
            // SAFETY: shutdown(2) of a socket fd owned by `to`.
            unsafe { libc::shutdown(to.as_fd().as_raw_fd(), libc::SHUT_WR) };
            return Ok(());
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

/// Relays UDP datagrams: one upstream socket per client, forgotten after `idle`.
pub async fn serve_udp(socket: UdpSocket, target: Target, idle: Duration) -> io::Result<()> {
    let socket = Arc::new(socket);
    let flows: Arc<tokio::sync::Mutex<std::collections::HashMap<SocketAddr, Arc<UdpSocket>>>> =
        Arc::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, client) = socket.recv_from(&mut buf).await?;
        let upstream = {
            let mut map = flows.lock().await;
            match map.get(&client) {
                Some(u) => u.clone(),
                None => {
                    let to = target.get();
                    let bind: SocketAddr = if to.is_ipv4() {
                        "0.0.0.0:0".parse().expect("addr")
                    } else {
                        "[::]:0".parse().expect("addr")
                    };
                    let u = Arc::new(UdpSocket::bind(bind).await?);
                    u.connect(to).await?;
                    map.insert(client, u.clone());
                    // Replies flow back until the client has been quiet for `idle`.
                    let (u2, s2, flows2) = (u.clone(), socket.clone(), flows.clone());
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 65536];
                        while let Ok(Ok(n)) = tokio::time::timeout(idle, u2.recv(&mut buf)).await {
                            let _ = s2.send_to(&buf[..n], client).await;
                        }
                        flows2.lock().await.remove(&client);
                    });
                    u
                }
            }
        };
        let _ = upstream.send(&buf[..n]).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

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

    async fn start(target: &Target, opts: TcpOptions) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(serve_tcp(l, target.clone(), opts));
        addr
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

    #[tokio::test]
    async fn refused_target_closes_the_client() {
        // A port nobody listens on.
        let dead = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let front = start(&Target::new(dead), TcpOptions::default()).await;
        let mut c = TcpStream::connect(front).await.unwrap();
        let mut buf = [0u8; 8];
        let n = c.read(&mut buf).await.unwrap_or(0);
        assert_eq!(n, 0);
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
        tokio::spawn(serve_udp(front, Target::new(baddr), Duration::from_secs(5)));
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

/// Forwards every bound port to `ip` on a runtime of its own thread; returns the
/// targets (for retargeting) and the thread.
pub fn start(
    bound: Vec<Bound>,
    ip: std::net::IpAddr,
) -> anyhow::Result<(Vec<Target>, std::thread::JoinHandle<()>)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("frun-forward")
        .build()?;
    let mut targets = Vec::new();
    let mut tasks = Vec::new();
    for b in bound {
        match b {
            Bound::Tcp(l, p) => {
                l.set_nonblocking(true)?;
                let t = Target::new(SocketAddr::new(ip, p.container_port));
                targets.push(t.clone());
                let l = {
                    let _g = rt.enter();
                    TcpListener::from_std(l)?
                };
                let opts = TcpOptions {
                    proxy_protocol: p.proxy_protocol,
                };
                tasks.push(rt.spawn(serve_tcp(l, t, opts)));
            }
            Bound::Udp(s, p) => {
                s.set_nonblocking(true)?;
                let t = Target::new(SocketAddr::new(ip, p.container_port));
                targets.push(t.clone());
                let s = {
                    let _g = rt.enter();
                    UdpSocket::from_std(s)?
                };
                tasks.push(rt.spawn(serve_udp(s, t, Duration::from_secs(60))));
            }
        }
    }
    let handle = std::thread::spawn(move || {
        rt.block_on(async move {
            for t in tasks {
                let _ = t.await;
            }
        })
    });
    Ok((targets, handle))
}
