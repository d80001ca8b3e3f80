//! Binding the published ports before the container starts, so that a taken port
//! fails the start with a message naming who holds it (from `/proc/net/*` and the
//! processes' fd tables) instead of a container without its port.

use std::io;
use std::net::SocketAddr;

use crate::model::Publish;

/// A bound host socket, ready to forward.
pub enum Bound {
    Tcp(std::net::TcpListener, Publish),
    Udp(std::net::UdpSocket, Publish),
}

impl Bound {
    /// Another descriptor of the same socket (for a hand-off, see `handoff`).
    pub fn try_clone_fd(&self) -> io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        match self {
            Bound::Tcp(l, _) => l.as_fd().try_clone_to_owned(),
            Bound::Udp(s, _) => s.as_fd().try_clone_to_owned(),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
