#!/bin/bash
# Runs CMD inside a fresh network namespace that has only a loopback interface (up), so that
# everything in it (test registries, frun, tests) can only reach 127.0.0.0/8 of its own.
# Nothing is changed in the host namespace. When CMD ends, processes it left behind in the
# namespace (e.g. registries it forgot to stop) are killed by pid, so the namespace goes away.
#
# usage: scripts/in-netns.sh CMD [ARGS...]      (as root)
#   e.g. scripts/in-netns.sh cargo test
#        scripts/in-netns.sh bash -c 'scripts/registry.sh start /tmp/st /tmp/img && ...'
# Exit status: CMD's.
set -euo pipefail

MARK=__frun_in_netns_inner__

if [ "${1:-}" != "$MARK" ]; then
    [ $# -ge 1 ] || { echo "usage: $0 CMD [ARGS...]" >&2; exit 2; }
    [ "$(id -u)" = 0 ] || { echo "in-netns.sh: needs root (unshare --net)" >&2; exit 2; }
    exec unshare --net --fork -- /bin/bash "${BASH_SOURCE[0]}" "$MARK" "$@"
fi
shift

ip link set lo up

# Kill whatever CMD left in this namespace: every process whose network namespace is ours
# was necessarily started from here.
reap_leftovers() {
    local me ns p pid left=()
    me=$(readlink /proc/$$/ns/net)
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        # ourselves, and our parent: `unshare --fork` itself lives in the namespace too
        [ "$pid" = $$ ] || [ "$pid" = "$PPID" ] && continue
        ns=$(readlink "$p/ns/net" 2>/dev/null) || continue
        [ "$ns" = "$me" ] || continue
        # skip short-lived helpers of this very loop (readlink etc. are our children)
        [ "$(awk '{print $4}' "$p/stat" 2>/dev/null)" = $$ ] && continue
        left+=("$pid")
    done
    [ ${#left[@]} -gt 0 ] || return 0
    echo "in-netns.sh: killing processes left in the namespace: ${left[*]}" >&2
    kill -TERM "${left[@]}" 2>/dev/null || true
    for _ in $(seq 30); do
        local alive=()
        for pid in "${left[@]}"; do
            # gone, or a zombie waiting for its (new) parent to reap it
            [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] || ! kill -0 "$pid" 2>/dev/null || alive+=("$pid")
        done
        [ ${#alive[@]} -gt 0 ] || return 0
        sleep 0.1
    done
    kill -KILL "${alive[@]}" 2>/dev/null || true
}

rc=0
"$@" || rc=$?
reap_leftovers
exit $rc
