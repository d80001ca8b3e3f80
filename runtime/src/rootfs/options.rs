//! Mount options: the OCI spec's option strings turned into mount flags, propagation
//! and the data string; the one `mount(2)` wrapper that names what failed; and the
//! flags a user namespace may not clear on a remount.

use nix::mount::{mount, MsFlags};

use super::R;
use crate::error::SetupError;

/// Mount flags and the data string from OCI mount options.
pub(super) fn parse_options(options: &[String]) -> (MsFlags, MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut propagation = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        match o.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => flags &= !MsFlags::MS_RDONLY,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "suid" => flags &= !MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "dev" => flags &= !MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "exec" => flags &= !MsFlags::MS_NOEXEC,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            "dirsync" => flags |= MsFlags::MS_DIRSYNC,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "nodiratime" => flags |= MsFlags::MS_NODIRATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "private" => propagation |= MsFlags::MS_PRIVATE,
            "rprivate" => propagation |= MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            "shared" => propagation |= MsFlags::MS_SHARED,
            "rshared" => propagation |= MsFlags::MS_SHARED | MsFlags::MS_REC,
            "slave" => propagation |= MsFlags::MS_SLAVE,
            "rslave" => propagation |= MsFlags::MS_SLAVE | MsFlags::MS_REC,
            "unbindable" => propagation |= MsFlags::MS_UNBINDABLE,
            "runbindable" => propagation |= MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
            // Options of other runtimes that mean nothing here.
            "defaults" | "async" | "atime" | "diratime" | "norelatime" | "nostrictatime" => {}
            other => data.push(other.to_string()),
        }
    }
    (flags, propagation, data.join(","))
}

pub(super) fn sys_mount(
    source: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
    what: &str,
) -> R<()> {
    mount(source, target, fstype, flags, data).map_err(|e| SetupError::mount(what, e))
}

/// The flags of the mount at `path` that a user namespace may not clear (the kernel
/// locks them on mounts that came from a more privileged namespace): a remount must
/// keep them or fail with EPERM.
pub(super) fn locked_flags(path: &str) -> MsFlags {
    let Ok(st) = nix::sys::statvfs::statvfs(path) else {
        return MsFlags::empty();
    };
    use nix::sys::statvfs::FsFlags as S;
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (s, m) in [
        (S::ST_RDONLY, MsFlags::MS_RDONLY),
        (S::ST_NOSUID, MsFlags::MS_NOSUID),
        (S::ST_NODEV, MsFlags::MS_NODEV),
        (S::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (S::ST_NOATIME, MsFlags::MS_NOATIME),
        (S::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (S::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(s) {
            out |= m;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let (f, p, d) = parse_options(&[
            "nosuid".into(),
            "ro".into(),
            "mode=755".into(),
            "rprivate".into(),
            "size=1k".into(),
        ]);
        assert!(f.contains(MsFlags::MS_NOSUID | MsFlags::MS_RDONLY));
        assert!(p.contains(MsFlags::MS_PRIVATE | MsFlags::MS_REC));
        assert_eq!(d, "mode=755,size=1k");
        let (f, _, _) = parse_options(&["rbind".into()]);
        assert!(f.contains(MsFlags::MS_BIND | MsFlags::MS_REC));
    }
}
