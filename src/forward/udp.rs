//! UDP: one upstream socket per client address, made in the target's namespace and
//! dropped after an idle time; replies flow back through the published socket.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;

use super::complaints::{connect_failure_text, Complaints};
use super::counters::PortCounters;
use super::gate::{accept_through, Gate};
use super::netns::enter;
use super::target::{Dest, Target};

/// One published UDP port as the forwarder serves it.
pub struct UdpPort {
    pub target: Target,
    /// A flow is forgotten after this long without a reply.
    pub idle: Duration,
    pub complaints: Arc<Complaints>,
    /// A flow (a client address) counts as a connection.
    pub counters: Arc<PortCounters>,
    /// Whether it takes datagrams now (see `gate`).
    pub gate: Arc<Gate>,
}

type Flows = Arc<Mutex<std::collections::HashMap<SocketAddr, Arc<UdpSocket>>>>;

/// Relays UDP datagrams: one upstream socket per client, forgotten after `idle`.
pub async fn serve_udp(socket: UdpSocket, port: Arc<UdpPort>) -> io::Result<()> {
    let socket = Arc::new(socket);
    let local = socket.local_addr()?;
    let flows: Flows = Arc::default();
    let mut buf = vec![0u8; 65536];
    let mut changes = port.gate.watch();
    loop {
        // Paused (see `gate`), the datagrams are left to the other holder of the socket;
        // replies of known flows still go out.
        let (ready, inside) = accept_through(&port.gate, &mut changes, || socket.readable()).await;
        ready?;
        let got = socket.try_recv_from(&mut buf);
        drop(inside);
        let (n, client) = match got {
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        PortCounters::add(&port.counters.bytes_in, n as u64);
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
                        PortCounters::add(&port.counters.failed, 1);
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
                    let _open = port2.counters.accept();
                    let mut buf = vec![0u8; 65536];
                    loop {
                        match tokio::time::timeout(port2.idle, u2.recv(&mut buf)).await {
                            Ok(Ok(n)) => {
                                PortCounters::add(&port2.counters.bytes_out, n as u64);
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
    use crate::forward::testutil::Heard;

    /// Each client is a flow with its own upstream socket; the port's counters (what
    /// the metrics show as connections and bytes) count flows and datagram bytes.
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
            counters: Default::default(),
            idle: Duration::from_secs(5),
            complaints: Heard::default().complaints(),
            gate: crate::forward::gate::Gate::new(true),
        };
        let port = Arc::new(port);
        tokio::spawn(serve_udp(front, port.clone()));
        // Two clients, the first sending twice: two flows, five datagrams.
        let mut clients = Vec::new();
        for who in [&b"one"[..], b"two", b"one more"] {
            if clients.len() < 2 {
                clients.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
            }
            let c = if who == b"one more" {
                &clients[0]
            } else {
                clients.last().unwrap()
            };
            c.send_to(who, faddr).await.unwrap();
            let mut buf = [0u8; 64];
            let (n, from) = tokio::time::timeout(Duration::from_secs(5), c.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(from, faddr);
            assert_eq!(&buf[..n], [&b"re:"[..], who].concat().as_slice());
        }
        let s = port.counters.snapshot("p");
        assert_eq!((s.accepted, s.open, s.failed), (2, 2, 0), "{s:?}");
        assert_eq!(s.bytes_in, 3 + 3 + 8, "{s:?}");
        assert_eq!(s.bytes_out, 6 + 6 + 11, "{s:?}");
    }

    /// A flow whose upstream cannot be made is a failed connection; nothing is relayed.
    #[tokio::test]
    async fn an_unreachable_upstream_is_counted_as_failed() {
        let front = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let faddr = front.local_addr().unwrap();
        // The broadcast address without SO_BROADCAST: connect(2) refuses it (EACCES).
        let target = Target::new("255.255.255.255:9".parse().unwrap());
        let heard = Heard::default();
        let port = Arc::new(UdpPort {
            target,
            counters: Default::default(),
            idle: Duration::from_secs(5),
            complaints: heard.complaints(),
            gate: crate::forward::gate::Gate::new(true),
        });
        tokio::spawn(serve_udp(front, port.clone()));
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.send_to(b"x", faddr).await.unwrap();
        for _ in 0..500 {
            if port.counters.snapshot("p").failed > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let s = port.counters.snapshot("p");
        assert_eq!(
            (s.failed, s.accepted, s.bytes_in, s.bytes_out),
            (1, 0, 1, 0),
            "{s:?}"
        );
    }
}
