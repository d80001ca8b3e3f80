//! A unix socket in front of a container's TCP port: what a stack's proxy connects to
//! for its app (see `crate::stack::upstream`). Each app generation's holder serves one
//! socket of its own; the proxy reaches the current one through a symlink that a swap
//! renames, so the proxy is never reloaded for a swap and never closes a client's
//! keep-alive connection (which nginx's graceful reload does, failing the requests
//! that clients send on them at that moment).
//!
//! Each accepted connection is relayed to the container's port, connected from inside
//! its network namespace as the published ports are (`tcp::connect`), with tokio's
//! bidirectional copy (half-close passed on). The listener runs on a current-thread
//! runtime of its own thread, stopped with the container.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpStream, UnixListener};

use super::complaints::{connect_failure_text, Complaints, Say};
use super::netns::Netns;
use super::runtime_thread::RuntimeThread;
use super::target::{Dest, Target};

/// A served socket; closed (and its file removed) by [`UnixForwarder::stop`] or on drop.
pub struct UnixForwarder {
    path: PathBuf,
    runtime: RuntimeThread,
    complaints: Arc<Complaints>,
}

impl UnixForwarder {
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        if self.runtime.stop() {
            crate::cleanup::remove_file(&self.path);
        }
        self.complaints.flush();
    }
}

impl Drop for UnixForwarder {
    fn drop(&mut self) {
        self.shut();
    }
}

/// Serves `path` (a stale socket file there is replaced; mode 0666 so that the proxy's
/// unprivileged workers may connect), relaying to `addr` reached from inside `netns`.
pub fn start_unix(
    path: &Path,
    addr: SocketAddr,
    netns: Option<Arc<Netns>>,
    say: Say,
) -> anyhow::Result<UnixForwarder> {
    use anyhow::Context;
    crate::cleanup::remove_file(path);
    let std_listener = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("binding the unix socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .with_context(|| format!("chmod {}", path.display()))?;
    std_listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let target = match netns {
        Some(ns) => Target::in_netns(addr, ns),
        None => Target::new(addr),
    };
    let complaints = Arc::new(Complaints::new(say, Duration::from_secs(10)));
    let what = path.display().to_string();
    let c = complaints.clone();
    let listener = {
        let _g = rt.enter();
        UnixListener::from_std(std_listener)?
    };
    let runtime = RuntimeThread::start("frun-upstream", rt, move |rt| {
        rt.spawn(serve_unix(listener, target, c, what));
    })?;
    Ok(UnixForwarder {
        path: path.to_path_buf(),
        runtime,
        complaints,
    })
}

async fn serve_unix(listener: UnixListener, target: Target, c: Arc<Complaints>, what: String) {
    loop {
        let client = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (to, c, what) = (target.dest(), c.clone(), what.clone());
        tokio::spawn(async move {
            if let Err(e) = relay(client, &to).await {
                if e.kind() == io::ErrorKind::ConnectionRefused
                    || e.kind() == io::ErrorKind::TimedOut
                {
                    c.complain(connect_failure_text(&what, to.addr, &e, "tcp"));
                }
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
    }
}

async fn relay(mut client: tokio::net::UnixStream, to: &Dest) -> io::Result<()> {
    let up = super::tcp::connect(to, false)?;
    let mut up = TcpStream::from_std(up)?;
    up.writable().await?;
    if let Some(e) = up.take_error()? {
        return Err(e);
    }
    tokio::io::copy_bidirectional(&mut client, &mut up).await?;
    Ok(())
}
