//! The named steps of a start where a test may kill frun (`FRUN_TEST_STOP_AT=<step>`,
//! see `frun_runtime::fault`): the CLI that creates a container (`frun run -d`, `frun
//! up`), the container's holder (`frun __holder`), `frun up`'s own steps and the
//! supervisor's. `tests/it/faults.rs` kills each in turn, at each step `frun __steps`
//! lists, and checks that `rm -f` and `gc` then leave nothing behind; a step added to
//! this enum is covered by that test without changing it.
//!
//! Each step is named `<where>.<what is done>`: the process stops right *after* it.

use std::process::ExitCode;

macro_rules! steps {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal,)*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Step {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Step {
            pub const ALL: &'static [Step] = &[$(Step::$variant,)*];

            pub fn name(self) -> &'static str {
                match self {
                    $(Step::$variant => $name,)*
                }
            }
        }
    };
}

steps! {
    /// The container's directory exists, without its record.
    CreateDirMade = "create.dir-made",
    /// The state (`created`) is written; no record yet.
    CreateStateWritten = "create.state-written",
    /// The record (`frun.json`) is written: the container exists.
    CreateRecorded = "create.recorded",
    /// An address is leased to the container.
    NetLeased = "net.leased",
    /// The container's network namespace file is bind-mounted.
    NetNetnsMade = "net.netns-made",
    /// The bridge, the NAT table and the veth pair exist; the peer is in the namespace.
    NetVethMade = "net.veth-made",
    /// The container's network is complete.
    NetAttached = "net.attached",
    /// The record names the container's address.
    CreateNetworkRecorded = "create.network-recorded",
    /// The spec (`config.json`) is written: the container is created.
    CreateSpecWritten = "create.spec-written",
    /// The creator started the container's holder and has not heard from it yet.
    RunHolderStarted = "run.holder-started",
    /// The holder read the record.
    HolderBegun = "holder.begun",
    /// The holder's pid is in the container's state (still `created`).
    HolderRecorded = "holder.recorded",
    /// The holder's published ports are bound, before the container is spawned.
    HolderPortsBound = "holder.ports-bound",
    /// The container's process runs; its state does not say so yet.
    HolderSpawned = "holder.spawned",
    /// The state says `running`, with the container's and the holder's pids.
    HolderRunningRecorded = "holder.running-recorded",
    /// The holder told its creator that the container runs.
    HolderStartedSaid = "holder.started-said",
    /// The holder copies the logs and forwards the ports.
    HolderServing = "holder.serving",
    /// `up`: every image of the stack is in the store.
    UpImagesReady = "up.images-ready",
    /// `up`: the new app container is created, not started.
    UpAppCreated = "up.app-created",
    /// `up`: the new app container is ready.
    UpAppReady = "up.app-ready",
    /// `up`: the new proxy container is created, not started.
    UpProxyCreated = "up.proxy-created",
    /// `up`: the stack converged; the supervisor may not run yet.
    UpConverged = "up.converged",
    /// `up`: the supervisor runs; the stack's record is not written yet.
    UpSupervised = "up.supervised",
    /// The supervisor holds its lock.
    SuperviseLocked = "supervise.locked",
    /// The supervisor listens on its socket.
    SuperviseListening = "supervise.listening",
    /// At boot: the supervisor removed what the dead container's network left.
    SuperviseReviveDetached = "supervise.revive-detached",
    /// At boot: the supervisor made the container's network anew.
    SuperviseReviveAttached = "supervise.revive-attached",
}

/// Called at `step`: kills this process there if a test asked for it.
pub fn reached(step: Step) {
    frun_runtime::fault::reached(step.name());
}

/// Every step's name, frun's and the runtime's: `frun __steps`.
pub fn names() -> impl Iterator<Item = &'static str> {
    Step::ALL
        .iter()
        .map(|s| s.name())
        .chain(frun_runtime::fault::SpawnStep::ALL.iter().map(|s| s.name()))
}

/// `frun __steps`: one name a line.
pub fn list() -> anyhow::Result<ExitCode> {
    for n in names() {
        println!("{n}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_names_are_unique_and_dotted() {
        let all: Vec<&str> = names().collect();
        let mut sorted = all.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len(), "{all:?}");
        assert!(all.iter().all(|n| n.split_once('.').is_some()), "{all:?}");
    }
}
