//! The OCI hooks of a container's life, as the runtime-spec orders them, and what a
//! failure of each means:
//!
//! | hook            | run by, when                                   | namespaces  | on failure                      |
//! |-----------------|------------------------------------------------|-------------|---------------------------------|
//! | prestart        | `create`, mounts made, before the pivot        | runtime's   | error, container destroyed      |
//! | createRuntime   | `create`, right after prestart                 | runtime's   | error, container destroyed      |
//! | createContainer | `create`, right after createRuntime            | container's | error, container destroyed      |
//! | startContainer  | `start`, before the program is executed        | container's | error, container destroyed      |
//! | poststart       | `start`, once the program runs                 | runtime's   | warning, nothing else           |
//! | poststop        | `delete`, once the container is gone           | runtime's   | warning, nothing else           |
//!
//! Each gets the container's state on stdin, with the status it has at that point
//! (`creating`, `created`, `running`, `stopped`). A spec without hooks costs nothing:
//! no extra round trip with the container's process, nothing spawned.

use anyhow::Context;
use frun_runtime::hooks::{self, HookNamespaces};
use oci_spec::runtime::{Hook, Hooks, Spec};
use std::path::Path;

use super::{warn, Global};

/// The kinds of hook, in the spec's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Prestart,
        Kind::CreateRuntime,
        Kind::CreateContainer,
        Kind::StartContainer,
        Kind::Poststart,
        Kind::Poststop,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Prestart => "prestart",
            Kind::CreateRuntime => "createRuntime",
            Kind::CreateContainer => "createContainer",
            Kind::StartContainer => "startContainer",
            Kind::Poststart => "poststart",
            Kind::Poststop => "poststop",
        }
    }

    /// The container's status as the hook's state shows it.
    fn status(self) -> &'static str {
        match self {
            Kind::Prestart | Kind::CreateRuntime | Kind::CreateContainer => "creating",
            Kind::StartContainer => "created",
            Kind::Poststart => "running",
            Kind::Poststop => "stopped",
        }
    }

    /// Whether a failure only warns (the container runs, or is gone, already).
    fn only_warns(self) -> bool {
        matches!(self, Kind::Poststart | Kind::Poststop)
    }

    fn in_container(self) -> bool {
        matches!(self, Kind::CreateContainer | Kind::StartContainer)
    }

    fn of(self, h: &Hooks) -> &[Hook] {
        let list = match self {
            Kind::Prestart => h.prestart(),
            Kind::CreateRuntime => h.create_runtime(),
            Kind::CreateContainer => h.create_container(),
            Kind::StartContainer => h.start_container(),
            Kind::Poststart => h.poststart(),
            Kind::Poststop => h.poststop(),
        };
        list.as_deref().unwrap_or(&[])
    }
}

/// The spec's hooks of `kind` (none if it has no `hooks`).
pub fn of(spec: &Spec, kind: Kind) -> &[Hook] {
    spec.hooks().as_ref().map(|h| kind.of(h)).unwrap_or(&[])
}

pub fn any(spec: &Spec, kinds: &[Kind]) -> bool {
    kinds.iter().any(|k| !of(spec, *k).is_empty())
}

/// What a hook is told about the container.
pub struct State<'a> {
    pub id: &'a str,
    pub pid: i32,
    pub bundle: &'a Path,
    pub spec: &'a Spec,
}

impl State<'_> {
    fn json(&self, status: &str) -> Vec<u8> {
        let mut v = serde_json::json!({
            "ociVersion": super::state::OCI_VERSION,
            "id": self.id,
            "status": status,
            "bundle": self.bundle,
            "annotations": self.spec.annotations().clone().unwrap_or_default(),
        });
        if status != "stopped" {
            v["pid"] = self.pid.into();
        }
        serde_json::to_vec(&v).expect("state JSON")
    }
}

/// Runs the hooks of `kinds`, in order. A failing hook of a kind that must succeed is
/// an error (the caller destroys the container); of poststart and poststop, a warning.
pub fn run(g: &Global, state: &State<'_>, kinds: &[Kind]) -> anyhow::Result<()> {
    for &kind in kinds {
        let list = of(state.spec, kind);
        if list.is_empty() {
            continue;
        }
        let json = state.json(kind.status());
        let ns = if kind.in_container() {
            HookNamespaces::Container(state.pid)
        } else {
            HookNamespaces::Runtime
        };
        for (i, h) in list.iter().enumerate() {
            let r = hooks::run(h, &json, ns);
            match r {
                Ok(()) => {}
                Err(e) if kind.only_warns() => {
                    warn(g, &format!("{} hook {i}: {e}", kind.name()));
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("{} hook {i}", kind.name()));
                }
            }
        }
    }
    Ok(())
}
