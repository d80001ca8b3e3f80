//! Moving the forwarder's thread between network namespaces, so that the upstream
//! socket of a connection is made inside the container's namespace (see the module
//! documentation of `forward`). A move is made only when the target's namespace
//! differs from where the thread is: once per retarget, not per connection.

use std::cell::RefCell;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

/// A network namespace, held by an open handle (it lives while the handle does).
pub struct Netns {
    file: std::fs::File,
    id: (u64, u64),
}

impl Netns {
    pub fn open(path: &Path) -> io::Result<Netns> {
        let file = std::fs::File::open(path)?;
        let m = file.metadata()?;
        Ok(Netns {
            id: (m.dev(), m.ino()),
            file,
        })
    }
}

thread_local! {
    /// The namespace this thread moved to, and the one it came from.
    static MOVED: RefCell<Option<(Arc<Netns>, Netns)>> = const { RefCell::new(None) };
}

/// Moves this thread into `ns` (`None`: back where it started) so that the sockets it
/// makes next live there; nothing to do when it is there already, as it is for every
/// connection but the first after a retarget.
pub(super) fn enter(ns: Option<&Arc<Netns>>) -> io::Result<()> {
    MOVED.with_borrow_mut(|moved| {
        let setns = |f: &std::fs::File| {
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
        };
        match (ns, moved.take()) {
            (None, None) => Ok(()),
            (Some(want), Some((cur, home))) if cur.id == want.id => {
                *moved = Some((cur, home));
                Ok(())
            }
            (Some(want), was) => {
                let home = match was {
                    Some((cur, home)) => {
                        // Put back until the move is done: a failed setns leaves the
                        // thread where it was.
                        let r = setns(&want.file);
                        *moved = Some(if r.is_ok() {
                            (want.clone(), home)
                        } else {
                            (cur, home)
                        });
                        return r;
                    }
                    None => Netns::open(Path::new("/proc/thread-self/ns/net"))?,
                };
                setns(&want.file)?;
                *moved = Some((want.clone(), home));
                Ok(())
            }
            (None, Some((cur, home))) => {
                let r = setns(&home.file);
                if r.is_err() {
                    *moved = Some((cur, home));
                }
                r
            }
        }
    })
}
