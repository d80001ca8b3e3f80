//! The runtime room of frun: it turns an OCI runtime-spec `config.json` and a list of
//! mount descriptions into a running, isolated process. It knows nothing of registries
//! or stacks. It is empty until the runtime issue lands; the image store already hands
//! out the overlayfs mount descriptions this crate will perform.
