#!/bin/bash
# Benchmark (not a test): how long `frun pull` takes to fetch and unpack a ~60 MB compressed /
# ~160 MB unpacked 5-layer Debian image from a local registry, next to containerd (ctr pull,
# which unpacks into the overlayfs snapshotter), podman (overlay storage) and skopeo + umoci.
#
# usage: scripts/bench/pull.sh          (as root)
# env:   ROUNDS=5                       rounds per contender, each into a fresh empty store
#        BENCH_CACHE=/var/tmp/frun-bench  where the image is built once (build-image.sh)
#        BENCH_TMP=/var/tmp             where the per-run temp dir goes (same disk as a real
#                                       store: not tmpfs)
#        CONTENDERS="frun containerd podman skopeo+umoci"   which ones to run
#        BENCH_FRUN=PATH                a frun binary to use instead of building target/release/frun
#
# Everything networked runs in a fresh network + mount namespace with only loopback up:
# docker-registry on 127.0.0.1:5000 (plain HTTP, storage in the temp dir) gets the image via
# skopeo, then the contenders pull from it. Rounds interleave the contenders (the order rotates
# each round); `sync` runs before each timed run so writeback of the previous one does not
# bleed in (page cache is not dropped: the registry's blobs are warm for everyone).
# Wall-clock time of the pull command only: store setup and teardown (and starting the private
# containerd) are not timed. A contender that fails is reported FAILED with its error.
# Processes started here are stopped by pid; mounts under the temp dir are unmounted and the
# temp dir removed, even on failure. The built image stays in BENCH_CACHE.
set -euo pipefail

MARK=__frun_bench_pull_inner__
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$here/../.." && pwd)
REF=127.0.0.1:5000/bench/debian:latest
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY
unset FRUN_ROOT FRUN_RUN_ROOT FRUN_INSECURE_REGISTRIES FRUN_REGISTRY_MIRROR FRUN_MAX_LAYER_SIZE RUST_LOG
unset CONTAINERS_CONF CONTAINERS_STORAGE_CONF CONTAINERS_REGISTRIES_CONF CONTAINERD_ADDRESS CONTAINERD_NAMESPACE

die() { echo "pull.sh: $*" >&2; exit 1; }
log() { echo "pull.sh: $*" >&2; }

# shellcheck source=scripts/bench/lib.sh
. "$here/lib.sh"

# stop_pid PID: TERM, wait up to 10 s, then KILL (only a pid this script started).
stop_pid() {
    local pid=$1 i
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# ============================== outer: host namespace =========================================
if [ "${1:-}" != "$MARK" ]; then
    T0=$EPOCHREALTIME
    [ "$(id -u)" = 0 ] || die "must run as root"
    ROUNDS=${ROUNDS:-5}
    [[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
    CACHE=${BENCH_CACHE:-/var/tmp/frun-bench}
    BENCH_TMP=${BENCH_TMP:-/var/tmp}

    # its tools (debootstrap, umoci, skopeo, docker-registry, containerd, podman, ...)
    "$REPO/scripts/install-packages.sh" "$REPO/scripts/packages/run.txt" "$REPO/scripts/packages/test.txt"

    "$here/build-image.sh" "$CACHE"

    TMP=$(mktemp -d "$BENCH_TMP/frun-bench-run.XXXXXX")
    # runtime state (podman's runroot must be < 50 characters; sockets); a tmpfs is mounted
    # on it inside the namespace, like /run on a usual host
    RUN=$(mktemp -d /run/frun-bench.XXXXXX)
    US_PID=
    # stop_ns: on an early exit (signal, error) while the namespace still runs, end every
    # process in it: all of them were started by this script (nothing else can be inside).
    # The private mount namespace, and so every mount made in it, goes away with them.
    stop_ns() {
        local ns me i
        me=$(readlink /proc/$$/ns/net)
        for i in $(seq 20); do
            ns=$(cat "$TMP/netns" 2>/dev/null || true)
            [ -n "$ns" ] || ! kill -0 "$US_PID" 2>/dev/null || { sleep 0.1; continue; }
            break
        done
        if [ -n "$ns" ] && [ "$ns" != "$me" ]; then
            signal_ns "$ns" TERM
            for i in $(seq 100); do kill -0 "$US_PID" 2>/dev/null || break; sleep 0.1; done
            signal_ns "$ns" KILL
        fi
        wait "$US_PID" 2>/dev/null || true
    }
    signal_ns() { # signal_ns NETNS SIG: signal every process whose network namespace is NETNS
        local p pid pids=()
        for p in /proc/[0-9]*; do
            pid=${p#/proc/}
            [ "$(readlink "$p/ns/net" 2>/dev/null)" = "$1" ] && pids+=("$pid")
        done
        [ ${#pids[@]} = 0 ] || kill -"$2" "${pids[@]}" 2>/dev/null || true
    }
    cleanup() {
        local rc=$?
        trap - EXIT INT TERM
        [ -z "$US_PID" ] || stop_ns
        umount_under "$TMP"
        umount_under "$RUN"
        rm -rf "$TMP"
        rmdir "$RUN" 2>/dev/null || rm -rf "$RUN"
        exit $rc
    }
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    # frun: build if missing or older than its sources; a failed build makes frun FAILED.
    mkdir -p "$TMP/bin"
    bin=$REPO/target/release/frun
    frun_err=
    if [ -n "${BENCH_FRUN:-}" ]; then
        bin=$BENCH_FRUN
    elif [ ! -x "$bin" ] || [ -n "$(cd "$REPO" && find Cargo.toml Cargo.lock src images runtime \
        -newer "$bin" \( -name '*.rs' -o -name Cargo.toml -o -name Cargo.lock \) -print -quit 2>/dev/null)" ]; then
        log "building frun (cargo build --release)"
        if ! (cd "$REPO" && cargo build --release) >"$TMP/cargo.log" 2>&1; then
            frun_err="cargo build --release failed: $(grep -m1 -E '^error' "$TMP/cargo.log" || tail -1 "$TMP/cargo.log")"
        fi
    fi
    # a private copy, so that a concurrent rebuild cannot swap the binary mid-benchmark
    if [ -z "$frun_err" ]; then
        if [ -x "$bin" ]; then cp "$bin" "$TMP/bin/frun"; else frun_err="no $bin"; fi
    fi
    frun_rev=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')
    if [ -n "$(cd "$REPO" && git status --porcelain -- src images runtime Cargo.toml Cargo.lock 2>/dev/null)" ]; then
        frun_rev="$frun_rev+dirty"
    fi
    [ -z "${BENCH_FRUN:-}" ] || frun_rev=$BENCH_FRUN

    # in the background + wait, so that a signal to this script is handled at once (stop_ns)
    ROUNDS=$ROUNDS FRUN_ERR=$frun_err FRUN_REV=$frun_rev BENCH_CACHE=$CACHE \
        unshare --net --mount --propagation private --fork -- \
        /bin/bash "${BASH_SOURCE[0]}" "$MARK" "$TMP" "$RUN" &
    US_PID=$!
    rc=0
    wait "$US_PID" || rc=$?
    US_PID=
    [ $rc = 0 ] || log "failed (exit $rc)"
    echo "whole script: $(awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }') s"
    exit $rc
fi

# ============================== inner: fresh net + mount namespace ============================
shift
TMP=$1
RUN=$2
CACHE=$BENCH_CACHE
export TMPDIR=$TMP/tmp
mkdir -p "$TMPDIR"
readlink /proc/$$/ns/net >"$TMP/netns"
ip link set lo up
# This mount namespace is private: nothing mounted here is seen by the host, and it all goes
# away with the namespace. Runtime state on a tmpfs; podman and skopeo write their blob-info
# cache (and would write default storage) under /var/lib/containers: hide the host's.
mount -t tmpfs -o mode=0700,size=256m frun-bench-run "$RUN"
[ -d /var/lib/containers ] && mount -t tmpfs -o mode=0700,size=64m frun-bench-vlc /var/lib/containers

REG_PID=
CTD_PID=
inner_cleanup() {
    stop_pid "$CTD_PID"
    stop_pid "$REG_PID"
    umount_under "$TMP"
}
trap inner_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- registry ---------------------------------------------------------------------------------
mkdir -p "$TMP/registry/data"
cat >"$TMP/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $TMP/registry/data
http:
  addr: 127.0.0.1:5000
EOF
docker-registry serve "$TMP/registry/config.yml" >"$TMP/registry/log" 2>&1 &
REG_PID=$!
for i in $(seq 100); do
    curl --noproxy '*' -fsS -o /dev/null --max-time 2 http://127.0.0.1:5000/v2/ 2>/dev/null && break
    kill -0 "$REG_PID" 2>/dev/null || { cat "$TMP/registry/log" >&2; die "docker-registry exited"; }
    sleep 0.1
done
curl --noproxy '*' -fsS -o /dev/null http://127.0.0.1:5000/v2/ || die "registry not answering on 127.0.0.1:5000"
skopeo copy --quiet --dest-tls-verify=false "oci:$CACHE/image:bench" "docker://$REF" >"$TMP/push.log" 2>&1 ||
    { cat "$TMP/push.log" >&2; die "skopeo push failed"; }

# --- contenders ---------------------------------------------------------------------------
# Each has prep_X DIR (untimed, fresh store), run_X DIR (timed), check_X DIR (untimed: echo a
# reason when the pull did not really land), done_X DIR (untimed teardown). DIR is fresh.

prep_frun() { :; }
run_frun() { "$TMP/bin/frun" --root "$1/frun-root" --run-root "$RUN/frun" pull --quiet "$REF"; }
check_frun() {
    "$TMP/bin/frun" --root "$1/frun-root" --run-root "$RUN/frun" images 2>&1 | grep -q 'bench/debian' ||
        echo "frun images does not list bench/debian"
}
store_frun() { echo "$1/frun-root"; }
done_frun() { rm -rf "$RUN/frun"; }

CTD_SOCK=
prep_containerd() {
    local d=$1 i
    mkdir -p "$d/ctd-root" "$RUN/containerd" "$d/ctd-opt"
    CTD_SOCK=$RUN/containerd/containerd.sock
    cat >"$d/containerd.toml" <<EOF
version = 2
root = "$d/ctd-root"
state = "$RUN/containerd"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$CTD_SOCK"
[ttrpc]
  address = "$CTD_SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/ctd-opt"
EOF
    containerd --config "$d/containerd.toml" >"$d/containerd.log" 2>&1 &
    CTD_PID=$!
    for i in $(seq 200); do
        [ -S "$CTD_SOCK" ] && ctr --address "$CTD_SOCK" version >/dev/null 2>&1 && return 0
        kill -0 "$CTD_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "containerd did not start: $(grep -m1 -iE 'level=(fatal|error)' "$d/containerd.log" || tail -1 "$d/containerd.log")" >&2
    return 1
}
run_containerd() { ctr --address "$CTD_SOCK" images pull --plain-http "$REF"; }
check_containerd() {
    local n
    n=$(ctr --address "$CTD_SOCK" snapshots --snapshotter overlayfs ls 2>/dev/null | tail -n +2 | grep -c Committed || true)
    [ "$n" = 5 ] || echo "containerd holds $n committed overlayfs snapshots, not 5 (did not unpack?)"
}
store_containerd() { echo "$1/ctd-root"; }
done_containerd() {
    stop_pid "$CTD_PID"
    CTD_PID=
    umount_under "$1"
    umount_under "$RUN/containerd"
    rm -rf "$RUN/containerd"
}

podman_() {
    CONTAINERS_CONF=$TMP/podman/containers.conf \
    CONTAINERS_STORAGE_CONF=$TMP/podman/storage.conf \
    CONTAINERS_REGISTRIES_CONF=$TMP/podman/registries.conf \
        podman --root "$1/podman-root" --runroot "$RUN/podman" --storage-driver overlay \
        --cgroup-manager cgroupfs --events-backend none --tmpdir "$RUN/podman-tmp" "${@:2}"
}
mkdir -p "$TMP/podman/net" "$TMP/podman/copy"
cat >"$TMP/podman/containers.conf" <<EOF
[engine]
cgroup_manager = "cgroupfs"
events_logger = "none"
image_copy_tmp_dir = "$TMP/podman/copy"
[network]
network_config_dir = "$TMP/podman/net"
EOF
cat >"$TMP/podman/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$TMP/podman/root"
runroot = "$RUN/podman"
EOF
: >"$TMP/podman/registries.conf"
prep_podman() { :; }
run_podman() { podman_ "$1" pull --tls-verify=false "$REF"; }
check_podman() {
    podman_ "$1" image exists "$REF" 2>/dev/null || echo "podman image exists $REF: no"
}
store_podman() { echo "$1/podman-root"; }
done_podman() {
    umount_under "$1"
    umount_under "$RUN/podman"
    rm -rf "$RUN/podman" "$RUN/podman-tmp"
}

prep_skopeo_umoci() { :; }
run_skopeo_umoci() {
    skopeo copy --src-tls-verify=false "docker://$REF" "oci:$1/oci:bench" &&
        umoci unpack --image "$1/oci:bench" "$1/bundle"
}
check_skopeo_umoci() { [ -x "$1/bundle/rootfs/usr/bin/bash" ] || echo "no usr/bin/bash in the bundle"; }
store_skopeo_umoci() { echo "$1"; }
done_skopeo_umoci() { :; }

# --- rounds -------------------------------------------------------------------------------
read -r -a NAMES <<<"${CONTENDERS:-frun containerd podman skopeo+umoci}"
declare -A times=() err=() disk=()
[ -n "${FRUN_ERR:-}" ] && err[frun]=$FRUN_ERR
fn() { echo "${1//+/_}"; }

onerun() { # onerun NAME ROUND
    local name=$1 r=$2 f d t0 t1 rc why
    f=$(fn "$name")
    d=$TMP/run/$f.$r
    mkdir -p "$d"
    if ! "prep_$f" "$d" 2>"$d/prep.err"; then
        err[$name]="setup: $(tail -3 "$d/prep.err" | tr '\n' ' ')"
        "done_$f" "$d" || true
        rm -rf "$d"
        return
    fi
    sync
    rc=0
    t0=$EPOCHREALTIME
    "run_$f" "$d" >"$d/out.log" 2>&1 || rc=$?
    t1=$EPOCHREALTIME
    if [ $rc != 0 ]; then
        err[$name]="exit $rc: $({ grep -v '^\s*$' "$d/out.log" || true; } | tail -3 | tr '\n' ' ' | cut -c1-400)"
    else
        why=$("check_$f" "$d")
        if [ -n "$why" ]; then
            err[$name]="pull exited 0 but $why"
        else
            times[$name]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') "
            [ -n "${disk[$name]:-}" ] || disk[$name]=$(du -sxm "$("store_$f" "$d")" | cut -f1)
        fi
    fi
    "done_$f" "$d" || true
    umount_under "$d"
    rm -rf "$d"
}

n=${#NAMES[@]}
for r in $(seq "$ROUNDS"); do
    line="round $r/$ROUNDS:"
    for k in $(seq 0 $((n - 1))); do
        name=${NAMES[$(((k + r - 1) % n))]}
        [ -n "${err[$name]:-}" ] && continue
        onerun "$name" "$r"
        if [ -n "${err[$name]:-}" ]; then line+=" $name FAILED"; else line+=" $name $(echo ${times[$name]} | awk '{print $NF}')s"; fi
    done
    log "$line"
done

# --- report -------------------------------------------------------------------------------
stats() { # "t1 t2 ..." -> "median min max"
    echo "$1" | tr ' ' '\n' | grep -v '^$' | sort -g |
        awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
               printf "%.2f %.2f %.2f", m, v[1], v[NR] }'
}
m=$(jq -r '.manifests[0].digest' "$CACHE/image/index.json")
gz=$(jq '[.layers[].size] | add' "$CACHE/image/blobs/sha256/${m#sha256:}")
echo
echo "frun pull benchmark: $REF, 5 layers, $((gz / 1048576)) MB compressed; $ROUNDS rounds, fresh store each"
echo "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r), store fs $(findmnt -n -o FSTYPE --target "$TMP") on $(findmnt -n -o SOURCE --target "$TMP")"
echo "versions: frun $FRUN_REV, $(containerd --version | awk '{print "containerd", $3}'), $(podman --version), $(skopeo --version), $(umoci --version)"
echo
fmed=
[ -z "${err[frun]:-}" ] && [ -n "${times[frun]:-}" ] && fmed=$(stats "${times[frun]}" | cut -d' ' -f1)
printf '%-14s %8s %8s %8s %9s  %s\n' contender median_s min_s max_s store_MB "vs frun (median)"
for name in "${NAMES[@]}"; do
    if [ -n "${err[$name]:-}" ]; then
        printf '%-14s FAILED: %s\n' "$name" "${err[$name]}"
        continue
    fi
    read -r med mn mx <<<"$(stats "${times[$name]}")"
    ratio=n/a
    [ -n "$fmed" ] && ratio=$(awk -v a="$med" -v b="$fmed" -v n="$name" 'BEGIN { printf "%s/frun = %.2fx", n, a / b }')
    printf '%-14s %8s %8s %8s %9s  %s\n' "$name" "$med" "$mn" "$mx" "${disk[$name]}" "$ratio"
done
echo
for name in "${NAMES[@]}"; do
    [ -n "${times[$name]:-}" ] && echo "raw $name: ${times[$name]}"
done
exit 0
