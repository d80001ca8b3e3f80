//! `frun cp CONTAINER:PATH HOSTPATH` and `frun cp HOSTPATH CONTAINER:PATH`.
//!
//! Paths inside the container are resolved with `openat2(RESOLVE_IN_ROOT)` from the
//! container's root as its own processes see it (`/proc/PID/root`, volumes included):
//! a symlink in the container, absolute or `../..`, stays inside it, as it would for a
//! process there, and never reaches the host's files. Below the resolved path, entries
//! are opened relative to their directory's fd with `O_NOFOLLOW`, and symlinks are
//! copied as symlinks.
//!
//! A running container's root is `/proc/PID/root`. A stopped one (created, or exited
//! and not removed: Docker allows both) has no mounted root, so its overlay (its image's
//! layers under its own upper directory) is mounted detached (`fsopen`/`fsmount`: in
//! no mount namespace, nothing to unmount, gone when its fd closes) and the copy works
//! on that, as podman's `cp` mounts a stopped container. Its volumes and bind mounts
//! are not mounted then: a path inside one is refused, naming the host directory to
//! copy from or to instead. That overlay shares the container's upper directory, which
//! the kernel lets two overlays use at once (with "undefined behaviour", as its warning
//! says): the copy keeps the container's hold lock exclusively (see `crate::sweep`), so
//! no holder starts it meanwhile (a starting one waits), and it is refused while a
//! holder lives (the container is starting, or waiting to restart) beyond the moments a
//! holder takes to end after its container exited (`stop` returns before that).

use anyhow::{bail, Context};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::cli::{CpArgs, Global};
use crate::containers::{Containers, Status};

/// `NAME:PATH` when NAME is a container; a host path otherwise (`./a:b` is a host path).
fn split(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    arg.split_once(':')
}

pub fn cp(g: &Global, args: CpArgs) -> anyhow::Result<ExitCode> {
    let containers = Containers::open(&g.root)?;
    let (from_c, to_c) = (split(&args.src), split(&args.dest));
    let (key, inside, host, copy_out) = match (from_c, to_c) {
        (Some((k, p)), None) => (k, p, PathBuf::from(&args.dest), true),
        (None, Some((k, p))) => (k, p, PathBuf::from(&args.src), false),
        _ => bail!("give exactly one CONTAINER:PATH and one host path"),
    };
    let c = containers.find(key)?;
    // 1. The container's root, as its processes see it; or, stopped, its overlay, with
    //    no holder starting it until the copy is done (read again under the lock: it
    //    may have started before this took it).
    let mut _no_start = None;
    let mut st = c.state()?;
    if st.status != Status::Running {
        _no_start = Some(hold_for_copy(&c)?);
        st = c.state()?;
    }
    let root = match (st.status, st.pid) {
        (Status::Running, Some(pid)) => rustix::fs::open(
            format!("/proc/{pid}/root"),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("opening the root of container {}", c.record.name))?,
        _ => {
            outside_mounts(&c, inside)?;
            stopped_root(g, &c).with_context(|| {
                format!("mounting the files of stopped container {}", c.record.name)
            })?
        }
    };
    if copy_out {
        copy_out_of(&root, inside, &host)
            .with_context(|| format!("copying {}:{inside} to {}", c.record.name, host.display()))?;
    } else {
        copy_into(&root, &host, inside)
            .with_context(|| format!("copying {} to {}:{inside}", host.display(), c.record.name))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// How long a copy waits for a living holder to let go of a stopped container: one
/// ends within moments of recording its container's exit.
const HOLDER_ENDING: Duration = Duration::from_secs(2);

/// The container's hold lock (see `crate::sweep`), kept for a copy to its stopped
/// files: no holder lives, or the one that does ends meanwhile.
fn hold_for_copy(c: &crate::containers::Container) -> anyhow::Result<File> {
    let deadline = Instant::now() + HOLDER_ENDING;
    loop {
        if let Some(lock) = crate::sweep::abandoned(&c.dir) {
            return Ok(lock);
        }
        if Instant::now() >= deadline {
            bail!(
                "container {} is starting or waiting to restart (its holder lives): \
                 copy once it runs, or stop it first",
                c.record.name
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A stopped container's overlay, mounted detached: its lower directories as the
/// holder mounts them (recorded at creation; from its layers for an older record), its
/// upper and work directories. Writes land in its upper directory, as the container's
/// own would.
fn stopped_root(g: &Global, c: &crate::containers::Container) -> anyhow::Result<OwnedFd> {
    use rustix::mount::{
        fsconfig_create, fsconfig_set_string, fsmount, fsopen, FsMountFlags, FsOpenFlags,
        MountAttrFlags,
    };
    let lower = c.lower_dirs(&super::images::open_store(g)?);
    let lowerdir = lower
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).context("fsopen overlay")?;
    for (k, v) in [
        ("lowerdir", lowerdir),
        ("upperdir", c.dir.join("upper").display().to_string()),
        ("workdir", c.dir.join("work").display().to_string()),
    ] {
        fsconfig_set_string(&fs, k, &v).with_context(|| format!("overlay option {k}={v}"))?;
    }
    fsconfig_create(&fs).context("creating the overlay")?;
    fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
        .context("mounting the overlay")
}

/// Refuses a path inside a bind mount of the container's spec (a volume, a bind, the
/// `/etc/hosts` frun writes): those are not in a stopped container's overlay.
fn outside_mounts(c: &crate::containers::Container, inside: &str) -> anyhow::Result<()> {
    let spec = c.spec()?;
    let path = Path::new("/").join(inside.trim_start_matches('/'));
    for m in spec.mounts().iter().flatten() {
        let bind = m.typ().as_deref() == Some("bind")
            || m.options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind");
        if bind && path.starts_with(m.destination()) {
            let source = m
                .source()
                .as_ref()
                .map_or_else(String::new, |s| s.display().to_string());
            bail!(
                "{inside} is in the mount {} of container {} (from {source}): its mounts are not there while it is stopped; copy from or to {source} directly, or start the container",
                m.destination().display(),
                c.record.name,
            );
        }
    }
    Ok(())
}

/// `path` inside `root`, never leaving it.
fn resolve(root: &OwnedFd, path: &str, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat2(
        root,
        path,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
}

fn copy_out_of(root: &OwnedFd, inside: &str, host: &Path) -> anyhow::Result<()> {
    // The path itself is followed if it is a link (as `docker cp` does for the source).
    let fd = resolve(root, inside, OFlags::PATH).with_context(|| format!("{inside:?}"))?;
    let name = Path::new(inside)
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "root".into());
    let target = if host.is_dir() {
        host.join(name)
    } else {
        host.to_path_buf()
    };
    let st = rustix::fs::fstat(&fd)?;
    let reopen = |flags: OFlags| resolve(root, inside, flags);
    match rustix::fs::FileType::from_raw_mode(st.st_mode) {
        rustix::fs::FileType::Directory => {
            out_dir(reopen(OFlags::RDONLY | OFlags::DIRECTORY)?, &target)
        }
        rustix::fs::FileType::RegularFile => out_file(reopen(OFlags::RDONLY)?, &target),
        // Opening a FIFO waits for a writer; a device may never end.
        other => bail!("{inside:?} is {}: {ONLY_THESE}", kind(other)),
    }
}

/// What a refusal of another kind of file says.
const ONLY_THESE: &str = "cp copies files, directories and symlinks";

fn kind(t: rustix::fs::FileType) -> &'static str {
    use rustix::fs::FileType;
    match t {
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        _ => "not a file, a directory or a symlink",
    }
}

fn out_file(fd: OwnedFd, target: &Path) -> anyhow::Result<()> {
    let mut from = File::from(fd);
    let mode = from.metadata()?.mode() & 0o7777;
    let mut to = File::create(target).with_context(|| format!("creating {target:?}"))?;
    std::io::copy(&mut from, &mut to)?;
    to.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn out_dir(dir: OwnedFd, target: &Path) -> anyhow::Result<()> {
    let mode = rustix::fs::fstat(&dir)?.st_mode & 0o7777;
    match std::fs::create_dir(target) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(e).with_context(|| format!("creating {target:?}"))
        }
        _ => {}
    }
    std::fs::set_permissions(target, std::fs::Permissions::from_mode(mode))?;
    for e in rustix::fs::Dir::read_from(&dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "." || name == ".." {
            continue;
        }
        let to = target.join(&name);
        let st = rustix::fs::statat(&dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)?;
        match rustix::fs::FileType::from_raw_mode(st.st_mode) {
            rustix::fs::FileType::Directory => {
                let sub = rustix::fs::openat(
                    &dir,
                    name.as_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                out_dir(sub, &to)?;
            }
            rustix::fs::FileType::RegularFile => {
                let f = rustix::fs::openat(
                    &dir,
                    name.as_str(),
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                out_file(f, &to)?;
            }
            rustix::fs::FileType::Symlink => {
                let link = rustix::fs::readlinkat(&dir, name.as_str(), Vec::new())?;
                let link =
                    std::ffi::OsStr::new(std::str::from_utf8(link.as_bytes()).unwrap_or_default())
                        .to_os_string();
                crate::cleanup::remove_file(&to);
                std::os::unix::fs::symlink(link, &to)?;
            }
            // Devices, FIFOs and sockets are not copied out.
            _ => {}
        }
    }
    Ok(())
}

fn copy_into(root: &OwnedFd, host: &Path, inside: &str) -> anyhow::Result<()> {
    let meta = std::fs::symlink_metadata(host).with_context(|| format!("{host:?}"))?;
    let t = rustix::fs::FileType::from_raw_mode(meta.mode());
    if !(meta.is_dir() || meta.is_file() || meta.is_symlink()) {
        bail!("{host:?} is {}: {ONLY_THESE}", kind(t));
    }
    let host_name = host
        .file_name()
        .context("the host path has no file name")?
        .to_string_lossy()
        .into_owned();
    // 1. Where it goes: into `inside` if that is a directory, else as `inside`.
    let (parent, name) = match resolve(root, inside, OFlags::RDONLY | OFlags::DIRECTORY) {
        Ok(dir) => (dir, host_name),
        Err(_) => {
            let p = Path::new(inside);
            let parent = p
                .parent()
                .map_or("/".into(), |p| p.to_string_lossy().into_owned());
            let name = p
                .file_name()
                .context("the container path has no file name")?
                .to_string_lossy()
                .into_owned();
            let dir = resolve(root, &parent, OFlags::RDONLY | OFlags::DIRECTORY)
                .with_context(|| format!("{parent:?} in the container"))?;
            (dir, name)
        }
    };
    // 2. The copy, each entry created relative to its directory's fd.
    in_entry(&parent, &name, host, &meta)
}

fn in_entry(
    dir: &OwnedFd,
    name: &str,
    host: &Path,
    meta: &std::fs::Metadata,
) -> anyhow::Result<()> {
    let mode = Mode::from_raw_mode(meta.mode() & 0o7777);
    if meta.is_dir() {
        match rustix::fs::mkdirat(dir, name, mode) {
            Err(rustix::io::Errno::EXIST) => {}
            r => r.with_context(|| format!("creating {name:?}"))?,
        }
        let sub = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("{name:?} is not a directory in the container"))?;
        for e in std::fs::read_dir(host)? {
            let e = e?;
            let m = std::fs::symlink_metadata(e.path())?;
            in_entry(&sub, &e.file_name().to_string_lossy(), &e.path(), &m)?;
        }
    } else if meta.file_type().is_symlink() {
        let target = std::fs::read_link(host)?;
        let _ = rustix::fs::unlinkat(dir, name, AtFlags::empty());
        rustix::fs::symlinkat(&target, dir, name)?;
    } else if meta.is_file() {
        // O_NOFOLLOW: a symlink planted at the name is refused, not written through.
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            mode,
        )
        .with_context(|| format!("creating {name:?} in the container"))?;
        let mut to = File::from(fd);
        std::io::copy(&mut File::open(host)?, &mut to)?;
        rustix::fs::fchmod(to.as_fd(), mode)?;
    }
    // Devices, FIFOs and sockets inside a directory are not copied (as out of one).
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn container_paths_are_told_from_host_paths() {
        assert_eq!(super::split("web:/etc/x"), Some(("web", "/etc/x")));
        assert_eq!(super::split("/tmp/a:b"), None);
        assert_eq!(super::split("./a:b"), None);
        assert_eq!(super::split("plain"), None);
    }
}
