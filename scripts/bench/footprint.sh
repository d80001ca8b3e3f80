#!/bin/bash
# frun's memory footprint with a stack up: the PSS (proportional set size, from
# /proc/PID/smaps_rollup) of every frun process (the supervisor and the containers'
# holders, all in the cgroup PARENT/supervisor), printed beside the PSS of each
# container's processes (nginx's, the app's), measured in the same run.
#
# usage: scripts/bench/footprint.sh [-f frun.toml]
#   With -f, `frun up -f FILE` runs first (and the stack stays up).
#   FRUN_ROOT, FRUN_RUN_ROOT, FRUN_CGROUP_PARENT: as for frun; FRUN_BIN: the frun binary
#   (default: frun on PATH, else target/release/frun).
# Target (issue 11): all of frun's processes together at most 8 MB PSS with the demo stack.
set -euo pipefail

log() { echo "footprint.sh: $*" >&2; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
frun=${FRUN_BIN:-$(command -v frun || echo "$here/../../target/release/frun")}
parent=${FRUN_CGROUP_PARENT:-/frun}

if [ "${1:-}" = -f ]; then
    "$frun" up -f "$2" >&2
    sleep 2 # let the first health checks run: measure a supervisor that has worked
fi

# The hierarchy that lists a cgroup's processes: v1's memory controller on a hybrid
# host, the unified one otherwise.
if [ -d /sys/fs/cgroup/memory ]; then base=/sys/fs/cgroup/memory; else base=/sys/fs/cgroup; fi

pss_kb() { awk '/^Pss:/ { print $2 }' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
# procs_of DIR: the pids in a cgroup and below it.
procs_of() { find "$1" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -un; }

total=0
printf '%-10s %8s  %-6s  %s\n' WHAT PSS_KB PID COMMAND
for pid in $(procs_of "$base$parent/supervisor"); do
    kb=$(pss_kb "$pid")
    total=$((total + kb))
    printf '%-10s %8s  %-6s  %s\n' frun "$kb" "$pid" "$(tr '\0' ' ' <"/proc/$pid/cmdline" | cut -c1-70)"
done
printf '%-10s %8s\n' "frun total" "$total"

"$frun" ps --format json | jq -r '.[] | "\(.id) \(.name)"' | while read -r id name; do
    ctotal=0
    for pid in $(procs_of "$base$parent/$id"); do
        ctotal=$((ctotal + $(pss_kb "$pid")))
    done
    printf '%-10s %8s  %-6s  %s\n' container "$ctotal" - "$name"
done
echo "frun_pss_kb=$total"
