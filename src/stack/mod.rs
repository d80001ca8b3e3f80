//! The stack file (`frun.toml`) and its validated model.
//!
//! The file is parsed with serde + `toml` into raw tables (unknown keys refused), then
//! each value a user can get wrong (an image reference, a port mapping, a size, a
//! duration, a restart policy, a volume, an env file) is checked with the position
//! `toml` kept for it, so that every error reads `frun.toml:12:9: ...` and nothing is
//! started or changed. What comes out is one container [`Description`] per role, the
//! same model `frun run`'s flags make.

pub mod auth;
pub mod history;
pub mod ports;
pub mod proxy;
pub mod swap;
pub mod up;
pub mod upstream;

use crate::model::{
    Description, HealthCheck, NetworkMode, Probe, Publish, RestartPolicy, VolumeSpec, LABEL_ROLE,
    LABEL_STACK,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// A stack file error at a place in the file: `frun.toml:12:9: message`.
#[derive(Debug)]
pub struct StackError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl std::fmt::Display for StackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

impl std::error::Error for StackError {}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before[before.rfind('\n').map_or(0, |p| p + 1)..]
        .chars()
        .count()
        + 1;
    (line, col)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStack {
    name: Option<Spanned<String>>,
    proxy: Option<Spanned<RawProxy>>,
    app: Option<Spanned<RawApp>>,
    data: Option<RawData>,
    backup: Option<crate::backup::config::RawBackup>,
    metrics: Option<Spanned<RawMetrics>>,
}

/// `[metrics]`: where the supervisor serves Prometheus metrics (off without it).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxy {
    image: Spanned<String>,
    #[serde(default)]
    ports: Vec<Spanned<String>>,
    #[serde(default)]
    proxy_protocol: bool,
    template: Option<Spanned<String>>,
    memory: Option<Spanned<String>>,
    restart: Option<Spanned<String>>,
    registry_auth: Option<Spanned<String>>,
    log: Option<RawLog>,
}

/// `[ROLE.log]`: the keys of `frun run --log-opt` (Docker's json-file keys, `max-size`,
/// `max-file`, `compress`; `max_size` too, as the file's other keys are written).
type RawLog = BTreeMap<String, Spanned<toml::Value>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    image: Spanned<String>,
    port: Option<u16>,
    command: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    env_file: Vec<Spanned<String>>,
    user: Option<String>,
    memory: Option<Spanned<String>>,
    memory_swap: Option<Spanned<String>>,
    cpus: Option<Spanned<f64>>,
    pids: Option<Spanned<i64>>,
    restart: Option<Spanned<String>>,
    stop_signal: Option<Spanned<String>>,
    stop_grace: Option<Spanned<String>>,
    health: Option<Spanned<RawHealth>>,
    #[serde(default)]
    ports: Vec<Spanned<String>>,
    #[serde(default)]
    proxy_protocol: bool,
    registry_auth: Option<Spanned<String>>,
    log: Option<RawLog>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    http: Option<Spanned<String>>,
    tcp: Option<bool>,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    retries: Option<Spanned<u32>>,
    start_period: Option<Spanned<String>>,
    start_interval: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawData {
    #[serde(default)]
    volumes: Vec<Spanned<String>>,
}

/// The validated stack.
#[derive(Debug)]
pub struct Stack {
    pub name: String,
    /// The file it came from (its directory anchors relative paths).
    pub file: PathBuf,
    pub proxy: Option<ProxyRole>,
    pub app: AppRole,
    /// The `[backup]` section (its defaults when there is none).
    pub backup: crate::backup::config::BackupConfig,
    /// `[metrics] listen`: the address of the supervisor's Prometheus endpoint.
    pub metrics: Option<std::net::SocketAddr>,
}

#[derive(Debug)]
pub struct ProxyRole {
    pub desc: Description,
    /// The user's template for `conf.d/default.conf`, if any.
    pub template: Option<String>,
    /// Where the credentials for its image are (`registry_auth`), if given.
    pub registry_auth: Option<auth::RegistryAuth>,
}

#[derive(Debug)]
pub struct AppRole {
    pub desc: Description,
    /// The port the app listens on in its container.
    pub port: Option<u16>,
    /// Where the credentials for its image are (`registry_auth`), if given.
    pub registry_auth: Option<auth::RegistryAuth>,
}

/// `2s`, `500ms`, `1m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 500ms, 2s, 1m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration {s:?}: use ms, s, m or h")),
    };
    if !(0.0..=86400.0 * 365.0).contains(&secs) {
        return Err(format!("duration {s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Generations of a role whose logs are kept after their containers go (a swap, `up`
/// with a change, `down`): `frun logs app` reads on across them.
const ROLE_LOG_GENERATIONS: u32 = 3;

fn log_group(stack: &str, role: &str) -> crate::logs::LogConfig {
    crate::logs::LogConfig {
        group: Some(format!("{stack}-{role}")),
        keep: ROLE_LOG_GENERATIONS,
        ..Default::default()
    }
}

/// Where a stack's files live in the state root.
pub fn stack_dir(root: &Path, name: &str) -> PathBuf {
    root.join("stacks").join(name)
}

/// The proxy's rendered `conf.d`, bind-mounted read-only at `/etc/nginx/conf.d`.
pub fn conf_dir(root: &Path, name: &str) -> PathBuf {
    stack_dir(root, name).join("proxy").join("conf.d")
}

struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> StackError {
        let (line, col) = line_col(self.text, span.start);
        StackError {
            file: self.file.to_path_buf(),
            line,
            col,
            message: message.into(),
        }
    }

    fn check<T, E: std::fmt::Display>(
        &self,
        span: Range<usize>,
        what: &str,
        r: Result<T, E>,
    ) -> Result<T, StackError> {
        r.map_err(|e| self.err(span, format!("{what}: {e:#}")))
    }

    fn duration(
        &self,
        v: &Option<Spanned<String>>,
        what: &str,
        default: Duration,
    ) -> Result<Duration, StackError> {
        match v {
            Some(s) => self.check(s.span(), what, parse_duration(s.get_ref())),
            None => Ok(default),
        }
    }

    /// `memory` and `memory_swap`, read as `--memory` and `--memory-swap` are.
    fn memory(
        &self,
        memory: &Option<Spanned<String>>,
        swap: &Option<Spanned<String>>,
    ) -> Result<Option<crate::limits::Memory>, StackError> {
        let span = swap
            .as_ref()
            .filter(|_| memory.is_none())
            .or(memory.as_ref())
            .map_or(0..0, |s| s.span());
        crate::limits::Memory::parse(
            memory.as_ref().map(|m| m.get_ref().as_str()),
            swap.as_ref().map(|m| m.get_ref().as_str()),
            ("memory", "memory_swap"),
        )
        .map_err(|e| {
            // The value at fault: the swap's when the message names it.
            let span = match swap {
                Some(s) if format!("{e:#}").starts_with("memory_swap") => s.span(),
                _ => span.clone(),
            };
            self.err(span, format!("{e:#}"))
        })
    }

    fn publish(
        &self,
        ports: &[Spanned<String>],
        proxy_protocol: bool,
    ) -> Result<Vec<Publish>, StackError> {
        ports
            .iter()
            .map(|p| {
                let mut v = self.check(p.span(), "ports", p.get_ref().parse::<Publish>())?;
                v.proxy_protocol = proxy_protocol && !v.udp;
                Ok(v)
            })
            .collect()
    }

    /// `registry_auth = "file:PATH" | "env:NAME"` (see [`auth`]).
    fn registry_auth(
        &self,
        v: &Option<Spanned<String>>,
        base: &Path,
    ) -> Result<Option<auth::RegistryAuth>, StackError> {
        let Some(v) = v else { return Ok(None) };
        let (line, col) = line_col(self.text, v.span().start);
        let at = format!("{}:{line}:{col}", self.file.display());
        self.check(
            v.span(),
            "registry_auth",
            auth::RegistryAuth::parse(v.get_ref(), base, at),
        )
        .map(Some)
    }

    /// A role's log: its group (every generation in one), the generations kept, and
    /// the rotation keys of `[ROLE.log]` over the defaults.
    fn log(
        &self,
        v: &Option<RawLog>,
        stack: &str,
        role: &str,
    ) -> Result<crate::logs::LogConfig, StackError> {
        let mut c = log_group(stack, role);
        for (key, value) in v.iter().flatten() {
            let text = match value.get_ref() {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(self.err(
                        value.span(),
                        format!(
                            "{role}.log.{key}: expected a string, a number or true/false, not {}",
                            other.type_str()
                        ),
                    ))
                }
            };
            c.set(&key.replace('_', "-"), &text).map_err(|e| {
                let why = match e {
                    crate::logs::LogError::OptValue { why, .. } => why,
                    e => e.to_string(),
                };
                self.err(value.span(), format!("{role}.log.{key} = {text:?}: {why}"))
            })?;
        }
        Ok(c)
    }

    fn restart(&self, v: &Option<Spanned<String>>) -> Result<RestartPolicy, StackError> {
        match v {
            Some(s) => self.check(s.span(), "restart", s.get_ref().parse()),
            // A role is kept running: that is what a stack is for.
            None => Ok(RestartPolicy::Always),
        }
    }
}

impl Stack {
    /// The `registry_auth` of `role` (`app` or `proxy`), if given.
    pub fn registry_auth(&self, role: &str) -> Option<&auth::RegistryAuth> {
        match role {
            "app" => self.app.registry_auth.as_ref(),
            "proxy" => self.proxy.as_ref()?.registry_auth.as_ref(),
            _ => None,
        }
    }

    /// Reads and validates `file`; `root` is the state root (the proxy's config
    /// directory lives there).
    pub fn load(file: &Path, root: &Path) -> anyhow::Result<Stack> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("reading the stack file {}: {e}", file.display()))?;
        Ok(Stack::parse(file, &text, root)?)
    }

    pub fn parse(file: &Path, text: &str, root: &Path) -> Result<Stack, StackError> {
        let cx = Ctx { file, text };
        let raw: RawStack = toml::from_str(text)
            .map_err(|e| cx.err(e.span().unwrap_or(0..0), e.message().trim_end().to_string()))?;
        let base = file
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."));

        // 1. The stack's name: given, or the directory's.
        let name = match &raw.name {
            Some(n) => {
                if !crate::containers::valid_name(n.get_ref()) || n.get_ref().len() > 60 {
                    return Err(cx.err(n.span(), format!("invalid stack name {:?}: use letters, digits, '_', '.', '-' (at most 60)", n.get_ref())));
                }
                n.get_ref().clone()
            }
            None => {
                let dir = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
                let n = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if !crate::containers::valid_name(&n) {
                    return Err(cx.err(0..0, format!("the directory name {n:?} is not a valid stack name: set `name = \"...\"`")));
                }
                n
            }
        };
        let labels = |role: &str| {
            BTreeMap::from([
                (LABEL_STACK.to_string(), name.clone()),
                (LABEL_ROLE.to_string(), role.to_string()),
            ])
        };

        // 2. The data role: volumes of the app.
        let volumes = match &raw.data {
            Some(d) => d
                .volumes
                .iter()
                .map(|v| {
                    let spec = cx.check(v.span(), "volumes", VolumeSpec::parse(v.get_ref()))?;
                    if spec.idmap {
                        return Err(cx.err(v.span(), "volumes: idmap needs a user namespace, which a stack's app does not have"));
                    }
                    Ok(spec)
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };

        // 3. The app.
        let Some(app_raw) = &raw.app else {
            return Err(cx.err(
                0..0,
                "missing table [app]: a stack has an app (image, port)",
            ));
        };
        let app_span = app_raw.span();
        let a = app_raw.get_ref();
        cx.check(
            a.image.span(),
            "image",
            a.image.get_ref().parse::<frun_images::ImageRef>(),
        )?;
        let mut env: Vec<String> = Vec::new();
        for f in &a.env_file {
            let path = base.join(f.get_ref());
            let content = cx.check(
                f.span(),
                "env_file",
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display())),
            )?;
            for (i, line) in content.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                match line.split_once('=') {
                    Some((k, _)) if !k.trim().is_empty() => env.push(line.to_string()),
                    _ => {
                        // The line itself may be a secret: only its number is told.
                        return Err(cx.err(
                            f.span(),
                            format!(
                                "env_file {}: line {} is not KEY=VALUE",
                                path.display(),
                                i + 1
                            ),
                        ));
                    }
                }
            }
        }
        for (k, v) in &a.env {
            if k.is_empty() || k.contains('=') {
                return Err(cx.err(
                    app_span.clone(),
                    format!("env: invalid variable name {k:?}"),
                ));
            }
            env.push(format!("{k}={v}"));
        }
        let health = match &a.health {
            Some(h) => {
                let span = h.span();
                let h = h.get_ref();
                let probe = match (&h.http, h.tcp) {
                    (Some(p), None | Some(false)) => {
                        if !p.get_ref().starts_with('/') {
                            return Err(cx.err(
                                p.span(),
                                format!("health.http {:?}: a path starting with /", p.get_ref()),
                            ));
                        }
                        Probe::Http(p.get_ref().clone())
                    }
                    (None, Some(true)) => Probe::Tcp,
                    _ => {
                        return Err(
                            cx.err(span, "health: give either http = \"/path\" or tcp = true")
                        )
                    }
                };
                let Some(port) = a.port else {
                    return Err(cx.err(
                        span,
                        "health: the app needs `port` (the port it listens on) to be probed",
                    ));
                };
                Some(HealthCheck {
                    probe,
                    port,
                    interval: cx.duration(&h.interval, "interval", Duration::from_secs(2))?,
                    timeout: cx.duration(&h.timeout, "timeout", Duration::from_secs(1))?,
                    retries: h.retries.as_ref().map_or(3, |r| *r.get_ref()).max(1),
                    start_period: cx.duration(
                        &h.start_period,
                        "start_period",
                        Duration::from_secs(30),
                    )?,
                    start_interval: match &h.start_interval {
                        Some(_) => Some(cx.duration(
                            &h.start_interval,
                            "start_interval",
                            crate::model::DEFAULT_START_INTERVAL,
                        )?),
                        None => None,
                    },
                })
            }
            None => None,
        };
        let stop_signal = a
            .stop_signal
            .as_ref()
            .map(|s| {
                cx.check(
                    s.span(),
                    "stop_signal",
                    crate::containers::parse_signal(s.get_ref()),
                )
                .map(|s| s as i32)
            })
            .transpose()?;
        let memory = cx.memory(&a.memory, &a.memory_swap)?;
        let cpus = a
            .cpus
            .as_ref()
            .map(|c| {
                cx.check(
                    c.span(),
                    "cpus",
                    crate::limits::parse_cpus(
                        "cpus",
                        &c.get_ref().to_string(),
                        crate::limits::host_cpus(),
                    )
                    .map_err(|e| format!("{e:#}").trim_start_matches("cpus ").to_string()),
                )
            })
            .transpose()?;
        let pids_limit = match &a.pids {
            Some(p) => cx.check(
                p.span(),
                "pids",
                crate::limits::parse_pids_limit("pids", &p.get_ref().to_string())
                    .map_err(|e| format!("{e:#}").trim_start_matches("pids ").to_string()),
            )?,
            None => None,
        };
        let mut app = Description {
            name: None,
            image: a.image.get_ref().clone(),
            command: a.command.clone().unwrap_or_default(),
            env,
            workdir: None,
            user: a.user.clone(),
            memory: memory.map(|m| m.limit),
            memory_swap: memory.and_then(|m| m.swap),
            memory_text: a.memory.as_ref().map(|m| m.get_ref().clone()),
            memory_swap_text: a.memory_swap.as_ref().map(|m| m.get_ref().clone()),
            cpus,
            pids_limit,
            network: NetworkMode::Bridge,
            publish: cx.publish(&a.ports, a.proxy_protocol)?,
            volumes,
            userns: None,
            tty: false,
            interactive: false,
            detach: true,
            auto_remove: false,
            restart: cx.restart(&a.restart)?,
            stop_signal,
            stop_grace: cx.duration(&a.stop_grace, "stop_grace", Duration::from_secs(10))?,
            labels: labels("app"),
            health,
            // Every generation of the role logs into one group: `frun logs` of the role
            // reads on across replacements.
            log: cx.log(&a.log, &name, "app")?,
        };
        app.validate()
            .map_err(|e| cx.err(app_span.clone(), format!("[app]: {e:#}")))?;

        // 4. The proxy: its conf.d comes from frun.
        let proxy = match &raw.proxy {
            None => None,
            Some(p) => {
                let span = p.span();
                let p = p.get_ref();
                cx.check(
                    p.image.span(),
                    "image",
                    p.image.get_ref().parse::<frun_images::ImageRef>(),
                )?;
                if a.port.is_none() {
                    return Err(cx.err(
                        app_span.clone(),
                        "[app] needs `port` (the port it listens on) for the proxy to reach it",
                    ));
                }
                let template = p
                    .template
                    .as_ref()
                    .map(|t| {
                        let path = base.join(t.get_ref());
                        cx.check(
                            t.span(),
                            "template",
                            std::fs::read_to_string(&path)
                                .map_err(|e| format!("{}: {e}", path.display())),
                        )
                    })
                    .transpose()?;
                let memory = cx.memory(&p.memory, &None)?;
                let desc = Description {
                    name: None,
                    image: p.image.get_ref().clone(),
                    command: Vec::new(),
                    env: Vec::new(),
                    workdir: None,
                    user: None,
                    memory: memory.map(|m| m.limit),
                    memory_swap: None,
                    memory_text: p.memory.as_ref().map(|m| m.get_ref().clone()),
                    memory_swap_text: None,
                    cpus: None,
                    pids_limit: None,
                    network: NetworkMode::Bridge,
                    publish: cx.publish(&p.ports, p.proxy_protocol)?,
                    volumes: vec![
                        VolumeSpec {
                            source: conf_dir(root, &name).to_string_lossy().into_owned(),
                            dest: "/etc/nginx/conf.d".into(),
                            read_only: true,
                            idmap: false,
                        },
                        // The app's sockets (see upstream): swaps without a reload.
                        VolumeSpec {
                            source: upstream::dir(root, &name).to_string_lossy().into_owned(),
                            dest: upstream::IN_PROXY.into(),
                            read_only: true,
                            idmap: false,
                        },
                    ],
                    userns: None,
                    tty: false,
                    interactive: false,
                    detach: true,
                    auto_remove: false,
                    restart: cx.restart(&p.restart)?,
                    stop_signal: None,
                    stop_grace: Duration::from_secs(10),
                    labels: labels("proxy"),
                    health: None,
                    log: cx.log(&p.log, &name, "proxy")?,
                };
                desc.validate()
                    .map_err(|e| cx.err(span, format!("[proxy]: {e:#}")))?;
                // Each app generation serves a socket for the proxy (see upstream).
                if let Some(port) = a.port {
                    app.labels
                        .insert(upstream::LABEL_UPSTREAM_PORT.into(), port.to_string());
                }
                Some(ProxyRole {
                    desc,
                    template,
                    registry_auth: cx.registry_auth(&p.registry_auth, base)?,
                })
            }
        };
        // 5. Backups: schedule, retention, encryption.
        let backup = match &raw.backup {
            Some(b) => crate::backup::config::validate(b, base, &|span, m| cx.err(span, m))?,
            None => Default::default(),
        };
        // 6. Metrics, if asked for: an IP and a port (no host name to resolve).
        let metrics = match &raw.metrics {
            None => None,
            Some(m) => {
                let l = &m.get_ref().listen;
                Some(cx.check(
                    l.span(),
                    "metrics.listen",
                    l.get_ref().parse::<std::net::SocketAddr>().map_err(|_| {
                        format!(
                            "{:?}: expected IP:PORT, such as 127.0.0.1:9464",
                            l.get_ref()
                        )
                    }),
                )?)
            }
        };
        Ok(Stack {
            name,
            file: file.to_path_buf(),
            backup,
            proxy,
            metrics,
            app: AppRole {
                desc: app,
                port: a.port,
                registry_auth: cx.registry_auth(&a.registry_auth, base)?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"name = "family"

[proxy]
image = "nginx:stable"
ports = ["127.0.0.1:8080:80"]

[app]
image = "family/app:v1"
port = 8080
env = { APP_ENV = "production" }
memory = "128m"
restart = "on-failure:3"
stop_grace = "2s"

[app.health]
http = "/"
interval = "500ms"

[data]
volumes = ["db:/var/db"]
"#;

    fn parse(text: &str) -> Result<Stack, StackError> {
        Stack::parse(Path::new("frun.toml"), text, Path::new("/var/lib/frun"))
    }

    #[test]
    fn a_good_file_makes_one_description_per_role() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.name, "family");
        let p = s.proxy.unwrap();
        assert_eq!(p.desc.publish[0].host_port, 8080);
        assert_eq!(p.desc.volumes[0].dest, "/etc/nginx/conf.d");
        assert!(p.desc.volumes[0].read_only);
        assert_eq!(p.desc.restart, RestartPolicy::Always);
        assert_eq!(s.app.port, Some(8080));
        let a = &s.app.desc;
        assert_eq!(a.memory, Some(128 << 20));
        assert_eq!(a.restart, RestartPolicy::OnFailure { max: Some(3) });
        assert_eq!(a.env, vec!["APP_ENV=production".to_string()]);
        assert_eq!(a.volumes[0].source, "db");
        assert!(
            a.publish.is_empty(),
            "the app publishes nothing unless asked"
        );
        let h = a.health.as_ref().unwrap();
        assert_eq!((h.port, h.interval), (8080, Duration::from_millis(500)));
        assert_eq!(h.start_interval, None);
        assert_eq!(a.labels[LABEL_ROLE], "app");
        let s = parse(&GOOD.replace(
            "interval = \"500ms\"",
            "interval = \"500ms\"\nstart_interval = \"20ms\"",
        ))
        .unwrap();
        let h = s.app.desc.health.unwrap();
        assert_eq!(h.start_interval, Some(Duration::from_millis(20)));
        let e = parse(&GOOD.replace(
            "interval = \"500ms\"",
            "interval = \"500ms\"\nstart_interval = \"soon\"",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("frun.toml:18:18: start_interval"), "{e}");
    }

    #[test]
    fn a_roles_log_rotation_takes_the_log_opt_keys() {
        let s = parse(&GOOD.replace(
            "[app.health]",
            "[app.log]\nmax-size = \"1m\"\nmax_file = 5\ncompress = true\n\n[app.health]",
        ))
        .unwrap();
        let l = &s.app.desc.log;
        assert_eq!((l.max_size, l.max_file, l.compress), (1 << 20, 5, true));
        assert_eq!(l.group.as_deref(), Some("family-app"));
        assert_eq!(l.keep, ROLE_LOG_GENERATIONS);
        // The proxy keeps the defaults.
        let p = &s.proxy.unwrap().desc.log;
        assert_eq!((p.max_size, p.max_file, p.compress), (10 << 20, 3, false));
        for (bad, want) in [
            (
                "max-file = 0",
                "frun.toml:16:12: app.log.max-file = \"0\": must be between 1 and 100",
            ),
            (
                "max-size = \"lots\"",
                "frun.toml:16:12: app.log.max-size = \"lots\": expected a size",
            ),
            (
                "mode = \"x\"",
                "frun.toml:16:8: app.log.mode = \"x\": unknown key",
            ),
            (
                "max-file = [1]",
                "frun.toml:16:12: app.log.max-file: expected a string, a number or true/false",
            ),
        ] {
            let text = GOOD.replace("[app.health]", &format!("[app.log]\n{bad}\n\n[app.health]"));
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.starts_with(want), "{bad}: {e}");
        }
    }

    #[test]
    fn an_unknown_key_is_told_with_line_and_column() {
        let text = GOOD.replace("[app.health]\nhttp", "[app.health]\nhelth");
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.starts_with("frun.toml:16:1: unknown field `helth`"),
            "{e}"
        );
        assert!(e.contains("expected one of"), "{e}");
    }

    #[test]
    fn bad_values_are_told_where_they_are() {
        let e = parse(&GOOD.replace("\"128m\"", "\"lots\""))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("frun.toml:11:10: memory \"lots\": expected a number of bytes"),
            "{e}"
        );
        let e = parse(&GOOD.replace(
            "memory = \"128m\"",
            "memory = \"128m\"\nmemory_swap = \"64m\"",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("frun.toml:12:15: memory_swap \"64m\" is smaller"),
            "{e}"
        );
        let e = parse(&GOOD.replace("127.0.0.1:8080:80", "8080:80:x"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("frun.toml:5:10: ports: invalid port mapping"),
            "{e}"
        );
        let e = parse(&GOOD.replace("on-failure:3", "sometimes"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("frun.toml:12:11: restart:"), "{e}");
        let e = parse(&GOOD.replace("\"2s\"", "\"2 weeks\""))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("frun.toml:13:14: stop_grace: invalid duration"),
            "{e}"
        );
        let e = parse(&GOOD.replace("db:/var/db", "db:var/db"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("frun.toml:20:12: volumes: invalid volume"),
            "{e}"
        );
        let e = parse(&GOOD.replace("port = 8080", "port = 99999"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("frun.toml:9:8: "), "{e}");
        let e = parse(&GOOD.replace("family/app:v1", "Bad Ref"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("frun.toml:8:9: image:"), "{e}");
    }

    #[test]
    fn metrics_are_off_unless_asked_and_a_bad_address_is_told_where() {
        assert_eq!(parse(GOOD).unwrap().metrics, None);
        let s = parse(&format!("{GOOD}\n[metrics]\nlisten = \"127.0.0.1:9464\"\n")).unwrap();
        assert_eq!(s.metrics, Some("127.0.0.1:9464".parse().unwrap()));
        let e = parse(&format!("{GOOD}\n[metrics]\nlisten = \"localhost\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("frun.toml:23:10: metrics.listen: \"localhost\": expected IP:PORT"),
            "{e}"
        );
        let e = parse(&format!("{GOOD}\n[metrics]\nport = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("frun.toml:23:1: unknown field `port`"), "{e}");
    }

    #[test]
    fn a_missing_env_file_names_the_file() {
        let text = GOOD.replace("memory = \"128m\"", "env_file = [\"nope.env\"]");
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.starts_with("frun.toml:11:13: env_file: ./nope.env:"),
            "{e}"
        );
    }

    #[test]
    fn a_proxy_needs_the_app_port() {
        let text = GOOD
            .replace("port = 8080\n", "")
            .replace("[app.health]\nhttp = \"/\"\ninterval = \"500ms\"\n", "");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("needs `port`"), "{e}");
    }

    #[test]
    fn the_backup_section_is_checked_where_it_is() {
        let key = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
        let ok = format!(
            "{GOOD}\n[backup]\nevery = \"24h\"\nkeep = 7\nmax_age = \"30d\"\nrecipients = [\"{key}\"]\n"
        );
        let b = parse(&ok).unwrap().backup;
        assert_eq!(b.every, Some(Duration::from_secs(86400)));
        assert_eq!(b.jitter, Duration::from_secs(3600));
        assert_eq!(
            (b.keep, b.max_age),
            (Some(7), Some(Duration::from_secs(30 * 86400)))
        );
        assert_eq!(b.encrypt.recipients, vec![key.to_string()]);
        let e = parse(&ok.replace("keep = 7", "keep = 0"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("frun.toml:24:8: keep: 0"), "{e}");
        let e = parse(&ok.replace(key, "age1nope")).unwrap_err().to_string();
        assert!(
            e.starts_with("frun.toml:26:15: recipients: not an age public key"),
            "{e}"
        );
        let e = parse(&ok.replace("\"24h\"", "\"often\""))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("frun.toml:23:9: every: invalid duration"),
            "{e}"
        );
        let e = parse(&ok.replace("keep = 7", "kept = 7"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("frun.toml:24:1: unknown field `kept`"), "{e}");
        assert!(parse(GOOD).unwrap().backup.every.is_none());
        // A scheduled backup's timeout: `every` kept within 10m..6h, or as given.
        assert_eq!(b.timeout, Duration::from_secs(6 * 3600));
        let t = |v: &str| parse(&format!("{ok}timeout = \"{v}\"\n"));
        assert_eq!(t("30m").unwrap().backup.timeout, Duration::from_secs(1800));
        let e = t("soon").unwrap_err().to_string();
        assert!(
            e.starts_with("frun.toml:27:11: timeout: invalid duration"),
            "{e}"
        );
        let e = t("500ms").unwrap_err().to_string();
        assert!(
            e.starts_with("frun.toml:27:11: timeout: \"500ms\" is too short"),
            "{e}"
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("2").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é\nx", 3), (2, 1));
    }
}
