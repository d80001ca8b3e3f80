#!/bin/bash
# The supervisor's memory while its container writes without newlines (issue 15 item 1):
# `frun run -d --memory 64m checker cat /dev/zero` for SECS seconds, then the supervising
# process's peak RSS (VmHWM) and the size of the container's log directory, for each frun
# binary given (e.g. one built from main before the fix, and this branch's). Each old
# supervisor runs under an address-space cap (prlimit --as, CAP_MB) so that a binary
# without the fix cannot take the machine: it shows as a peak near the cap, or as dead.
#
# Run inside the test registries' namespace:
#   FRUN_TEST_IMAGES_DIR=/tmp/x scripts/with-test-registries.sh scripts/bench/logs-zero.sh BIN...
set -euo pipefail
SECS=${SECS:-3}
CAP_MB=${CAP_MB:-512}
log() { echo "logs-zero: $*" >&2; }
[ -n "${FRUN_TEST_REGISTRY:-}" ] || { log "FRUN_TEST_REGISTRY is not set: run through scripts/with-test-registries.sh"; exit 2; }
[ $# -ge 1 ] || { log "usage: $0 FRUN_BINARY..."; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

printf '%-50s %12s %14s %10s\n' BINARY "PEAK_RSS_KB" "LOG_DIR_BYTES" "ALIVE"
for bin in "$@"; do
    tmp=$(mktemp -d /tmp/frun-bench-logs.XXXXXX)
    parent=/frun-bench-logs-$$
    f=("$bin" --root "$tmp/root" --run-root "$tmp/run" --cgroup-parent "$parent")
    # 1. The container, its supervisor under the cap.
    prlimit --as=$((CAP_MB << 20)) "${f[@]}" run -d -q --name zero --memory 64m --cpus 0.5 \
        --network none "$FRUN_TEST_REGISTRY/test/checker" cat /dev/zero >/dev/null
    state=$(ls "$tmp"/root/containers/*/state.json)
    holder=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["holder_pid"])' "$state")
    # 2. SECS seconds of output; the supervisor's peak (VmHWM, or the largest VmRSS seen
    #    every 0.1 s if it died of the cap before the end).
    peak=0
    for _ in $(seq $((SECS * 10))); do
        r=$(awk '/^VmHWM:/ {print $2}' "/proc/$holder/status" 2>/dev/null || true)
        [ -n "$r" ] && [ "$r" -gt "$peak" ] && peak=$r
        sleep 0.1
    done
    alive=yes; kill -0 "$holder" 2>/dev/null || alive=no
    bytes=$(du -sb "$tmp/root/logs" 2>/dev/null | cut -f1 || true)
    [ -n "$bytes" ] || bytes=$(du -sb "$tmp"/root/containers/*/container.log 2>/dev/null | cut -f1 || echo 0)
    printf '%-50s %12s %14s %10s\n' "$bin" "$peak" "$bytes" "$alive"
    # 3. Clean up: the container, its supervisor (started here), mounts, cgroups.
    timeout 30 "${f[@]}" rm -f zero >/dev/null 2>&1 || log "rm -f failed for $bin"
    kill -9 "$holder" 2>/dev/null || true
    umount_under "$tmp"
    for d in /sys/fs/cgroup/*/"$parent" /sys/fs/cgroup/"$parent"; do
        [ -d "$d" ] || continue
        find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    rm -rf "$tmp"
done
