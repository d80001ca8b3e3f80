//! Bridge networking: each container gets a network namespace of its own (kept as a
//! bind-mounted file under the run root, as `ip netns` does, so that the runtime joins
//! it by path), a veth pair into frun's bridge, an address from frun's allocator, a
//! default route, and egress NAT from an nftables table that frun owns.
//!
//! Links, addresses and routes go through netlink (rtnetlink); the nftables table is
//! loaded with `nft -f -` in one transaction, only when the kernel lacks it (see `nft`). Leases are a JSON file rewritten
//! atomically under a lock, so they survive a frun restart; the table and the bridge go
//! when the last lease does.

use anyhow::{bail, Context};
use frun_images::fsutil::write_atomic;
use futures_util::TryStreamExt;
use rtnetlink::{LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

mod nft;
pub use nft::NFT_NOT_ON_PATH;

/// Settings of frun's bridge network.
#[derive(Clone, Debug)]
pub struct NetConfig {
    pub bridge: String,
    /// The subnet: not podman's 10.88.0.0/16, not Docker's 172.17.0.0/16.
    pub subnet: Ipv4Addr,
    pub prefix: u8,
    /// `ROOT/network`: leases.
    pub state_dir: PathBuf,
    /// `RUN_ROOT/netns`: namespace files.
    pub netns_dir: PathBuf,
    /// `ROOT`: the container records, the truth the leases are rebuilt from.
    pub root: PathBuf,
}

impl NetConfig {
    pub fn new(
        root: &Path,
        run_root: &Path,
        bridge: &str,
        subnet: &str,
    ) -> anyhow::Result<NetConfig> {
        let (addr, prefix) = subnet
            .split_once('/')
            .with_context(|| format!("invalid subnet {subnet:?}: expected A.B.C.D/N"))?;
        let subnet_addr: Ipv4Addr = addr
            .parse()
            .with_context(|| format!("invalid subnet {subnet:?}"))?;
        let prefix: u8 = prefix
            .parse()
            .with_context(|| format!("invalid subnet {subnet:?}"))?;
        if !(8..=30).contains(&prefix) {
            bail!("invalid subnet {subnet:?}: the prefix must be between 8 and 30");
        }
        if bridge.is_empty() || bridge.len() > 15 {
            bail!("invalid bridge name {bridge:?}: 1 to 15 characters");
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(NetConfig {
            bridge: bridge.to_string(),
            subnet: Ipv4Addr::from(u32::from(subnet_addr) & mask),
            prefix,
            state_dir: root.join("network"),
            netns_dir: run_root.join("netns"),
            root: root.to_path_buf(),
        })
    }

    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet) + 1)
    }

    /// The nftables table of this bridge (one per bridge, so that two frun roots with
    /// their own bridges never touch each other's rules).
    pub fn nft_table(&self) -> String {
        let name: String = self
            .bridge
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        format!("frun_{name}")
    }

    fn cidr(&self) -> String {
        format!("{}/{}", self.subnet, self.prefix)
    }

    pub fn netns_path(&self, id: &str) -> PathBuf {
        self.netns_dir.join(id)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub name: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Leases {
    leases: BTreeMap<String, Lease>,
}

/// The address allocator: `ROOT/network/leases.json` under `ROOT/network/lock`.
pub struct Ipam<'a> {
    cfg: &'a NetConfig,
}

impl<'a> Ipam<'a> {
    pub fn new(cfg: &'a NetConfig) -> Ipam<'a> {
        Ipam { cfg }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Leases) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let dir = &self.cfg.state_dir;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {dir:?}"))?;
        let lock_path = dir.join("lock");
        let _lock = frun_images::fsutil::lock_exclusive(&lock_path)
            .with_context(|| format!("locking the leases ({lock_path:?})"))?;
        let path = self.cfg.state_dir.join("leases.json");
        let mut on_disk = None;
        let mut leases: Leases = match std::fs::read(&path) {
            Ok(d) => match serde_json::from_slice(&d) {
                Ok(l) => {
                    on_disk = Some(d);
                    l
                }
                Err(e) => {
                    // Kept for a look, out of the way of the rewrite below.
                    let aside = path.with_extension("json.corrupt");
                    if let Err(e) = std::fs::rename(&path, &aside) {
                        tracing::warn!("keeping {path:?} as {aside:?}: {e}");
                    }
                    let l = self.leases_in_records()?;
                    tracing::warn!(
                        "{} is corrupt ({e}; kept as {}): rebuilt {} lease(s) from the container records",
                        path.display(),
                        aside.display(),
                        l.leases.len()
                    );
                    l
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Without the file, a container that holds an address would see it
                // handed out again.
                let l = self.leases_in_records()?;
                if !l.leases.is_empty() {
                    tracing::warn!(
                        "{} is missing: rebuilt {} lease(s) from the container records",
                        path.display(),
                        l.leases.len()
                    );
                }
                l
            }
            Err(e) => return Err(e).with_context(|| format!("reading {path:?}")),
        };
        let out = f(&mut leases)?;
        // Written back only when it changed (or was rebuilt): reading all leases, as
        // every container's hosts file does, costs no write and no fsync.
        let new = serde_json::to_vec_pretty(&leases)?;
        if on_disk.as_deref() != Some(new.as_slice()) {
            write_atomic(&path, &new).with_context(|| format!("writing {path:?}"))?;
        }
        Ok(out)
    }

    /// The leases the container records hold: every container on this bridge that has
    /// an address and has not exited (an exited one gave its address back).
    fn leases_in_records(&self) -> anyhow::Result<Leases> {
        let mut out = Leases::default();
        let containers = crate::containers::Containers::open(&self.cfg.root)?;
        for c in containers.list()? {
            let Some(n) = c
                .record
                .network
                .as_ref()
                // An unspecified address: the record of an attach that had not happened.
                .filter(|n| n.bridge == self.cfg.bridge && !n.ip.is_unspecified())
            else {
                continue;
            };
            // An exited container whose holder lives is about to restart with its address.
            if c.state().is_ok_and(|st| {
                st.status == crate::containers::Status::Exited
                    && !crate::containers::Container::holder_alive(&st)
            }) {
                continue;
            }
            out.leases.insert(
                c.record.id.clone(),
                Lease {
                    ip: n.ip,
                    name: c.record.name.clone(),
                },
            );
        }
        Ok(out)
    }

    /// The lowest free address after the gateway.
    pub fn allocate(&self, id: &str, name: &str) -> anyhow::Result<Ipv4Addr> {
        let cfg = self.cfg;
        self.with(|l| {
            if let Some(existing) = l.leases.get(id) {
                return Ok(existing.ip);
            }
            // A live container's address stays its own even where the file lost its
            // lease (a file restored from an old copy, edited by hand): put back.
            for (other, lease) in self.leases_in_records()?.leases {
                if other != id && !l.leases.contains_key(&other) {
                    tracing::warn!(
                        "{} had no lease for container {} ({}): restored from its record",
                        cfg.state_dir.join("leases.json").display(),
                        lease.name,
                        lease.ip
                    );
                    l.leases.insert(other, lease);
                }
            }
            let base = u32::from(cfg.subnet);
            let size = 1u32 << (32 - cfg.prefix);
            let used: std::collections::HashSet<Ipv4Addr> =
                l.leases.values().map(|x| x.ip).collect();
            for off in 2..size - 1 {
                let ip = Ipv4Addr::from(base + off);
                if !used.contains(&ip) {
                    l.leases.insert(
                        id.to_string(),
                        Lease {
                            ip,
                            name: name.to_string(),
                        },
                    );
                    return Ok(ip);
                }
            }
            bail!("no free address left in {}", cfg.cidr())
        })
    }

    /// Frees `id`'s address; returns how many leases remain.
    pub fn release(&self, id: &str) -> anyhow::Result<usize> {
        self.with(|l| {
            l.leases.remove(id);
            Ok(l.leases.len())
        })
    }

    pub fn all(&self) -> anyhow::Result<BTreeMap<String, Lease>> {
        self.with(|l| Ok(l.leases.clone()))
    }
}

/// What a container got.
#[derive(Clone, Debug)]
pub struct Attachment {
    pub ip: Ipv4Addr,
}

/// The MAC address of a container's eth0, derived from its address as Docker does
/// (locally administered, `02:66:` + the four address bytes). A random one would break
/// address reuse: a container that talked to the previous holder of the address keeps
/// its neighbour entry (the old MAC, REACHABLE for up to ~45 s) and its packets to the
/// new holder go nowhere, e.g. nginx to the third generation of a swapped app.
fn container_mac(ip: Ipv4Addr) -> Vec<u8> {
    let [a, b, c, d] = ip.octets();
    vec![0x02, 0x66, a, b, c, d]
}

/// Host-side veth name of a container: unique per id, within IFNAMSIZ.
fn host_veth(id: &str) -> String {
    format!("veth{}", &id[..11])
}

/// Runs `f` on a fresh thread with a current-thread runtime and a netlink connection,
/// inside `netns` if given: setns then applies to that thread only.
fn netlink<T: Send + 'static>(
    netns: Option<PathBuf>,
    f: impl FnOnce(
            rtnetlink::Handle,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<T>>>>
        + Send
        + 'static,
) -> anyhow::Result<T> {
    std::thread::spawn(move || {
        if let Some(ns) = &netns {
            let file = std::fs::File::open(ns).with_context(|| format!("opening {ns:?}"))?;
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("entering {ns:?}"))?;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let (conn, handle, _) = rtnetlink::new_connection()?;
            tokio::spawn(conn);
            f(handle).await
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the netlink thread panicked"))?
}

async fn link_index(h: &rtnetlink::Handle, name: &str) -> anyhow::Result<Option<u32>> {
    Ok(link(h, name).await?.map(|m| m.header.index))
}

/// The link named `name`, if there is one.
async fn link(
    h: &rtnetlink::Handle,
    name: &str,
) -> anyhow::Result<Option<netlink_packet_route::link::LinkMessage>> {
    match h
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
    {
        Ok(m) => Ok(m),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(e).with_context(|| format!("looking up link {name}")),
    }
}

/// Makes a network namespace file at `path` (a bind mount of a new namespace).
fn create_netns(path: &Path) -> anyhow::Result<()> {
    let parent = path.parent().expect("netns path has a parent");
    std::fs::create_dir_all(parent).with_context(|| format!("creating {parent:?}"))?;
    std::fs::File::create(path).with_context(|| format!("creating {path:?}"))?;
    let p = path.to_path_buf();
    std::thread::spawn(move || -> anyhow::Result<()> {
        // unshare(CLONE_NEWNET) on this thread only; the bind mount keeps the namespace
        // alive after the thread is gone.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .context("creating a network namespace")?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &p,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| format!("bind-mounting the network namespace on {p:?}"))?;
        Ok(())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the netns thread panicked"))??;
    Ok(())
}

/// Unmounts and removes a container's netns file, if there (a failure to is logged).
fn remove_netns(path: &Path) {
    match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        // Not there, or not a mount point (left by a kill between the two steps).
        Ok(()) | Err(nix::errno::Errno::ENOENT | nix::errno::Errno::EINVAL) => {}
        Err(e) => {
            crate::cleanup::logged(&format!("unmounting {}", path.display()), Err::<(), _>(e))
        }
    }
    crate::cleanup::remove_file(path);
}

/// Serializes attach and detach on one root: the last detach removes the bridge, which
/// must not happen between another attach's lease and its veth.
fn bridge_lock(cfg: &NetConfig) -> anyhow::Result<std::fs::File> {
    let dir = &cfg.state_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {dir:?}"))?;
    let path = dir.join("bridge.lock");
    frun_images::fsutil::lock_exclusive(&path)
        .with_context(|| format!("locking the bridge ({path:?})"))
}

/// Gives container `id` a namespace, an address and a veth into the bridge.
pub fn attach(cfg: &NetConfig, id: &str, name: &str) -> anyhow::Result<Attachment> {
    let _lock = bridge_lock(cfg)?;
    let ipam = Ipam::new(cfg);
    let ip = ipam.allocate(id, name)?;
    crate::fault::reached(crate::fault::Step::NetLeased);
    let netns = cfg.netns_path(id);
    let r = (|| {
        create_netns(&netns)?;
        crate::fault::reached(crate::fault::Step::NetNetnsMade);
        // 1. Forwarding and NAT, then (one netlink session on the host side) the bridge
        //    with the gateway address, and the veth pair: host end on the bridge, the
        //    other end into the namespace.
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").context("enabling IPv4 forwarding")?;
        nft::ensure(cfg)?;
        let (br, gw, prefix) = (cfg.bridge.clone(), cfg.gateway(), cfg.prefix);
        let (host, ns) = (host_veth(id), netns.clone());
        netlink(None, move |h| {
            Box::pin(async move {
                let br_idx = match link_index(&h, &br).await? {
                    Some(i) => i,
                    None => {
                        h.link()
                            .add(LinkBridge::new(&br).build())
                            .execute()
                            .await
                            .with_context(|| format!("creating bridge {br}"))?;
                        link_index(&h, &br).await?.context("bridge vanished")?
                    }
                };
                let has_gw = h
                    .address()
                    .get()
                    .set_link_index_filter(br_idx)
                    .execute()
                    .try_collect::<Vec<_>>()
                    .await?
                    .iter()
                    .any(|a| a.attributes.iter().any(|at| matches!(at, netlink_packet_route::address::AddressAttribute::Address(IpAddr::V4(x)) if *x == gw)));
                if !has_gw {
                    h.address()
                        .add(br_idx, IpAddr::V4(gw), prefix)
                        .execute()
                        .await
                        .with_context(|| format!("adding {gw}/{prefix} to {br}"))?;
                }
                h.link()
                    .set(LinkUnspec::new_with_index(br_idx).up().build())
                    .execute()
                    .await?;
                let peer = format!("p{}", &host[4..]);
                // A pair of this container's last run that the kernel has not destroyed
                // yet (it goes with its namespace, in the kernel's own time: see
                // `detach_locked`); a restart reuses the name.
                if let Some(idx) = link_index(&h, &host).await? {
                    match h.link().del(idx).execute().await {
                        // Destroyed by the kernel meanwhile.
                        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {
                        }
                        r => r.with_context(|| format!("removing the old veth {host}"))?,
                    }
                }
                h.link()
                    .add(LinkVeth::new(&host, &peer).build())
                    .execute()
                    .await
                    .with_context(|| format!("creating veth {host}"))?;
                let host_idx = link_index(&h, &host).await?.context("veth vanished")?;
                let peer_idx = link_index(&h, &peer).await?.context("veth peer vanished")?;
                h.link()
                    .set(
                        LinkUnspec::new_with_index(host_idx)
                            .controller(br_idx)
                            .up()
                            .build(),
                    )
                    .execute()
                    .await?;
                let f = std::fs::File::open(&ns).with_context(|| format!("opening {ns:?}"))?;
                h.link()
                    .set(
                        LinkUnspec::new_with_index(peer_idx)
                            .setns_by_fd(f.as_raw_fd())
                            .build(),
                    )
                    .execute()
                    .await
                    .context("moving the veth into the container's namespace")?;
                Ok(())
            })
        })?;
        crate::fault::reached(crate::fault::Step::NetVethMade);

        // 2. Inside: eth0 with its MAC (from the address) and address, the default route,
        //    lo up.
        let (host, gw, prefix) = (host_veth(id), cfg.gateway(), cfg.prefix);
        netlink(Some(netns.clone()), move |h| {
            Box::pin(async move {
                let peer = format!("p{}", &host[4..]);
                let idx = link_index(&h, &peer)
                    .await?
                    .context("veth missing in the namespace")?;
                h.link()
                    .set(
                        LinkUnspec::new_with_index(idx)
                            .name("eth0".to_string())
                            .address(container_mac(ip))
                            .build(),
                    )
                    .execute()
                    .await
                    .context("naming eth0 and setting its MAC address")?;
                h.address()
                    .add(idx, IpAddr::V4(ip), prefix)
                    .execute()
                    .await?;
                // A gratuitous ARP when eth0 comes up: an address given again (a
                // container replaced by a new one) must not stay cached with the old
                // container's MAC by the bridge and by its peers (a proxy's requests to
                // the new app would go nowhere until the entry expires). This thread is
                // in the namespace: /proc/sys/net is the namespace's.
                let notify = "/proc/sys/net/ipv4/conf/eth0/arp_notify";
                std::fs::write(notify, "1").with_context(|| format!("writing {notify}"))?;
                h.link()
                    .set(LinkUnspec::new_with_index(idx).up().build())
                    .execute()
                    .await?;
                if let Some(lo) = link_index(&h, "lo").await? {
                    h.link()
                        .set(LinkUnspec::new_with_index(lo).up().build())
                        .execute()
                        .await?;
                }
                let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).build();
                h.route()
                    .add(route)
                    .execute()
                    .await
                    .context("adding the default route")?;
                Ok(())
            })
        })?;
        Ok::<(), anyhow::Error>(())
    })();
    crate::fault::reached(crate::fault::Step::NetAttached);
    match r {
        Ok(()) => Ok(Attachment { ip }),
        Err(e) => {
            if let Err(d) = detach_locked(cfg, id) {
                tracing::warn!(error = %d, "cleaning up a failed network attach");
            }
            Err(e).context(format!("connecting the container to bridge {}", cfg.bridge))
        }
    }
}

/// Undoes [`attach`]; the bridge and the NAT table go with the last container.
pub fn detach(cfg: &NetConfig, id: &str) -> anyhow::Result<()> {
    let _lock = bridge_lock(cfg)?;
    detach_locked(cfg, id)
}

fn detach_locked(cfg: &NetConfig, id: &str) -> anyhow::Result<()> {
    // The veth pair goes with the container's namespace when its peer is in there: the
    // kernel then destroys both in its own time. Deleting it here instead waits for
    // the kernel's RCU grace periods (some 20 ms, measured with `ip link del`), in every
    // stop and every swap. A pair whose two ends are both still here (an attach that
    // failed or was killed before the move) is deleted.
    let host = host_veth(id);
    let removed = netlink(None, move |h| {
        Box::pin(async move {
            if let Some(m) = link(&h, &host).await? {
                let peer_elsewhere = m.attributes.iter().any(|a| {
                    matches!(a, netlink_packet_route::link::LinkAttribute::LinkNetNsId(_))
                });
                if !peer_elsewhere {
                    h.link().del(m.header.index).execute().await?;
                }
            }
            Ok(())
        })
    });
    crate::cleanup::logged(&format!("removing the veth of {id}"), removed);
    remove_netns(&cfg.netns_path(id));
    let left = Ipam::new(cfg).release(id)?;
    if left == 0 {
        let t = cfg.nft_table();
        crate::cleanup::logged(&format!("removing the nft table {t}"), nft::delete(cfg));
        let br = cfg.bridge.clone();
        netlink(None, move |h| {
            Box::pin(async move {
                if let Some(idx) = link_index(&h, &br).await? {
                    h.link().del(idx).execute().await?;
                }
                Ok(())
            })
        })?;
    }
    Ok(())
}

/// `/etc/hosts` lines for every container on the network.
pub fn hosts_entries(cfg: &NetConfig) -> anyhow::Result<String> {
    let mut out = String::new();
    for lease in Ipam::new(cfg).all()?.values() {
        out.push_str(&format!("{}\t{}\n", lease.ip, lease.name));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_allocate_release_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = NetConfig::new(dir.path(), dir.path(), "frun0", "10.89.0.0/30").unwrap();
        assert_eq!(cfg.gateway(), Ipv4Addr::new(10, 89, 0, 1));
        let ipam = Ipam::new(&cfg);
        assert_eq!(
            ipam.allocate("a", "app").unwrap(),
            Ipv4Addr::new(10, 89, 0, 2)
        );
        assert_eq!(
            ipam.allocate("a", "app").unwrap(),
            Ipv4Addr::new(10, 89, 0, 2),
            "same id, same lease"
        );
        let err = ipam.allocate("b", "proxy").unwrap_err().to_string();
        assert!(err.contains("10.89.0.0/30"), "{err}");
        assert_eq!(ipam.release("a").unwrap(), 0);
        // A new allocator (a restarted frun) sees the same file.
        let again = Ipam::new(&cfg);
        assert_eq!(
            again.allocate("b", "proxy").unwrap(),
            Ipv4Addr::new(10, 89, 0, 2)
        );
        // Reading them (every hosts file does) writes nothing: the same file stays.
        use std::os::unix::fs::MetadataExt;
        let file = cfg.state_dir.join("leases.json");
        let ino = std::fs::metadata(&file).unwrap().ino();
        assert!(hosts_entries(&cfg).unwrap().contains("10.89.0.2\tproxy"));
        assert_eq!(std::fs::metadata(&file).unwrap().ino(), ino);
        // A change does (temp file + rename: a new inode).
        assert_eq!(again.release("b").unwrap(), 0);
        assert_ne!(std::fs::metadata(&file).unwrap().ino(), ino);
    }

    /// A corrupt leases.json failed every bridge run with a bare parse error, and a
    /// deleted one handed a running container's address to the next: both are rebuilt
    /// from the container records (an exited container's address is free again).
    #[test]
    fn corrupt_or_missing_leases_are_rebuilt_from_the_container_records() {
        use crate::containers::{Containers, NetRecord, Record, State, Status};
        let dir = tempfile::tempdir().unwrap();
        let cfg = NetConfig::new(dir.path(), dir.path(), "frun0", "10.89.0.0/24").unwrap();
        let containers = Containers::open(dir.path()).unwrap();
        let ip = |n: u8| Ipv4Addr::new(10, 89, 0, n);
        let make = |name: &str, addr: Ipv4Addr, bridge: &str| {
            containers
                .create(Some(name), |id, name| {
                    Ok(Record {
                        id: id.into(),
                        name: name.into(),
                        image: "test".into(),
                        image_digest: String::new(),
                        layers: Vec::new(),
                        command: Vec::new(),
                        created: crate::containers::now(),
                        cgroup: PathBuf::from("/frun").join(id),
                        detached: true,
                        auto_remove: false,
                        stop_signal: 15,
                        stop_timeout: 10,
                        memory_limit: None,
                        network: Some(NetRecord {
                            bridge: bridge.into(),
                            subnet: "10.89.0.0/24".into(),
                            ip: addr,
                        }),
                        publish: Vec::new(),
                        tty: false,
                        interactive: false,
                        restart: Default::default(),
                        labels: Default::default(),
                        health: None,
                        lower_dirs: Vec::new(),
                        log: Default::default(),
                        ports_from: None,
                    })
                })
                .unwrap()
        };
        let _live = make("live", ip(2), "frun0");
        let gone = make("gone", ip(3), "frun0");
        let mut st = State::created();
        st.status = Status::Exited;
        gone.set_state(&st).unwrap();
        let _other = make("other", ip(4), "frun9");
        let leases = cfg.state_dir.join("leases.json");
        std::fs::create_dir_all(&cfg.state_dir).unwrap();
        std::fs::write(&leases, "{\"leases\": {\"x\": ").unwrap();

        let ipam = Ipam::new(&cfg);
        let got = ipam.allocate("new", "new").unwrap();
        assert_eq!(
            got,
            ip(3),
            "the live container's address, or not the lowest free one"
        );
        let all = ipam.all().unwrap();
        let ips: Vec<Ipv4Addr> = all.values().map(|l| l.ip).collect();
        assert_eq!(ips.len(), 2, "{all:?}");
        assert!(ips.contains(&ip(2)) && ips.contains(&ip(3)), "{all:?}");
        assert!(cfg.state_dir.join("leases.json.corrupt").exists());

        // The live container keeps its address whatever happened to the file.
        let live_kept = |ipam: &Ipam| {
            ipam.all()
                .unwrap()
                .values()
                .any(|l| l.ip == ip(2) && l.name == "live")
        };
        // Deleted: the same, quietly rebuilt.
        std::fs::remove_file(&leases).unwrap();
        assert_eq!(ipam.allocate("next", "next").unwrap(), ip(3));
        assert!(live_kept(&ipam));

        // Valid but without the live container's lease: put back, never handed out.
        std::fs::write(&leases, "{\"leases\": {}}").unwrap();
        assert_eq!(ipam.allocate("later", "later").unwrap(), ip(3));
        assert!(live_kept(&ipam));
    }

    /// Root only: attach and detach a fake container, all inside a network namespace
    /// this test makes for its "host" side (the thread's own: threads and the `nft`
    /// process it starts inherit it), so the machine's own namespace is never touched.
    #[test]
    fn attach_and_detach_inside_a_private_namespace() {
        if !crate::test_as_root() {
            return;
        }
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let cfg = NetConfig::new(
                &dir.path().join("root"),
                &dir.path().join("run"),
                "frunt0",
                "10.89.0.0/24",
            )
            .unwrap();
            let id = "0123456789abcdef0123456789abcdef";
            let a = attach(&cfg, id, "app").unwrap();
            assert_eq!(a.ip, Ipv4Addr::new(10, 89, 0, 2));
            // Inside: eth0 with the address, the default route via the gateway, lo up.
            let ns = cfg.netns_path(id);
            let (addrs, routes) = netlink(Some(ns), |h| {
                Box::pin(async move {
                    let addrs: Vec<String> = h
                        .address()
                        .get()
                        .execute()
                        .try_collect::<Vec<_>>()
                        .await?
                        .iter()
                        .map(|m| format!("{:?}", m.attributes))
                        .collect();
                    let routes: Vec<String> = h
                        .route()
                        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
                        .execute()
                        .try_collect::<Vec<_>>()
                        .await?
                        .iter()
                        .map(|m| format!("{:?}", m.attributes))
                        .collect();
                    Ok((addrs.join("\n"), routes.join("\n")))
                })
            })
            .unwrap();
            assert!(addrs.contains("10.89.0.2"), "{addrs}");
            assert!(routes.contains("10.89.0.1"), "{routes}");
            let table = std::process::Command::new("nft")
                .args(["list", "table", "ip", "frun_frunt0"])
                .output()
                .unwrap();
            assert!(String::from_utf8_lossy(&table.stdout).contains("masquerade"));
            assert!(hosts_entries(&cfg).unwrap().contains("10.89.0.2\tapp"));
            detach(&cfg, id).unwrap();
            // Nothing left: no veth, no bridge, no table, no lease, no namespace file.
            let links = netlink(None, |h| {
                Box::pin(async move {
                    Ok(h.link()
                        .get()
                        .execute()
                        .try_collect::<Vec<_>>()
                        .await?
                        .len())
                })
            })
            .unwrap();
            assert_eq!(links, 1, "only lo is left");
            let table = std::process::Command::new("nft")
                .args(["list", "table", "ip", "frun_frunt0"])
                .output()
                .unwrap();
            assert!(!table.status.success(), "the table is gone");
            assert!(Ipam::new(&cfg).all().unwrap().is_empty());
            assert!(!cfg.netns_path(id).exists());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn subnets_validate() {
        let d = Path::new("/x");
        assert!(NetConfig::new(d, d, "frun0", "10.89.0.0").is_err());
        assert!(NetConfig::new(d, d, "frun0", "10.89.0.0/31").is_err());
        assert!(NetConfig::new(d, d, "a-very-long-bridge-name", "10.89.0.0/16").is_err());
        let c = NetConfig::new(d, d, "frun0", "10.89.3.7/16").unwrap();
        assert_eq!(c.cidr(), "10.89.0.0/16");
        assert!(nft::script(&c).contains("ip saddr 10.89.0.0/16 oifname != \"frun0\" masquerade"));
    }
}
