//! The name files of a container: `/etc/hosts` (itself and every container on its
//! bridge, by name) and `/etc/resolv.conf` (the host's resolvers, usable from a network
//! namespace of its own).

use crate::containers::{Container, Containers};

/// The host's resolvers; a local stub (127.0.0.53 of systemd-resolved) is useless in a
/// network namespace of its own, so its upstream list is used instead.
pub fn host_resolv_conf() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let main = read("/etc/resolv.conf");
    let is_stub = |text: &str| {
        text.lines()
            .filter_map(|l| l.strip_prefix("nameserver"))
            .any(|ns| ns.trim().starts_with("127."))
    };
    if is_stub(&main) {
        let upstream = read("/run/systemd/resolve/resolv.conf");
        if !upstream.is_empty() && !is_stub(&upstream) {
            return upstream;
        }
        return main
            .lines()
            .filter(|l| !l.trim_start().starts_with("nameserver") || !is_stub(l))
            .map(|l| format!("{l}\n"))
            .collect();
    }
    main
}

/// A container's `/etc/hosts`: itself, and every container on its bridge by name.
pub fn hosts_file(c: &Container, net: &crate::net::NetConfig) -> String {
    let bridge = match &c.record.network {
        Some(_) => crate::net::hosts_entries(net).unwrap_or_default(),
        None => String::new(),
    };
    hosts_text(c, &bridge)
}

/// [`hosts_file`] with the bridge's lines (`hosts_entries`) already read.
fn hosts_text(c: &Container, bridge: &str) -> String {
    let hostname = &c.record.id[..12];
    let mut s = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_string();
    match &c.record.network {
        Some(n) => {
            s.push_str(&format!("{}\t{hostname}\n", n.ip));
            s.push_str(bridge);
        }
        None => s.push_str(&format!("127.0.1.1\t{hostname} {}\n", c.record.name)),
    }
    s
}

/// Rewrites, in place (a bind-mounted file must keep its inode), the hosts file of every
/// container on the bridge, so that they find a container that just came or went.
///
/// Written over the old text and then cut to length, never truncated first: a program
/// in the container reading it meanwhile (`hostname -i`, a resolver) must not find it
/// empty. The first lines, the container's own name among them, never change.
pub fn refresh_hosts(containers: &Containers, net: &crate::net::NetConfig) {
    use std::os::unix::fs::FileExt;
    let Ok(all) = containers.list() else { return };
    // The bridge's lines once, for every container (each read locks the leases).
    let bridge = crate::net::hosts_entries(net).unwrap_or_default();
    for c in all.iter().filter(|c| c.record.network.is_some()) {
        let path = c.dir.join("hosts");
        let text = hosts_text(c, &bridge);
        if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&path) {
            let r = f
                .write_all_at(text.as_bytes(), 0)
                .and_then(|()| f.set_len(text.len() as u64));
            if let Err(e) = r {
                tracing::warn!("refreshing {path:?}: {e}");
            }
        }
    }
}
