//! The name files of a container: `/etc/hosts` (itself and every container on its
//! bridge, by name) and `/etc/resolv.conf` (the host's resolvers, usable from a network
//! namespace of its own).

use std::io::Write;

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
    let hostname = &c.record.id[..12];
    let mut s = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_string();
    match &c.record.network {
        Some(n) => {
            s.push_str(&format!("{}\t{hostname}\n", n.ip));
            s.push_str(&crate::net::hosts_entries(net).unwrap_or_default());
        }
        None => s.push_str(&format!("127.0.1.1\t{hostname} {}\n", c.record.name)),
    }
    s
}

/// Rewrites, in place (a bind-mounted file must keep its inode), the hosts file of every
/// container on the bridge, so that they find a container that just came or went.
pub fn refresh_hosts(containers: &Containers, net: &crate::net::NetConfig) {
    let Ok(all) = containers.list() else { return };
    for c in all.iter().filter(|c| c.record.network.is_some()) {
        let path = c.dir.join("hosts");
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
        {
            if let Err(e) = f.write_all(hosts_file(c, net).as_bytes()) {
                tracing::warn!("refreshing {path:?}: {e}");
            }
        }
    }
}
