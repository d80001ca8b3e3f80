//! The image room of frun: image references, the registry client, the content store,
//! layer unpacking and garbage collection. It never starts a process and never mounts:
//! it hands the runtime descriptions of overlay mounts ([`store::OverlayMount`]).

pub mod client;
pub mod digest;
pub mod fsutil;
pub mod platform;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod store;
pub mod text;
pub mod unpack;

pub use digest::Digest;
pub use platform::Platform;
pub use pull::{pull, LayerOutcome, NoProgress, Progress, PullError, PullOptions};
pub use reference::ImageRef;
pub use registry::{Auth, RegistryConfig};
pub use store::{ImageRecord, OverlayMount, Store};
pub use text::{error_chain, escape_controls};
