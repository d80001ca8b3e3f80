//! `frun info`: what this host offers frun and what it lacks (like `docker info`,
//! `podman info` and LXC's `lxc-checkconfig`). Every missing piece is named with what it
//! disables and how to get it, so a user on a fresh droplet knows before a `run` fails.
//!
//! The kernel facts come from the runtime's probes (`frun_runtime::probe`), which do what
//! a container start does on throw-away objects; the rest is read from `/proc`, `PATH`
//! and the global options. Nothing is changed on the host.

use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::{Format, Global};
use frun_runtime::needs::Need;
use frun_runtime::probe;

#[derive(Serialize)]
struct Info {
    kernel: Kernel,
    /// `PRETTY_NAME` of /etc/os-release.
    os: Option<String>,
    /// The command name of PID 1 (`systemd`, `init`, `sh`, ...).
    init: String,
    systemd: bool,
    cgroup: Cgroup,
    swap: Swap,
    store_root: PathBuf,
    /// The filesystem the store's layers live on (idmapped mounts depend on it).
    store_filesystem: String,
    run_root: PathBuf,
    cgroup_parent: String,
    /// frun.service, which brings the stacks back after a boot.
    boot_unit: BootUnit,
    features: Vec<Feature>,
}

/// Whether the unit `frun systemd-unit` prints is installed and enabled: without it, the
/// stacks `up` started do not come back after a reboot. Read from the unit files alone
/// (no `systemctl`), so it is told on any host, systemd running or not.
#[derive(Serialize)]
struct BootUnit {
    /// The `frun.service` systemd would load (the first of /etc, /run, /usr/lib, /lib).
    path: Option<PathBuf>,
    /// Linked from a `.wants/` directory of /etc/systemd/system (`systemctl enable`).
    enabled: bool,
    /// Its text is what `frun systemd-unit` prints with this command's options (the same
    /// binary, roots, cgroup parent, bridge and subnet): another one serves other roots.
    current: bool,
}

const UNIT_DIRS: [&str; 4] = [
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

fn boot_unit(g: &Global) -> BootUnit {
    let path = UNIT_DIRS
        .iter()
        .map(|d| Path::new(d).join("frun.service"))
        .find(|p| p.exists());
    let enabled = std::fs::read_dir(UNIT_DIRS[0])
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".wants"))
        .any(|e| e.path().join("frun.service").exists());
    let current = path
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .is_some_and(|text| text == crate::supervise::systemd_unit(g));
    BootUnit {
        path,
        enabled,
        current,
    }
}

impl BootUnit {
    /// The table's line: what is there, and what to do when something is missing.
    fn line(&self) -> String {
        const INSTALL: &str =
            "frun systemd-unit >/etc/systemd/system/frun.service && systemctl enable --now frun";
        match &self.path {
            None => format!(
                "not installed: stacks do not come back after a reboot (to install: {INSTALL})"
            ),
            Some(p) => {
                let mut line = format!("{}", p.display());
                line.push_str(if self.enabled {
                    ", enabled"
                } else {
                    ", NOT enabled: stacks do not come back after a reboot (systemctl enable --now frun)"
                });
                if !self.current {
                    line.push_str(&format!(
                        "; differs from `frun systemd-unit` with these options (another binary or roots? to replace it: {INSTALL})"
                    ));
                }
                line
            }
        }
    }
}

#[derive(Serialize)]
struct Kernel {
    release: String,
    version: String,
}

#[derive(Serialize)]
struct Cgroup {
    /// v1, hybrid or v2.
    layout: String,
    controllers: Vec<String>,
    swap_accounting: Option<bool>,
}

#[derive(Serialize)]
struct Swap {
    total_bytes: u64,
}

/// One thing frun uses: there or not, and if not, what that disables and how to get it.
#[derive(Serialize)]
struct Feature {
    name: &'static str,
    ok: bool,
    /// What was found (or the error of the probe).
    detail: String,
    /// When missing: the frun features that do not work.
    #[serde(skip_serializing_if = "Option::is_none")]
    disables: Option<&'static str>,
    /// When missing: how to get it.
    #[serde(skip_serializing_if = "Option::is_none")]
    how: Option<&'static str>,
}

impl Feature {
    /// A line for `need`, with the texts every refusal of it quotes too.
    fn new(need: Need, found: Result<String, String>) -> Feature {
        let (name, disables, how) = (need.name(), need.disables(), need.how());
        match found {
            Ok(detail) => Feature {
                name,
                ok: true,
                detail,
                disables: None,
                how: None,
            },
            Err(detail) => Feature {
                name,
                ok: false,
                detail,
                disables: Some(disables),
                how: Some(how),
            },
        }
    }
}

pub fn info(g: &Global, format: Format) -> anyhow::Result<ExitCode> {
    let info = gather(g);
    let mut text = Vec::new();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut text, &info)?;
            writeln!(text)?;
        }
        Format::Table => print_table(&mut text, &info)?,
    }
    std::io::stdout().lock().write_all(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn gather(g: &Global) -> Info {
    // 1. Kernel, distribution, init.
    let kernel = Kernel {
        release: read_trim("/proc/sys/kernel/osrelease"),
        version: read_trim("/proc/sys/kernel/version"),
    };
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        });
    let init = read_trim("/proc/1/comm");
    let systemd = init == "systemd";

    // 2. Cgroups: the layout and controllers as the cgroup code sees them.
    let cgroups = probe::cgroups();
    let controller = |c: &str| match &cgroups {
        Ok(cg) => cg.controller(c),
        Err(e) => Err(e.to_string()),
    };
    let swap_total = meminfo_bytes("SwapTotal");
    let swap_accounting = cgroups.as_ref().ok().and_then(|c| c.swap_accounting);

    // 3. Filesystems and namespaces: the store's filesystem is where layers get idmapped.
    let probe_dir = existing_ancestor(&g.root);
    let idmap = probe::idmap(&probe_dir);
    let nft = which("nft");

    let features = vec![
        Feature::new(
            Need::Cgroups,
            cgroups
                .as_ref()
                .map(|c| format!("{} layout", c.layout))
                .map_err(|e| e.to_string()),
        ),
        Feature::new(Need::MemoryController, controller("memory")),
        Feature::new(Need::PidsController, controller("pids")),
        Feature::new(Need::CpuController, controller("cpu")),
        Feature::new(
            Need::SwapAccounting,
            match swap_accounting {
                Some(true) => Ok("the memory controller accounts swap".into()),
                Some(false) => Err("the memory controller does not account swap".into()),
                None => Err("no cgroup with the memory controller on shows it".into()),
            },
        ),
        Feature::new(
            Need::Overlay,
            probe::overlay().map(|()| "the kernel has overlayfs".into()),
        ),
        Feature::new(
            Need::UserNamespaces,
            idmap
                .user_namespaces
                .map(|()| "a new user namespace with mapped ids".into()),
        ),
        Feature::new(
            Need::IdmappedMounts,
            idmap
                .idmapped_mounts
                .map(|()| format!("open_tree + mount_setattr(MOUNT_ATTR_IDMAP) on {probe_dir:?}")),
        ),
        Feature::new(
            Need::OverlayOverIdmapped,
            idmap
                .overlay_over_idmapped
                .map(|()| "an overlay over an idmapped layer, made as --uidmap makes it".into()),
        ),
        Feature::new(
            Need::Nft,
            nft.map(|p| p.display().to_string())
                .ok_or_else(|| crate::net::NFT_NOT_ON_PATH.to_string()),
        ),
        Feature::new(
            Need::Systemd,
            if systemd {
                Ok("systemd is PID 1".into())
            } else {
                Err(format!("PID 1 is {init:?}"))
            },
        ),
    ];

    Info {
        kernel,
        os,
        init,
        systemd,
        cgroup: match &cgroups {
            Ok(c) => Cgroup {
                layout: c.layout.to_string(),
                controllers: c.controllers.clone(),
                swap_accounting: c.swap_accounting,
            },
            Err(_) => Cgroup {
                layout: "none".into(),
                controllers: Vec::new(),
                swap_accounting: None,
            },
        },
        swap: Swap {
            total_bytes: swap_total,
        },
        store_filesystem: filesystem_name(&probe_dir),
        store_root: g.root.clone(),
        run_root: g.run_root.clone(),
        cgroup_parent: g.cgroup_parent.clone(),
        boot_unit: boot_unit(g),
        features,
    }
}

/// A `/proc/meminfo` value (kB there) in bytes; 0 when absent.
fn meminfo_bytes(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let rest = l.strip_prefix(key)?.strip_prefix(':')?;
                rest.split_whitespace().next()?.parse::<u64>().ok()
            })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// `path`, or its nearest ancestor that exists (the store root of a fresh host does not
/// exist before the first pull; its parent's filesystem is where it will be).
fn existing_ancestor(path: &Path) -> PathBuf {
    path.ancestors()
        .find(|p| p.is_dir())
        .unwrap_or(Path::new("/"))
        .to_path_buf()
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| rustix::fs::access(p, rustix::fs::Access::EXEC_OK).is_ok() && p.is_file())
}

/// The filesystem type of `path`, by its statfs magic.
fn filesystem_name(path: &Path) -> String {
    let Ok(st) = rustix::fs::statfs(path) else {
        return "unknown".into();
    };
    #[allow(clippy::unnecessary_cast)]
    match st.f_type as u64 {
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x794C_7630 => "overlayfs".into(),
        0x2FC1_2FC1 => "zfs".into(),
        other => format!("0x{other:x}"),
    }
}

fn print_table(out: &mut impl Write, i: &Info) -> std::io::Result<()> {
    let swap = if i.swap.total_bytes == 0 {
        "off".to_string()
    } else {
        super::images::human_size(i.swap.total_bytes)
    };
    writeln!(
        out,
        "Kernel:          {} ({})",
        i.kernel.release, i.kernel.version
    )?;
    writeln!(
        out,
        "OS:              {}",
        i.os.as_deref().unwrap_or("unknown")
    )?;
    writeln!(out, "Init (PID 1):    {}", i.init)?;
    writeln!(
        out,
        "Cgroups:         {} ({})",
        i.cgroup.layout,
        i.cgroup.controllers.join(" ")
    )?;
    writeln!(out, "Swap:            {swap}")?;
    writeln!(
        out,
        "Store root:      {} ({})",
        i.store_root.display(),
        i.store_filesystem
    )?;
    writeln!(out, "Run root:        {}", i.run_root.display())?;
    writeln!(out, "Cgroup parent:   {}", i.cgroup_parent)?;
    writeln!(out, "Boot unit:       {}", i.boot_unit.line())?;
    writeln!(out, "Features:")?;
    for f in &i.features {
        let mark = if f.ok { "ok     " } else { "MISSING" };
        writeln!(out, "  {mark} {}: {}", f.name, f.detail)?;
        if let (Some(d), Some(h)) = (f.disables, f.how) {
            writeln!(out, "          disables: {d}")?;
            writeln!(out, "          to get it: {h}")?;
        }
    }
    Ok(())
}
