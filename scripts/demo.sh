#!/bin/bash
# The demo (README's first command), as far as frun goes today: pull images the way a
# fresh VPS pulls from Docker Hub, then run a web server in a container on frun's bridge
# with a published port, and talk to it through that port.
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
    scripts/install-packages.sh scripts/packages/run.txt scripts/packages/test.txt
    cargo build --release --locked
    # The static probe that build.sh copies into the test/checker* images.
    (cd tests/checker && cargo build --release --locked)
    exec scripts/with-test-registries.sh "$0" --inside
fi

state=$(mktemp -d /tmp/frun-demo.XXXXXX)
frun() { target/release/frun --root "$state/root" --run-root "$state/run" --cgroup-parent /frun-demo "$@"; }
trap 'frun rm -f web >/dev/null 2>&1 || true; rmdir /sys/fs/cgroup/*/frun-demo 2>/dev/null || true; rm -rf "$state"' EXIT
export FRUN_REGISTRY_MIRROR=$FRUN_TEST_REGISTRY_TOKEN

set -x
frun pull alpine:3.20.3
frun pull alpine            # shares its layer with alpine:3.20.3: nothing to download
frun pull "$FRUN_TEST_REGISTRY/test/multi" --platform linux/arm64/v8
frun images
frun images --format json | jq -r '.[] | "\(.reference) \(.platform) \(.size)"'
frun rmi alpine:3.20.3
frun gc

# A container on frun's bridge, its port published on the host by frun's forwarder.
mkdir -p "$state/www" && echo "hello from a frun container" > "$state/www/index.html"
frun run -d --name web -v "$state/www:/www:ro" -p 127.0.0.1:8080:80 \
    "$FRUN_TEST_REGISTRY/test/busybox" httpd -f -p 80 -h /www
frun ps
for i in $(seq 50); do curl -fsS http://127.0.0.1:8080/ && break; sleep 0.1; done
frun exec web cat /etc/hosts
frun stop -t 2 web   # busybox httpd as pid 1 ignores SIGTERM: SIGKILL after 2 s
frun ps -a --format json | jq -r '.[] | "\(.name) \(.status) exit=\(.exit_code)"'
frun rm web
