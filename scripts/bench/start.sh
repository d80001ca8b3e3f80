#!/bin/bash
# Benchmark (not a test): container start-up latency.
#   runtime level: create + start + wait + delete of /bin/true in a busybox bundle, via
#                  `RUNTIME run` (which is exactly that) for runc, crun and frun-oci;
#   tool level:    `frun run --rm IMAGE /bin/true` against `podman run --rm IMAGE /bin/true`,
#                  both with --network none (the same isolation); frun-run-bridge adds
#                  frun's default bridge networking (netns, veth, lease, NAT table).
# Prints the median, min and max per contender in milliseconds and ratios to frun's.
#
# usage: scripts/bench/start.sh            (as root)
# env:   RUNS=50                           iterations per contender
#        CONTENDERS="runc crun frun-oci frun-run podman-run"
#
# podman runs with --runtime runc: its default crun fails here (nofile above the hard limit,
# and crun 1.8.1 refuses hybrid cgroup hosts).
# Runs inside scripts/with-test-registries.sh (its own network namespace, the test images
# and a loopback registry), and in a private mount namespace so that crun 1.8.1, which
# refuses hybrid cgroup hosts, can run with the near-empty cgroup2 mount hidden (FACTS.md).
# Each iteration is timed on its own (date +%s%N around the command); the same fork of
# `date` is in every contender's numbers.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$here/../.." && pwd)
RUNS=${RUNS:-50}
CONTENDERS=${CONTENDERS:-"runc crun frun-oci frun-run podman-run frun-run-bridge"}

if [ "${1:-}" != --inside ]; then
    [ "$(id -u)" = 0 ] || { echo "start.sh: run as root" >&2; exit 2; }
    (cd "$REPO" && cargo build --release --locked -q)
    (cd "$REPO/tests/checker" && cargo build --release --locked -q)
    exec "$REPO/scripts/with-test-registries.sh" unshare -m --propagation private "$0" --inside
fi

T=$(mktemp -d /var/tmp/frun-bench-start.XXXXXX)
cleanup() {
    findmnt -rn -o TARGET | awk -v p="$T" 'index($0, p) == 1' | sort -r | while read -r m; do umount -l "$m" || true; done
    for d in /sys/fs/cgroup/*/frun-bench-start; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
    rm -rf "$T"
}
trap cleanup EXIT
FRUN_BIN=$REPO/target/release/frun
ln -s "$FRUN_BIN" "$T/frun-oci"
IMAGE=$FRUN_TEST_REGISTRY/test/busybox:latest

# A bundle made by umoci (an independent tool) from the test image's layout.
umoci unpack --image "$FRUN_TEST_IMAGES/oci/test/busybox:latest" "$T/bundle" >/dev/null
python3 - "$T/bundle/config.json" <<'EOF'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["args"] = ["/bin/true"]
c["process"]["terminal"] = False
c["linux"]["cgroupsPath"] = "/frun-bench-start/c"
c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "user"]
c["linux"].pop("uidMappings", None); c["linux"].pop("gidMappings", None)
json.dump(c, open(p, "w"))
EOF

# crun refuses hybrid hosts while the cgroup2 mount is visible; this namespace is private.
umount /sys/fs/cgroup/unified 2>/dev/null || true

F="$FRUN_BIN --root $T/frun --run-root $T/frun-run --cgroup-parent /frun-bench-start"
# podman's defaults ask for rlimits above this host's hard limits (FACTS.md): none here.
printf '[containers]\ndefault_ulimits = []\n' > "$T/containers.conf"
export CONTAINERS_CONF=$T/containers.conf
P="podman --root $T/podman --runroot $T/podman-run --storage-driver overlay --cgroup-manager cgroupfs --events-backend none"
mkdir -p "$T/podman-cache" && mount -t tmpfs tmpfs /var/lib/containers/cache 2>/dev/null || true

declare -A CMD=(
    [runc]="runc --root $T/runc run --bundle $T/bundle"
    [crun]="crun --root $T/crun run --bundle $T/bundle"
    [frun-oci]="$T/frun-oci --root $T/frun-oci-state run --bundle $T/bundle"
    [frun-run]="$F run --rm --quiet --network none $IMAGE /bin/true"
    [frun-run-bridge]="$F run --rm --quiet $IMAGE /bin/true"
    [podman-run]="$P run --rm --runtime runc --network none --tls-verify=false $IMAGE /bin/true"
)
$F pull -q "$IMAGE"
$P pull -q --tls-verify=false "$IMAGE" >/dev/null

declare -A MED MIN MAX
for c in $CONTENDERS; do
    times=()
    ok=1
    for i in $(seq "$RUNS"); do
        cmd=${CMD[$c]}
        case $c in runc|crun|frun-oci) cmd="$cmd bench$i" ;; esac
        s=$(date +%s%N)
        if ! $cmd >/dev/null 2>"$T/err"; then
            echo "$c: FAILED: $(tail -3 "$T/err")" >&2
            ok=0
            break
        fi
        e=$(date +%s%N)
        times+=($(( (e - s) / 1000 )))
    done
    [ $ok = 1 ] || continue
    read -r MED[$c] MIN[$c] MAX[$c] < <(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f %.1f %.1f\n", a[int((NR+1)/2)]/1000, a[1]/1000, a[NR]/1000}')
done

echo
echo "container start: /bin/true, busybox, $RUNS runs each; $(nproc) cores, kernel $(uname -r)"
printf '%-12s %9s %9s %9s  %s\n' contender median_ms min_ms max_ms ratio
for c in $CONTENDERS; do
    [ -n "${MED[$c]:-}" ] || { printf '%-12s %9s\n' "$c" FAILED; continue; }
    case $c in
        frun-run|podman-run|frun-run-bridge) base=${MED[frun-run]:-} ;;
        *) base=${MED[frun-oci]:-} ;;
    esac
    ratio=""
    [ -n "$base" ] && ratio=$(awk -v a="${MED[$c]}" -v b="$base" 'BEGIN {printf "%.2fx of frun", a / b}')
    printf '%-12s %9s %9s %9s  %s\n' "$c" "${MED[$c]}" "${MIN[$c]}" "${MAX[$c]}" "$ratio"
done
