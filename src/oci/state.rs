//! A container's state directory, `ROOT/ID/`: `state.json` (what `create` made),
//! `config.json` (the spec as created, for `exec`), and `exec.fifo`, the start gate,
//! present from `create` until `start`.
//!
//! The status is computed, never stored: `stopped` once the first process is gone (or a
//! zombie, or its pid reused: the start time and the boot are recorded), else `created`
//! while the gate exists, else `running`.

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::containers::{pid_start, same_boot};
use frun_images::fsutil::write_replace;

/// The runtime-spec version this runtime implements (reported by `state`).
pub const OCI_VERSION: &str = "1.0.2";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Saved {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub pid: i32,
    pub pid_start: Option<u64>,
    /// The boot `pid` was recorded in: under another boot it names nothing (a root
    /// outside /run outlives a reboot). Absent in older state files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    pub cgroup: PathBuf,
    pub created: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The spec has hooks: `start` and `delete` read it for them (and only then).
    #[serde(default)]
    pub hooks: bool,
}

/// An OCI container's status as the runtime spec names it (`frun-oci state`); not
/// frun's own container status ([`crate::containers::Status`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OciStatus {
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for OciStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl OciStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OciStatus::Created => "created",
            OciStatus::Running => "running",
            OciStatus::Paused => "paused",
            OciStatus::Stopped => "stopped",
        }
    }
}

/// Container ids as runc accepts them: letters, digits, `_+-.`, not `.` or `..`.
pub fn validate_id(id: &str) -> anyhow::Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c));
    if !ok {
        bail!("invalid container id {id:?}: letters, digits and _+-. only");
    }
    Ok(())
}

/// A container of `frun-oci` (the OCI runtime interface), kept in `ROOT/ID/`; not
/// one of frun's own containers ([`crate::containers::Container`]).
pub struct OciContainer {
    pub dir: PathBuf,
    pub saved: Saved,
}

impl OciContainer {
    pub fn dir_of(root: &Path, id: &str) -> PathBuf {
        root.join(id)
    }

    /// The container `id`, or runc's "container does not exist" error (callers match
    /// on those words).
    pub fn load(root: &Path, id: &str) -> anyhow::Result<OciContainer> {
        validate_id(id)?;
        let dir = Self::dir_of(root, id);
        let data = match std::fs::read(dir.join("state.json")) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("container {id} does not exist")
            }
            Err(e) => return Err(e).with_context(|| format!("reading the state of {id}")),
        };
        let saved: Saved =
            serde_json::from_slice(&data).with_context(|| format!("parsing the state of {id}"))?;
        Ok(OciContainer { dir, saved })
    }

    pub fn save(dir: &Path, saved: &Saved) -> anyhow::Result<()> {
        // Without fsync, as all of frun-oci's state: runtime state (runc keeps its own in
        // /run, a tmpfs) about processes a crash of the host takes down with it.
        write_replace(&dir.join("state.json"), &serde_json::to_vec(saved)?)?;
        Ok(())
    }

    pub fn fifo(&self) -> PathBuf {
        self.dir.join("exec.fifo")
    }

    /// Present while the container is paused.
    pub fn paused_mark(&self) -> PathBuf {
        self.dir.join("paused")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    pub fn spec(&self) -> anyhow::Result<oci_spec::runtime::Spec> {
        let data = std::fs::read(self.config_path())
            .with_context(|| format!("reading {:?}", self.config_path()))?;
        Ok(serde_json::from_slice(&data)?)
    }

    /// Whether the first process lives (a zombie or a reused pid does not).
    pub fn alive(&self) -> bool {
        let now = pid_start(self.saved.pid);
        same_boot(self.saved.boot_id.as_deref()) && now.is_some() && now == self.saved.pid_start
    }

    pub fn status(&self) -> OciStatus {
        if !self.alive() {
            OciStatus::Stopped
        } else if self.fifo().exists() {
            OciStatus::Created
        } else if self.paused_mark().exists() {
            OciStatus::Paused
        } else {
            OciStatus::Running
        }
    }

    /// The state as `runc state` prints it.
    pub fn state_json(&self) -> serde_json::Value {
        let status = self.status();
        serde_json::json!({
            "ociVersion": OCI_VERSION,
            "id": self.saved.id,
            "pid": if status == OciStatus::Stopped { 0 } else { self.saved.pid },
            "status": status.as_str(),
            "bundle": self.saved.bundle,
            "rootfs": self.saved.rootfs,
            "created": self.saved.created,
            "annotations": self.saved.annotations,
            "owner": "",
        })
    }

    pub fn cgroup(&self) -> anyhow::Result<frun_runtime::cgroup::Cgroup> {
        Ok(frun_runtime::cgroup::Cgroup::open(&self.saved.cgroup)?)
    }
}

/// The container's cgroup from the spec's `linux.cgroupsPath`: an absolute path as is; a
/// systemd-style `slice:prefix:name` (frun does not talk to systemd) as
/// `/frun-oci/prefix-name`; empty or relative as `/frun-oci/ID` (never below the
/// caller's own cgroup).
pub fn cgroup_path(spec_path: Option<&str>, id: &str) -> anyhow::Result<PathBuf> {
    let p = spec_path.unwrap_or("").trim();
    let path = if p.is_empty() {
        PathBuf::from("/frun-oci").join(id)
    } else if p.starts_with('/') {
        PathBuf::from(p)
    } else if let Some((_slice, rest)) = p.split_once(':') {
        let (prefix, name) = rest.split_once(':').unwrap_or(("", rest));
        let leaf = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}-{name}")
        };
        if leaf.is_empty() || leaf.contains('/') {
            bail!("cgroups path {p:?}: expected slice:prefix:name");
        }
        PathBuf::from("/frun-oci").join(leaf)
    } else {
        PathBuf::from("/frun-oci").join(id)
    };
    frun_runtime::cgroup::validate_path(&path)?;
    Ok(path)
}

/// Writes `pid` to `path` (temp + rename, so a reader never sees a partial number).
pub fn write_pid_file(path: &Path, pid: i32) -> anyhow::Result<()> {
    let path = std::path::absolute(path)?;
    write_replace(&path, pid.to_string().as_bytes())
        .with_context(|| format!("writing the pid file {path:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_paths() {
        assert_eq!(
            cgroup_path(None, "c1").unwrap(),
            PathBuf::from("/frun-oci/c1")
        );
        assert_eq!(
            cgroup_path(Some("/x/y"), "c1").unwrap(),
            PathBuf::from("/x/y")
        );
        assert_eq!(
            cgroup_path(Some("rel/ative"), "c1").unwrap(),
            PathBuf::from("/frun-oci/c1")
        );
        assert_eq!(
            cgroup_path(Some("machine.slice:libpod:abc"), "c1").unwrap(),
            PathBuf::from("/frun-oci/libpod-abc")
        );
        assert!(cgroup_path(Some("/x/../y"), "c1").is_err());
    }

    /// A state file of another boot names no living process, even where its pid and
    /// start time match one (this test's own stand for such a match); one without a
    /// boot id (older frun) is judged by them alone.
    #[test]
    fn a_saved_pid_of_another_boot_is_not_alive() {
        let me = std::process::id() as i32;
        let saved = |boot: Option<&str>| {
            let mut v = serde_json::json!({
                "id": "c1", "bundle": "/b", "rootfs": "/b/rootfs", "pid": me,
                "pid_start": pid_start(me), "cgroup": "/x", "created": "now",
            });
            if let Some(b) = boot {
                v["boot_id"] = b.into();
            }
            serde_json::from_value::<Saved>(v).unwrap()
        };
        let alive = |s: Saved| {
            OciContainer {
                dir: PathBuf::from("/nonexistent"),
                saved: s,
            }
            .alive()
        };
        let this = crate::containers::this_boot().expect("the kernel gives a boot id");
        assert!(alive(saved(Some(this))));
        assert!(alive(saved(None)));
        assert!(!alive(saved(Some("00000000-another-boot"))));
    }

    #[test]
    fn ids() {
        assert!(validate_id("abc-1.2_x+y").is_ok());
        for bad in ["", ".", "..", "a/b", "a b"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }
}
