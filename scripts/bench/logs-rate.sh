#!/bin/bash
# How fast a container's output reaches its log: `frun run -d checker seq 1 N` (N lines,
# default 1,000,000), timed from the start until the container's exit is recorded (the
# supervisor records it only after the last line is written), then the lines counted
# back with `frun logs` (fewer than N when rotation dropped the oldest: frun's default
# bound is 10m x 3). For each frun binary given (e.g. main before and after a change).
#
#   FRUN_TEST_IMAGES_DIR=/tmp/x scripts/with-test-registries.sh scripts/bench/logs-rate.sh BIN...
set -euo pipefail
N=${N:-1000000}
log() { echo "logs-rate: $*" >&2; }
[ -n "${FRUN_TEST_REGISTRY:-}" ] || { log "FRUN_TEST_REGISTRY is not set: run through scripts/with-test-registries.sh"; exit 2; }
[ $# -ge 1 ] || { log "usage: $0 FRUN_BINARY..."; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

printf '%-50s %10s %10s %12s %14s\n' BINARY LINES_KEPT SECONDS LINES_PER_S LOG_BYTES
for bin in "$@"; do
    tmp=$(mktemp -d /tmp/frun-bench-rate.XXXXXX)
    parent=/frun-bench-rate-$$
    f=("$bin" --root "$tmp/root" --run-root "$tmp/run" --cgroup-parent "$parent")
    # The image is pulled first, so that only the run is timed.
    "${f[@]}" pull -q "$FRUN_TEST_REGISTRY/test/checker" >/dev/null
    start=$(date +%s.%N)
    "${f[@]}" run -d -q --name rate --network none "$FRUN_TEST_REGISTRY/test/checker" seq 1 "$N" >/dev/null
    until "${f[@]}" ps -a --format json | python3 -c '
import json, sys
c = [c for c in json.load(sys.stdin) if c["name"] == "rate"]
sys.exit(0 if c and c[0]["status"] == "exited" and c[0]["finished_at"] else 1)'; do
        sleep 0.05
    done
    end=$(date +%s.%N)
    lines=$("${f[@]}" logs rate | wc -l)
    bytes=$(du -sb "$tmp/root" --exclude=layers --exclude=blobs 2>/dev/null | cut -f1)
    secs=$(python3 -c "print(f'{$end - $start:.2f}')")
    rate=$(python3 -c "print(int($N / ($end - $start)))")
    printf '%-50s %10s %10s %12s %14s\n' "$bin" "$lines" "$secs" "$rate" "$bytes"
    "${f[@]}" rm -f rate >/dev/null 2>&1 || log "rm failed for $bin"
    umount_under "$tmp"
    for d in /sys/fs/cgroup/*/"$parent" /sys/fs/cgroup/"$parent"; do
        [ -d "$d" ] || continue
        find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    rm -rf "$tmp"
done
