//! A container's cgroup, through libcgroups (v1, v2 and hybrid hosts; on a hybrid host
//! libcgroups uses the v1 controllers, which is where the limits live there).
//!
//! Paths are always absolute under frun's own parent (`/frun/<id>`, like Docker's
//! `/docker/<id>`): a relative path would land inside the calling process's cgroup.

use libcgroups::common::{
    create_cgroup_manager, AnyCgroupManager, CgroupConfig, CgroupManager, CgroupSetup,
    ControllerOpt,
};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;
use std::path::{Path, PathBuf};

use crate::RuntimeError;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

pub struct Cgroup {
    path: PathBuf,
    manager: AnyCgroupManager,
}

fn err(path: &Path, reason: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Cgroup {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Checks that `path` is absolute and stays put (no `..`).
pub fn validate_path(path: &Path) -> Result<(), RuntimeError> {
    let ok = path.is_absolute()
        && path
            .components()
            .all(|c| !matches!(c, std::path::Component::ParentDir))
        && path.components().count() > 1;
    if ok {
        Ok(())
    } else {
        Err(err(
            path,
            "must be an absolute path below the cgroup root, without '..' (e.g. /frun/ID)",
        ))
    }
}

impl Cgroup {
    /// A handle on the cgroup at `path`; nothing is created until [`Cgroup::add`].
    pub fn open(path: &Path) -> Result<Cgroup, RuntimeError> {
        validate_path(path)?;
        let manager = create_cgroup_manager(CgroupConfig {
            cgroup_path: path.to_path_buf(),
            systemd_cgroup: false,
            container_name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        })
        .map_err(|e| err(path, e))?;
        Ok(Cgroup {
            path: path.to_path_buf(),
            manager,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the cgroup (under every controller) with `pid` in it, then applies the
    /// limits.
    pub fn add(&self, pid: i32, resources: Option<&LinuxResources>) -> Result<(), RuntimeError> {
        self.manager
            .add_task(Pid::from_raw(pid))
            .map_err(|e| err(&self.path, format!("adding pid {pid}: {e}")))?;
        if let Some(resources) = resources {
            self.manager
                .apply(&ControllerOpt {
                    resources,
                    disable_oom_killer: false,
                    oom_score_adj: None,
                    freezer_state: None,
                })
                .map_err(|e| err(&self.path, format!("applying limits: {e}")))?;
        }
        Ok(())
    }

    /// Pids inside the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        self.manager
            .get_all_pids()
            .map(|v| v.into_iter().map(|p| p.as_raw()).collect())
            .unwrap_or_default()
    }

    /// Removes the cgroup, killing whatever is still inside.
    pub fn remove(&self) -> Result<(), RuntimeError> {
        self.manager
            .remove()
            .map_err(|e| err(&self.path, format!("removing: {e}")))
    }

    /// How many times the kernel's OOM killer killed a process in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let rel = self.path.strip_prefix("/").unwrap_or(&self.path);
        let (file, key) = match libcgroups::common::get_cgroup_setup() {
            Ok(CgroupSetup::Unified) => (
                Path::new(CGROUP_ROOT).join(rel).join("memory.events"),
                "oom_kill",
            ),
            _ => (
                Path::new(CGROUP_ROOT)
                    .join("memory")
                    .join(rel)
                    .join("memory.oom_control"),
                "oom_kill",
            ),
        };
        std::fs::read_to_string(file)
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    (k == key).then(|| v.trim().parse().ok()).flatten()
                })
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_paths_below_the_root() {
        assert!(validate_path(Path::new("/frun/abc")).is_ok());
        assert!(validate_path(Path::new("frun/abc")).is_err());
        assert!(validate_path(Path::new("/")).is_err());
        assert!(validate_path(Path::new("/frun/../x")).is_err());
    }
}
