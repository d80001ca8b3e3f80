//! `frun up` converges the containers of a stack on its file; `frun down` removes them.
//!
//! A role's container carries a hash of its resolved description (image digest
//! included) in a label: when the hash is the same and the container runs, `up` leaves
//! it alone; when it differs, a new container replaces it. A new app generation is
//! started beside the old one and must be ready (its health check, or its port
//! accepting) before the proxy is pointed at it; only then does the old one go. So a
//! failing `up` (image missing, port taken, health never passing, a config nginx
//! rejects) leaves the previous stack serving and nothing new behind.

use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::proxy;
use super::{conf_dir, stack_dir, Stack};
use crate::cli::Global;
use crate::containers::{Container, Containers, Status};
use crate::model::{
    self, description_hash, Description, LABEL_GENERATION, LABEL_HASH, LABEL_ROLE, LABEL_STACK,
};

/// What `up` did to each role, for its report.
#[derive(Debug, serde::Serialize)]
pub struct Change {
    pub role: String,
    pub container: String,
    /// `created`, `replaced`, `unchanged`, `reloaded`.
    pub action: String,
}

/// The containers of stack `name`, oldest first.
pub fn stack_containers(containers: &Containers, name: &str) -> anyhow::Result<Vec<Container>> {
    Ok(containers
        .list()?
        .into_iter()
        .filter(|c| c.record.labels.get(LABEL_STACK).map(String::as_str) == Some(name))
        .collect())
}

fn role_of(c: &Container) -> &str {
    c.record.labels.get(LABEL_ROLE).map_or("", String::as_str)
}

fn generation(c: &Container) -> u64 {
    c.record
        .labels
        .get(LABEL_GENERATION)
        .and_then(|g| g.parse().ok())
        .unwrap_or(0)
}

/// Running, or about to run again under its living holder (a restart's back-off).
fn alive(c: &Container) -> bool {
    c.state()
        .is_ok_and(|st| st.status == Status::Running || Container::holder_alive(&st))
}

fn say(quiet: bool, text: &str) {
    if !quiet {
        eprintln!("{text}");
    }
}

/// The last lines of a container's log, for an error message.
pub fn last_log_lines(c: &Container, n: usize) -> String {
    let lines: Vec<String> = crate::logs::reader::read_entries(&c.log_dir())
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.log.trim_end().to_string())
        .collect();
    let tail = &lines[lines.len().saturating_sub(n)..];
    if tail.is_empty() {
        return "  (no output)".into();
    }
    tail.iter()
        .map(|l| format!("  | {}", crate::containers::sanitize(l)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until a new app container is ready: its health check passes (within its
/// start period plus its retries), or, without one, its port accepts a connection.
fn wait_ready(c: &Container, port: Option<u16>) -> anyhow::Result<()> {
    let check = match (&c.record.health, port) {
        (Some(h), _) => h.clone(),
        (None, Some(port)) => model::HealthCheck {
            probe: model::Probe::Tcp,
            port,
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
            retries: 1,
            start_period: Duration::from_secs(30),
        },
        (None, None) => return Ok(()),
    };
    let ip = match &c.record.network {
        Some(n) => std::net::IpAddr::V4(n.ip),
        None => return Ok(()),
    };
    let deadline =
        Instant::now() + check.start_period + (check.interval + check.timeout) * check.retries;
    let mut failures = 0;
    let start = Instant::now();
    loop {
        let r = crate::supervise::health::probe(ip, &check);
        match r {
            Ok(()) => return Ok(()),
            Err(e) => {
                if start.elapsed() >= check.start_period {
                    failures += 1;
                }
                let st = c.state()?;
                let gone = st.status != Status::Running && !Container::holder_alive(&st);
                if gone || failures >= check.retries.max(1) || Instant::now() >= deadline {
                    let why = if gone {
                        format!("it exited (code {})", st.exit_code.unwrap_or(-1))
                    } else {
                        format!("the health check never passed: {e}")
                    };
                    bail!(
                        "container {} did not become ready: {why}; its last output:\n{}",
                        c.record.name,
                        last_log_lines(c, 10)
                    );
                }
            }
        }
        std::thread::sleep(check.interval.min(Duration::from_millis(500)));
    }
}

/// Stops and removes a container (its stop signal, the grace period, then SIGKILL).
pub fn retire(g: &Global, containers: &Containers, c: &Container) -> anyhow::Result<()> {
    let _ = std::fs::write(c.stop_requested_path(), b"");
    if let Ok(st) = c.state() {
        if let Some(pid) = st.pid.filter(|_| st.status == Status::Running) {
            crate::commands::stop_and_wait(c, pid, c.record.stop_signal, c.record.stop_timeout);
        }
    }
    crate::commands::end_holder_of(c);
    crate::commands::remove_container(g, containers, c)
}

/// Checks that the published ports of a container about to be created are free, and
/// names their owner when not.
fn ports_free(d: &Description) -> anyhow::Result<()> {
    drop(crate::forward::bind_all(&d.publish)?);
    Ok(())
}

/// `frun up`: the numbered steps of a convergence.
pub fn up(g: &Global, stack: &Stack, quiet: bool) -> anyhow::Result<Vec<Change>> {
    let containers = Containers::open(&g.root)?;
    let mut changes = Vec::new();

    // 1. Images first, all of them: a missing one fails here, before anything changed.
    let mut digests = BTreeMap::new();
    let roles: Vec<(&str, &Description)> = std::iter::once(("app", &stack.app.desc))
        .chain(stack.proxy.as_ref().map(|p| ("proxy", &p.desc)))
        .collect();
    for (role, d) in &roles {
        let r = model::image_for_role(g, &d.image.parse()?, stack.registry_auth(role), quiet)
            .with_context(|| format!("the {role} image {}", d.image))?;
        digests.insert(*role, r.manifest_digest.to_string());
    }
    let hash = |role: &str, d: &Description| description_hash(d, &digests[role]);

    // 2. What is there: stale records (their process and holder gone, as after a
    //    reboot) are removed so that their names are free again.
    let mut current = Vec::new();
    for c in stack_containers(&containers, &stack.name)? {
        if alive(&c) {
            current.push(c);
        } else {
            say(
                quiet,
                &format!("Removing {} (it is not running)", c.record.name),
            );
            crate::commands::remove_container(g, &containers, &c)?;
        }
    }
    let old_apps: Vec<&Container> = current.iter().filter(|c| role_of(c) == "app").collect();
    let old_proxy = current.iter().find(|c| role_of(c) == "proxy");

    // 3. The app: kept when unchanged, else a new generation beside the old one.
    let app_hash = hash("app", &stack.app.desc);
    let kept = old_apps
        .iter()
        .rev()
        .find(|c| c.record.labels.get(LABEL_HASH) == Some(&app_hash));
    let (app, new_app) = match kept {
        Some(c) => (
            Container {
                dir: c.dir.clone(),
                record: c.record.clone(),
            },
            false,
        ),
        None => {
            let gen = old_apps.iter().map(|c| generation(c)).max().unwrap_or(0) + 1;
            let mut d = stack.app.desc.clone();
            d.name = Some(format!("{}-app.{gen}", stack.name));
            d.labels.insert(LABEL_HASH.into(), app_hash.clone());
            d.labels.insert(LABEL_GENERATION.into(), gen.to_string());
            // A published port of the app itself cannot be held twice: the old one
            // goes first (no proxy, no zero-downtime).
            if !d.publish.is_empty() {
                for c in &old_apps {
                    retire(g, &containers, c)?;
                }
            }
            ports_free(&d)?;
            say(
                quiet,
                &format!("Creating {}", d.name.as_deref().unwrap_or("")),
            );
            let c = model::create(g, &d, quiet)?;
            let started = crate::commands::start_detached(g, &c)
                .map_err(|e| anyhow::anyhow!("{e:#}"))
                .and_then(|()| wait_ready(&c, stack.app.port));
            if let Err(e) = started {
                if let Err(r) = retire(g, &containers, &c) {
                    tracing::warn!(error = %format!("{r:#}"), "removing the failed app container");
                }
                return Err(e);
            }
            (c, true)
        }
    };
    changes.push(Change {
        role: "app".into(),
        container: app.record.name.clone(),
        action: if new_app { "created" } else { "unchanged" }.into(),
    });

    // 4. The proxy: config rendered for the app's address, checked, then reloaded (or
    //    a new proxy started on it).
    if let Some(p) = &stack.proxy {
        let ip = app
            .record
            .network
            .as_ref()
            .map(|n| n.ip)
            .context("the app has no bridge address for the proxy")?;
        let listen = p.desc.publish.first().map_or(80, |x| x.container_port);
        let pp = p.desc.publish.iter().any(|x| x.proxy_protocol);
        let template = p
            .template
            .clone()
            .unwrap_or_else(|| proxy::default_template(listen, pp));
        let text = proxy::render(
            &template,
            &proxy::Upstream {
                addr: ip,
                port: stack.app.port.unwrap_or(80),
            },
        );
        let dir = conf_dir(&g.root, &stack.name);
        let proxy_hash = hash("proxy", &p.desc);
        let undo_app = |e: anyhow::Error| -> anyhow::Error {
            if new_app {
                if let Err(r) = retire(g, &containers, &app) {
                    tracing::warn!(error = %format!("{r:#}"), "removing the new app container");
                }
            }
            e
        };
        match old_proxy.filter(|c| c.record.labels.get(LABEL_HASH) == Some(&proxy_hash)) {
            Some(px) => {
                let previous = proxy::write_conf(&dir, &text)?;
                if previous.as_deref() != Some(text.as_str()) {
                    if let Err(e) = proxy::check(g, px) {
                        if let Some(old) = previous {
                            proxy::write_conf(&dir, &old)?;
                        }
                        return Err(undo_app(e));
                    }
                    proxy::reload(px).map_err(undo_app)?;
                    changes.push(Change {
                        role: "proxy".into(),
                        container: px.record.name.clone(),
                        action: "reloaded".into(),
                    });
                } else {
                    changes.push(Change {
                        role: "proxy".into(),
                        container: px.record.name.clone(),
                        action: "unchanged".into(),
                    });
                }
            }
            None => {
                let previous = proxy::write_conf(&dir, &text)?;
                if let Some(old) = old_proxy {
                    say(quiet, &format!("Replacing {}", old.record.name));
                    retire(g, &containers, old)?;
                }
                let mut d = p.desc.clone();
                d.name = Some(format!("{}-proxy", stack.name));
                d.labels.insert(LABEL_HASH.into(), proxy_hash);
                let r = (|| {
                    ports_free(&d)?;
                    say(
                        quiet,
                        &format!("Creating {}", d.name.as_deref().unwrap_or("")),
                    );
                    let c = model::create(g, &d, quiet)?;
                    let checked = crate::commands::start_detached(g, &c)
                        .map_err(|e| anyhow::anyhow!("{e:#}"))
                        .and_then(|()| proxy::check(g, &c));
                    if let Err(e) = checked {
                        if let Err(r) = retire(g, &containers, &c) {
                            tracing::warn!(error = %format!("{r:#}"), "removing the failed proxy");
                        }
                        return Err(e);
                    }
                    Ok(c)
                })();
                match r {
                    Ok(c) => changes.push(Change {
                        role: "proxy".into(),
                        container: c.record.name.clone(),
                        action: "created".into(),
                    }),
                    Err(e) => {
                        if let Some(old) = previous {
                            let _ = proxy::write_conf(&dir, &old);
                        }
                        return Err(undo_app(e));
                    }
                }
            }
        }
    }

    // 5. The old app generations go, now that nothing points at them.
    if new_app {
        for c in old_apps {
            if c.dir.exists() {
                say(quiet, &format!("Removing {}", c.record.name));
                retire(g, &containers, c)?;
            }
        }
    }

    // 6. The supervisor (health checks, adoption), once there is something to supervise;
    //    and the stack's record, which it reads to bring the stack back after a boot.
    crate::supervise::ensure_running(g)?;
    let sdir = stack_dir(&g.root, &stack.name);
    std::fs::create_dir_all(&sdir).with_context(|| format!("creating {sdir:?}"))?;
    let file = std::fs::canonicalize(&stack.file).unwrap_or_else(|_| stack.file.clone());
    frun_images::fsutil::write_atomic(
        &sdir.join("stack.json"),
        &serde_json::to_vec_pretty(&serde_json::json!({ "name": stack.name, "file": file }))?,
    )?;
    Ok(changes)
}

/// `frun down`: the stack's containers stopped and removed, proxy first; its named
/// volumes too with `volumes`.
pub fn down(g: &Global, stack: &Stack, volumes: bool) -> anyhow::Result<Vec<String>> {
    let containers = Containers::open(&g.root)?;
    let mut all = stack_containers(&containers, &stack.name)?;
    all.sort_by_key(|c| role_of(c) != "proxy");
    let mut removed = Vec::new();
    for c in &all {
        retire(g, &containers, c)?;
        removed.push(c.record.name.clone());
    }
    if volumes {
        for v in stack.app.desc.volumes.iter().filter(|v| v.is_named()) {
            let dir = g.root.join("volumes").join(&v.source);
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("removing volume {dir:?}"))?;
                removed.push(format!("volume {}", v.source));
            }
        }
    }
    let sdir = stack_dir(&g.root, &stack.name);
    if sdir.exists() {
        std::fs::remove_dir_all(&sdir).with_context(|| format!("removing {sdir:?}"))?;
    }
    Ok(removed)
}
