//! Containers on disk: `ROOT/containers/<id>/` holds `frun.json` (what was asked for),
//! `config.json` (the OCI spec), `state.json` (what is happening), the overlay's
//! `upper/` and `work/`, the `rootfs/` mount point; its log is in `ROOT/logs/` (see
//! `crate::logs`).
//!
//! Every file is written temp + fsync + rename (the last state of a `--rm` container,
//! removed right after, without the fsync). A container's status is an explicit
//! enum; `running` is only believed while its pid is alive with the start time recorded
//! (pids get reused) in this boot (after a reboot pids are handed out again and start
//! times count from zero), so a crash of frun or of the host leaves a state that reads
//! true.

use anyhow::{bail, Context};
use frun_images::fsutil::write_atomic;
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// What `frun run` asked for; written once at creation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub name: String,
    /// The image reference as pulled, and its manifest digest.
    pub image: String,
    pub image_digest: String,
    /// The image's layers (diff_ids), bottom first: `gc` keeps them while the container
    /// exists, even if the image is removed.
    pub layers: Vec<frun_images::Digest>,
    pub command: Vec<String>,
    pub created: String,
    /// Absolute cgroup path.
    pub cgroup: PathBuf,
    pub detached: bool,
    pub auto_remove: bool,
    /// Signal number sent by `stop` before SIGKILL.
    pub stop_signal: i32,
    pub stop_timeout: u64,
    /// Human-readable limits, for error messages (`64m`).
    #[serde(default)]
    pub memory_limit: Option<String>,
    /// The bridge network it is on, if any.
    #[serde(default)]
    pub network: Option<NetRecord>,
    /// Published ports (`-p`).
    #[serde(default)]
    pub publish: Vec<crate::model::Publish>,
    /// `-t`: a terminal (pty) as the container's stdio.
    #[serde(default)]
    pub tty: bool,
    /// `-i`: the caller's stdin goes to the container (foreground runs only).
    #[serde(default)]
    pub interactive: bool,
    /// What the holder does when the container ends.
    #[serde(default)]
    pub restart: crate::model::RestartPolicy,
    /// `frun.stack`, `frun.role`, `frun.hash`, ... for what `frun up` made.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Probed by the supervisor.
    #[serde(default)]
    pub health: Option<crate::model::HealthCheck>,
    /// The overlay's lower directories, topmost first, as the image store described
    /// them at creation (checked there): the holder mounts exactly these.
    #[serde(default)]
    pub lower_dirs: Vec<PathBuf>,
    /// Log rotation and placement (`--log-opt`; a stack role's group and kept generations).
    #[serde(default)]
    pub log: crate::logs::LogConfig,
    /// The id of the container this one replaces, whose holder hands its published
    /// sockets over instead of this one binding them (a swap of a stack with no proxy,
    /// see `forward::handoff`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports_from: Option<String>,
}

/// A container's place on frun's bridge network.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetRecord {
    pub bridge: String,
    pub subnet: String,
    pub ip: std::net::Ipv4Addr,
}

impl NetRecord {
    pub fn config(&self, root: &Path, run_root: &Path) -> anyhow::Result<crate::net::NetConfig> {
        crate::net::NetConfig::new(root, run_root, &self.bridge, &self.subnet)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Exited,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    #[serde(default)]
    pub pid: Option<i32>,
    /// The pid's start time (field 22 of /proc/PID/stat), to tell it from a reused pid.
    #[serde(default)]
    pub pid_start: Option<u64>,
    /// The holder's pid (`shim_pid` in state files of frun before 0.2).
    #[serde(default, alias = "shim_pid")]
    pub holder_pid: Option<i32>,
    /// The holder's start time, to tell it from a reused pid.
    #[serde(default, alias = "shim_start")]
    pub holder_start: Option<u64>,
    /// The boot the pids above were recorded in ([`this_boot`]): under another boot
    /// they name nothing, however well a new process matches them. Absent in older
    /// state files (their pids and start times alone decide).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// How many times the restart policy started it again.
    #[serde(default)]
    pub restart_count: u32,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub oom_killed: bool,
    /// Why the container could not start, if it could not.
    #[serde(default)]
    pub error: Option<String>,
}

impl State {
    pub fn created() -> State {
        State {
            status: Status::Created,
            pid: None,
            pid_start: None,
            holder_pid: None,
            holder_start: None,
            boot_id: this_boot().map(str::to_string),
            restart_count: 0,
            started_at: None,
            finished_at: None,
            exit_code: None,
            oom_killed: false,
            error: None,
        }
    }

    /// Puts `pid` on record as the container's holder, in this boot.
    pub fn held_by(&mut self, pid: i32) {
        self.holder_pid = Some(pid);
        self.holder_start = pid_start(pid);
        self.boot_id = this_boot().map(str::to_string);
    }

    /// Whether the pids on record may name living processes: not when they were
    /// recorded in another boot.
    pub fn this_boots(&self) -> bool {
        same_boot(self.boot_id.as_deref())
    }
}

/// A signal by name (`SIGTERM`, `term`) or number, as Docker's StopSignal and runc's
/// `kill` take it.
pub fn parse_signal(s: &str) -> anyhow::Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| anyhow::anyhow!("unknown signal {n}"));
    }
    let name = s.to_ascii_uppercase();
    let name = if name.starts_with("SIG") {
        name
    } else {
        format!("SIG{name}")
    };
    Signal::from_str(&name).map_err(|_| anyhow::anyhow!("unknown signal {s:?}"))
}

/// Text from outside (a container's name or output, an image's config) made safe for
/// a terminal: control characters are shown escaped, never sent (one rule for all of
/// frun: `frun_images::escape_controls`).
pub fn sanitize(s: &str) -> String {
    frun_images::escape_controls(s).into_owned()
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), read once; `None` where the
/// kernel has none.
pub fn this_boot() -> Option<&'static str> {
    static BOOT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    })
    .as_deref()
}

/// Whether a pid recorded in boot `recorded` may still name the process recorded: a
/// record of another boot never does (pids and start times begin again at boot). A
/// record without a boot id (older frun), or a kernel without one, cannot tell.
pub fn same_boot(recorded: Option<&str>) -> bool {
    match (recorded, this_boot()) {
        (Some(r), Some(now)) => r == now,
        _ => true,
    }
}

/// The start time of `pid`, if it lives.
pub fn pid_start(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// A state (`read`) and its holder's liveness (`alive`) that belong together. Read once
/// and then checked, a reader could pair a state the holder was about to complete with
/// the holder's death a moment later: `exited` without its exit code, holder gone (seen
/// once in tests/it/holder.rs under load: the container had exited, the holder wrote
/// its exit and ended between `ps`'s read and its check). A holder found gone wrote
/// all it will write, so the state is read again then.
fn observed(
    mut read: impl FnMut() -> anyhow::Result<State>,
    alive: impl Fn(&State) -> bool,
) -> anyhow::Result<(State, bool)> {
    let st = read()?;
    if alive(&st) {
        return Ok((st, true));
    }
    let st = read()?;
    let holder = alive(&st);
    Ok((st, holder))
}

pub struct Containers {
    dir: PathBuf,
}

pub struct Container {
    pub dir: PathBuf,
    pub record: Record,
}

impl Container {
    /// The overlay's lower directories, top layer first: as recorded at creation, or,
    /// for a record from before they were recorded, from its layers in `store`.
    pub fn lower_dirs(&self, store: &frun_images::Store) -> Vec<PathBuf> {
        if !self.record.lower_dirs.is_empty() {
            return self.record.lower_dirs.clone();
        }
        self.record
            .layers
            .iter()
            .rev()
            .map(|d| store.layer_path(d))
            .collect()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// Present while a user's stop is in force: the holder restarts nothing.
    pub fn stop_requested_path(&self) -> PathBuf {
        self.dir.join("stop-requested")
    }

    /// Whether the container's holder (`frun __holder`) is alive: a running container
    /// without one has nobody keeping its logs or recording its exit.
    pub fn holder_alive(state: &State) -> bool {
        if !state.this_boots() {
            return false;
        }
        match (state.holder_pid, state.holder_start) {
            (Some(pid), Some(start)) => pid_start(pid) == Some(start),
            (Some(pid), None) => pid_start(pid).is_some(),
            _ => false,
        }
    }

    /// The container's state and whether its holder lives, as of one moment (see
    /// [`observed`]): what `ps` and `status` show.
    pub fn observe(&self) -> anyhow::Result<(State, bool)> {
        observed(|| self.state(), Container::holder_alive)
    }

    /// `ROOT/logs/<group>/<id>/`: the container's log files (see `crate::logs`).
    pub fn log_dir(&self) -> PathBuf {
        crate::logs::dir(&self.root(), self.log_group(), &self.record.id)
    }

    /// The directory under `ROOT/logs/` of this container's generations.
    pub fn log_group(&self) -> &str {
        // A group is a name (never a path out of ROOT/logs); otherwise the container's.
        self.record
            .log
            .group
            .as_deref()
            .filter(|g| valid_name(g))
            .unwrap_or(&self.record.name)
    }

    /// The state root (`ROOT/containers/<id>` is this container's directory).
    pub fn root(&self) -> PathBuf {
        self.dir
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// Opens the container's log for writing (its holder does).
    pub fn open_log(&self) -> anyhow::Result<crate::logs::LogWriter> {
        let meta = crate::logs::Meta {
            id: self.record.id.clone(),
            name: self.record.name.clone(),
            created: self.record.created.clone(),
            keep: self.record.log.keep,
        };
        Ok(crate::logs::LogWriter::open(
            &self.log_dir(),
            &self.record.log,
            &meta,
        )?)
    }

    pub fn state(&self) -> anyhow::Result<State> {
        let path = self.dir.join("state.json");
        let data = std::fs::read(&path).with_context(|| format!("reading {path:?}"))?;
        let mut s: State =
            serde_json::from_slice(&data).with_context(|| format!("parsing {path:?}"))?;
        // A running container whose process is gone (frun or the host crashed) exited.
        if s.status == Status::Running {
            let alive = s.this_boots()
                && match (s.pid, s.pid_start) {
                    (Some(pid), Some(start)) => pid_start(pid) == Some(start),
                    _ => false,
                };
            if !alive {
                s.status = Status::Exited;
            }
        }
        Ok(s)
    }

    pub fn set_state(&self, state: &State) -> anyhow::Result<()> {
        self.write_state(state, true)
    }

    /// [`Container::set_state`] without fsync, for a state that no crash of the host
    /// needs to find: the exit of a container removed right after (`--rm`), which a
    /// crash would leave reading "exited" either way (running with its pid gone).
    pub fn set_last_state(&self, state: &State) -> anyhow::Result<()> {
        self.write_state(state, false)
    }

    fn write_state(&self, state: &State, durable: bool) -> anyhow::Result<()> {
        let old = self.state().ok().map(|s| s.status);
        let path = self.dir.join("state.json");
        let data = serde_json::to_vec_pretty(state)?;
        if durable {
            write_atomic(&path, &data)
        } else {
            frun_images::fsutil::write_replace(&path, &data)
        }
        .with_context(|| format!("writing {path:?}"))?;
        if old != Some(state.status) {
            tracing::info!(id = %self.short_id(), state = %state.status, was = ?old.map(|s| s.to_string()), "container state");
        }
        Ok(())
    }

    pub fn short_id(&self) -> &str {
        &self.record.id[..12]
    }

    pub fn spec(&self) -> anyhow::Result<oci_spec::runtime::Spec> {
        let path = self.config_path();
        let data = std::fs::read(&path).with_context(|| format!("reading {path:?}"))?;
        serde_json::from_slice(&data).with_context(|| format!("parsing {path:?}"))
    }
}

fn random_id() -> anyhow::Result<String> {
    let mut buf = [0u8; 32];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && name.len() <= 128
}

impl Containers {
    pub fn open(root: &Path) -> anyhow::Result<Containers> {
        let dir = root.join("containers");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {dir:?}"))?;
        Ok(Containers { dir })
    }

    /// The directory that holds one directory per container, named by its id.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Held while a container is created (and while `gc` looks for half-made ones).
    pub fn lock(&self) -> anyhow::Result<std::fs::File> {
        let path = self.dir.join(".lock");
        frun_images::fsutil::lock_exclusive(&path).with_context(|| format!("locking {path:?}"))
    }

    /// Creates a container directory with a fresh id and a unique name; `make` fills the
    /// record.
    pub fn create(
        &self,
        name: Option<&str>,
        make: impl FnOnce(&str, &str) -> anyhow::Result<Record>,
    ) -> anyhow::Result<Container> {
        let _lock = self.lock()?;
        let id = random_id()?;
        let name = match name {
            Some(n) => {
                if !valid_name(n) {
                    bail!("invalid container name {n:?}: use letters, digits, '_', '.', '-', starting with a letter or digit");
                }
                if self.list()?.iter().any(|c| c.record.name == n) {
                    bail!("the container name {n:?} is already in use");
                }
                n.to_string()
            }
            None => format!("frun-{}", &id[..8]),
        };
        let record = make(&id, &name)?;
        let dir = self.dir.join(&id);
        for sub in ["", "upper", "work", "rootfs"] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {:?}", dir.join(sub)))?;
        }
        // This process works on it until it exits: `gc` leaves it alone (see sweep.rs).
        crate::sweep::hold(&dir)?;
        crate::fault::reached(crate::fault::Step::CreateDirMade);
        // The state, then the record: the record makes the container exist, so there
        // is never one without a state; a directory without a record is `gc`'s.
        let c = Container { dir, record };
        c.set_state(&State::created())?;
        crate::fault::reached(crate::fault::Step::CreateStateWritten);
        write_atomic(
            &c.dir.join("frun.json"),
            &serde_json::to_vec_pretty(&c.record)?,
        )?;
        crate::fault::reached(crate::fault::Step::CreateRecorded);
        Ok(c)
    }

    pub fn load_dir(dir: &Path) -> anyhow::Result<Container> {
        let path = dir.join("frun.json");
        let data = std::fs::read(&path).with_context(|| format!("reading {path:?}"))?;
        let record = serde_json::from_slice(&data).with_context(|| format!("parsing {path:?}"))?;
        Ok(Container {
            dir: dir.to_path_buf(),
            record,
        })
    }

    /// Every container, oldest first. Directories without a record (a crash during
    /// creation) are skipped.
    pub fn list(&self) -> anyhow::Result<Vec<Container>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir).with_context(|| format!("listing {:?}", self.dir))? {
            let e = e?;
            if !e.file_type()?.is_dir() {
                continue;
            }
            if let Ok(c) = Self::load_dir(&e.path()) {
                out.push(c);
            }
        }
        out.sort_by(|a, b| a.record.created.cmp(&b.record.created));
        Ok(out)
    }

    /// By name, full id, or a unique id prefix.
    pub fn find(&self, key: &str) -> anyhow::Result<Container> {
        let all = self.list()?;
        if let Some(pos) = all
            .iter()
            .position(|c| c.record.name == key || c.record.id == key)
        {
            return Ok(all.into_iter().nth(pos).expect("position is valid"));
        }
        // A stack's role (`app`, `proxy`) when one stack has it: its newest container.
        let roles: Vec<usize> = all
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.record
                    .labels
                    .get(crate::model::LABEL_ROLE)
                    .map(String::as_str)
                    == Some(key)
            })
            .map(|(i, _)| i)
            .collect();
        let stacks: std::collections::BTreeSet<&String> = roles
            .iter()
            .filter_map(|i| all[*i].record.labels.get(crate::model::LABEL_STACK))
            .collect();
        if stacks.len() == 1 {
            let i = *roles.last().expect("a role");
            return Ok(all.into_iter().nth(i).expect("index is valid"));
        }
        let hits: Vec<Container> = all
            .into_iter()
            .filter(|c| !key.is_empty() && c.record.id.starts_with(key))
            .collect();
        match hits.len() {
            1 => Ok(hits.into_iter().next().expect("one hit")),
            0 => bail!("no such container: {key}"),
            n => bail!("{n} containers match {key:?}: give more of the id"),
        }
    }

    /// Rewrites a container's record (once, when its network is known).
    pub fn update(&self, c: Container, record: Record) -> anyhow::Result<Container> {
        write_atomic(
            &c.dir.join("frun.json"),
            &serde_json::to_vec_pretty(&record)?,
        )?;
        Ok(Container { dir: c.dir, record })
    }

    /// Removes a container's directory; its logs go too, unless its log config keeps
    /// the last generations of its group (a stack role's).
    pub fn remove(&self, c: &Container) -> anyhow::Result<()> {
        // The logs first: a crash in between leaves a container without its log (which
        // its removal finishes), never a log nobody owns.
        let live = |id: &str| id != c.record.id && self.dir.join(id).join("frun.json").exists();
        crate::logs::retire(
            &c.root(),
            c.log_group(),
            &c.record.id,
            c.record.log.keep,
            live,
        )?;
        // The supervisor may be writing a health reading into the directory right now
        // (temp + rename): a file that appears while the tree goes makes the last rmdir
        // fail with "not empty", and the next try takes it.
        let mut tries = 0;
        loop {
            match std::fs::remove_dir_all(&c.dir) {
                Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) && tries < 5 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries > 0 => return Ok(()),
                r => return r.with_context(|| format!("removing {:?}", c.dir)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Docker's StopSignal and runc's `kill` spellings: number, name, with or without
    /// SIG, any case.
    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("SIGUSR1").unwrap(), Signal::SIGUSR1);
        assert_eq!(parse_signal("sigusr1").unwrap(), Signal::SIGUSR1);
        assert_eq!(parse_signal("term").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("TERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("NOPE").is_err());
    }

    #[test]
    fn names() {
        assert!(valid_name("app"));
        assert!(valid_name("app-2.v_1"));
        assert!(!valid_name("-app"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(""));
    }

    /// A container whose record is `state` (raw JSON, as an older frun may have left it).
    fn container_with_state(state: &serde_json::Value) -> (tempfile::TempDir, Container) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("containers").join("c".repeat(64));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("state.json"), state.to_string()).unwrap();
        let record = serde_json::json!({
            "id": "c".repeat(64), "name": "c", "image": "i", "image_digest": "sha256:0",
            "layers": [], "command": ["true"], "created": now(), "cgroup": "/x",
            "detached": true, "auto_remove": false, "stop_signal": 15, "stop_timeout": 10,
        });
        let record = serde_json::from_value(record).unwrap();
        (root, Container { dir, record })
    }

    /// A holder that completes the state and ends between the read and the liveness
    /// check: the state shown is the completed one, never `exited` without its code
    /// beside a gone holder.
    #[test]
    fn a_holder_found_gone_is_paired_with_its_last_state() {
        let mut running = State::created();
        running.status = Status::Running;
        running.restart_count = 2;
        let mut exited = running.clone();
        exited.status = Status::Exited;
        exited.exit_code = Some(3);
        // The disk as the holder leaves it: first still running, then its exit.
        let mut disk = vec![exited.clone(), running.clone()];
        let (st, holder) = observed(|| Ok(disk.pop().unwrap()), |_| false).unwrap();
        assert!(!holder);
        assert_eq!((st.status, st.exit_code), (Status::Exited, Some(3)));
        // A living holder: its state as read, read once.
        let mut disk = vec![running.clone()];
        let (st, holder) = observed(|| Ok(disk.pop().unwrap()), |_| true).unwrap();
        assert!(holder);
        assert_eq!(st.status, Status::Running);
    }

    /// After a reboot pids are handed out again and start times count from the boot:
    /// a record of another boot names no living process, even one that matches it (this
    /// test's own pid and start time stand for such a match).
    #[test]
    fn a_record_from_another_boot_names_no_living_process() {
        let me = std::process::id() as i32;
        let mut st = State::created();
        st.held_by(me);
        assert!(this_boot().is_some(), "the kernel gives a boot id");
        assert!(Container::holder_alive(&st));
        st.boot_id = Some("00000000-another-boot".into());
        assert!(!Container::holder_alive(&st));

        let running = |boot: &str| {
            serde_json::json!({
                "status": "running", "pid": me, "pid_start": pid_start(me),
                "holder_pid": me, "holder_start": pid_start(me), "boot_id": boot,
            })
        };
        let (_root, c) = container_with_state(&running(this_boot().unwrap()));
        assert_eq!(c.state().unwrap().status, Status::Running);
        let (_root, c) = container_with_state(&running("00000000-another-boot"));
        let st = c.state().unwrap();
        assert_eq!(st.status, Status::Exited);
        assert!(!Container::holder_alive(&st));
    }

    /// State files of older frun have no boot id (and name the holder `shim`): still
    /// read, their pids and start times alone decide.
    #[test]
    fn state_files_without_a_boot_id_still_read() {
        let me = std::process::id() as i32;
        let old = serde_json::json!({
            "status": "running", "pid": me, "pid_start": pid_start(me),
            "shim_pid": me, "shim_start": pid_start(me),
        });
        let (_root, c) = container_with_state(&old);
        let st = c.state().unwrap();
        assert_eq!(st.boot_id, None);
        assert_eq!(st.status, Status::Running);
        assert!(Container::holder_alive(&st));
        // Written again, it says which boot it is of.
        let mut st = st;
        st.held_by(me);
        let text = serde_json::to_string(&st).unwrap();
        assert!(text.contains(this_boot().unwrap()), "{text}");
    }

    #[test]
    fn own_pid_start_is_known() {
        let me = std::process::id() as i32;
        assert!(pid_start(me).is_some());
        assert!(pid_start(i32::MAX).is_none());
    }
}
