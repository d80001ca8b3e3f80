//! The hand-off of a container's published ports to the holder of the container that
//! replaces it (a swap of a stack with no proxy), as nginx's binary upgrade and systemd's
//! socket activation pass listening sockets on: the socket stays open all along, so a
//! client is never refused, and for a moment both holders accept from its one queue.
//!
//! Each holder that publishes ports serves a control socket, `RUN_ROOT/ports/<id>.sock`
//! (root only: 0600, and the peer's uid checked), one request per connection, one line
//! each way, on one thread blocked in `poll`:
//! - `fds`: its bound sockets, in the order of its record's `publish` (SCM_RIGHTS);
//! - `pause`: its accept loops stop (established relays go on); answered once no
//!   accept can happen any more (see `gate`);
//! - `resume`: it accepts again;
//! - `open`: how many TCP connections it relays now (a drain waits for 0; a UDP flow
//!   does not count: once paused, a client's next datagram goes to the other holder);
//! - `ping`: `ok`, to tell that it serves.
//!
//! A holder whose record says `ports_from` takes its sockets with [`take`] instead of
//! binding them, and starts paused until it is resumed.

use anyhow::{bail, Context};
use rustix::net::{self as rnet, sockopt};
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::bind::Bound;
use super::counters::PortCounters;
use super::gate::Gate;
use crate::model::Publish;

/// How long a request may take (a pause waits for the accept loops, see `gate`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a pause may wait for the accept loops.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many sockets in one answer.
const MAX_FDS: usize = 64;

/// The control socket of the holder of container `id`.
pub fn socket_path(run_root: &Path, id: &str) -> PathBuf {
    run_root.join("ports").join(format!("{id}.sock"))
}

/// `f` of `path` as a unix socket's address. One holds at most 107 bytes, and a long run
/// root leaves fewer for the name: a longer path is reached through a descriptor of its
/// directory (`/proc/self/fd/N/NAME`), open while `f` runs.
fn at_short<T>(path: &Path, f: impl FnOnce(&Path) -> std::io::Result<T>) -> std::io::Result<T> {
    if path.as_os_str().len() < 100 {
        return f(path);
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return f(path);
    };
    let dir = std::fs::File::open(dir)?;
    use std::os::fd::AsRawFd;
    f(&Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name))
}

/// A holder's control socket, served on a thread of its own until [`Server::stop`].
pub struct Server {
    path: PathBuf,
    stop: Option<OwnedFd>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Removes the socket, ends the thread and closes its copies of the ports.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        crate::cleanup::remove_file(&self.path);
        // Closing the pipe's write end wakes the thread's poll.
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shut();
    }
}

/// What the control socket answers with: copies of the ports (closed at the stop), the
/// forwarder's gate and its TCP ports' counters, and a file that exists while the ports accept after
/// a resume (a restarted holder reads it: see `holder`).
pub struct Serving {
    pub ports: Vec<OwnedFd>,
    pub gate: Arc<Gate>,
    pub counters: Vec<Arc<PortCounters>>,
    pub resumed_marker: PathBuf,
}

/// Serves `what` on `path` (made 0600 under a temporary name, then renamed in place).
pub fn serve(path: PathBuf, what: Serving) -> anyhow::Result<Server> {
    let dir = path.parent().context("a control socket in a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {dir:?}"))?;
    let tmp = path.with_extension("sock.new");
    crate::cleanup::remove_file(&tmp);
    let listener =
        at_short(&tmp, |p| UnixListener::bind(p)).with_context(|| format!("binding {tmp:?}"))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod {tmp:?}"))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming {tmp:?} to {path:?}"))?;
    let (stop_r, stop_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let thread = std::thread::Builder::new()
        .name("frun-handoff".into())
        .spawn(move || {
            loop {
                let mut fds = [
                    rustix::event::PollFd::new(&listener, rustix::event::PollFlags::IN),
                    rustix::event::PollFd::new(&stop_r, rustix::event::PollFlags::IN),
                ];
                match rustix::event::poll(&mut fds, None) {
                    Ok(_) => {}
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "the ports' control socket stopped");
                        return;
                    }
                }
                if !fds[1].revents().is_empty() {
                    return;
                }
                if let Ok((conn, _)) = listener.accept() {
                    if let Err(e) = answer(conn, &what) {
                        tracing::warn!(error = %format!("{e:#}"), "a request on the ports' control socket");
                    }
                }
            }
        })?;
    Ok(Server {
        path,
        stop: Some(stop_w),
        thread: Some(thread),
    })
}

/// One request: read, checked (root only), done, answered.
fn answer(mut conn: UnixStream, what: &Serving) -> anyhow::Result<()> {
    conn.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    conn.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let peer = sockopt::socket_peercred(&conn)?;
    if !peer.uid.is_root() {
        let _ = conn.write_all(b"error: root only\n");
        bail!("refused a request of uid {}", peer.uid.as_raw());
    }
    let request = read_line(&mut conn)?;
    tracing::debug!(request, "ports' control socket");
    match request.as_str() {
        "fds" => {
            let fds: Vec<_> = what.ports.iter().map(|f| f.as_fd()).collect();
            let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
            let mut control = rnet::SendAncillaryBuffer::new(&mut space);
            if !control.push(rnet::SendAncillaryMessage::ScmRights(&fds)) {
                bail!("no room for {} sockets in one message", fds.len());
            }
            let line = format!("ok {}\n", fds.len());
            rnet::sendmsg(
                &conn,
                &[IoSlice::new(line.as_bytes())],
                &mut control,
                rnet::SendFlags::NOSIGNAL,
            )?;
            Ok(())
        }
        "pause" => {
            let r = what.gate.pause(PAUSE_TIMEOUT);
            crate::cleanup::remove_file(&what.resumed_marker);
            match r {
                Ok(()) => conn.write_all(b"ok\n")?,
                Err(e) => conn.write_all(format!("error: {e}\n").as_bytes())?,
            }
            Ok(())
        }
        "resume" => {
            std::fs::write(&what.resumed_marker, b"")
                .with_context(|| format!("writing {:?}", what.resumed_marker))?;
            what.gate.resume();
            conn.write_all(b"ok\n")?;
            Ok(())
        }
        "ping" => {
            conn.write_all(b"ok\n")?;
            Ok(())
        }
        // Connected and gone without a word.
        "" => Ok(()),
        "open" => {
            let open: u64 = what
                .counters
                .iter()
                .map(|c| c.open.load(std::sync::atomic::Ordering::Relaxed))
                .sum();
            conn.write_all(format!("ok {open}\n").as_bytes())?;
            Ok(())
        }
        other => {
            conn.write_all(b"error: unknown request\n")?;
            bail!("unknown request {other:?}")
        }
    }
}

/// One line (at most 64 bytes), without its newline.
fn read_line(conn: &mut UnixStream) -> anyhow::Result<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while buf.len() < 64 {
        match conn.read(&mut byte)? {
            0 => break,
            _ if byte[0] == b'\n' => break,
            _ => buf.push(byte[0]),
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Connects to the holder of container `id`; `None` when no holder serves there (it
/// ended, or was started by a frun without hand-offs).
fn connect(run_root: &Path, id: &str) -> anyhow::Result<Option<UnixStream>> {
    let path = socket_path(run_root, id);
    match at_short(&path, |p| UnixStream::connect(p)) {
        Ok(s) => {
            s.set_read_timeout(Some(REQUEST_TIMEOUT))?;
            s.set_write_timeout(Some(REQUEST_TIMEOUT))?;
            Ok(Some(s))
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("connecting to {path:?}")),
    }
}

/// `request` to the holder of `id`: its answer after `ok` (`None`: no holder serves
/// there); an `error:` answer is an error.
fn ask(run_root: &Path, id: &str, request: &str) -> anyhow::Result<Option<String>> {
    let Some(mut s) = connect(run_root, id)? else {
        return Ok(None);
    };
    s.write_all(format!("{request}\n").as_bytes())?;
    let line = read_line(&mut s)
        .with_context(|| format!("reading the answer to {request} of the holder of {id}"))?;
    match line.strip_prefix("ok") {
        Some(rest) => Ok(Some(rest.trim().to_string())),
        None => bail!("the holder of container {id} answered {request} with {line:?}"),
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// True when the holder of container `id` answers on its ports' control socket.
pub fn serves(run_root: &Path, id: &str) -> bool {
    matches!(ask(run_root, id, "ping"), Ok(Some(_)))
}

/// The holder of `id` accepts on its ports again. False when no holder serves there.
pub fn resume(run_root: &Path, id: &str) -> anyhow::Result<bool> {
    Ok(ask(run_root, id, "resume")
        .with_context(|| format!("resuming the ports of container {}", short(id)))?
        .is_some())
}

/// The holder of `id` accepts no more (returns once none can happen). False when no
/// holder serves there.
pub fn pause(run_root: &Path, id: &str) -> anyhow::Result<bool> {
    Ok(ask(run_root, id, "pause")
        .with_context(|| format!("pausing the ports of container {}", short(id)))?
        .is_some())
}

/// The connections the holder of `id` relays now (`None`: no holder serves there).
pub fn open_connections(run_root: &Path, id: &str) -> anyhow::Result<Option<u64>> {
    match ask(run_root, id, "open")? {
        Some(n) => Ok(Some(n.parse().with_context(|| {
            format!("the holder of {} answered open with {n:?}", short(id))
        })?)),
        None => Ok(None),
    }
}

/// The sockets of `publish` from the holder of container `from`, checked: one bound
/// socket of the right kind and address per published port. `None` when no holder
/// serves there (then the ports are to be bound: nobody holds them).
pub fn take(
    run_root: &Path,
    from: &str,
    publish: &[Publish],
) -> anyhow::Result<Option<Vec<Bound>>> {
    let Some(s) = connect(run_root, from)? else {
        return Ok(None);
    };
    let what = || {
        format!(
            "taking over the published ports of container {}",
            short(from)
        )
    };
    (&s).write_all(b"fds\n").with_context(what)?;
    let mut line = [0u8; 64];
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = rnet::RecvAncillaryBuffer::new(&mut space);
    let got = rnet::recvmsg(
        &s,
        &mut [IoSliceMut::new(&mut line)],
        &mut control,
        rnet::RecvFlags::CMSG_CLOEXEC,
    )
    .with_context(what)?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for msg in control.drain() {
        if let rnet::RecvAncillaryMessage::ScmRights(received) = msg {
            fds.extend(received);
        }
    }
    let text = String::from_utf8_lossy(&line[..got.bytes])
        .trim()
        .to_string();
    if !text.starts_with("ok") {
        bail!("{}: its holder answered {text:?}", what());
    }
    // Each socket as it is: TCP listening or UDP, and its address.
    let mut have: Vec<Option<(bool, SocketAddr, OwnedFd)>> = Vec::new();
    for fd in fds {
        let udp = match sockopt::socket_type(&fd) {
            Ok(rnet::SocketType::STREAM) if sockopt::socket_acceptconn(&fd).unwrap_or(false) => {
                false
            }
            Ok(rnet::SocketType::DGRAM) => true,
            _ => continue,
        };
        let addr = match udp {
            false => std::net::TcpListener::from(fd.try_clone()?).local_addr(),
            true => std::net::UdpSocket::from(fd.try_clone()?).local_addr(),
        };
        if let Ok(addr) = addr {
            have.push(Some((udp, addr, fd)));
        }
    }
    let mut out = Vec::new();
    for p in publish {
        let fits = |(udp, addr, _): &(bool, SocketAddr, OwnedFd)| {
            *udp == p.udp
                && addr.ip() == p.host_ip
                && (p.host_port == 0 || addr.port() == p.host_port)
        };
        let Some((_, _, fd)) = have
            .iter_mut()
            .find(|h| h.as_ref().is_some_and(fits))
            .and_then(Option::take)
        else {
            let held: Vec<String> = have
                .iter()
                .flatten()
                .map(|(udp, a, _)| format!("{a}/{}", if *udp { "udp" } else { "tcp" }))
                .collect();
            bail!(
                "cannot take over {p} from container {}: its holder holds no {} socket on {}:{} (it holds: {})",
                short(from),
                if p.udp { "udp" } else { "tcp" },
                p.host_ip,
                p.host_port,
                if held.is_empty() { "none".to_string() } else { held.join(", ") }
            );
        };
        out.push(match p.udp {
            false => Bound::Tcp(std::net::TcpListener::from(fd), p.clone()),
            true => Bound::Udp(std::net::UdpSocket::from(fd), p.clone()),
        });
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::testutil::Heard;

    /// A server on 127.0.0.1 answering `tag` to every connection, for ever.
    fn answering(tag: &'static str) -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let _ = s.and_then(|mut s| s.write_all(tag.as_bytes()));
            }
        });
        addr
    }

    /// A UDP server on 127.0.0.1 answering `tag` to every datagram, for ever.
    fn udp_answering(tag: &'static str) -> SocketAddr {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = s.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok((_, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(tag.as_bytes(), from);
            }
        });
        addr
    }

    /// One datagram to `addr` from a new client socket (a new flow): the answer.
    fn udp_get(addr: SocketAddr) -> String {
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        c.send_to(b"?", addr).unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = c.recv_from(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    fn get(addr: SocketAddr) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        got
    }

    fn serving(f: &super::super::Forwarder, bound: &[OwnedFd], dir: &Path, id: &str) -> Server {
        serve(
            socket_path(dir, id),
            Serving {
                ports: bound.iter().map(|f| f.try_clone().unwrap()).collect(),
                gate: f.gate(),
                counters: f.tcp_counters(),
                resumed_marker: dir.join(format!("{id}.resumed")),
            },
        )
        .unwrap()
    }

    fn fd_of(b: &Bound) -> OwnedFd {
        b.try_clone_fd().unwrap()
    }

    /// A run root so long that its socket's path does not fit a unix address.
    #[test]
    fn a_long_run_root_serves_too() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("r".repeat(60)).join("o".repeat(60));
        let id = "f".repeat(64);
        assert!(socket_path(&root, &id).as_os_str().len() > 108);
        let s = serve(
            socket_path(&root, &id),
            Serving {
                ports: Vec::new(),
                gate: Gate::new(true),
                counters: Vec::new(),
                resumed_marker: root.join("resumed"),
            },
        )
        .unwrap();
        assert!(serves(&root, &id));
        assert_eq!(open_connections(&root, &id).unwrap(), Some(0));
        s.stop();
        assert!(!serves(&root, &id));
    }

    /// Holder A serves a TCP and a UDP port; B takes both over, paused: every
    /// connection still goes to A's target. B resumed, A paused: every connection goes
    /// to B's. A stopped: the port still serves (B holds the socket). A wrong address
    /// asked for is named in the error.
    #[test]
    fn ports_are_handed_over_and_switched_without_a_refusal() {
        let root_dir = tempfile::tempdir().unwrap();
        let root = root_dir.path();
        let (a_target, b_target) = (answering("a"), answering("b"));
        let (a_udp, b_udp) = (udp_answering("a"), udp_answering("b"));
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (port, uport) = (
            tcp.local_addr().unwrap().port(),
            udp.local_addr().unwrap().port(),
        );
        let publish: Vec<Publish> = vec![
            format!("127.0.0.1:{uport}:{}/udp", a_udp.port())
                .parse()
                .unwrap(),
            format!("127.0.0.1:{port}:{}", a_target.port())
                .parse()
                .unwrap(),
        ];
        let bound = vec![
            Bound::Udp(udp, publish[0].clone()),
            Bound::Tcp(tcp, publish[1].clone()),
        ];
        let copies: Vec<OwnedFd> = bound.iter().map(fd_of).collect();
        let say: super::super::Say = Arc::new(|_: &str| {});
        let a = super::super::start(bound, a_target.ip(), None, say.clone(), true).unwrap();
        let a_server = serving(&a, &copies, root, "a");
        drop(copies);
        let front: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let ufront: SocketAddr = format!("127.0.0.1:{uport}").parse().unwrap();
        assert_eq!(get(front), "a");
        assert_eq!(udp_get(ufront), "a");

        // B: the same ports, in its own order, taken from A; B's target differs in port.
        let mut b_publish = vec![publish[1].clone(), publish[0].clone()];
        b_publish[0].container_port = b_target.port();
        b_publish[1].container_port = b_udp.port();
        let taken = take(root, "a", &b_publish).unwrap().expect("A serves");
        assert_eq!(taken.len(), 2);
        let b_copies: Vec<OwnedFd> = taken.iter().map(fd_of).collect();
        let heard = Heard::default();
        let h = heard.clone();
        let b_say: super::super::Say = Arc::new(move |s: &str| h.0.lock().unwrap().push(s.into()));
        let b = super::super::start(taken, b_target.ip(), None, b_say, false).unwrap();
        let b_server = serving(&b, &b_copies, root, "b");
        drop(b_copies);
        for _ in 0..20 {
            assert_eq!(get(front), "a", "B is paused");
            assert_eq!(udp_get(ufront), "a", "B is paused");
        }
        assert!(serves(root, "b"));
        assert!(resume(root, "b").unwrap());
        assert!(root.join("b.resumed").exists());
        assert!(pause(root, "a").unwrap());
        for _ in 0..20 {
            assert_eq!(get(front), "b", "A is paused");
            assert_eq!(udp_get(ufront), "b", "A is paused");
        }
        assert_eq!(open_connections(root, "a").unwrap(), Some(0));
        a_server.stop();
        a.stop();
        assert!(
            !pause(root, "a").unwrap(),
            "A serves no control socket any more"
        );
        assert_eq!(get(front), "b");

        // Asked for a port B does not hold: named.
        let wrong: Publish = "127.0.0.1:1:80".parse().unwrap();
        let e = match take(root, "b", &[wrong]) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a port B does not hold was handed over"),
        };
        assert!(
            e.contains("127.0.0.1:1") && e.contains("holds no tcp socket"),
            "{e}"
        );
        b_server.stop();
        b.stop();
        let e = std::net::TcpStream::connect(front).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
        assert!(heard.lines().is_empty(), "{:?}", heard.lines());
    }
}
