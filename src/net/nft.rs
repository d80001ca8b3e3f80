//! The nftables table frun owns for its bridge: masquerade for the subnet leaving
//! through any other interface, and forwarding to and from the bridge.
//!
//! The table is loaded with `nft -f -` in one transaction. Starting `nft` costs an exec
//! and a ruleset dump (10–50 ms, more on a busy box), and every container start used to
//! pay it although the table rarely changes. So the table carries a comment naming a
//! hash of its own script, and [`ensure`] first asks the kernel for the table over
//! netlink (one request, no process): a table that is there with the same hash is left
//! alone; a missing one (a reboot, `nft flush ruleset`) or an older one is loaded again.

use super::NetConfig;
use anyhow::{bail, Context};
use std::io;

/// What `frun info` and a refusal say when `nft` cannot be found.
pub const NFT_NOT_ON_PATH: &str = "nft is not on PATH";

/// The table's script: replaces the table as a whole (created first so that the delete
/// cannot fail), in one transaction, so no packet ever sees it half-made.
pub(super) fn script(cfg: &NetConfig) -> String {
    let body = body(cfg);
    format!(
        "table ip {t}\ndelete table ip {t}\ntable ip {t} {{\n comment \"{c}\"\n{body}}}\n",
        t = cfg.nft_table(),
        c = comment(&body),
    )
}

fn body(cfg: &NetConfig) -> String {
    format!(
        " chain postrouting {{ type nat hook postrouting priority srcnat; policy accept;\n\
           ip saddr {cidr} oifname != \"{br}\" masquerade\n }}\n\
         chain forward {{ type filter hook forward priority filter; policy accept;\n\
           iifname \"{br}\" accept\n oifname \"{br}\" ct state established,related accept\n }}\n",
        cidr = cfg.cidr(),
        br = cfg.bridge
    )
}

/// `frun <first 16 hex digits of the body's sha256>`: what the kernel keeps as the
/// table's user data, and what [`ensure`] looks for.
fn comment(body: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(body.as_bytes());
    let hex: String = h[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("frun {hex}")
}

/// The table as `script` makes it: loaded only when the kernel does not have it already.
pub(super) fn ensure(cfg: &NetConfig) -> anyhow::Result<()> {
    let want = comment(&body(cfg));
    match table(&cfg.nft_table()) {
        Ok(Some(t)) if contains(&t.userdata, want.as_bytes()) => return Ok(()),
        Ok(_) => {}
        // The kernel could not say (an old kernel, no nf_tables yet): nft decides.
        Err(e) => tracing::debug!(error = %e, "asking the kernel for frun's nftables table"),
    }
    run(&script(cfg))
}

/// Deletes the table (the last container left the bridge). `add` first: deleting a
/// table that is not there (gone with a reboot) is no failure then.
pub(super) fn delete(cfg: &NetConfig) -> anyhow::Result<()> {
    let t = cfg.nft_table();
    run(&format!("add table ip {t}\ndelete table ip {t}\n"))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn run(script: &str) -> anyhow::Result<()> {
    let mut cmd = std::process::Command::new("nft");
    let out = match crate::tool::run_with_input(cmd.args(["-f", "-"]), script.as_bytes()) {
        Ok(out) => out,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(frun_runtime::needs::Need::Nft
                .missing(NFT_NOT_ON_PATH)
                .into())
        }
        Err(e) => return Err(e).context("running nft"),
    };
    if !out.status.success() {
        bail!(
            "nft failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

// nfnetlink's numbers (linux/netfilter/nfnetlink.h, nf_tables.h, netlink.h).
const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_HANDLE: u16 = 4;
const NFTA_TABLE_USERDATA: u16 = 6;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NFPROTO_IPV4: u8 = 2;

/// What the kernel says of a table: its handle (new each time it is made) and its user
/// data (where its comment lives).
#[derive(Debug, Default, PartialEq, Eq)]
struct Table {
    handle: u64,
    userdata: Vec<u8>,
}

/// The `ip` table `name`, `Ok(None)` when the kernel has no such table: one
/// NFT_MSG_GETTABLE request over nfnetlink.
fn table(name: &str) -> io::Result<Option<Table>> {
    use rustix::net::{recv, send, socket, AddressFamily, Protocol, RecvFlags, SendFlags};
    let proto =
        Protocol::from_raw(std::num::NonZeroU32::new(NETLINK_NETFILTER as u32).expect("not zero"));
    let fd = socket(
        AddressFamily::NETLINK,
        rustix::net::SocketType::RAW,
        Some(proto),
    )?;
    send(&fd, &request(name), SendFlags::empty())?;
    let mut buf = vec![0u8; 16 * 1024];
    let (n, _) = recv(&fd, &mut buf, RecvFlags::empty())?;
    parse_reply(&buf[..n])
}

/// nlmsghdr + nfgenmsg + NFTA_TABLE_NAME, for the kernel (port 0) to answer.
fn request(name: &str) -> Vec<u8> {
    let mut attr = Vec::new();
    let data_len = name.len() + 1;
    attr.extend_from_slice(&((4 + data_len) as u16).to_ne_bytes());
    attr.extend_from_slice(&NFTA_TABLE_NAME.to_ne_bytes());
    attr.extend_from_slice(name.as_bytes());
    attr.push(0);
    while attr.len() % 4 != 0 {
        attr.push(0);
    }
    let len = 16 + 4 + attr.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&(NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETTABLE).to_ne_bytes());
    m.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel's
    m.extend_from_slice(&[NFPROTO_IPV4, 0, 0, 0]); // family, version 0, res_id 0
    m.extend_from_slice(&attr);
    m
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The first message of the reply: the table, ENOENT (no table), or another error.
fn parse_reply(b: &[u8]) -> io::Result<Option<Table>> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "a short nfnetlink reply");
    let len = u32_at(b, 0).ok_or_else(bad)? as usize;
    let ty = u16_at(b, 4).ok_or_else(bad)?;
    let msg = b.get(..len).ok_or_else(bad)?;
    if ty == NLMSG_ERROR {
        let errno = -(u32_at(msg, 16).ok_or_else(bad)? as i32);
        return match errno {
            0 => Ok(None),
            libc::ENOENT => Ok(None),
            e => Err(io::Error::from_raw_os_error(e)),
        };
    }
    if ty != (NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWTABLE) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("an nfnetlink reply of type {ty:#x}"),
        ));
    }
    // The attributes after nlmsghdr (16) and nfgenmsg (4).
    let mut t = Table::default();
    let mut at = 20;
    while at + 4 <= msg.len() {
        let alen = u16_at(msg, at).ok_or_else(bad)? as usize;
        let atype = u16_at(msg, at + 2).ok_or_else(bad)? & 0x3fff;
        if alen < 4 {
            break;
        }
        let data = msg.get(at + 4..at + alen).ok_or_else(bad)?;
        match atype {
            NFTA_TABLE_USERDATA => t.userdata = data.to_vec(),
            NFTA_TABLE_HANDLE => t.handle = u64::from_be_bytes(data.try_into().map_err(|_| bad())?),
            _ => {}
        }
        at += (alen + 3) & !3;
    }
    Ok(Some(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> NetConfig {
        NetConfig::new(
            std::path::Path::new("/r"),
            std::path::Path::new("/run/r"),
            "frun0",
            "10.89.0.0/16",
        )
        .unwrap()
    }

    #[test]
    fn the_script_names_its_own_hash_and_the_subnet() {
        let s = script(&cfg());
        assert!(s.contains("ip saddr 10.89.0.0/16 oifname != \"frun0\" masquerade"));
        assert!(s.contains(&format!("comment \"{}\"", comment(&body(&cfg())))));
        let other = NetConfig::new(
            std::path::Path::new("/r"),
            std::path::Path::new("/run/r"),
            "frun0",
            "10.90.0.0/16",
        )
        .unwrap();
        assert_ne!(comment(&body(&cfg())), comment(&body(&other)));
    }

    #[test]
    fn replies_parse() {
        // ENOENT: no such table.
        let mut e = Vec::new();
        e.extend_from_slice(&36u32.to_ne_bytes());
        e.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        e.extend_from_slice(&0u16.to_ne_bytes());
        e.extend_from_slice(&[0; 8]);
        e.extend_from_slice(&(-libc::ENOENT).to_ne_bytes());
        e.extend_from_slice(&[0; 16]);
        assert_eq!(parse_reply(&e).unwrap(), None);
        // A table with user data after its name.
        let mut t = Vec::new();
        let ty = NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWTABLE;
        let attrs: Vec<u8> = [
            &8u16.to_ne_bytes()[..],
            &NFTA_TABLE_NAME.to_ne_bytes(),
            b"t\0\0\0",
            &9u16.to_ne_bytes(),
            &NFTA_TABLE_USERDATA.to_ne_bytes(),
            b"abcde\0\0\0",
        ]
        .concat();
        t.extend_from_slice(&((20 + attrs.len()) as u32).to_ne_bytes());
        t.extend_from_slice(&ty.to_ne_bytes());
        t.extend_from_slice(&[0; 10]);
        t.extend_from_slice(&[NFPROTO_IPV4, 0, 0, 0]);
        t.extend_from_slice(&attrs);
        let got = parse_reply(&t).unwrap().unwrap();
        assert_eq!(got.userdata, b"abcde".to_vec());
        assert!(parse_reply(&t[..10]).is_err());
    }

    /// Root only, in a network namespace of this test's own thread: the table is loaded
    /// once, found again by netlink with its hash (not loaded again), and loaded again
    /// when it is gone or holds another script.
    #[test]
    fn the_table_is_loaded_only_when_the_kernel_lacks_it() {
        if !crate::test_as_root() {
            return;
        }
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let c = cfg();
            assert_eq!(table(&c.nft_table()).unwrap(), None);
            ensure(&c).unwrap();
            let first = table(&c.nft_table()).unwrap().expect("a table");
            assert!(contains(&first.userdata, comment(&body(&c)).as_bytes()));
            // Again: the same table (a load would make a new one, with a new handle).
            ensure(&c).unwrap();
            assert_eq!(table(&c.nft_table()).unwrap().unwrap(), first);
            // Another script (what an older frun loaded): replaced.
            run(&format!(
                "table ip {t}\ndelete table ip {t}\ntable ip {t} {{ comment \"frun 0\"\n }}\n",
                t = c.nft_table()
            ))
            .unwrap();
            let data = table(&c.nft_table()).unwrap().unwrap().userdata;
            assert!(!contains(&data, comment(&body(&c)).as_bytes()));
            ensure(&c).unwrap();
            let again = table(&c.nft_table()).unwrap().unwrap();
            assert!(contains(&again.userdata, comment(&body(&c)).as_bytes()));
            assert_ne!(again.handle, first.handle);
            delete(&c).unwrap();
            assert_eq!(table(&c.nft_table()).unwrap(), None);
        })
        .join()
        .unwrap();
    }
}
