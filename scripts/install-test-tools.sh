#!/bin/bash
# Builds the test tools that are not Debian packages, from crates.io, once, into
# $FRUN_TEST_TOOLS (default /var/cache/frun-test-tools; kept across runs and checkouts):
#
#   s3s-fs   an S3 server over a directory that checks SigV4 signatures (the s3s
#            project); tests/it/backup.rs sends frun's backups to it. Debian has no S3
#            server (rclone 1.60 has no `serve s3`); moto on PyPI is a mocking library.
#
# usage: scripts/install-test-tools.sh     (cargo and a Rust toolchain; a few minutes)
set -euo pipefail
root=${FRUN_TEST_TOOLS:-/var/cache/frun-test-tools}
S3S_FS_VERSION=0.14.1   # the newest that builds with rustc 1.95 (0.15+ need 1.96)
if [ -x "$root/bin/s3s-fs" ] && [ "$(cat "$root/s3s-fs.version" 2>/dev/null)" = "$S3S_FS_VERSION" ]; then
    exit 0
fi
mkdir -p "$root"
echo "install-test-tools.sh: building s3s-fs $S3S_FS_VERSION into $root (once)"
CARGO_TARGET_DIR="$root/target" cargo install --quiet --locked --features binary \
    --root "$root" "s3s-fs@$S3S_FS_VERSION"
rm -rf "$root/target"
echo "$S3S_FS_VERSION" >"$root/s3s-fs.version"
