//! Where a container's root filesystem comes from: data the caller hands to
//! [`crate::spawn`], kept apart so that both [`crate::rootfs`] (which mounts it) and
//! [`crate::userns`] (which premakes it for a user namespace) can read it without
//! importing each other.

use std::path::PathBuf;

/// Where the root filesystem comes from.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum RootfsSource {
    /// Image layers (topmost first) under a per-container upper and work directory.
    Overlay {
        lower_dirs: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
    },
    /// A ready directory (an OCI bundle's `rootfs`).
    Dir(PathBuf),
}
