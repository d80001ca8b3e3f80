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
use std::time::{Duration, Instant};

use super::{conf_dir, history, ports, proxy, stack_dir, swap, upstream, Stack};
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
    /// `created`, `unchanged`, `reloaded`, `repointed` (the proxy's link to the app's
    /// socket moved to the new app: no reload).
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

pub fn generation(c: &Container) -> u64 {
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
pub fn wait_ready(c: &Container, port: Option<u16>) -> anyhow::Result<()> {
    let check = match (&c.record.health, port) {
        (Some(h), _) => h.clone(),
        (None, Some(port)) => model::HealthCheck {
            probe: model::Probe::Tcp,
            port,
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
            retries: 1,
            start_period: Duration::from_secs(30),
            start_interval: None,
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
        std::thread::sleep(
            check
                .next_after(start.elapsed(), false)
                .min(Duration::from_millis(500)),
        );
    }
}

/// Stops and removes a container (its stop signal, the grace period, then SIGKILL);
/// true when it had to be killed.
pub fn retire(g: &Global, containers: &Containers, c: &Container) -> anyhow::Result<bool> {
    let _ = std::fs::write(c.stop_requested_path(), b"");
    let mut killed = false;
    if let Ok(st) = c.state() {
        if let Some(pid) = st.pid.filter(|_| st.status == Status::Running) {
            killed =
                crate::commands::stop_and_wait(c, pid, c.record.stop_signal, c.record.stop_timeout);
        }
    }
    // The holder records the exit, emits its `die` event and cleans up, then ends by
    // itself: given a moment for that before it is ended by force.
    if let Ok(st) = c.state() {
        if let Some(pid) = st.holder_pid.filter(|_| Container::holder_alive(&st)) {
            if let Some(w) = crate::pidwatch::Watched::open(pid, st.holder_start) {
                w.wait(Duration::from_secs(2));
            }
        }
    }
    crate::commands::end_holder_of(c);
    crate::commands::remove_container(g, containers, c)?;
    Ok(killed)
}

/// Removes a container that failed on the way in; a failure to do so is logged beside
/// the error that is being returned.
pub fn discard(g: &Global, containers: &Containers, c: &Container, what: &str) {
    if let Err(r) = retire(g, containers, c) {
        tracing::warn!(container = %c.record.name, error = %format!("{r:#}"), "removing {what}");
    }
}

/// The newest running app generation of a stack and the proxy, as they are now.
pub struct Running {
    pub apps: Vec<Container>,
    pub proxy: Option<Container>,
}

impl Running {
    pub fn find(containers: &Containers, stack: &str) -> anyhow::Result<Running> {
        let mut apps = Vec::new();
        let mut proxy = None;
        for c in stack_containers(containers, stack)? {
            if !alive(&c) {
                continue;
            }
            match role_of(&c) {
                "app" => apps.push(c),
                "proxy" => proxy = Some(c),
                _ => {}
            }
        }
        apps.sort_by_key(generation);
        Ok(Running { apps, proxy })
    }

    /// The generation the next app container gets.
    pub fn next_generation(containers: &Containers, stack: &str) -> anyhow::Result<u64> {
        Ok(stack_containers(containers, stack)?
            .iter()
            .filter(|c| role_of(c) == "app")
            .map(generation)
            .max()
            .unwrap_or(0)
            + 1)
    }
}

/// The app's description for `image` (pinned by digest), as generation `gen`.
pub fn app_description(stack: &Stack, image: &str, digest: &str, gen: u64) -> Description {
    let mut d = stack.app.desc.clone();
    d.image = image.to_string();
    let hash = description_hash(&d, digest);
    d.name = Some(format!("{}-app.{gen}", stack.name));
    d.labels.insert(LABEL_HASH.into(), hash);
    d.labels.insert(LABEL_GENERATION.into(), gen.to_string());
    d
}

/// Creates and starts the app container `d` beside the running ones and waits until it
/// is ready; on any failure it is removed again and the error (with its last log lines
/// when it ran) returned. With `ports_from`, its published sockets are taken over from
/// that app's holder, paused (see `ports`).
pub fn start_app(
    g: &Global,
    containers: &Containers,
    stack: &Stack,
    d: &Description,
    quiet: bool,
    ports_from: Option<&Container>,
) -> anyhow::Result<Container> {
    let mut c = model::create(g, d, quiet)?;
    if let Some(old) = ports_from {
        let copy = Container {
            dir: c.dir.clone(),
            record: c.record.clone(),
        };
        c = ports::take_from(containers, c, old).inspect_err(|_| {
            discard(g, containers, &copy, "the new app container");
        })?;
    }
    crate::fault::reached(crate::fault::Step::UpAppCreated);
    let started = crate::commands::start_detached(g, &c)
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .and_then(|()| wait_ready(&c, ports::ready_port(stack)))
        .and_then(|()| match &stack.proxy {
            Some(_) => upstream::wait_serving(&g.root, &stack.name, generation(&c)),
            None if ports_from.is_some() => ports::wait_serving(g, &c),
            None => Ok(()),
        });
    match started {
        Ok(()) => {
            crate::fault::reached(crate::fault::Step::UpAppReady);
            Ok(c)
        }
        Err(e) => {
            discard(g, containers, &c, "the failed app container");
            Err(e)
        }
    }
}

/// The proxy's `conf.d/default.conf` for an app at `ip`.
pub fn proxy_conf(stack: &Stack, ip: std::net::Ipv4Addr) -> Option<String> {
    let p = stack.proxy.as_ref()?;
    let listen = p.desc.publish.first().map_or(80, |x| x.container_port);
    let pp = p.desc.publish.iter().any(|x| x.proxy_protocol);
    let template = p
        .template
        .clone()
        .unwrap_or_else(|| proxy::default_template(listen, pp));
    Some(proxy::render(
        &template,
        &proxy::Upstream {
            addr: ip,
            port: stack.app.port.unwrap_or(80),
            via: Some(upstream::nginx_upstream()),
        },
    ))
}

/// The app container's bridge address.
pub fn app_ip(app: &Container) -> anyhow::Result<std::net::Ipv4Addr> {
    app.record
        .network
        .as_ref()
        .map(|n| n.ip)
        .context("the app has no bridge address for the proxy")
}

/// Points the running proxy `px` at `app`: the conf rendered; when it changed, checked
/// with `nginx -t` (the previous conf put back if nginx rejects it) and reloaded.
/// True when it reloaded.
pub fn point_proxy(
    g: &Global,
    stack: &Stack,
    px: &Container,
    app: &Container,
) -> anyhow::Result<bool> {
    let Some(text) = proxy_conf(stack, app_ip(app)?) else {
        return Ok(false);
    };
    let dir = conf_dir(&g.root, &stack.name);
    let previous = proxy::write_conf(&dir, &text)?;
    if previous.as_deref() == Some(text.as_str()) {
        return Ok(false);
    }
    if let Err(e) = proxy::check(g, px) {
        if let Some(old) = previous {
            proxy::write_conf(&dir, &old)?;
        }
        return Err(e);
    }
    proxy::reload(px)?;
    Ok(true)
}

/// Checks that the published ports of a container about to be created are free, and
/// names their owner when not.
fn ports_free(d: &Description) -> anyhow::Result<()> {
    drop(crate::forward::bind_all(&d.publish)?);
    Ok(())
}

/// An app image as deployed: the reference the user named and the same image pinned
/// by digest (what the container runs, so that a tag moving on in the registry or the
/// store changes nothing until the next swap).
#[derive(Clone, Debug)]
pub struct Resolved {
    pub reference: String,
    pub pinned: String,
    pub digest: String,
}

/// Records `r` in the store under its digest too (`name@sha256:...`), so that it can be
/// started again by digest (a rollback) without the registry, whatever its tag points
/// at by then; `gc` keeps it as long as that record exists.
pub fn pin_image(g: &Global, r: &frun_images::ImageRecord) -> anyhow::Result<Resolved> {
    let reference: frun_images::ImageRef = r.reference.parse()?;
    let pinned = reference.with_digest(&r.manifest_digest).to_string();
    let store = crate::commands::images::open_store(g)?;
    if store.find_image(&pinned).is_err() {
        store.put_image(frun_images::ImageRecord {
            reference: pinned.clone(),
            ..r.clone()
        })?;
    }
    Ok(Resolved {
        reference: r.reference.clone(),
        pinned,
        digest: r.manifest_digest.to_string(),
    })
}

/// The app image `up` runs: the one deployed last (by `up`, a swap or a rollback) while
/// the stack file still names the image it named then; else the file's (pulled if
/// missing).
fn app_image(
    g: &Global,
    stack: &Stack,
    entries: &[history::Entry],
    quiet: bool,
) -> anyhow::Result<Resolved> {
    let file_image = &stack.app.desc.image;
    if let Some(e) = history::current(entries).filter(|e| &e.file_image == file_image) {
        model::image_for_role(g, &e.pinned.parse()?, stack.registry_auth("app"), quiet)
            .with_context(|| format!("the app image {} (deployed {})", e.pinned, e.time))?;
        return Ok(Resolved {
            reference: e.reference.clone(),
            pinned: e.pinned.clone(),
            digest: e.digest.clone(),
        });
    }
    let r = model::image_for_role(g, &file_image.parse()?, stack.registry_auth("app"), quiet)
        .with_context(|| format!("the app image {file_image}"))?;
    pin_image(g, &r)
}

/// `frun up`: the numbered steps of a convergence.
pub fn up(g: &Global, stack: &Stack, quiet: bool) -> anyhow::Result<Vec<Change>> {
    let containers = Containers::open(&g.root)?;
    let mut changes = Vec::new();

    // 0. A restore or backup that was killed: finished or undone, the app thawed (backup).
    crate::backup::restore::recover(g, &stack.name)?;
    //    One change of a stack at a time; a swap that a kill left half-done is finished
    //    or undone first, so that what follows starts from one app generation.
    let _lock = swap::lock(&g.root, &stack.name)?;
    swap::recover(g, stack, quiet)?;

    // 1. Images first, all of them: a missing one fails here, before anything changed.
    let entries = history::load(&g.root, &stack.name)?;
    let image = app_image(g, stack, &entries, quiet)?;
    let proxy_digest = match &stack.proxy {
        Some(p) => Some(
            model::image_for_role(g, &p.desc.image.parse()?, p.registry_auth.as_ref(), quiet)
                .with_context(|| format!("the proxy image {}", p.desc.image))?
                .manifest_digest
                .to_string(),
        ),
        None => None,
    };
    crate::fault::reached(crate::fault::Step::UpImagesReady);

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
    let gen = Running::next_generation(&containers, &stack.name)?;
    let d = app_description(stack, &image.pinned, &image.digest, gen);
    let app_hash = d.labels[LABEL_HASH].clone();
    let mut handed_over = false;
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
            // A published port of the app itself: handed over by the old app's holder
            // (see `ports`: no outage), or, when it cannot be (its holder serves no
            // hand-off, or the ports changed), the old one goes first.
            let from = old_apps.last().copied().filter(|o| {
                ports::applies(stack)
                    && o.record.publish == d.publish
                    && crate::forward::handoff::serves(&g.run_root, &o.record.id)
            });
            if from.is_none() {
                if !d.publish.is_empty() {
                    for c in &old_apps {
                        retire(g, &containers, c)?;
                    }
                }
                ports_free(&d)?;
            }
            say(
                quiet,
                &format!("Creating {}", d.name.as_deref().unwrap_or("")),
            );
            let c = start_app(g, &containers, stack, &d, quiet, from)?;
            if from.is_some() {
                if let Err(e) = ports::switch(g, &c, &old_apps) {
                    ports::switch_back(g, &old_apps, Some(&c));
                    ports::drain(g, &[&c], ports::DRAIN);
                    discard(g, &containers, &c, "the new app container");
                    return Err(e);
                }
                handed_over = true;
            }
            (c, true)
        }
    };
    changes.push(Change {
        role: "app".into(),
        container: app.record.name.clone(),
        action: if new_app { "created" } else { "unchanged" }.into(),
    });

    // 4. The proxy: the app's socket link pointed at the app (see upstream), the
    //    config rendered, checked, then reloaded if it changed (or a new proxy started
    //    on it).
    if let Some(p) = &stack.proxy {
        let text = proxy_conf(stack, app_ip(&app)?).expect("a proxy role");
        let dir = conf_dir(&g.root, &stack.name);
        let proxy_hash = description_hash(&p.desc, proxy_digest.as_deref().unwrap_or(""));
        let undo_app = |e: anyhow::Error| -> anyhow::Error {
            if new_app {
                if let Some(old) = old_apps.last() {
                    if let Err(r) = upstream::point(&g.root, &stack.name, generation(old)) {
                        tracing::warn!(error = %format!("{r:#}"), "pointing the proxy back at the old app");
                    }
                }
                discard(g, &containers, &app, "the new app container");
            }
            e
        };
        let moved = upstream::current(&g.root, &stack.name) != Some(generation(&app));
        match old_proxy.filter(|c| c.record.labels.get(LABEL_HASH) == Some(&proxy_hash)) {
            Some(px) => {
                // The conf first: when nginx rejects it, no request went to the new app.
                let reloaded = point_proxy(g, stack, px, &app).map_err(undo_app)?;
                upstream::point(&g.root, &stack.name, generation(&app)).map_err(undo_app)?;
                let action = match (reloaded, moved) {
                    (true, _) => "reloaded",
                    (false, true) => "repointed",
                    (false, false) => "unchanged",
                };
                changes.push(Change {
                    role: "proxy".into(),
                    container: px.record.name.clone(),
                    action: action.into(),
                });
            }
            None => {
                let previous = proxy::write_conf(&dir, &text)?;
                upstream::point(&g.root, &stack.name, generation(&app)).map_err(undo_app)?;
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
                    crate::fault::reached(crate::fault::Step::UpProxyCreated);
                    let checked = crate::commands::start_detached(g, &c)
                        .map_err(|e| anyhow::anyhow!("{e:#}"))
                        .and_then(|()| proxy::check(g, &c));
                    if let Err(e) = checked {
                        discard(g, &containers, &c, "the failed proxy");
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

    // 5. The other app generations go, now that nothing points at them: those replaced
    //    now, and any that a killed `up` left beside the one kept (which, without a
    //    proxy, may not accept yet: it does first). The deployment goes into the
    //    history (what `rollback` returns to).
    let others: Vec<&Container> = old_apps
        .iter()
        .filter(|c| c.record.id != app.record.id)
        .copied()
        .collect();
    let mut keep_others = false;
    if !new_app && !others.is_empty() && ports::applies(stack) {
        match ports::switch(g, &app, &others) {
            Ok(()) => handed_over = true,
            Err(e) => {
                // The others may hold the only accepting socket: they stay.
                tracing::warn!(error = %format!("{e:#}"), "handing the published ports to the kept app");
                keep_others = true;
            }
        }
    }
    if handed_over {
        // What the old app's holder accepted before the switch is answered first.
        ports::drain(g, &others, ports::DRAIN);
    }
    for c in others.iter().filter(|_| !keep_others) {
        if c.dir.exists() {
            say(quiet, &format!("Removing {}", c.record.name));
            retire(g, &containers, c)?;
        }
    }
    if new_app {
        history::append(
            &g.root,
            &stack.name,
            history::Entry {
                time: crate::containers::now(),
                how: "up".into(),
                reference: image.reference.clone(),
                pinned: image.pinned.clone(),
                digest: image.digest.clone(),
                previous_digest: old_apps.last().map(|c| c.record.image_digest.clone()),
                file_image: stack.app.desc.image.clone(),
                outcome: history::Outcome::Deployed,
                container: Some(app.record.name.clone()),
                message: None,
                steps: Vec::new(),
            },
        )?;
    }

    // 6. The supervisor (health checks, adoption), once there is something to supervise;
    //    and the stack's record, which it reads to bring the stack back after a boot.
    crate::fault::reached(crate::fault::Step::UpConverged);
    crate::supervise::ensure_running(g)?;
    crate::fault::reached(crate::fault::Step::UpSupervised);
    write_stack_record(g, stack)?;
    Ok(changes)
}

/// `ROOT/stacks/<stack>/stack.json`: the stack file's path, for the supervisor.
fn write_stack_record(g: &Global, stack: &Stack) -> anyhow::Result<()> {
    let sdir = stack_dir(&g.root, &stack.name);
    std::fs::create_dir_all(&sdir).with_context(|| format!("creating {sdir:?}"))?;
    let file = std::fs::canonicalize(&stack.file).unwrap_or_else(|_| stack.file.clone());
    frun_images::fsutil::write_atomic(
        &sdir.join("stack.json"),
        &serde_json::to_vec_pretty(&serde_json::json!({ "name": stack.name, "file": file }))?,
    )?;
    Ok(())
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
