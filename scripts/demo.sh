#!/bin/bash
# The demo (README's first command): the family stack of examples/family/ (nginx in front
# of a small app that counts visits in sqlite, and the app's data volume), started by
# `frun up` from images pulled the way a fresh VPS pulls them from Docker Hub, and left
# running for you to try.
#
# usage: scripts/demo.sh              install packages, build frun and the images, serve them,
#                                     `frun up`, check a request, print what to try next
#        scripts/demo.sh frun ARGS... run frun on the demo's stack (its state, its registry,
#                                     its network namespace, its frun.toml), e.g. `status`
#        scripts/demo.sh down         remove everything the demo made
#
# There is no Docker Hub here: the demo builds the images from this machine's Debian
# packages (examples/family/build.sh: umoci, never frun), serves them from Debian's
# docker-registry behind a token service that behaves like Docker Hub's
# (scripts/registry.sh start-hub), and points frun at it as a registry mirror, so
# `nginx:stable` and `family/app:v1` resolve as on a real host.
#
# Where things run. The registry, frun's bridge, the containers and frun's own processes
# live in a network namespace of the demo's own (`ip netns add frun-demo`): nothing is
# added to the host's network (no bridge, route or firewall rule). The stack's published
# port is the namespace's 127.0.0.1:PORT; scripts/netns-forward.py makes it reachable at the
# host's 127.0.0.1:PORT. `scripts/demo.sh down` deletes the namespace, and with it all that.
#
# Environment (`down` and `frun` need the same values as the run that started the demo):
#   FRUN_DEMO_PORT=8080          the published port on 127.0.0.1
#   FRUN_DEMO_NETNS=frun-demo    name of the demo's network namespace; `-` runs everything
#                                in the current network namespace as it is (a test's own;
#                                it must have nothing but lo, and no forwarder is started;
#                                for a named one: FRUN_DEMO_NETNS=- nsenter --net=/run/netns/NAME
#                                scripts/demo.sh, not `ip netns exec`, which hides /sys/fs/cgroup)
#   FRUN_ROOT=/var/lib/frun-demo, FRUN_RUN_ROOT=/run/frun-demo, FRUN_CGROUP_PARENT=/frun-demo
#                                frun's state root, run root and cgroup parent for the demo
#                                (a root or run root that already holds something is used,
#                                never deleted)
#   FRUN_BIN=PATH                this frun binary instead of building target/release/frun
# The demo's own files (settings, images, registry storage and logs, the stack file with
# the port) are in $FRUN_RUN_ROOT/demo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)
[ "$(id -u)" = 0 ] || { echo "scripts/demo.sh: run as root" >&2; exit 2; }
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

die() { echo "demo.sh: $*" >&2; exit 1; }
log() { echo "demo.sh: $*" >&2; }

# shellcheck source=scripts/bench/lib.sh
. "$REPO/scripts/bench/lib.sh"   # umount_under

PORT=${FRUN_DEMO_PORT:-8080}
NETNS=${FRUN_DEMO_NETNS:-frun-demo}
export FRUN_ROOT=${FRUN_ROOT:-/var/lib/frun-demo}
export FRUN_RUN_ROOT=${FRUN_RUN_ROOT:-/run/frun-demo}
export FRUN_CGROUP_PARENT=${FRUN_CGROUP_PARENT:-/frun-demo}
DEMO=$FRUN_RUN_ROOT/demo
MIRROR=127.0.0.1:5002          # scripts/registry.sh start-hub: (c), tokens from 127.0.0.1:5003
case $PORT in '' | *[!0-9]*) die "FRUN_DEMO_PORT=$PORT is not a port number" ;; esac
case $NETNS in -) ;; '' | *[!A-Za-z0-9_.-]*) die "FRUN_DEMO_NETNS=$NETNS: want a name of [A-Za-z0-9_.-] or -" ;; esac
for d in "$FRUN_ROOT" "$FRUN_RUN_ROOT"; do
    case $d in /?*) ;; *) die "FRUN_ROOT and FRUN_RUN_ROOT must be absolute paths (got $d)" ;; esac
done
case $FRUN_CGROUP_PARENT in /?*) ;; *) die "FRUN_CGROUP_PARENT must be an absolute cgroup path (got $FRUN_CGROUP_PARENT)" ;; esac

# in_ns CMD...: run CMD in the demo's network namespace (nsenter changes only the network
# namespace; `ip netns exec` would also remount /sys and hide the cgroup hierarchies).
in_ns() {
    if [ "$NETNS" = - ]; then "$@"; else nsenter --net="/run/netns/$NETNS" -- "$@"; fi
}

# dfrun ARGS...: frun on the demo's stack, from the directory of its frun.toml.
dfrun() {
    (cd "$DEMO/stack" && in_ns env FRUN_REGISTRY_MIRROR=$MIRROR "$FRUN_BIN" "$@")
}

has_command() { # has_command VERB: this frun has the subcommand VERB
    "$FRUN_BIN" "$1" --help >/dev/null 2>&1
}

pid_ok() { # pid_ok PID STARTTIME: PID is alive, not a zombie, and started at STARTTIME
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    set -- "$2" $stat
    [ "$2" != Z ] && [ "${21}" = "$1" ]
}
starttime() { local s; s=$(cat "/proc/$1/stat"); s=${s##*) }; set -- $s; echo "${20}"; }

# ------------------------------------------------------------------------------------------
# down: everything the demo made, in reverse order; each step tolerates a missing piece.
down() {
    [ -f "$DEMO/settings" ] || { log "no demo state in $DEMO (nothing to remove, or FRUN_RUN_ROOT differs from the run that started it)"; return 0; }
    # shellcheck disable=SC1091
    . "$DEMO/settings"
    local rc=0 p st d
    # 1. The stack and its volumes, then every container frun still knows of.
    if [ -n "${NETNS_MADE:-}${SAME_NS:-}" ] && [ -x "$FRUN_BIN" ] && { [ "$NETNS" = - ] || [ -e "/run/netns/$NETNS" ]; }; then
        if has_command down && [ -f "$DEMO/stack/frun.toml" ]; then
            dfrun down --volumes || { log "frun down failed"; rc=1; }
        fi
        for c in $(in_ns "$FRUN_BIN" ps -a --format json 2>/dev/null | jq -r '.[].id' 2>/dev/null); do
            in_ns "$FRUN_BIN" rm -f "$c" >/dev/null || { log "frun rm -f $c failed"; rc=1; }
        done
    fi
    # 2. The host-side forwarder.
    if [ -f "$DEMO/forward.pid" ]; then
        read -r p st <"$DEMO/forward.pid" || true
        if [ -n "${p:-}" ] && pid_ok "$p" "$st"; then kill -TERM "$p" 2>/dev/null || true; fi
        rm -f "$DEMO/forward.pid"
    fi
    # 3. The registry and its token issuer.
    [ ! -f "$DEMO/registry/pids" ] || "$REPO/scripts/registry.sh" stop "$DEMO/registry" || rc=1
    # 4. frun's processes left in the namespace (its supervisor): every process in the
    #    demo's namespace was started by the demo. Then the namespace, with the bridge and
    #    the NAT table in it.
    if [ "$NETNS" != - ] && [ -e "/run/netns/$NETNS" ]; then
        reap_netns "/run/netns/$NETNS"
        ip netns del "$NETNS" || { log "ip netns del $NETNS failed"; rc=1; }
    elif [ "$NETNS" = - ]; then
        # the current namespace: frun removes its bridge with its last container
        ip link show "${FRUN_BRIDGE:-frun0}" >/dev/null 2>&1 && log "bridge ${FRUN_BRIDGE:-frun0} is still there (frun removes it with the last container)"
    fi
    # 5. The cgroup parent (empty by now; whatever is left inside is the demo's).
    for d in /sys/fs/cgroup/*/"${FRUN_CGROUP_PARENT#/}" /sys/fs/cgroup/"${FRUN_CGROUP_PARENT#/}"; do
        [ -d "$d" ] || continue
        find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | while read -r p; do kill -KILL "$p" 2>/dev/null || true; done
        find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        [ ! -d "$d" ] || { log "cgroup $d is not empty"; rc=1; }
    done
    # 6. Mounts and files: the root and run root if the demo made them, else only its files.
    umount_under "$FRUN_RUN_ROOT"
    umount_under "$FRUN_ROOT"
    if [ "${ROOT_MADE:-}" = 1 ]; then rm -rf "$FRUN_ROOT"; fi
    rm -rf "$DEMO"
    if [ "${RUN_ROOT_MADE:-}" = 1 ]; then rm -rf "$FRUN_RUN_ROOT"; fi
    [ $rc = 0 ] && log "removed: the stack, its volume, the registry, the network namespace ${NETNS/#-/(current)}, the state in $FRUN_ROOT and $FRUN_RUN_ROOT"
    return $rc
}

# reap_netns PATH: TERM (then KILL) every process whose network namespace is PATH's.
reap_netns() {
    local want p pid left=() alive
    want=$(stat -L -c %i "$1") || return 0
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        [ "$(stat -L -c %i "$p/ns/net" 2>/dev/null)" = "$want" ] && left+=("$pid")
    done
    [ ${#left[@]} -gt 0 ] || return 0
    log "stopping processes left in the namespace: ${left[*]}"
    kill -TERM "${left[@]}" 2>/dev/null || true
    for _ in $(seq 50); do
        alive=()
        for pid in "${left[@]}"; do
            [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] || ! kill -0 "$pid" 2>/dev/null || alive+=("$pid")
        done
        [ ${#alive[@]} -gt 0 ] || return 0
        sleep 0.1
    done
    kill -KILL "${alive[@]}" 2>/dev/null || true
}

# ------------------------------------------------------------------------------------------
# legacy: the demo as far as frun went before `frun up` (a frun without `up`): pull images
# from a Docker-Hub-like registry, run a web server with a published port, curl it; all in
# a transient network namespace, nothing left behind.
legacy() {
    (cd tests/checker && cargo build --release --locked)   # the probe in test/checker* images
    export FRUN_BIN
    exec scripts/with-test-registries.sh "$0" --legacy-inside
}
legacy_inside() {
    # global: the EXIT trap runs after this function returned
    state=$(mktemp -d /tmp/frun-demo.XXXXXX)
    lfrun() { "$FRUN_BIN" --root "$state/root" --run-root "$state/run" --cgroup-parent /frun-demo-legacy "$@"; }
    trap 'lfrun rm -f web >/dev/null 2>&1 || true; rmdir /sys/fs/cgroup/*/frun-demo-legacy 2>/dev/null || true; rm -rf "$state"' EXIT
    export FRUN_REGISTRY_MIRROR=$FRUN_TEST_REGISTRY_TOKEN
    set -x
    lfrun pull alpine:3.20.3
    lfrun pull alpine            # shares its layer with alpine:3.20.3: nothing to download
    lfrun pull "$FRUN_TEST_REGISTRY/test/multi" --platform linux/arm64/v8
    lfrun images
    lfrun rmi alpine:3.20.3
    lfrun gc
    mkdir -p "$state/www" && echo "hello from a frun container" >"$state/www/index.html"
    lfrun run -d --name web -v "$state/www:/www:ro" -p 127.0.0.1:8080:80 \
        "$FRUN_TEST_REGISTRY/test/busybox" httpd -f -p 80 -h /www
    lfrun ps
    for _ in $(seq 50); do curl -fsS http://127.0.0.1:8080/ && break; sleep 0.1; done
    lfrun stop -t 2 web
    lfrun ps -a --format json | jq -r '.[] | "\(.name) \(.status) exit=\(.exit_code)"'
    lfrun rm web
}

# ------------------------------------------------------------------------------------------
# up: the demo itself, as numbered steps; on failure, what was made is removed again.
up() {
    # 1. Packages, frun, images.
    scripts/install-packages.sh scripts/packages/run.txt scripts/packages/test.txt
    if [ -z "${FRUN_BIN:-}" ]; then
        cargo build --release --locked
        FRUN_BIN=$REPO/target/release/frun
    fi
    [ -x "$FRUN_BIN" ] || die "FRUN_BIN=$FRUN_BIN is not an executable"
    FRUN_BIN=$(readlink -f "$FRUN_BIN")
    if ! has_command up; then
        log "this frun has no \`up\` yet: running the earlier demo (pull, run, publish)"
        legacy
    fi
    [ ! -e "$DEMO/settings" ] || die "a demo is already set up (state in $DEMO): scripts/demo.sh down first"
    if [ "$NETNS" != - ] && [ -e "/run/netns/$NETNS" ]; then
        die "network namespace $NETNS exists already: scripts/demo.sh down (or ip netns del $NETNS if it is a leftover)"
    fi
    if [ "$NETNS" != - ] && ss -Hltn "sport = :$PORT" | grep -q .; then
        die "127.0.0.1:$PORT is taken here ($(ss -Hltnp "sport = :$PORT" | awk '{print $NF}' | head -1)): set FRUN_DEMO_PORT"
    fi
    local root_made=0 run_root_made=0 t0
    t0=$(date +%s)
    [ -n "$(ls -A "$FRUN_ROOT" 2>/dev/null)" ] || root_made=1
    [ -n "$(ls -A "$FRUN_RUN_ROOT" 2>/dev/null)" ] || run_root_made=1
    mkdir -p "$DEMO/stack"
    cat >"$DEMO/settings" <<EOF
# scripts/demo.sh: what this demo made (read by scripts/demo.sh down)
NETNS=$NETNS
PORT=$PORT
FRUN_BIN=$FRUN_BIN
FRUN_ROOT=$FRUN_ROOT
FRUN_RUN_ROOT=$FRUN_RUN_ROOT
FRUN_CGROUP_PARENT=$FRUN_CGROUP_PARENT
ROOT_MADE=$root_made
RUN_ROOT_MADE=$run_root_made
EOF
    trap 'rc=$?; if [ $rc != 0 ]; then log "failed; removing what the demo made (logs: $DEMO/registry/*.log)"; down || true; fi' EXIT

    examples/family/build.sh "$DEMO/images"

    # 2. The network namespace (only lo) and the registry in it, in a session of its own so
    #    that it outlives this script and the terminal.
    if [ "$NETNS" != - ]; then
        ip netns add "$NETNS"
        echo "NETNS_MADE=1" >>"$DEMO/settings"
        ip -n "$NETNS" link set lo up
    else
        echo "SAME_NS=1" >>"$DEMO/settings"
    fi
    in_ns setsid -w scripts/registry.sh start-hub "$DEMO/registry" "$DEMO/images"

    # 3. The stack: examples/family/ with the demo's port.
    cp examples/family/frun.toml examples/family/proxy.conf.tmpl "$DEMO/stack/"
    sed -i "s/\"127\.0\.0\.1:8080:80\"/\"127.0.0.1:$PORT:80\"/" "$DEMO/stack/frun.toml"
    grep -q "\"127.0.0.1:$PORT:80\"" "$DEMO/stack/frun.toml" || die "could not set the port in $DEMO/stack/frun.toml"
    log "frun up (the images come from the registry at $MIRROR, standing in for Docker Hub)"
    dfrun up

    # 4. The port on the host's loopback, forwarded into the namespace.
    if [ "$NETNS" != - ]; then
        rm -f "$DEMO/forward.ready"
        setsid /usr/bin/python3 scripts/netns-forward.py --listen "127.0.0.1:$PORT" \
            --netns "/run/netns/$NETNS" --to "127.0.0.1:$PORT" --ready-file "$DEMO/forward.ready" \
            </dev/null >>"$DEMO/forward.log" 2>&1 &
        local fp=$!
        echo "$fp $(starttime $fp)" >"$DEMO/forward.pid"
        for _ in $(seq 100); do [ -f "$DEMO/forward.ready" ] && break; kill -0 "$fp" 2>/dev/null || break; sleep 0.05; done
        [ -f "$DEMO/forward.ready" ] || die "the port forwarder did not start: $(cat "$DEMO/forward.log")"
    fi

    # 5. Check: the proxy answers with the app's page, and /visit counts.
    local url=http://127.0.0.1:$PORT page='' a b
    for _ in $(seq 120); do
        page=$(curl -fsS --max-time 2 "$url/" 2>/dev/null || true)
        case $page in *"family app v1"*) break ;; esac
        sleep 0.5
    done
    case $page in *"family app v1"*) ;; *) dfrun status || true; die "$url/ does not answer with the app's page" ;; esac
    a=$(curl -fsS --max-time 10 "$url/visit") || die "$url/visit failed"
    b=$(curl -fsS --max-time 10 "$url/visit") || die "$url/visit failed"
    [ "$b" -gt "$a" ] 2>/dev/null || die "$url/visit did not count up: $a then $b"
    trap - EXIT

    # 6. What to try next.
    local swap="scripts/demo.sh frun swap family/app:v2     # v2 (also in the registry) with no failed request"
    has_command swap || swap="scripts/demo.sh frun swap family/app:v2     # (frun swap is not written yet: issue 12)"
    cat <<EOF

The family stack is up ($(( $(date +%s) - t0 )) s): $url/
  $url/visit counted $a, then $b (rows in /var/db/production.sqlite3, on the volume db)

Try:
  curl $url/visit
  scripts/demo.sh frun status                 # roles, containers, health, ports
  $swap
  scripts/demo.sh frun logs app
  scripts/demo.sh frun down                   # stop the stack (keeps the volume); \`scripts/demo.sh frun up\` again
  scripts/demo.sh down                        # remove everything the demo made

(\`scripts/demo.sh frun ARGS\` is $FRUN_BIN ARGS with FRUN_ROOT=$FRUN_ROOT,
FRUN_RUN_ROOT=$FRUN_RUN_ROOT, FRUN_CGROUP_PARENT=$FRUN_CGROUP_PARENT, the registry mirror
$MIRROR, in $DEMO/stack (its frun.toml)$( [ "$NETNS" = - ] || echo ", inside the network namespace $NETNS"). The demo's files: $DEMO.)
EOF
}

case ${1:-} in
    "") up ;;
    down) down ;;
    frun)
        shift
        [ -f "$DEMO/settings" ] || die "no demo running (no $DEMO/settings): scripts/demo.sh first"
        # shellcheck disable=SC1091
        . "$DEMO/settings"
        export FRUN_ROOT FRUN_RUN_ROOT FRUN_CGROUP_PARENT
        dfrun "$@"
        ;;
    --legacy-inside) FRUN_BIN=${FRUN_BIN:-$REPO/target/release/frun}; legacy_inside ;;
    *) die "usage: $0 [down | frun ARGS...]" ;;
esac
