//! Test helpers shared by the forwarder's unit tests: an echo server, a forwarder
//! on a port with what it says collected, and a half-closing round trip.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::complaints::Complaints;
use super::target::Target;
use super::tcp::{serve_tcp, TcpOptions, TcpPort};

pub(super) async fn echo_server(tag: &'static [u8]) -> SocketAddr {
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
pub(super) struct Heard(pub(super) Arc<Mutex<Vec<String>>>);

impl Heard {
    pub(super) fn complaints(&self) -> Arc<Complaints> {
        let heard = self.0.clone();
        Arc::new(Complaints::new(
            Arc::new(move |s: &str| heard.lock().unwrap().push(s.to_string())),
            Duration::from_secs(3600),
        ))
    }

    pub(super) fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

pub(super) async fn start_heard(target: &Target, opts: TcpOptions, heard: &Heard) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let port = TcpPort {
        target: target.clone(),
        opts,
        complaints: heard.complaints(),
        counters: Default::default(),
        gate: crate::forward::gate::Gate::new(true),
    };
    tokio::spawn(serve_tcp(l, Arc::new(port)));
    addr
}

pub(super) async fn start(target: &Target, opts: TcpOptions) -> SocketAddr {
    start_heard(target, opts, &Heard::default()).await
}

/// The client half-closes after sending; the server answers after reading to EOF:
/// only a forwarder that passes the FIN on and keeps the other direction open
/// lets this finish.
pub(super) async fn round_trip(front: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut c = TcpStream::connect(front).await.unwrap();
    c.write_all(payload).await.unwrap();
    c.shutdown().await.unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).await.unwrap();
    out
}
