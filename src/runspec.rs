//! From an image's config and the user's flags to an OCI runtime spec, the way Docker
//! reads them: ENTRYPOINT + CMD (CMD replaced by the command line), the image's Env
//! under `-e`, WorkingDir under `-w`, User under `-u` with names looked up in the
//! image's own `/etc/passwd` and `/etc/group`, limits from `--memory`, `--cpus`,
//! `--pids-limit`.

use anyhow::{bail, Context};
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxIdMapping, LinuxIdMappingBuilder, LinuxMemoryBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResourcesBuilder, MountBuilder, Spec, UserBuilder,
};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::io::Read;
use std::path::{Path, PathBuf};

/// What the command line asked for.
#[derive(Debug, Default, Clone)]
pub struct RunOptions {
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub memory: Option<u64>,
    /// `--memory-swap`; `None`: Docker's default (memory plus swap twice `memory`).
    pub memory_swap: Option<crate::limits::Swap>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub network: Network,
    pub hostname: String,
    pub volumes: Vec<Volume>,
    /// A user namespace with these mappings (`--uidmap`, `--gidmap`).
    pub userns: Option<IdMaps>,
    /// `-t`: the process gets a terminal.
    pub tty: bool,
}

/// A bind mount from `-v`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// The host path (named volumes already resolved).
    pub source: PathBuf,
    pub dest: String,
    pub read_only: bool,
    /// Idmapped through the container's user namespace.
    pub idmap: bool,
}

/// User namespace mappings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMaps {
    pub uid: Vec<LinuxIdMapping>,
    pub gid: Vec<LinuxIdMapping>,
}

impl IdMaps {
    /// From `--uidmap`/`--gidmap` values (`CONTAINER:HOST:SIZE`); the gid maps default
    /// to the uid maps. `None` when neither is given.
    pub fn parse(uid: &[String], gid: &[String]) -> anyhow::Result<Option<IdMaps>> {
        fn one(flag: &str, v: &str) -> anyhow::Result<LinuxIdMapping> {
            let n: Vec<u32> = v
                .split(':')
                .map(|x| x.parse::<u32>())
                .collect::<Result<_, _>>()
                .map_err(|_| {
                    anyhow::anyhow!("invalid {flag} {v:?}: expected CONTAINER:HOST:SIZE")
                })?;
            let [c, h, size] = n[..] else {
                bail!("invalid {flag} {v:?}: expected CONTAINER:HOST:SIZE");
            };
            if size == 0 {
                bail!("invalid {flag} {v:?}: the size is 0");
            }
            Ok(LinuxIdMappingBuilder::default()
                .container_id(c)
                .host_id(h)
                .size(size)
                .build()?)
        }
        if uid.is_empty() && gid.is_empty() {
            return Ok(None);
        }
        if uid.is_empty() {
            bail!("--gidmap needs --uidmap too");
        }
        let uid: Vec<_> = uid
            .iter()
            .map(|v| one("--uidmap", v))
            .collect::<anyhow::Result<_>>()?;
        let gid: Vec<_> = if gid.is_empty() {
            uid.clone()
        } else {
            gid.iter()
                .map(|v| one("--gidmap", v))
                .collect::<anyhow::Result<_>>()?
        };
        Ok(Some(IdMaps { uid, gid }))
    }

    fn maps(maps: &[LinuxIdMapping], id: u32) -> bool {
        maps.iter().any(|m| {
            id.checked_sub(m.container_id())
                .is_some_and(|o| o < m.size())
        })
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum Network {
    /// The network namespace file prepared for the container (bridge networking).
    Join(PathBuf),
    /// A network namespace with only loopback.
    #[default]
    None,
    /// The host's network namespace.
    Host,
}

/// `dst` made lexically clean, as Docker's `filepath.Clean`: no `.`, `..` or repeated
/// slashes (`..` at the root stays at the root).
pub fn clean_destination(dst: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in dst.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Files inside `/proc` that runc lets a bind mount cover (lxcfs provides them).
const PROC_BINDS_ALLOWED: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

/// Volume destinations refused: `/` (the container's root: Docker refuses it) and
/// anything in `/proc` but the files lxcfs serves (runc refuses them: a bind over
/// `/proc/sys` or `/proc/sysrq-trigger` would undo the container's masks and read-only
/// paths). `dst` is clean.
pub fn check_destination(dst: &str) -> Result<(), String> {
    if dst == "/" {
        return Err("the destination cannot be / (the container's root filesystem)".into());
    }
    if (dst == "/proc" || dst.starts_with("/proc/")) && !PROC_BINDS_ALLOWED.contains(&dst) {
        return Err(format!(
            "{dst} is inside /proc: a volume there would undo the container's protections \
             (only {} may be covered)",
            PROC_BINDS_ALLOWED.join(", ")
        ));
    }
    Ok(())
}

/// Reads a file of the image (`etc/passwd`), topmost layer first, never following a
/// symlink out of a layer, and stopping at a whiteout.
pub fn read_image_file(layers_top_first: &[PathBuf], rel: &str) -> Option<String> {
    for layer in layers_top_first {
        let dir = rustix::fs::open(
            layer,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        match rustix::fs::openat2(
            &dir,
            rel,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Ok(fd) => {
                let mut f = std::fs::File::from(fd);
                if !f.metadata().ok()?.is_file() {
                    return None;
                }
                let mut s = String::new();
                f.by_ref().take(4 << 20).read_to_string(&mut s).ok()?;
                return Some(s);
            }
            Err(rustix::io::Errno::NOENT) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// `base` (an image's or a process's environment) with each `-e KEY=VALUE` of
/// `overrides` put in place of the variable of that key, in order: the one rule of `run`,
/// `exec` and `frun-oci exec`. An empty key is refused, naming the value.
pub fn merge_env(mut base: Vec<String>, overrides: &[String]) -> anyhow::Result<Vec<String>> {
    for e in overrides {
        let key = e.split('=').next().unwrap_or_default();
        if key.is_empty() {
            bail!("invalid environment variable {e:?}: expected KEY=VALUE");
        }
        base.retain(|x| x.split('=').next() != Some(key));
        base.push(e.clone());
    }
    Ok(base)
}

/// Resolves `user` (`name`, `uid`, `name:group`, `uid:gid`) against the image's
/// passwd and group files: `(uid, gid, additional gids)`.
pub fn resolve_user(
    user: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> anyhow::Result<(u32, u32, Vec<u32>)> {
    let id = |s: &str, what: &str| -> anyhow::Result<u32> {
        let v: u64 = s.parse().with_context(|| format!("invalid {what} {s:?}"))?;
        // 4294967295 is (uid_t)-1, "no change" to the kernel; larger values wrap
        // (CVE-2024-40635 made such a uid root).
        if v >= u32::MAX as u64 {
            bail!("{what} {v} is out of range (0 to 4294967294)");
        }
        Ok(v as u32)
    };
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    if u.is_empty() {
        bail!("invalid user {user:?}");
    }
    let passwd_entries: Vec<Vec<&str>> = passwd
        .unwrap_or_default()
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let group_entries: Vec<Vec<&str>> = group
        .unwrap_or_default()
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();
    let (uid, name, primary) = if u.bytes().all(|b| b.is_ascii_digit()) {
        let uid = id(u, "uid")?;
        let entry = passwd_entries
            .iter()
            .find(|f| f[2].parse::<u32>().ok() == Some(uid));
        (
            uid,
            entry.map(|f| f[0].to_string()),
            entry.and_then(|f| f[3].parse::<u32>().ok()),
        )
    } else {
        let f = passwd_entries.iter().find(|f| f[0] == u).with_context(|| {
            format!("unable to find user {u}: no matching entries in the image's /etc/passwd")
        })?;
        (
            id(f[2], "uid")?,
            Some(u.to_string()),
            Some(id(f[3], "gid")?),
        )
    };
    let gid = match g {
        Some(g) if g.bytes().all(|b| b.is_ascii_digit()) && !g.is_empty() => id(g, "gid")?,
        Some(g) => {
            let f = group_entries.iter().find(|f| f[0] == g).with_context(|| {
                format!("unable to find group {g}: no matching entries in the image's /etc/group")
            })?;
            id(f[2], "gid")?
        }
        None => primary.unwrap_or(0),
    };
    // Supplementary groups: those listing the user as a member (as Docker does).
    let mut extra = Vec::new();
    if let Some(name) = &name {
        for f in &group_entries {
            if f.get(3).is_some_and(|m| m.split(',').any(|m| m == name)) {
                if let Ok(g) = id(f[2], "gid") {
                    if g != gid && !extra.contains(&g) {
                        extra.push(g);
                    }
                }
            }
        }
    }
    Ok((uid, gid, extra))
}

/// The spec for a container of `config` with `opts`; `layers_top_first` serves the
/// user lookup; `files` are frun-written `/etc/hosts`-like files to bind in.
pub fn build(
    config: &ImageConfiguration,
    opts: &RunOptions,
    layers_top_first: &[PathBuf],
    files: &[(PathBuf, &str)],
) -> anyhow::Result<Spec> {
    let empty = oci_spec::image::ConfigBuilder::default()
        .build()
        .expect("empty config");
    let ic = config.config().as_ref().unwrap_or(&empty);
    let mut args: Vec<String> = ic.entrypoint().clone().unwrap_or_default();
    if opts.command.is_empty() {
        args.extend(ic.cmd().clone().unwrap_or_default());
    } else {
        args.extend(opts.command.iter().cloned());
    }
    if args.is_empty() {
        bail!("no command given and the image has neither ENTRYPOINT nor CMD");
    }
    let mut spec = frun_runtime::spec::default_spec(args);

    // Environment: the image's, then -e (which wins), PATH always present.
    let mut env = merge_env(ic.env().clone().unwrap_or_default(), &opts.env)?;
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    env.retain(|e| !e.starts_with("HOSTNAME="));
    env.push(format!("HOSTNAME={}", opts.hostname));
    if opts.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }

    let cwd = opts
        .workdir
        .clone()
        .or_else(|| ic.working_dir().clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        bail!("working directory {cwd:?} must be an absolute path");
    }
    let user = opts
        .user
        .clone()
        .or_else(|| ic.user().clone().filter(|u| !u.is_empty()));
    let (uid, gid, extra) = match &user {
        Some(u) => resolve_user(
            u,
            read_image_file(layers_top_first, "etc/passwd").as_deref(),
            read_image_file(layers_top_first, "etc/group").as_deref(),
        )?,
        None => (0, 0, Vec::new()),
    };
    let mut process = spec.process().clone().expect("default spec has a process");
    process.set_env(Some(env));
    process.set_cwd(PathBuf::from(cwd));
    process.set_terminal(Some(opts.tty));
    process.set_user(
        UserBuilder::default()
            .uid(uid)
            .gid(gid)
            .additional_gids(extra.clone())
            .build()
            .expect("user"),
    );
    spec.set_process(Some(process));
    spec.set_hostname(Some(opts.hostname.clone()));

    let mut linux = spec.linux().clone().expect("default spec has linux");
    let mut resources =
        LinuxResourcesBuilder::default().devices(frun_runtime::spec::default_device_rules());
    if let Some(limit) = opts.memory {
        // Memory plus swap, as the runtime spec (and cgroup v1) has it; the runtime
        // writes swap alone to cgroup v2's memory.swap.max.
        let m = crate::limits::Memory {
            limit,
            swap: opts.memory_swap,
        };
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(limit as i64)
                .swap(m.oci_swap())
                .build()?,
        );
    }
    if let Some(c) = opts.cpus {
        if !(c > 0.0 && c <= 1024.0) {
            bail!("--cpus {c} is out of range");
        }
        let period = 100_000u64;
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .quota((c * period as f64) as i64)
                .period(period)
                .build()?,
        );
    }
    if let Some(p) = opts.pids_limit {
        resources = resources.pids(LinuxPidsBuilder::default().limit(p).build()?);
    }
    linux.set_resources(Some(resources.build()?));
    if let Network::Join(path) = &opts.network {
        let ns: Vec<_> = linux
            .namespaces()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|n| {
                if n.typ() == LinuxNamespaceType::Network {
                    oci_spec::runtime::LinuxNamespaceBuilder::default()
                        .typ(LinuxNamespaceType::Network)
                        .path(path.clone())
                        .build()
                        .expect("namespace")
                } else {
                    n
                }
            })
            .collect();
        linux.set_namespaces(Some(ns));
    }
    if opts.network == Network::Host {
        let ns: Vec<_> = linux
            .namespaces()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.typ() != LinuxNamespaceType::Network)
            .collect();
        linux.set_namespaces(Some(ns));
    }
    if let Some(maps) = &opts.userns {
        // The user runs as ids of the namespace: each must be mapped, or the process
        // could not become it.
        for (what, id, m) in [("uid", uid, &maps.uid), ("gid", gid, &maps.gid)] {
            if !IdMaps::maps(m, id) {
                bail!("the container's {what} {id} is not mapped by --{what}map");
            }
        }
        if let Some(g) = extra.iter().find(|g| !IdMaps::maps(&maps.gid, **g)) {
            bail!("the container's supplementary gid {g} is not mapped by --gidmap");
        }
        let mut ns = linux.namespaces().clone().unwrap_or_default();
        ns.push(
            oci_spec::runtime::LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::User)
                .build()
                .expect("namespace"),
        );
        linux.set_namespaces(Some(ns));
        linux.set_uid_mappings(Some(maps.uid.clone()));
        linux.set_gid_mappings(Some(maps.gid.clone()));
    }
    spec.set_linux(Some(linux));

    let mut mounts = spec.mounts().clone().unwrap_or_default();
    // (In a user namespace, the runtime mounts a fresh sysfs of the host's network
    // namespace itself: a bind of the host's /sys, with its submounts locked, is refused.)
    if opts.network == Network::Host && opts.userns.is_none() {
        // sysfs can only be mounted fresh in a network namespace of one's own. A plain
        // bind, not rbind: the host's submounts of /sys (debugfs, tracefs, securityfs,
        // bpf, cgroups) would come along read-write, since the read-only remount applies
        // to the top mount only.
        for m in mounts
            .iter_mut()
            .filter(|m| m.destination() == Path::new("/sys"))
        {
            *m = MountBuilder::default()
                .destination("/sys")
                .typ("bind")
                .source("/sys")
                .options(vec![
                    "bind".into(),
                    "nosuid".into(),
                    "noexec".into(),
                    "nodev".into(),
                    "ro".into(),
                ])
                .build()?;
        }
    }
    for (src, dst) in files {
        mounts.push(
            MountBuilder::default()
                .destination(*dst)
                .typ("bind")
                .source(src.clone())
                .options(vec![
                    "bind".into(),
                    "nosuid".into(),
                    "nodev".into(),
                    "noexec".into(),
                ])
                .build()?,
        );
    }
    for v in &opts.volumes {
        let mut o = vec!["rbind".to_string()];
        if v.read_only {
            o.push("ro".into());
        }
        let mut m = MountBuilder::default()
            .destination(v.dest.as_str())
            .typ("bind")
            .source(v.source.clone())
            .options(o)
            .build()?;
        if v.idmap {
            let Some(maps) = &opts.userns else {
                bail!(
                    "volume {:?}: idmap needs a user namespace (--uidmap)",
                    v.source
                );
            };
            m.set_uid_mappings(Some(maps.uid.clone()));
            m.set_gid_mappings(Some(maps.gid.clone()));
        }
        mounts.push(m);
    }
    spec.set_mounts(Some(mounts));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\napp:x:1000:\nextra:x:2000:app,other\n";

    #[test]
    fn users_resolve_like_docker() {
        assert_eq!(
            resolve_user("app", Some(PASSWD), Some(GROUP)).unwrap(),
            (1000, 1000, vec![2000])
        );
        assert_eq!(
            resolve_user("1000", Some(PASSWD), Some(GROUP)).unwrap(),
            (1000, 1000, vec![2000])
        );
        assert_eq!(
            resolve_user("app:extra", Some(PASSWD), Some(GROUP)).unwrap(),
            (1000, 2000, vec![])
        );
        assert_eq!(
            resolve_user("4242:7", None, None).unwrap(),
            (4242, 7, vec![])
        );
        assert_eq!(
            resolve_user("2147483648", None, None).unwrap().0,
            2147483648
        );
        let e = resolve_user("nobody-here", Some(PASSWD), Some(GROUP))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nobody-here"), "{e}");
        assert!(resolve_user("4294967295", None, None).is_err());
        assert!(resolve_user("4294967296", None, None).is_err());
        assert!(resolve_user("-1", None, None).is_err());
    }

    /// An image config as a registry would send it.
    fn config(json: &str) -> ImageConfiguration {
        serde_json::from_str(&format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"config":{json}}}"#
        ))
        .unwrap()
    }

    fn opts() -> RunOptions {
        RunOptions {
            hostname: "abc123".into(),
            ..Default::default()
        }
    }

    fn env_of(spec: &Spec) -> Vec<String> {
        spec.process().as_ref().unwrap().env().clone().unwrap()
    }

    #[test]
    fn the_image_config_and_the_flags_make_the_process_as_docker_does() {
        let ic = config(
            r#"{"Entrypoint":["/init"],"Cmd":["serve","-v"],"Env":["PATH=/opt/bin","A=1","HOSTNAME=img"],"WorkingDir":"/srv","User":"app"}"#,
        );
        let layer = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(layer.path().join("etc")).unwrap();
        std::fs::write(layer.path().join("etc/passwd"), PASSWD).unwrap();
        std::fs::write(layer.path().join("etc/group"), GROUP).unwrap();
        let layers = [layer.path().to_path_buf()];

        // The image alone: ENTRYPOINT + CMD, its env (HOSTNAME is the container's), its
        // workdir, its user looked up in its own /etc/passwd.
        let spec = build(&ic, &opts(), &layers, &[]).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["/init", "serve", "-v"]);
        assert_eq!(env_of(&spec), ["PATH=/opt/bin", "A=1", "HOSTNAME=abc123"]);
        assert_eq!(p.cwd(), Path::new("/srv"));
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 1000));
        assert_eq!(p.user().additional_gids().as_ref().unwrap(), &[2000]);
        assert_eq!(spec.hostname().as_deref(), Some("abc123"));

        // Flags win: a command replaces CMD (not ENTRYPOINT), -e overrides, -w, -u, -t.
        let o = RunOptions {
            command: vec!["sh".into()],
            env: vec!["A=2".into(), "B=3".into()],
            workdir: Some("/tmp".into()),
            user: Some("0:0".into()),
            tty: true,
            ..opts()
        };
        let spec = build(&ic, &o, &layers, &[]).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["/init", "sh"]);
        assert_eq!(
            env_of(&spec),
            [
                "PATH=/opt/bin",
                "A=2",
                "B=3",
                "HOSTNAME=abc123",
                "TERM=xterm"
            ]
        );
        assert_eq!(p.cwd(), Path::new("/tmp"));
        assert_eq!((p.user().uid(), p.user().gid()), (0, 0));
        assert_eq!(p.terminal(), Some(true));

        // Without PATH in the image, Docker's default comes first.
        let spec = build(&config(r#"{"Cmd":["x"]}"#), &opts(), &[], &[]).unwrap();
        assert!(env_of(&spec)[0].starts_with("PATH=/usr/local/sbin:"));
        assert_eq!(
            spec.process().as_ref().unwrap().cwd(),
            Path::new("/"),
            "no WorkingDir: /"
        );
    }

    #[test]
    fn limits_become_the_specs_resources() {
        let o = RunOptions {
            memory: Some(64 << 20),
            cpus: Some(0.5),
            pids_limit: Some(100),
            ..opts()
        };
        let spec = build(&config(r#"{"Cmd":["x"]}"#), &o, &[], &[]).unwrap();
        let r = spec.linux().as_ref().unwrap().resources().clone().unwrap();
        let m = r.memory().unwrap();
        assert_eq!(m.limit(), Some(64 << 20));
        assert_eq!(
            m.swap(),
            Some(128 << 20),
            "memory plus swap: twice --memory"
        );
        let c = r.cpu().clone().unwrap();
        assert_eq!((c.quota(), c.period()), (Some(50_000), Some(100_000)));
        assert_eq!(r.pids().unwrap().limit(), 100);
        let o = RunOptions {
            cpus: Some(0.0),
            ..opts()
        };
        let e = build(&config(r#"{"Cmd":["x"]}"#), &o, &[], &[]).unwrap_err();
        assert!(e.to_string().contains("--cpus"), "{e}");
    }

    #[test]
    fn networks_and_user_namespaces_shape_the_namespaces() {
        let ns_of = |spec: &Spec| -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
            spec.linux()
                .as_ref()
                .unwrap()
                .namespaces()
                .clone()
                .unwrap()
                .iter()
                .map(|n| (n.typ(), n.path().clone()))
                .collect()
        };
        let ic = config(r#"{"Cmd":["x"]}"#);
        let net = |spec: &Spec| {
            ns_of(spec)
                .into_iter()
                .find(|(t, _)| *t == LinuxNamespaceType::Network)
        };
        let none = build(&ic, &opts(), &[], &[]).unwrap();
        assert_eq!(net(&none), Some((LinuxNamespaceType::Network, None)));
        let o = RunOptions {
            network: Network::Join("/run/frun/netns/abc".into()),
            ..opts()
        };
        let joined = build(&ic, &o, &[], &[]).unwrap();
        assert_eq!(
            net(&joined),
            Some((
                LinuxNamespaceType::Network,
                Some(PathBuf::from("/run/frun/netns/abc"))
            ))
        );
        let o = RunOptions {
            network: Network::Host,
            ..opts()
        };
        assert_eq!(net(&build(&ic, &o, &[], &[]).unwrap()), None);

        // A user namespace must map the user the process runs as.
        let maps = IdMaps::parse(&["0:100000:65536".into()], &[]).unwrap();
        let o = RunOptions {
            userns: maps.clone(),
            ..opts()
        };
        let spec = build(&ic, &o, &[], &[]).unwrap();
        assert!(ns_of(&spec)
            .iter()
            .any(|(t, _)| *t == LinuxNamespaceType::User));
        let o = RunOptions {
            userns: IdMaps::parse(&["1:100000:10".into()], &[]).unwrap(),
            ..opts()
        };
        let e = build(&ic, &o, &[], &[]).unwrap_err().to_string();
        assert!(e.contains("uid 0 is not mapped"), "{e}");
    }

    #[test]
    fn a_config_without_a_command_or_with_a_relative_workdir_is_refused() {
        let e = build(&config("{}"), &opts(), &[], &[]).unwrap_err();
        assert!(e.to_string().contains("neither ENTRYPOINT nor CMD"), "{e}");
        let o = RunOptions {
            workdir: Some("srv".into()),
            ..opts()
        };
        let e = build(&config(r#"{"Cmd":["x"]}"#), &o, &[], &[]).unwrap_err();
        assert!(
            e.to_string().contains("\"srv\" must be an absolute path"),
            "{e}"
        );
    }
}
