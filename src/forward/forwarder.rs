//! The forwarder of one container: every published port of it served on a
//! current-thread tokio runtime on a thread of its own (SCHED_BATCH, see the module
//! documentation of `forward`), stopped by [`Forwarder::stop`] or on drop.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};

use super::bind::Bound;
use super::complaints::{Complaints, Say};
use super::counters::PortCounters;
use super::gate::Gate;
use super::netns::Netns;
use super::runtime_thread::RuntimeThread;
use super::target::Target;
use super::tcp::{serve_tcp, TcpOptions, TcpPort};
use super::udp::{serve_udp, UdpPort};

/// The forwarder of one container's published ports, on a thread of its own; stopped
/// (its ports closed) by [`Forwarder::stop`] or on drop.
pub struct Forwarder {
    targets: Vec<Target>,
    /// Each published port (as the user gave it) and what it carried.
    counters: Vec<(String, Arc<PortCounters>)>,
    complaints: Vec<Arc<Complaints>>,
    /// The counters of the TCP ports alone (what a drain waits for).
    tcp_counters: Vec<Arc<PortCounters>>,
    gate: Arc<Gate>,
    runtime: RuntimeThread,
}

impl Forwarder {
    /// The targets of the published ports, in their order (for retargeting).
    // The stack's swap is the caller; until it lands, the tests are.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Whether its ports accept (paused and resumed by a hand-off, see `handoff`).
    pub fn gate(&self) -> Arc<Gate> {
        self.gate.clone()
    }

    /// The live counters of its TCP ports: their open connections are what a drain
    /// waits for (a UDP flow is not: once paused, a client's next datagram goes to the
    /// other holder of the socket).
    pub fn tcp_counters(&self) -> Vec<Arc<PortCounters>> {
        self.tcp_counters.clone()
    }

    /// Each published port (as the user gave it) and its live counters.
    pub fn counters(&self) -> Vec<(String, Arc<PortCounters>)> {
        self.counters.clone()
    }

    /// Closes the published ports, so that a client is refused from now on, and ends
    /// the open connections; returns once they are closed. What was held back of the
    /// complaints is told now.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        self.runtime.stop();
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
/// network namespace, if given) on a runtime of its own thread; accepting at once, or
/// (`accepting` false: ports handed over, see `handoff`) once its gate is resumed.
/// Failures to reach the container are told through `say`.
pub fn start(
    bound: Vec<Bound>,
    ip: std::net::IpAddr,
    netns: Option<Arc<Netns>>,
    say: Say,
    accepting: bool,
) -> anyhow::Result<Forwarder> {
    let gate = Gate::new(accepting);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut targets = Vec::new();
    let mut complaints = Vec::new();
    let mut counters = Vec::new();
    let mut tcp_counters = Vec::new();
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
        let carried = Arc::new(PortCounters::default());
        counters.push((what.clone(), carried.clone()));
        match b {
            Bound::Tcp(l, p) => {
                tcp_counters.push(carried.clone());
                l.set_nonblocking(true)?;
                let port = Arc::new(TcpPort {
                    target,
                    opts: TcpOptions {
                        proxy_protocol: p.proxy_protocol,
                    },
                    complaints: c,
                    counters: carried,
                    gate: gate.clone(),
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
                    counters: carried,
                    gate: gate.clone(),
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
    let runtime = RuntimeThread::start("frun-forward", rt, |_| {
        // No wakeup preemption: see the module's docs.
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler(2) of the calling thread (0), with a valid param.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
            tracing::debug!(error = %io::Error::last_os_error(), "SCHED_BATCH for the forwarder");
        }
    })?;
    Ok(Forwarder {
        targets,
        counters,
        complaints,
        tcp_counters,
        gate,
        runtime,
    })
}

/// At most one message per this long per published port about failures to reach it.
const COMPLAIN_EVERY: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::testutil::Heard;
    use crate::model::Publish;
    use std::path::Path;

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
            true,
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
}
