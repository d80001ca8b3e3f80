//! Where runc is more forgiving than the letter of a spec, and engines rely on it.
//!
//! `runc spec` itself writes a config whose `process.capabilities.ambient` lists
//! capabilities (AUDIT_WRITE, KILL, NET_BIND_SERVICE) that are not in `inheritable`.
//! The kernel raises an ambient capability only if it is both permitted and inheritable
//! (PR_CAP_AMBIENT_RAISE fails with EPERM otherwise); runc warns and goes on without it,
//! and so does frun-oci: such a capability is taken out of the ambient set, with a
//! warning, before the process is started.

use oci_spec::runtime::Process;

use super::{warn, Global};

/// Takes out of `process`'s ambient set what the kernel cannot raise, warning for each.
pub fn drop_unraisable_ambient(g: &Global, process: &mut Process) {
    let Some(mut caps) = process.capabilities().clone() else {
        return;
    };
    let Some(ambient) = caps.ambient().clone() else {
        return;
    };
    let inheritable = caps.inheritable().clone().unwrap_or_default();
    let permitted = caps.permitted().clone().unwrap_or_default();
    let (keep, drop): (std::collections::HashSet<_>, Vec<_>) = {
        let mut keep = std::collections::HashSet::new();
        let mut drop = Vec::new();
        for c in ambient {
            if inheritable.contains(&c) && permitted.contains(&c) {
                keep.insert(c);
            } else {
                drop.push(c);
            }
        }
        (keep, drop)
    };
    if drop.is_empty() {
        return;
    }
    let mut names: Vec<String> = drop
        .iter()
        .map(|c| {
            serde_json::to_value(c)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| format!("{c:?}"))
        })
        .collect();
    names.sort();
    for name in names {
        warn(
            g,
            &format!(
                "process.capabilities.ambient: {name} is not in both the permitted and the \
                 inheritable set, so the kernel cannot raise it: left out (as runc does)"
            ),
        );
    }
    caps.set_ambient(Some(keep));
    process.set_capabilities(Some(caps));
}
