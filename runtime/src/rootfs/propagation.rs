//! `linux.rootfsPropagation`: what mounts under the container's root share with their
//! peers. pivot_root refuses a new root that is shared (EINVAL), so until the pivot the
//! root is a slave (if asked) or private; `shared` and `unbindable` are set on the new
//! root after it, once the masks are in place (masking binds `/dev/null`, which an
//! unbindable `/dev` refuses), as crun does.

use nix::mount::MsFlags;
use oci_spec::runtime::Spec;

use super::options::sys_mount;
use super::R;

fn requested(spec: &Spec) -> Option<String> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone())
}

/// The root's propagation until the pivot.
pub(super) fn before_pivot(spec: &Spec) -> MsFlags {
    match requested(spec).as_deref() {
        Some("slave") | Some("rslave") => MsFlags::MS_SLAVE,
        _ => MsFlags::MS_PRIVATE,
    }
}

/// After the pivot and the masks: `shared` or `unbindable` on the new root and the
/// mounts below it.
pub(crate) fn after_pivot(spec: &Spec) -> R<()> {
    let flag = match requested(spec).as_deref() {
        Some("shared") | Some("rshared") => MsFlags::MS_SHARED,
        Some("unbindable") | Some("runbindable") => MsFlags::MS_UNBINDABLE,
        _ => return Ok(()),
    };
    sys_mount(
        None,
        "/",
        None,
        flag | MsFlags::MS_REC,
        None,
        "setting linux.rootfsPropagation",
    )
}
