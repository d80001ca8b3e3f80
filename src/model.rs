//! The one container model: a validated [`Description`] of a container, built from
//! `frun run`'s flags or from a role of a stack (`frun.toml`) before anything touches
//! the disk, then [`create`]d (image, record, network, spec) and [`start_detached`]ed
//! under its holder (`frun __holder`).
//!
//! Why one model: `run` and `up` must mean the same thing by a published port, a volume,
//! a memory limit or a restart policy, and `up` must not parse `run`'s flags a second
//! time. Everything a user can get wrong is checked in the `from_*` constructors; what
//! [`create`] can still meet (a missing image, a taken name) is the world, not input.

use anyhow::{bail, Context};
use frun_images::{ImageRecord, ImageRef, Platform};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::cli::{Global, RunArgs};
use crate::commands::images::open_store;
use crate::containers::{now, parse_signal, Container, Containers, NetRecord, Record};
use crate::runspec::{self, IdMaps, Network, RunOptions};

/// Docker's label names for what `frun up` made.
pub const LABEL_STACK: &str = "frun.stack";
pub const LABEL_ROLE: &str = "frun.role";
pub const LABEL_HASH: &str = "frun.hash";
pub const LABEL_GENERATION: &str = "frun.generation";

/// One `-p [IP:]HOST:CONTAINER[/tcp|udp]`; the forwarder binds and serves it.
mod publish;
pub use publish::Publish;

/// What a container's network is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    Bridge,
    None,
    Host,
}

impl FromStr for NetworkMode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<NetworkMode> {
        Ok(match s {
            "bridge" => NetworkMode::Bridge,
            "none" => NetworkMode::None,
            "host" => NetworkMode::Host,
            other => bail!("--network {other:?}: use bridge, none or host"),
        })
    }
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetworkMode::Bridge => "bridge",
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
        })
    }
}

/// When the holder starts a container again after it ended (Docker's `--restart`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "policy")]
pub enum RestartPolicy {
    #[default]
    No,
    /// On a non-zero exit, at most `max` times (without: no limit).
    OnFailure {
        max: Option<u32>,
    },
    Always,
    /// As `always`, except after `frun stop`.
    UnlessStopped,
}

impl FromStr for RestartPolicy {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<RestartPolicy> {
        Ok(match s {
            "no" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => RestartPolicy::OnFailure { max: None },
            _ => match s.strip_prefix("on-failure:") {
                Some(n) => RestartPolicy::OnFailure {
                    max: Some(n.parse().map_err(|_| {
                        anyhow::anyhow!("restart policy {s:?}: the count must be a number")
                    })?),
                },
                None => {
                    bail!("restart policy {s:?}: use no, on-failure[:N], always or unless-stopped")
                }
            },
        })
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartPolicy::No => f.write_str("no"),
            RestartPolicy::OnFailure { max: None } => f.write_str("on-failure"),
            RestartPolicy::OnFailure { max: Some(n) } => write!(f, "on-failure:{n}"),
            RestartPolicy::Always => f.write_str("always"),
            RestartPolicy::UnlessStopped => f.write_str("unless-stopped"),
        }
    }
}

impl RestartPolicy {
    /// Whether a container that ended with `code`, after `restarts` restarts, and
    /// `stopped` by the user or not, starts again.
    pub fn restarts(&self, code: i32, restarts: u32, stopped: bool) -> bool {
        if stopped {
            return false;
        }
        match self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure { max } => code != 0 && max.is_none_or(|m| restarts < m),
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        }
    }

    /// Docker's back-off: 100 ms, doubled each restart, at most 10 s (the count resets
    /// when a run lasted 10 s).
    pub fn backoff(streak: u32) -> Duration {
        Duration::from_millis(100u64.saturating_mul(1 << streak.min(7)))
            .min(Duration::from_secs(10))
    }
}

/// What a health check probes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    /// `GET PATH` answered 2xx or 3xx.
    Http(String),
    /// A TCP connection is accepted.
    Tcp,
}

/// A health check of a bridge container's port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub probe: Probe,
    pub port: u16,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
    /// Docker's `start_interval`: how often it is probed in its start period until it
    /// is healthy a first time (unset: [`DEFAULT_START_INTERVAL`], or the interval when
    /// that is shorter). A new app is then found ready moments after it listens,
    /// instead of an interval later; left out of records that do not set it, so that
    /// containers made before it existed keep their description hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<Duration>,
}

/// See [`HealthCheck::start_interval`]. Docker's default is 5 s, which makes its start
/// interval useless for a readiness wait; a probe is a connect and a short GET.
pub const DEFAULT_START_INTERVAL: Duration = Duration::from_millis(50);

impl HealthCheck {
    /// The wait before the next probe: the start interval while the container is in its
    /// start period and was never healthy, the interval after.
    pub fn next_after(&self, since_start: Duration, was_healthy: bool) -> Duration {
        if !was_healthy && since_start < self.start_period {
            self.start_interval
                .unwrap_or(DEFAULT_START_INTERVAL)
                .min(self.interval)
                .max(Duration::from_millis(10))
        } else {
            self.interval
        }
    }
}

/// A volume as asked for: nothing is created until [`create`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    /// A volume name, or an absolute host path used as it is.
    pub source: String,
    pub dest: String,
    pub read_only: bool,
    pub idmap: bool,
}

impl VolumeSpec {
    /// `SRC:DST[:OPTS]` (OPTS: a comma list of ro, rw, idmap).
    pub fn parse(v: &str) -> anyhow::Result<VolumeSpec> {
        let parts: Vec<&str> = v.split(':').collect();
        let (src, dst, opts) = match parts.as_slice() {
            [s, d] => (*s, *d, ""),
            [s, d, o] => (*s, *d, *o),
            _ => bail!("invalid volume {v:?}: expected SRC:DST[:ro]"),
        };
        let (mut read_only, mut idmap) = (false, false);
        for o in opts.split(',').filter(|o| !o.is_empty()) {
            match o {
                "ro" => read_only = true,
                "rw" => read_only = false,
                "idmap" => idmap = true,
                _ => bail!("invalid volume {v:?}: unknown option {o:?} (ro, rw or idmap)"),
            }
        }
        if !dst.starts_with('/') {
            bail!("invalid volume {v:?}: the destination {dst:?} must be an absolute path");
        }
        let dst = &runspec::clean_destination(dst);
        runspec::check_destination(dst)
            .map_err(|why| anyhow::anyhow!("invalid volume -v {v:?}: {why}"))?;
        if src.starts_with('/') {
            if !Path::new(src).exists() {
                bail!("invalid volume {v:?}: {src:?} does not exist on the host");
            }
        } else if !crate::containers::valid_name(src) {
            bail!("invalid volume {v:?}: {src:?} is neither an absolute path nor a volume name");
        }
        Ok(VolumeSpec {
            source: src.to_string(),
            dest: dst.to_string(),
            read_only,
            idmap,
        })
    }

    pub fn is_named(&self) -> bool {
        !self.source.starts_with('/')
    }
}

/// A validated container description: everything `create` needs, nothing on disk yet.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Description {
    pub name: Option<String>,
    pub image: String,
    /// Replaces the image's CMD when not empty.
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub memory: Option<u64>,
    /// Memory plus swap (Docker's `--memory-swap`); `None`: twice the memory.
    #[serde(skip)]
    pub memory_swap: Option<crate::limits::Swap>,
    /// As the user wrote them, for messages (`64m`) and the description's hash.
    pub memory_text: Option<String>,
    pub memory_swap_text: Option<String>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub network: NetworkMode,
    pub publish: Vec<Publish>,
    pub volumes: Vec<VolumeSpec>,
    #[serde(skip)]
    pub userns: Option<IdMaps>,
    pub tty: bool,
    pub interactive: bool,
    pub detach: bool,
    pub auto_remove: bool,
    pub restart: RestartPolicy,
    /// Overrides the image's StopSignal.
    pub stop_signal: Option<i32>,
    pub stop_grace: Duration,
    pub labels: BTreeMap<String, String>,
    pub health: Option<HealthCheck>,
    /// Log rotation and placement (`--log-opt`; a stack role's log group).
    #[serde(skip)]
    pub log: crate::logs::LogConfig,
}

impl Description {
    /// From `frun run`'s flags; every value is checked here.
    pub fn from_run(args: &RunArgs) -> anyhow::Result<Description> {
        args.image.parse::<ImageRef>()?;
        let memory = crate::limits::Memory::parse(
            args.memory.as_deref(),
            args.memory_swap.as_deref(),
            ("--memory", "--memory-swap"),
        )?;
        let cpus = args
            .cpus
            .as_deref()
            .map(|c| crate::limits::parse_cpus("--cpus", c, crate::limits::host_cpus()))
            .transpose()?;
        let pids_limit = match args.pids_limit.as_deref() {
            Some(p) => crate::limits::parse_pids_limit("--pids-limit", p)?,
            None => None,
        };
        let network: NetworkMode = args.network.parse()?;
        let publish = args
            .publish
            .iter()
            .map(|p| {
                let mut p = p.parse::<Publish>()?;
                p.proxy_protocol = args.proxy_protocol && !p.udp;
                Ok(p)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if args.proxy_protocol && publish.is_empty() {
            bail!("--proxy-protocol goes with -p: it changes what the forwarder sends");
        }
        let restart: RestartPolicy = args.restart.parse().context("--restart")?;
        if restart != RestartPolicy::No && args.rm {
            bail!("--restart and --rm conflict: a container removed when it exits cannot be restarted");
        }
        if restart != RestartPolicy::No && !args.detach {
            bail!("--restart needs -d: its holder restarts it in the background");
        }
        let stop_signal = args
            .stop_signal
            .as_deref()
            .map(|s| parse_signal(s).map(|s| s as i32))
            .transpose()
            .context("--stop-signal")?;
        let d = Description {
            name: args.name.clone(),
            image: args.image.clone(),
            command: args.command.clone(),
            env: args.env.clone(),
            workdir: args.workdir.clone(),
            user: args.user.clone(),
            memory: memory.map(|m| m.limit),
            memory_swap: memory.and_then(|m| m.swap),
            memory_text: args.memory.clone(),
            memory_swap_text: args.memory_swap.clone(),
            cpus,
            pids_limit,
            network,
            publish,
            volumes: args
                .volumes
                .iter()
                .map(|v| VolumeSpec::parse(v))
                .collect::<anyhow::Result<_>>()?,
            userns: IdMaps::parse(&args.uidmap, &args.gidmap)?,
            tty: args.tty,
            interactive: args.interactive,
            detach: args.detach,
            auto_remove: args.rm,
            restart,
            stop_signal,
            stop_grace: Duration::from_secs(args.stop_timeout.unwrap_or(10)),
            labels: BTreeMap::new(),
            health: None,
            log: crate::logs::LogConfig::parse_opts(&args.log_opts)?,
        };
        d.validate()?;
        Ok(d)
    }

    /// The checks that hold whichever way the description was made.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(n) = &self.name {
            if !crate::containers::valid_name(n) {
                bail!("invalid container name {n:?}: use letters, digits, '_', '.', '-', starting with a letter or digit");
            }
        }
        if !self.publish.is_empty() && self.network != NetworkMode::Bridge {
            bail!(
                "-p needs --network bridge: with --network {} there is no container address to forward to",
                self.network
            );
        }
        if self.health.is_some() && self.network != NetworkMode::Bridge {
            bail!("a health check needs the bridge network: it probes the container's address");
        }
        Ok(())
    }
}

/// The image to run: from the store, or pulled now.
pub fn image_for_run(g: &Global, image: &ImageRef, quiet: bool) -> anyhow::Result<ImageRecord> {
    image_for_role(g, image, None, quiet)
}

/// [`image_for_run`] for a stack role: a pull uses the role's `registry_auth`, read
/// only then.
pub fn image_for_role(
    g: &Global,
    image: &ImageRef,
    auth: Option<&crate::stack::auth::RegistryAuth>,
    quiet: bool,
) -> anyhow::Result<ImageRecord> {
    let store = open_store(g)?;
    if let Ok(r) = store.find_image(&image.to_string()) {
        if r.layers.iter().all(|l| store.has_layer(&l.diff_id)) {
            return Ok(r);
        }
    }
    if !quiet {
        eprintln!("Unable to find image '{image}' locally; pulling");
    }
    pull_for_role(g, image, auth, quiet)
}

/// Pulls `image` for a stack role (or `run`, with no `auth`): with the role's
/// `registry_auth` when it has one, else the credentials `frun login` stored.
pub fn pull_for_role(
    g: &Global,
    image: &ImageRef,
    auth: Option<&crate::stack::auth::RegistryAuth>,
    quiet: bool,
) -> anyhow::Result<ImageRecord> {
    match auth {
        Some(a) => {
            let auth = a.resolve(image, &crate::commands::registry_config(g))?;
            crate::commands::images::pull_record_with_auth(g, image, Some(auth), quiet)
                .with_context(|| {
                    format!("{}: pulling {image} with registry_auth {}", a.at, a.source)
                })
        }
        None => crate::commands::images::pull_record(g, image, None, quiet),
    }
}

/// Refuses a description that needs what this host lacks (cgroups, the controller of
/// each limit it sets, overlayfs), in the words of `frun info` (`frun_runtime::needs`),
/// before anything is made. (`nft` is refused where it is run, idmapped layers where the
/// kernel answers: their probes cost more than a start.)
fn host_has(d: &Description) -> anyhow::Result<()> {
    use frun_runtime::needs::Need;
    let cg = frun_runtime::probe::cgroups().map_err(|e| Need::Cgroups.missing(e.to_string()))?;
    for (asked, need, controller) in [
        (d.memory.is_some(), Need::MemoryController, "memory"),
        (d.pids_limit.is_some(), Need::PidsController, "pids"),
        (d.cpus.is_some(), Need::CpuController, "cpu"),
    ] {
        if asked {
            cg.controller(controller)
                .map_err(|detail| need.missing(detail))?;
        }
    }
    frun_runtime::probe::overlay().map_err(|detail| Need::Overlay.missing(detail))?;
    Ok(())
}

/// Creates the container a description asks for: image (pulled if missing), record,
/// network, files and spec. On failure nothing of it is left.
pub fn create(g: &Global, d: &Description, quiet: bool) -> anyhow::Result<Container> {
    // 1. The image, and its platform: refused before anything is set up.
    let image: ImageRef = d.image.parse()?;
    let record = image_for_run(g, &image, quiet)?;
    let store = open_store(g)?;
    let host = Platform::host();
    let p = &record.platform;
    if !host.matches(&p.os, &p.architecture, p.variant.as_deref()) {
        bail!(
            "image {} is for platform {}, but this host is {}: it cannot run here",
            record.reference,
            p,
            host
        );
    }
    let config: oci_spec::image::ImageConfiguration =
        serde_json::from_slice(&store.read_blob(&record.config_digest)?)
            .with_context(|| format!("parsing the config of {}", record.reference))?;
    let lower = store.overlay_mount(&record)?.lower_dirs;
    let stop_signal = match (
        d.stop_signal,
        config
            .config()
            .as_ref()
            .and_then(|c| c.stop_signal().clone()),
    ) {
        (Some(s), _) => s,
        (None, Some(s)) => {
            parse_signal(&s).with_context(|| format!("the image's StopSignal {s:?}"))? as i32
        }
        (None, None) => Signal::SIGTERM as i32,
    };
    host_has(d)?;
    let net_cfg = crate::net::NetConfig::new(&g.root, &g.run_root, &g.bridge, &g.subnet)?;
    let containers = Containers::open(&g.root)?;

    // 2. The record, with the network it is going to have: a crash between here and the
    //    attach leaves a record that names what `rm` must sweep (the lease, the netns
    //    file, the veth are all found by the id).
    let c = containers.create(d.name.as_deref(), |id, name| {
        Ok(Record {
            id: id.to_string(),
            name: name.to_string(),
            image: record.reference.clone(),
            image_digest: record.manifest_digest.to_string(),
            layers: record.layers.iter().map(|l| l.diff_id.clone()).collect(),
            command: d.command.clone(),
            created: now(),
            cgroup: Path::new(&g.cgroup_parent).join(id),
            detached: d.detach,
            auto_remove: d.auto_remove,
            stop_signal,
            stop_timeout: d.stop_grace.as_secs(),
            memory_limit: d.memory_text.clone(),
            network: (d.network == NetworkMode::Bridge).then(|| NetRecord {
                bridge: g.bridge.clone(),
                subnet: g.subnet.clone(),
                ip: std::net::Ipv4Addr::UNSPECIFIED,
            }),
            publish: d.publish.clone(),
            tty: d.tty,
            interactive: d.interactive,
            restart: d.restart,
            labels: d.labels.clone(),
            health: d.health.clone(),
            lower_dirs: lower.clone(),
            log: d.log.clone(),
            ports_from: None,
        })
    })?;
    let result = (|| {
        // 3. The network first: the spec names the namespace file it makes.
        let c = if d.network == NetworkMode::Bridge {
            let a = crate::net::attach(&net_cfg, &c.record.id, &c.record.name)?;
            let mut record = c.record.clone();
            if let Some(n) = record.network.as_mut() {
                n.ip = a.ip;
            }
            containers.update(
                Container {
                    dir: c.dir.clone(),
                    record: c.record.clone(),
                },
                record,
            )?
        } else {
            Container {
                dir: c.dir.clone(),
                record: c.record.clone(),
            }
        };
        crate::fault::reached(crate::fault::Step::CreateNetworkRecorded);
        let network = match d.network {
            NetworkMode::Bridge => Network::Join(net_cfg.netns_path(&c.record.id)),
            NetworkMode::Host => Network::Host,
            NetworkMode::None => Network::None,
        };
        // 4. Volumes: named ones made (and initialised) now, host paths as they are.
        let mut volumes = Vec::new();
        for v in &d.volumes {
            let source = if v.is_named() {
                crate::volumes::prepare(&g.root, &v.source, &lower, &v.dest)?
            } else {
                PathBuf::from(&v.source)
            };
            volumes.push(runspec::Volume {
                source,
                dest: v.dest.clone(),
                read_only: v.read_only,
                idmap: v.idmap,
            });
        }
        // 5. The files frun writes for it, and the spec.
        let hostname = c.record.id[..12].to_string();
        let hosts = c.dir.join("hosts");
        let resolv = c.dir.join("resolv.conf");
        let hostname_file = c.dir.join("hostname");
        std::fs::write(&hosts, crate::commands::hosts_file(&c, &net_cfg))
            .with_context(|| format!("writing {hosts:?}"))?;
        if c.record.network.is_some() {
            crate::commands::refresh_hosts(&containers, &net_cfg);
        }
        std::fs::write(&resolv, crate::commands::host_resolv_conf())
            .with_context(|| format!("writing {resolv:?}"))?;
        std::fs::write(&hostname_file, format!("{hostname}\n"))
            .with_context(|| format!("writing {hostname_file:?}"))?;
        let opts = RunOptions {
            command: d.command.clone(),
            env: d.env.clone(),
            workdir: d.workdir.clone(),
            user: d.user.clone(),
            memory: d.memory,
            memory_swap: d.memory_swap,
            cpus: d.cpus,
            pids_limit: d.pids_limit,
            network,
            hostname,
            volumes,
            userns: d.userns.clone(),
            tty: d.tty,
        };
        let files = [
            (hosts, "/etc/hosts"),
            (resolv, "/etc/resolv.conf"),
            (hostname_file, "/etc/hostname"),
        ];
        let spec = runspec::build(&config, &opts, &lower, &files)?;
        frun_images::fsutil::write_atomic(&c.config_path(), &serde_json::to_vec_pretty(&spec)?)?;
        crate::fault::reached(crate::fault::Step::CreateSpecWritten);
        Ok::<Container, anyhow::Error>(c)
    })();
    match result {
        Ok(c) => Ok(c),
        Err(e) => {
            if let Err(cleanup) = crate::commands::remove_container(g, &containers, &c) {
                tracing::warn!(error = %format!("{cleanup:#}"), "cleaning up a container that could not be created");
            }
            Err(e)
        }
    }
}

/// A stable hash of a description and the image digest it resolved to: `up` recreates
/// a role only when this changes.
pub fn description_hash(d: &Description, image_digest: &str) -> String {
    use sha2::Digest;
    let mut d = d.clone();
    d.labels.remove(LABEL_HASH);
    d.labels.remove(LABEL_GENERATION);
    d.name = None;
    let mut h = sha2::Sha256::new();
    h.update(serde_json::to_vec(&d).expect("a description serializes"));
    h.update(image_digest.as_bytes());
    h.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_parse_and_decide() {
        let p: RestartPolicy = "on-failure:2".parse().unwrap();
        assert_eq!(p, RestartPolicy::OnFailure { max: Some(2) });
        assert!(p.restarts(1, 0, false));
        assert!(p.restarts(137, 1, false));
        assert!(!p.restarts(1, 2, false));
        assert!(!p.restarts(0, 0, false));
        let a: RestartPolicy = "always".parse().unwrap();
        assert!(a.restarts(0, 100, false));
        assert!(!a.restarts(0, 0, true));
        assert!(!"no".parse::<RestartPolicy>().unwrap().restarts(1, 0, false));
        assert!("sometimes".parse::<RestartPolicy>().is_err());
        assert!("on-failure:x".parse::<RestartPolicy>().is_err());
        assert_eq!(p.to_string(), "on-failure:2");
        assert_eq!(RestartPolicy::backoff(0), Duration::from_millis(100));
        assert_eq!(RestartPolicy::backoff(3), Duration::from_millis(800));
        assert_eq!(RestartPolicy::backoff(30), Duration::from_secs(10));
    }

    #[test]
    fn health_probes_come_at_the_start_interval_until_healthy_once() {
        let mut h = HealthCheck {
            probe: Probe::Tcp,
            port: 80,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            retries: 3,
            start_period: Duration::from_secs(30),
            start_interval: None,
        };
        let (early, late) = (Duration::from_secs(1), Duration::from_secs(31));
        assert_eq!(h.next_after(early, false), DEFAULT_START_INTERVAL);
        assert_eq!(h.next_after(early, true), h.interval);
        assert_eq!(h.next_after(late, false), h.interval);
        h.start_interval = Some(Duration::from_millis(300));
        assert_eq!(h.next_after(early, false), Duration::from_millis(300));
        h.interval = Duration::from_millis(100);
        assert_eq!(
            h.next_after(early, false),
            h.interval,
            "never above the interval"
        );
        // Unset, it is not in the record: a container's description hash is unchanged.
        h.start_interval = None;
        assert!(!serde_json::to_string(&h)
            .unwrap()
            .contains("start_interval"));
    }

    #[test]
    fn volumes_parse_without_touching_the_disk() {
        let v = VolumeSpec::parse("data:/var/lib/data:ro").unwrap();
        assert_eq!(
            (v.source.as_str(), v.dest.as_str(), v.read_only, v.idmap),
            ("data", "/var/lib/data", true, false)
        );
        assert!(v.is_named());
        let v = VolumeSpec::parse("data:/d:rw,idmap").unwrap();
        assert!(!v.read_only && v.idmap);
        assert!(VolumeSpec::parse("data:/d:rx")
            .unwrap_err()
            .to_string()
            .contains("unknown option \"rx\""));
        assert!(VolumeSpec::parse("/no/such/dir:/x").is_err());
        assert!(VolumeSpec::parse("data:relative").is_err());
        assert!(VolumeSpec::parse("a:b:c:d").is_err());
        assert!(!VolumeSpec::parse("/tmp:/x").unwrap().is_named());
    }

    /// `-v X:/` was accepted (Docker refuses it), and `-v X:/proc/sys` (runc refuses
    /// binds into /proc): both undo what the container's root and masks are.
    #[test]
    fn volumes_on_the_root_or_into_proc_are_refused() {
        for (v, want) in [
            ("data:/", "cannot be /"),
            ("data://", "cannot be /"),
            ("data:/tmp/..", "cannot be /"),
            ("data:/proc", "/proc is inside /proc"),
            ("data:/proc/sys", "/proc/sys is inside /proc"),
            (
                "data:/proc/sysrq-trigger:ro",
                "/proc/sysrq-trigger is inside /proc",
            ),
            (
                "data:/etc/../proc/sys/kernel",
                "/proc/sys/kernel is inside /proc",
            ),
        ] {
            let e = VolumeSpec::parse(v).unwrap_err().to_string();
            assert!(e.contains(want), "{v}: {e}");
            assert!(e.contains(&format!("-v {v:?}")), "{v}: {e}");
        }
        // lxcfs's files, and /dev, /procfs and /sys-like neighbours, are allowed.
        for v in [
            "data:/proc/meminfo",
            "data:/dev",
            "data:/procfs",
            "data:/var/proc",
        ] {
            assert!(VolumeSpec::parse(v).is_ok(), "{v}");
        }
    }

    #[test]
    fn volume_destinations_are_cleaned() {
        let v = VolumeSpec::parse("data://var/./lib/../data/").unwrap();
        assert_eq!(v.dest, "/var/data");
    }

    #[test]
    fn the_hash_changes_with_the_image_and_the_settings_not_the_name() {
        let args = <crate::cli::Cli as clap::Parser>::try_parse_from([
            "frun", "run", "-d", "--name", "a", "busybox", "true",
        ])
        .unwrap();
        let crate::cli::Command::Run(args) = args.command else {
            panic!()
        };
        let d = Description::from_run(&args).unwrap();
        let mut e = d.clone();
        e.name = Some("b".into());
        assert_eq!(description_hash(&d, "x"), description_hash(&e, "x"));
        assert_ne!(description_hash(&d, "x"), description_hash(&d, "y"));
        e.memory = Some(64 << 20);
        assert_ne!(description_hash(&d, "x"), description_hash(&e, "x"));
    }
}
