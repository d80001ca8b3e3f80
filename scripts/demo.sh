#!/bin/bash
# The demo (README's first command), as far as frun goes today: pull images the way a
# fresh VPS pulls from Docker Hub, and list them.
#
# There is no Docker Hub here, so the demo plays it locally, inside a network namespace
# of its own: it builds images with umoci/skopeo (never with frun), serves them from
# Debian's docker-registry behind a Docker-Hub-style token service, and points frun at it
# as a registry mirror. `frun pull alpine` then takes the same path as on a real host:
# library/ names, bearer token, index, digests, unpack.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ "$(id -u)" = 0 ] || { echo "scripts/demo.sh: run as root" >&2; exit 2; }

if [ "${1:-}" != --inside ]; then
    packages=(docker-registry umoci skopeo busybox-static apache2-utils jq openssl curl zstd
              python3 python3-cryptography python3-jwt iproute2)
    missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    cargo build --release --locked
    exec scripts/with-test-registries.sh "$0" --inside
fi

state=$(mktemp -d /tmp/frun-demo.XXXXXX)
trap 'rm -rf "$state"' EXIT
frun() { target/release/frun --root "$state/root" --run-root "$state/run" "$@"; }
export FRUN_REGISTRY_MIRROR=$FRUN_TEST_REGISTRY_TOKEN

set -x
frun pull alpine:3.20.3
frun pull alpine            # shares its layer with alpine:3.20.3: nothing to download
frun pull "$FRUN_TEST_REGISTRY/test/multi" --platform linux/arm64/v8
frun images
frun images --format json | jq -r '.[] | "\(.reference) \(.platform) \(.size)"'
frun rmi alpine:3.20.3
frun gc
