//! What frun needs from a host, and the words for each missing piece: its name, what
//! its absence disables and how to get it. `frun info` lists these, and every refusal of
//! a feature the host lacks ([`Missing`]) quotes the same three texts, so a user who
//! meets a refusal reads what `frun info` says about it, word for word (issue 8). The
//! probes that find whether a piece is there are in [`crate::probe`].

/// One thing frun uses from the host: a line of `frun info`'s features.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Need {
    Cgroups,
    MemoryController,
    PidsController,
    CpuController,
    SwapAccounting,
    Overlay,
    UserNamespaces,
    IdmappedMounts,
    OverlayOverIdmapped,
    Nft,
    Systemd,
}

impl Need {
    /// Every need, in the order `frun info` lists them.
    pub const ALL: [Need; 11] = [
        Need::Cgroups,
        Need::MemoryController,
        Need::PidsController,
        Need::CpuController,
        Need::SwapAccounting,
        Need::Overlay,
        Need::UserNamespaces,
        Need::IdmappedMounts,
        Need::OverlayOverIdmapped,
        Need::Nft,
        Need::Systemd,
    ];

    /// Its name (the `name` of `frun info --format json`'s features).
    pub fn name(self) -> &'static str {
        match self {
            Need::Cgroups => "cgroups",
            Need::MemoryController => "cgroup memory controller",
            Need::PidsController => "cgroup pids controller",
            Need::CpuController => "cgroup cpu controller",
            Need::SwapAccounting => "swap accounting",
            Need::Overlay => "overlayfs",
            Need::UserNamespaces => "user namespaces",
            Need::IdmappedMounts => "idmapped mounts",
            Need::OverlayOverIdmapped => "overlayfs over idmapped layers",
            Need::Nft => "nft",
            Need::Systemd => "systemd",
        }
    }

    /// The frun features that do not work without it.
    pub fn disables(self) -> &'static str {
        match self {
            Need::Cgroups => "every container (frun puts each in a cgroup of its own)",
            Need::MemoryController => "--memory and the OOM report",
            Need::PidsController => "--pids-limit",
            Need::CpuController => "--cpus",
            Need::SwapAccounting => {
                "swap limits: with swap on, a container limited by --memory may swap without bound"
            }
            Need::Overlay => {
                "every container (its root filesystem is an overlay of the image's layers)"
            }
            Need::UserNamespaces => "--uidmap/--gidmap",
            Need::IdmappedMounts => "--uidmap/--gidmap and -v SRC:DST:idmap",
            Need::OverlayOverIdmapped => {
                "--uidmap/--gidmap (the image's layers are idmapped under the container's overlay)"
            }
            Need::Nft => {
                "--network bridge (the default): frun's NAT for containers to reach the outside"
            }
            Need::Systemd => {
                "nothing a container needs; stacks are not started at boot by a systemd unit"
            }
        }
    }

    /// How to get it.
    pub fn how(self) -> &'static str {
        match self {
            Need::Cgroups => "mount cgroupfs at /sys/fs/cgroup (systemd does; else: mount -t cgroup2 none /sys/fs/cgroup)",
            Need::MemoryController => "a kernel with the memory controller (boot without cgroup_disable=memory; some boards need cgroup_enable=memory)",
            Need::PidsController => "a kernel built with CONFIG_CGROUP_PIDS",
            Need::CpuController => "a kernel built with CONFIG_CGROUP_SCHED and CONFIG_CFS_BANDWIDTH",
            Need::SwapAccounting => "boot without swapaccount=0 or cgroup.memory=noswap (kernels before 5.8 on v1: add swapaccount=1)",
            Need::Overlay => "a kernel with CONFIG_OVERLAY_FS (modprobe overlay)",
            Need::UserNamespaces => "a kernel with CONFIG_USER_NS, and sysctl user.max_user_namespaces above 0",
            Need::IdmappedMounts => "Linux 5.12 or later and a store filesystem that supports idmapped mounts (ext4, xfs, btrfs; tmpfs from 6.3)",
            Need::OverlayOverIdmapped => "Linux 5.19 or later (overlayfs over idmapped layers), with overlayfs and idmapped mounts above",
            Need::Nft => "apt-get install nftables (scripts/packages/run.txt)",
            Need::Systemd => "a host booted with systemd (every common VPS image is)",
        }
    }

    /// The refusal for this need, with what was found.
    pub fn missing(self, detail: impl Into<String>) -> Missing {
        Missing {
            need: self,
            detail: detail.into(),
        }
    }
}

/// A refusal of something the host lacks: `frun info`'s texts for it, and what was
/// found (a probe's error, a kernel's answer). Serializable: a container's setup sends
/// its errors to the parent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error(
    "this host lacks {name} ({detail}): that disables {disables}; to get it: {how} (`frun info` lists what this host lacks)",
    name = need.name(),
    disables = need.disables(),
    how = need.how()
)]
pub struct Missing {
    pub need: Need,
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_quotes_the_needs_three_texts() {
        for need in Need::ALL {
            let text = need.missing("what was found").to_string();
            for part in [need.name(), need.disables(), need.how(), "what was found"] {
                assert!(text.contains(part), "{text:?} lacks {part:?}");
            }
        }
    }
}
