//! `frun supervise`: the one long-running process of a state root.
//!
//! What it does: it runs the health checks of the containers that have one (writing
//! `health.json` beside each container's state, each change of state logged once),
//! reaps the holders it starts, answers the CLI over a unix socket in the run root
//! (mode 0600), and, started with `--boot` (the systemd unit), brings back the stacks
//! that `frun up` recorded and the `--restart` containers that died with the machine.
//! It starts the stacks' scheduled backups (`[backup] every`) as children, see
//! [`backups`].
//!
//! What it does not do, by design: hold a container's stdio or be its parent. Each
//! container has a small holder (`frun __holder`, as conmon is for podman) that keeps
//! its log, its published ports and its exit code, and applies its restart policy.
//! A `kill -9` of the supervisor therefore loses nothing: every container keeps
//! serving and logging, exits are recorded, and the next supervisor adopts the
//! containers by reading their state from disk (liveness checked by pid and start
//! time, never assumed). See `/work/coord/up.md` for the measurements behind the
//! choice.
//!
//! It is one thread with a poll loop: nothing here spawns a container in-process, so
//! the runtime's refusal of a multi-threaded caller never comes up, and no signal mask
//! or stdio of the process is changed.

pub mod backups;
pub mod health;

use anyhow::{bail, Context};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::cli::Global;
use crate::containers::{Container, Containers, Status};
use health::Health;

pub fn socket_path(run_root: &Path) -> PathBuf {
    run_root.join("supervise.sock")
}

fn lock_path(run_root: &Path) -> PathBuf {
    run_root.join("supervise.lock")
}

/// Moves this process into frun's own cgroup, `<parent>/supervisor`: not the
/// caller's, so that a login session or a systemd unit ending does not take frun's
/// processes (and so the containers' holders) with it, and their memory is accounted
/// to frun. On a hybrid host that is every v1 hierarchy with controllers and the
/// cgroup2 one (`unified`, where systemd tracks a unit's processes; the runtime puts
/// each container in a cgroup of its own there too, so none stays in frun's). On a pure
/// cgroup v2 host it is the one hierarchy.
pub fn join_own_cgroup(parent: &Path) -> anyhow::Result<()> {
    let path = parent.join("supervisor");
    let me = std::process::id() as i32;
    let cg = frun_runtime::cgroup::Cgroup::open(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    cg.add(me, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// One request to the running supervisor; its one-line answer.
pub fn request(run_root: &Path, line: &str) -> anyhow::Result<String> {
    let path = socket_path(run_root);
    let mut s = UnixStream::connect(&path).with_context(|| format!("connecting to {path:?}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    writeln!(s, "{line}")?;
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer)?;
    Ok(answer.trim_end().to_string())
}

/// Starts the supervisor of this state root unless it runs already.
pub fn ensure_running(g: &Global) -> anyhow::Result<()> {
    if request(&g.run_root, "ping").is_ok_and(|a| a.starts_with("pong")) {
        return Ok(());
    }
    std::fs::create_dir_all(&g.run_root).with_context(|| format!("creating {:?}", g.run_root))?;
    let log_path = g.run_root.join("supervise.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {log_path:?}"))?;
    let mut cmd = g.frun_command()?;
    cmd.arg("--verbose")
        .arg("supervise")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe; the supervisor outlives this command.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting frun supervise")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if request(&g.run_root, "ping").is_ok_and(|a| a.starts_with("pong")) {
            // It lives on; init reaps it.
            std::mem::forget(child);
            return Ok(());
        }
        // One that died (killed, or failing) is told at once, not after the whole wait.
        // (One that found another holding the lock exits 0: that one answers soon.)
        if let Ok(Some(status)) = child.try_wait().map(|s| s.filter(|s| !s.success())) {
            bail!(
                "frun supervise exited ({status}) before it answered (its log: {})",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!(
        "frun supervise did not answer within 10 s (its log: {})",
        log_path.display()
    )
}

/// What the loop keeps per supervised container.
struct Watched {
    health: Health,
    next: Instant,
    /// When its current process started (health's start period counts from there).
    started: String,
    since: Instant,
}

/// `frun supervise [--boot]`.
pub fn run(
    g: &Global,
    boot: bool,
    metrics_addr: Option<std::net::SocketAddr>,
) -> anyhow::Result<ExitCode> {
    // 1. One supervisor per run root: the lock says who it is.
    std::fs::create_dir_all(&g.run_root).with_context(|| format!("creating {:?}", g.run_root))?;
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path(&g.run_root))?;
    //    The unit's supervisor (`--boot`) waits for one that `frun up` started before
    //    the unit was installed to end, rather than exiting (which `Restart=always`
    //    would turn into a restart every second); any other ends at once.
    let _lock = match nix::fcntl::Flock::lock(
        lock_file,
        nix::fcntl::FlockArg::LockExclusiveNonblock,
    ) {
        Ok(l) => l,
        Err((file, _)) if boot => {
            tracing::info!(run_root = %g.run_root.display(), "another supervisor runs: waiting for it to end");
            nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
                .map_err(|(_, e)| e)
                .with_context(|| format!("locking {:?}", lock_path(&g.run_root)))?
        }
        Err(_) => {
            eprintln!(
                "frun: a supervisor of {} runs already",
                g.run_root.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
    };
    crate::fault::reached(crate::fault::Step::SuperviseLocked);
    // 2. Out of the caller's cgroup, into frun's.
    if let Err(e) = join_own_cgroup(Path::new(&g.cgroup_parent)) {
        tracing::warn!(error = %format!("{e:#}"), "moving the supervisor into frun's cgroup");
    }
    // 3. The socket, root-only: a stale one (a killed supervisor's) is replaced.
    let sock = socket_path(&g.run_root);
    let _ = std::fs::remove_file(&sock);
    let listener = {
        let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
        let l = UnixListener::bind(&sock);
        rustix::process::umask(old);
        l.with_context(|| format!("binding {sock:?}"))?
    };
    listener.set_nonblocking(true)?;
    crate::fault::reached(crate::fault::Step::SuperviseListening);
    tracing::info!(pid = std::process::id(), socket = %sock.display(), "supervisor started");
    // 3b. Metrics: the address asked for on the command line (its failure is this
    //     command's), and those of the recorded stacks (a failure is told in the log).
    let mut metrics = crate::metrics::Server::default();
    if let Some(addr) = metrics_addr {
        metrics.listen(addr)?;
    }
    for addr in crate::metrics::recorded(&g.root) {
        if let Err(e) = metrics.listen(addr) {
            tracing::warn!(error = %format!("{e:#}"), "metrics of a recorded stack");
        }
    }

    // 4. A swap that a kill left half-done is finished or undone (see stack::swap).
    //    After a boot, what was running comes back: the stacks' `frun up`s run as
    //    children while the loop below answers them (each `up` pings this supervisor).
    crate::stack::swap::recover_all(g);
    let mut boot_ups = if boot {
        boot_restore(g)
    } else {
        HashMap::new()
    };

    // 5. The loop: answer the CLI, probe what is due, reap holders.
    let containers = Containers::open(&g.root)?;
    let mut records = Records::default();
    let mut watched: HashMap<String, Watched> = HashMap::new();
    let mut last_scan = Instant::now() - Duration::from_secs(10);
    let mut scheduled = backups::Scheduler::default();
    // What only the start and the rare command needed is given back a little after
    // the start, then every 10 s (see trim.rs; what the loop uses faults back in within
    // one round, at a cost of well under a millisecond).
    let mut next_trim = Instant::now() + Duration::from_secs(5);
    loop {
        if Instant::now() >= next_trim {
            if let Err(e) = crate::trim::release_startup_memory() {
                tracing::debug!(error = %e, "releasing unused memory");
            }
            next_trim = Instant::now() + Duration::from_secs(10);
        }
        if last_scan.elapsed() >= Duration::from_millis(500) {
            scan(records.list(&containers), &mut watched);
            last_scan = Instant::now();
        }
        probe_due(&g.root, &containers, &mut records, &mut watched);
        reap(g, &mut boot_ups, &mut scheduled);
        scheduled.tick(g);
        serve(&listener, &watched, &mut metrics);
        metrics.serve(&g.root, &g.run_root, &containers, &|id: &str| {
            watched.get(id).map(|w| w.health.status)
        });
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The containers' records as the loop last read them: a record is parsed again only
/// when its file changed (it changes at creation and when a container is revived). The
/// loop looks at them twice a second; parsing each every time kept the deserializer's
/// code resident for nothing (see trim.rs).
#[derive(Default)]
struct Records {
    by_id: HashMap<String, (FileStamp, crate::containers::Record)>,
}

/// What tells that a file changed: inode, size, modification time.
pub(crate) type FileStamp = (u64, u64, Option<std::time::SystemTime>);

pub(crate) fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.len(), m.modified().ok()))
}

impl Records {
    /// Container `id` as on disk now.
    fn get(&mut self, containers: &Containers, id: &str) -> Option<Container> {
        let dir = containers.dir().join(id);
        let now = stamp(&dir.join("frun.json"))?;
        if let Some((was, record)) = self.by_id.get(id) {
            if *was == now {
                return Some(Container {
                    dir,
                    record: record.clone(),
                });
            }
        }
        let c = Containers::load_dir(&dir).ok()?;
        self.by_id.insert(id.to_string(), (now, c.record.clone()));
        Some(c)
    }

    /// Every container, oldest first, as [`Containers::list`] has them.
    fn list(&mut self, containers: &Containers) -> Vec<Container> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(containers.dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let id = e.file_name().to_string_lossy().into_owned();
            if let Some(c) = self.get(containers, &id) {
                out.push(c);
            }
        }
        self.by_id
            .retain(|id, _| out.iter().any(|c| c.record.id == *id));
        out.sort_by(|a, b| a.record.created.cmp(&b.record.created));
        out
    }
}

/// Adopts running containers with a health check (found on disk), forgets the gone.
fn scan(all: Vec<Container>, watched: &mut HashMap<String, Watched>) {
    let mut seen = Vec::new();
    for c in all {
        let Some(check) = &c.record.health else {
            continue;
        };
        let Ok(st) = c.state() else { continue };
        if st.status != Status::Running {
            continue;
        }
        let started = st.started_at.clone().unwrap_or_default();
        seen.push(c.record.id.clone());
        let fresh = watched
            .get(&c.record.id)
            .is_none_or(|w| w.started != started);
        if fresh {
            // A restarted process starts its health over; an adopted one keeps what the
            // previous supervisor wrote.
            let health = read_health(&c)
                .filter(|_| watched.get(&c.record.id).is_none())
                .unwrap_or_else(Health::new);
            if !watched.contains_key(&c.record.id) {
                tracing::info!(container = %c.record.name, health = %health.status, "supervising");
            }
            let since = started_since(&started);
            watched.insert(
                c.record.id.clone(),
                Watched {
                    health,
                    next: Instant::now(),
                    started,
                    since,
                },
            );
            let _ = check;
        }
    }
    watched.retain(|id, _| seen.contains(id));
}

/// The instant that corresponds to an RFC 3339 time of the past.
fn started_since(started: &str) -> Instant {
    let ago = chrono::DateTime::parse_from_rfc3339(started)
        .ok()
        .and_then(|t| {
            (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                .to_std()
                .ok()
        })
        .unwrap_or_default();
    Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
}

pub fn health_path(c: &Container) -> PathBuf {
    c.dir.join("health.json")
}

pub fn read_health(c: &Container) -> Option<Health> {
    serde_json::from_slice(&std::fs::read(health_path(c)).ok()?).ok()
}

fn probe_due(
    root: &Path,
    containers: &Containers,
    records: &mut Records,
    watched: &mut HashMap<String, Watched>,
) {
    let now = Instant::now();
    for (id, w) in watched.iter_mut() {
        if w.next > now {
            continue;
        }
        let Some(c) = records.get(containers, id) else {
            continue;
        };
        let (Some(check), Some(net)) = (&c.record.health, &c.record.network) else {
            continue;
        };
        // A container on its way out is not probed (its directory may be going).
        if c.stop_requested_path().exists() {
            continue;
        }
        let result = health::probe(std::net::IpAddr::V4(net.ip), check);
        let was = w.health.record(check, result, w.since.elapsed());
        let healthy_once = w.health.status != health::Status::Starting;
        w.next = now + check.next_after(w.since.elapsed(), healthy_once);
        if let Some(was) = was {
            tracing::info!(container = %c.record.name, state = %w.health.status, was = %was, error = ?w.health.last_error, "health");
            let mut ev = crate::events::Event::of(crate::events::Kind::HealthStatus, &c)
                .attr("status", w.health.status)
                .attr("was", was);
            if let Some(e) = &w.health.last_error {
                ev = ev.attr("error", e);
            }
            crate::events::emit(root, ev);
        }
        if let Ok(data) = serde_json::to_vec_pretty(&w.health) {
            let _ = frun_images::fsutil::write_replace(&health_path(&c), &data);
        }
    }
}

/// Reaps the children this process started: the holders (its children until they
/// exit), the boot's `frun up`s, whose outcome is logged once, and the scheduled
/// backups.
fn reap(g: &Global, boot_ups: &mut HashMap<i32, String>, scheduled: &mut backups::Scheduler) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    while let Ok(s) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        let (pid, code) = match s {
            WaitStatus::StillAlive => break,
            WaitStatus::Exited(pid, code) => (pid, code),
            WaitStatus::Signaled(pid, sig, _) => (pid, 128 + sig as i32),
            _ => continue,
        };
        if scheduled.reaped(g, pid.as_raw(), code) {
            continue;
        }
        if let Some(stack) = boot_ups.remove(&pid.as_raw()) {
            if code == 0 {
                tracing::info!(stack, "stack back up after the boot");
            } else {
                tracing::warn!(stack, code, "frun up of the stack failed at boot");
            }
        }
    }
}

/// Answers every waiting client: `ping`, `health` (JSON: name to health), `metrics
/// ADDR` (serve metrics there too: `ok`, or `error: ...`).
fn serve(
    listener: &UnixListener,
    watched: &HashMap<String, Watched>,
    metrics: &mut crate::metrics::Server,
) {
    while let Ok((s, _)) = listener.accept() {
        let _ = s.set_nonblocking(false);
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut line = String::new();
        let mut r = BufReader::new(&s);
        if r.read_line(&mut line).is_err() {
            continue;
        }
        let answer = match line.trim() {
            "ping" => format!("pong {}", std::process::id()),
            "health" => {
                let m: HashMap<&String, &Health> =
                    watched.iter().map(|(id, w)| (id, &w.health)).collect();
                serde_json::to_string(&m).unwrap_or_default()
            }
            other => match other.strip_prefix("metrics ").map(str::parse) {
                Some(Ok(addr)) => match metrics.listen(addr) {
                    Ok(()) => "ok".to_string(),
                    Err(e) => format!("error: {e:#}"),
                },
                Some(Err(_)) => format!("error: not an IP:PORT: {other:?}"),
                None => format!("error: unknown request {other:?}"),
            },
        };
        let mut w = &s;
        let _ = writeln!(w, "{answer}");
    }
}

/// At boot: containers recorded as running died with the machine. Stacks come back
/// through `frun up` of their recorded file (started here, not waited for: the pids
/// returned, by stack, for [`reap`]); other containers with a restart policy are
/// recreated by their holder.
fn boot_restore(g: &Global) -> HashMap<i32, String> {
    let mut ups = HashMap::new();
    let stacks = g.root.join("stacks");
    for e in std::fs::read_dir(&stacks).into_iter().flatten().flatten() {
        let Ok(rec) = std::fs::read(e.path().join("stack.json")) else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&rec) else {
            continue;
        };
        let Some(file) = v["file"].as_str() else {
            continue;
        };
        let stack = e.file_name().to_string_lossy().into_owned();
        tracing::info!(stack, file, "bringing the stack back");
        match g
            .frun_command()
            .and_then(|mut cmd| Ok(cmd.args(["up", "-f", file]).spawn()?))
        {
            Ok(child) => {
                ups.insert(child.id() as i32, stack);
            }
            Err(e) => {
                tracing::warn!(stack, error = %format!("{e:#}"), "frun up of the stack failed at boot")
            }
        }
    }
    let Ok(containers) = Containers::open(&g.root) else {
        return ups;
    };
    for c in containers.list().unwrap_or_default() {
        if c.record.labels.contains_key(crate::model::LABEL_STACK) {
            continue;
        }
        let Ok(st) = c.state() else { continue };
        let stopped = c.stop_requested_path().exists();
        let wants = matches!(
            c.record.restart,
            crate::model::RestartPolicy::Always | crate::model::RestartPolicy::UnlessStopped
        ) && !stopped;
        if st.status == Status::Running || Container::holder_alive(&st) || !wants {
            continue;
        }
        if let Err(e) = revive(g, &containers, &c) {
            tracing::warn!(container = %c.record.name, error = %format!("{e:#}"), "restarting after boot");
        }
    }
    ups
}

/// Starts a container whose holder died with the machine: its network made anew (the
/// old namespace went with the boot), then a new holder.
pub fn revive(g: &Global, containers: &Containers, c: &Container) -> anyhow::Result<()> {
    let c = match &c.record.network {
        Some(n) => {
            let cfg = n.config(&g.root, &g.run_root)?;
            let _ = crate::net::detach(&cfg, &c.record.id);
            crate::fault::reached(crate::fault::Step::SuperviseReviveDetached);
            let a = crate::net::attach(&cfg, &c.record.id, &c.record.name)?;
            crate::fault::reached(crate::fault::Step::SuperviseReviveAttached);
            let mut record = c.record.clone();
            if let Some(n) = record.network.as_mut() {
                n.ip = a.ip;
            }
            let c = containers.update(
                Container {
                    dir: c.dir.clone(),
                    record: c.record.clone(),
                },
                record,
            )?;
            crate::commands::refresh_hosts(containers, &cfg);
            c
        }
        None => Container {
            dir: c.dir.clone(),
            record: c.record.clone(),
        },
    };
    crate::commands::start_detached(g, &c)
}

/// `frun systemd-unit`: a unit that runs the supervisor (and, at boot, brings back the
/// stacks) for this state root.
pub fn systemd_unit(g: &Global) -> String {
    let exe = std::env::current_exe().unwrap_or_else(|_| "/usr/local/bin/frun".into());
    render_unit(&exe, g)
}

/// The unit's text for the frun binary at `exe`. Paths and names go in as systemd reads
/// them back (see [`exec_word`], [`unit_text`]): a root with a space or a `%` is the
/// same root for the supervisor the unit starts.
fn render_unit(exe: &Path, g: &Global) -> String {
    let words = [
        exe.as_os_str().to_string_lossy().into_owned(),
        "--root".into(),
        g.root.to_string_lossy().into_owned(),
        "--run-root".into(),
        g.run_root.to_string_lossy().into_owned(),
        "--cgroup-parent".into(),
        g.cgroup_parent.clone(),
        "--bridge".into(),
        g.bridge.clone(),
        "--subnet".into(),
        g.subnet.clone(),
        "--verbose".into(),
        "supervise".into(),
        "--boot".into(),
    ];
    // The program's path is taken as it is; variables are expanded in its arguments.
    let exec: Vec<String> = (words.iter().enumerate())
        .map(|(i, w)| exec_word(w, i > 0))
        .collect();
    format!(
        "# frun's supervisor: install as /etc/systemd/system/frun.service, then\n\
         #   systemctl daemon-reload && systemctl enable --now frun\n\
         [Unit]\n\
         Description=frun supervisor (stacks of {root})\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         # --verbose: the supervisor's log (stacks brought back, health changes) goes to\n\
         # the journal, as `frun up`'s supervisor writes it to RUN_ROOT/supervise.log.\n\
         ExecStart={exec}\n\
         # The containers' holders live in frun's own cgroup ({cg}/supervisor), not in\n\
         # this unit's: stopping the unit leaves the containers running.\n\
         KillMode=process\n\
         Restart=always\n\
         RestartSec=1\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        root = unit_text(&g.root.to_string_lossy()),
        exec = exec.join(" "),
        cg = frun_images::escape_controls(&g.cgroup_parent),
    )
}

/// One word of a unit's command line as systemd.service(5) ("Command lines") reads it:
/// `%` doubled (specifiers are expanded before the line is split), `$` too in an
/// argument (variables are expanded in arguments, not in the program's path); a word
/// with whitespace, quotes, a backslash or `;` (a separator of commands once)
/// double-quoted, with C-style escapes for `\`, `"` and control characters.
fn exec_word(w: &str, argument: bool) -> String {
    let mut out = String::with_capacity(w.len() + 2);
    let mut quote = w.is_empty();
    for c in w.chars() {
        match c {
            '%' => out.push_str("%%"),
            '$' if argument => out.push_str("$$"),
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
        quote |= c.is_whitespace() || c.is_control() || "\"'\\;".contains(c);
    }
    if quote {
        format!("\"{out}\"")
    } else {
        out
    }
}

/// Free text in a unit's setting (`Description=`): specifiers are expanded there too,
/// and a line ends it.
fn unit_text(s: &str) -> String {
    frun_images::escape_controls(s).replace('%', "%%")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(args: &[&str]) -> Global {
        let mut all = vec!["frun"];
        all.extend(args);
        all.push("systemd-unit");
        <crate::cli::Cli as clap::Parser>::try_parse_from(all)
            .unwrap()
            .global
    }

    /// systemd.service(5): a path with a space is one word only when quoted, and `%`
    /// starts a specifier unless doubled (`%h` would become root's home), as `$` in an
    /// argument (not in the program's path) starts a variable.
    #[test]
    fn the_units_command_line_quotes_spaces_and_doubles_percent_signs() {
        let g = global(&[
            "--root",
            "/srv/frun %h $data",
            "--run-root",
            "/run/frun",
            "--cgroup-parent",
            "/frun",
            "--bridge",
            "frun0",
            "--subnet",
            "10.89.0.0/16",
        ]);
        let unit = render_unit(Path::new("/opt/my tools/$frun"), &g);
        let exec = unit
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap();
        assert_eq!(
            exec,
            r#""/opt/my tools/$frun" --root "/srv/frun %%h $$data" --run-root /run/frun --cgroup-parent /frun --bridge frun0 --subnet 10.89.0.0/16 --verbose supervise --boot"#
        );
        assert!(
            unit.contains("Description=frun supervisor (stacks of /srv/frun %%h $data)\n"),
            "{unit}"
        );
    }

    #[test]
    fn command_line_words_escape_what_systemd_would_read_otherwise() {
        let arg = |w| exec_word(w, true);
        assert_eq!(arg("/usr/local/bin/frun"), "/usr/local/bin/frun");
        assert_eq!(arg("100%"), "100%%");
        assert_eq!(arg("$HOME"), "$$HOME");
        assert_eq!(exec_word("/opt/$x/frun", false), "/opt/$x/frun");
        assert_eq!(arg(r#"a"b"#), r#""a\"b""#);
        assert_eq!(arg(r"a\b"), r#""a\\b""#);
        assert_eq!(arg("a\nb"), r#""a\nb""#);
        assert_eq!(arg("it's"), r#""it's""#);
        assert_eq!(arg(";"), r#"";""#);
        assert_eq!(arg(""), r#""""#);
    }
}
