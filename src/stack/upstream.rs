//! How a stack's proxy reaches its app: a unix socket per app generation, served by the
//! generation's holder (`forward::start_unix`), in `ROOT/stacks/<stack>/upstream/`,
//! and a symlink `app.sock` there naming the current one. The directory is bind-mounted
//! read-only into the proxy at [`IN_PROXY`]; the default template's `{{upstream}}` is
//! `unix:/run/frun-upstream/app.sock:`.
//!
//! Why: nginx connects to that path anew for each request to the app, so renaming the
//! symlink (atomic) moves new requests to the new app while requests in flight finish
//! on the old one, and nginx is never reloaded for a swap. A graceful reload closes
//! every idle keep-alive connection of its clients at once, and a request a client sends
//! on one at that moment fails (measured: 24 failed of 7951 requests over ten swaps with
//! four keep-alive clients, all "closed before any answer"). The symlink is also the
//! whole of the switch's state: a kill at any moment leaves it naming one app or the
//! other, both complete.

use anyhow::Context;
use std::path::{Path, PathBuf};

/// Where the proxy sees the directory.
pub const IN_PROXY: &str = "/run/frun-upstream";

/// The app's label carrying the port its generation's socket relays to.
pub const LABEL_UPSTREAM_PORT: &str = "frun.upstream-port";

pub fn dir(root: &Path, stack: &str) -> PathBuf {
    super::stack_dir(root, stack).join("upstream")
}

/// The socket of app generation `gen` (short: a unix socket path has 108 bytes).
pub fn socket(root: &Path, stack: &str, gen: u64) -> PathBuf {
    dir(root, stack).join(format!("app.{gen}.sock"))
}

/// What `{{upstream}}` becomes: nginx's unix-socket upstream (the colon ends the path,
/// so that `http://{{upstream}}/path` works too).
pub fn nginx_upstream() -> String {
    format!("unix:{IN_PROXY}/app.sock:")
}

/// The generation the symlink names now.
pub fn current(root: &Path, stack: &str) -> Option<u64> {
    let target = std::fs::read_link(dir(root, stack).join("app.sock")).ok()?;
    let name = target.to_str()?;
    name.strip_prefix("app.")?
        .strip_suffix(".sock")?
        .parse()
        .ok()
}

/// Points `app.sock` at generation `gen`: a new symlink renamed over the old one (new
/// connections of the proxy go there from now on), made durable.
pub fn point(root: &Path, stack: &str, gen: u64) -> anyhow::Result<()> {
    if current(root, stack) == Some(gen) {
        return Ok(());
    }
    let d = dir(root, stack);
    std::fs::create_dir_all(&d).with_context(|| format!("creating {d:?}"))?;
    let tmp = d.join("app.sock.tmp");
    crate::cleanup::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("app.{gen}.sock"), &tmp)
        .with_context(|| format!("creating {tmp:?}"))?;
    std::fs::rename(&tmp, d.join("app.sock"))
        .with_context(|| format!("renaming {tmp:?} to app.sock"))?;
    frun_images::fsutil::sync_dir(&d).with_context(|| format!("syncing {d:?}"))?;
    tracing::info!(stack, generation = gen, "upstream pointed");
    Ok(())
}

/// Waits until generation `gen`'s socket accepts (its holder binds it once the
/// container runs, which can be after the app is healthy): pointing the proxy at it
/// before would fail requests.
pub fn wait_serving(root: &Path, stack: &str, gen: u64) -> anyhow::Result<()> {
    let path = socket(root, stack, gen);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match std::os::unix::net::UnixStream::connect(&path) {
            Ok(_) => return Ok(()),
            Err(e) if std::time::Instant::now() >= deadline => {
                return Err(e).with_context(|| {
                    format!(
                        "the app's socket {} did not accept within 10 s (its holder serves it)",
                        path.display()
                    )
                })
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
}

/// The holder's part: a stack app container with an upstream port label serves its
/// generation's socket, relaying to its port (from inside its network namespace).
pub fn serve(
    root: &Path,
    c: &crate::containers::Container,
    netns: Option<std::sync::Arc<crate::forward::Netns>>,
    say: crate::forward::Say,
) -> anyhow::Result<Option<crate::forward::UnixForwarder>> {
    let labels = &c.record.labels;
    let (Some(stack), Some(port), Some(gen), Some(net)) = (
        labels.get(crate::model::LABEL_STACK),
        labels
            .get(LABEL_UPSTREAM_PORT)
            .and_then(|p| p.parse::<u16>().ok()),
        labels
            .get(crate::model::LABEL_GENERATION)
            .and_then(|g| g.parse::<u64>().ok()),
        &c.record.network,
    ) else {
        return Ok(None);
    };
    let d = dir(root, stack);
    std::fs::create_dir_all(&d).with_context(|| format!("creating {d:?}"))?;
    let addr = std::net::SocketAddr::new(std::net::IpAddr::V4(net.ip), port);
    crate::forward::start_unix(&socket(root, stack, gen), addr, netns, say).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_symlink_names_one_generation_at_a_time() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(current(root.path(), "s"), None);
        point(root.path(), "s", 3).unwrap();
        assert_eq!(current(root.path(), "s"), Some(3));
        point(root.path(), "s", 4).unwrap();
        assert_eq!(current(root.path(), "s"), Some(4));
        let link = std::fs::read_link(dir(root.path(), "s").join("app.sock")).unwrap();
        assert_eq!(
            link,
            Path::new("app.4.sock"),
            "relative: it resolves in the proxy too"
        );
        assert_eq!(nginx_upstream(), "unix:/run/frun-upstream/app.sock:");
    }
}
