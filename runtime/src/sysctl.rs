//! `linux.sysctl`: kernel parameters set for the container alone. Only keys that the
//! kernel keeps per namespace are accepted, and only when the spec gives the container
//! that namespace (runc's rule): `net.*` with a network namespace, the IPC keys with an
//! IPC namespace, `kernel.domainname` with a UTS namespace. Anything else would change
//! the host for everyone, and is refused before anything is started.
//!
//! The values are written by the container's process once it is in its namespaces and
//! before it pivots, through the host's `/proc/sys`, which shows the writer's namespaces
//! for these keys.

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::path::PathBuf;

/// One validated sysctl: its file below `/proc/sys` and the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sysctl {
    pub key: String,
    /// Relative to `/proc/sys`, e.g. `net/ipv4/ip_forward`.
    pub file: PathBuf,
    pub value: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error("linux.sysctl {key:?}: not a valid key")]
    BadKey { key: String },
    #[error("linux.sysctl {key:?}: {reason}")]
    NotNamespaced { key: String, reason: String },
}

/// The IPC keys the kernel keeps per IPC namespace (besides `fs.mqueue.*`).
const IPC_KEYS: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// Checks the spec's sysctls against its namespaces; `/` separators are taken as dots.
pub fn validate(spec: &Spec) -> Result<Vec<Sysctl>, SysctlError> {
    let Some(linux) = spec.linux() else {
        return Ok(Vec::new());
    };
    let Some(map) = linux.sysctl() else {
        return Ok(Vec::new());
    };
    let has = |t: LinuxNamespaceType| linux.namespaces().iter().flatten().any(|n| n.typ() == t);
    let mut out = Vec::with_capacity(map.len());
    let mut keys: Vec<_> = map.iter().collect();
    keys.sort();
    for (raw, value) in keys {
        let key = raw.replace('/', ".");
        let parts: Vec<&str> = key.split('.').collect();
        if parts.len() < 2
            || parts
                .iter()
                .any(|p| p.is_empty() || *p == ".." || p.contains('\0'))
        {
            return Err(SysctlError::BadKey { key: raw.clone() });
        }
        let refuse = |reason: &str| SysctlError::NotNamespaced {
            key: raw.clone(),
            reason: reason.to_string(),
        };
        if IPC_KEYS.contains(&key.as_str()) || key.starts_with("fs.mqueue.") {
            if !has(LinuxNamespaceType::Ipc) {
                return Err(refuse(
                    "not allowed in the host's IPC namespace (linux.namespaces has no ipc)",
                ));
            }
        } else if key.starts_with("net.") {
            if !has(LinuxNamespaceType::Network) {
                return Err(refuse(
                    "not allowed in the host's network namespace (linux.namespaces has no network)",
                ));
            }
        } else if key == "kernel.domainname" {
            if !has(LinuxNamespaceType::Uts) {
                return Err(refuse(
                    "not allowed in the host's UTS namespace (linux.namespaces has no uts)",
                ));
            }
        } else if key == "kernel.hostname" {
            return Err(refuse("use the spec's hostname instead"));
        } else {
            return Err(refuse(
                "not kept per namespace: setting it would change the host's value",
            ));
        }
        out.push(Sysctl {
            file: parts.iter().collect(),
            key,
            value: value.clone(),
        });
    }
    Ok(out)
}

/// Writes the sysctls (in the container's process, in its namespaces).
pub(crate) fn apply(list: &[Sysctl]) -> Result<(), crate::SetupError> {
    for s in list {
        let path = std::path::Path::new("/proc/sys").join(&s.file);
        std::fs::write(&path, s.value.as_bytes()).map_err(|e| crate::SetupError::Sysctl {
            key: s.key.clone(),
            value: s.value.clone(),
            cause: e.into(),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(namespaces: &[&str], sysctl: &[(&str, &str)]) -> Spec {
        let v = serde_json::json!({
            "ociVersion": "1.0.2",
            "linux": {
                "namespaces": namespaces.iter().map(|t| serde_json::json!({"type": t})).collect::<Vec<_>>(),
                "sysctl": sysctl.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect::<serde_json::Map<_, _>>(),
            }
        });
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn namespaced_keys_pass_with_their_namespace() {
        let s = spec(
            &["network", "ipc", "uts"],
            &[
                ("net.ipv4.ip_forward", "1"),
                ("net/ipv4/ping_group_range", "0 0"),
                ("kernel.shmmax", "1000"),
                ("fs.mqueue.msg_max", "20"),
                ("kernel.domainname", "x"),
            ],
        );
        let v = validate(&s).unwrap();
        assert_eq!(v.len(), 5);
        let fwd = v.iter().find(|s| s.key == "net.ipv4.ip_forward").unwrap();
        assert_eq!(fwd.file, PathBuf::from("net/ipv4/ip_forward"));
        assert!(v.iter().any(|s| s.key == "net.ipv4.ping_group_range"));
    }

    #[test]
    fn host_wide_keys_and_missing_namespaces_are_refused() {
        for (ns, key) in [
            (&["network", "ipc", "uts"][..], "kernel.panic"),
            (&["network", "ipc", "uts"], "vm.swappiness"),
            (&["network", "ipc", "uts"], "kernel.hostname"),
            (&["ipc"], "net.ipv4.ip_forward"),
            (&["network"], "kernel.shmmax"),
            (&["network"], "kernel.domainname"),
        ] {
            let e = validate(&spec(ns, &[(key, "1")])).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
        for bad in ["net..x", "net.ipv4/../../kernel/panic", "net"] {
            assert!(matches!(
                validate(&spec(&["network"], &[(bad, "1")])),
                Err(SysctlError::BadKey { .. })
            ));
        }
    }
}
