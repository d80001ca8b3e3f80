#!/bin/bash
# Convenience wrapper: in a fresh network namespace, build the test images (or reuse
# $FRUN_TEST_IMAGES_DIR if it already holds a build), start the test registries, export the
# FRUN_TEST_* variables of env.sh, run CMD, stop the registries. Exit status: CMD's.
#
# usage: scripts/with-test-registries.sh CMD [ARGS...]
#   e.g. scripts/with-test-registries.sh cargo test --offline -- --test-threads=2
# FRUN_TEST_IMAGES_DIR=DIR  build into / reuse DIR instead of a temp dir (kept afterwards)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -ge 1 ] || { echo "usage: $0 CMD [ARGS...]" >&2; exit 2; }
if [ -n "$(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -vx lo || true)" ]; then
    exec "$here/in-netns.sh" "${BASH_SOURCE[0]}" "$@"
fi

tmp=$(mktemp -d /tmp/frun-reg.XXXXXX)
img=${FRUN_TEST_IMAGES_DIR:-$tmp/images}
trap '[ ! -f "$tmp/state/pids" ] || "$here/registry.sh" stop "$tmp/state"; rm -rf "$tmp"' EXIT
[ -f "$img/images.txt" ] || "$here/test-images/build.sh" "$img"
"$here/registry.sh" start "$tmp/state" "$img"
# shellcheck disable=SC1091
. "$tmp/state/env.sh"
rc=0
"$@" || rc=$?
exit $rc
