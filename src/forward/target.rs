//! The switchable target of a published port: new connections go to the current
//! address, open ones finish where they are. Switching is one `watch` send, read by
//! each new connection; a change is logged once with the old and new address.

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;

use super::netns::Netns;

/// Where new connections go: an address, and the network namespace to connect from
/// (`None`: the forwarder's own).
#[derive(Clone)]
pub(super) struct Dest {
    pub(super) addr: SocketAddr,
    pub(super) netns: Option<Arc<Netns>>,
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

    pub(super) fn dest(&self) -> Dest {
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
