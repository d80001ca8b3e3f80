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
//!
//! One concern per file: [`netns`] (moving the thread between network namespaces),
//! [`target`] (the switchable target), [`complaints`] (rate-limited messages to the
//! user), [`tcp`] (relay and splice), [`udp`], [`bind`]
//! (binding before the start, naming a port's owner), [`forwarder`] (the thread),
//! [`gate`] (pausing and resuming the accepts) and [`handoff`] (the ports passed on to
//! the holder of a container's replacement, over a control socket).

mod bind;
mod complaints;
mod counters;
mod forwarder;
pub mod gate;
pub mod handoff;
mod netns;
mod runtime_thread;
mod target;
mod tcp;
#[cfg(test)]
mod testutil;
mod udp;
mod unix;

// The paths the rest of frun uses (`crate::forward::Target`, ...); some are used only
// by tests until `frun swap` retargets a port. `-p` specs are `crate::model::Publish`.
#[allow(unused_imports)]
pub use self::{
    bind::{bind_all, Bound},
    complaints::{Complaints, Say},
    counters::{PortCounters, Snapshot},
    forwarder::{start, Forwarder},
    netns::Netns,
    target::Target,
    tcp::{proxy_v1_header, serve_tcp, TcpOptions, TcpPort},
    udp::{serve_udp, UdpPort},
    unix::{start_unix, UnixForwarder},
};
