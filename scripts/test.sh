#!/bin/bash
# The whole test suite, exactly as CI runs it (README's test command). As root:
#   1. installs the Debian packages of scripts/packages/{run,test}.txt (frun's own, registry,
#      image tools, python, peers), and the test tools Debian lacks (scripts/install-test-tools.sh:
#      an S3 server, built once from crates.io into /var/cache/frun-test-tools);
#   2. checks formatting and lints, builds everything (needs crates.io);
#   3. in a network namespace of its own, builds the test images with umoci/skopeo/python,
#      starts the test registries on loopback, and runs every test (unit + integration);
#   4. runs frun's end-to-end checks in a Debian 12 guest under qemu (systemd, kernel 6.1,
#      pure cgroup v2, then the hybrid layout): scripts/vm-test.sh. Its image is built once
#      (debootstrap, needs the Debian mirror) and cached in /var/cache/frun-vm.
# Root-only tests never skip under CI=true; outside CI they say why they skip.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

[ "$(id -u)" = 0 ] || { echo "scripts/test.sh: run as root (tests unpack device nodes, mount overlayfs, make namespaces)" >&2; exit 2; }

scripts/install-packages.sh scripts/packages/run.txt scripts/packages/test.txt
scripts/install-test-tools.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --tests --locked
# The static probe copied into the test/checker* images (its own cargo project; built from its
# directory because cargo reads tests/checker/.cargo/config.toml (+crt-static) only from there).
(cd tests/checker && cargo build --release --locked)

# The test images are built once, for the cargo tests and the guest's registry.
if [ -z "${FRUN_TEST_IMAGES_DIR:-}" ]; then
    FRUN_TEST_IMAGES_DIR=$(mktemp -d /tmp/frun-test-images.XXXXXX)
    trap 'rm -rf "$FRUN_TEST_IMAGES_DIR"' EXIT
fi
export FRUN_TEST_IMAGES_DIR

# Inside the namespace there is no crates.io: everything was fetched and built above.
scripts/with-test-registries.sh cargo test --workspace --offline --locked -- --test-threads=3

scripts/vm-test.sh
