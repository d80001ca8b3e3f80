#!/bin/bash
# Benchmark (not a test): published-port throughput, issue 4's Benchmark.
#   wrk    short connections (busybox httpd closes every one): requests/s
#   iperf3 bulk, one TCP stream, client -> server: Gbit/s
# against a server in a container, reached on 127.0.0.1 through
#   frun-fwd    frun run -p 127.0.0.1:PORT:80 (frun's userspace forwarder, splice(2))
#   podman-dnat podman run -p 127.0.0.1:PORT:80 (netavark: kernel DNAT, iptables-nft rules)
#   nft-dnat    a kernel DNAT rule of this script's own (nft, in the bench namespace) from
#               127.0.0.1:PORT to a frun container on frun's bridge: the same kernel path as
#               podman's, the same kind of container as frun-fwd's
#   host        frun run --network host (no forwarding at all: the floor)
# and prints requests/s and Gbit/s (median over ROUNDS) with ratios frun/DNAT, frun/host,
# plus machine info. If podman's port publishing fails, its error is printed and the ratio
# to DNAT uses nft-dnat.
# Also printed, to judge the numbers: CPU used meanwhile by other processes on the machine
# (a shared VM's other jobs skew everything), the server's listen-queue overflows and the SYN
# retransmits per wrk run (busybox httpd listens with a backlog of 9, so 50 connections
# overflow it and some connections wait 1 s for a SYN retransmit, with every contender),
# wrk's socket errors, the forwarder's CPU, fds and RSS before and after the load.
# wrk's latency figures are not printed: they are not comparable here. With DNAT a dropped SYN
# stalls wrk's own connect, before wrk starts its timer; through the forwarder the connect is
# accepted at once and the stall (the forwarder's upstream connect) comes after wrk has sent its
# request, inside its timer (this is also why wrk counts more timeouts through the forwarder).
#
# usage: scripts/bench/forward.sh          (as root)
# env:   ROUNDS=3                           rounds; each runs every contender once (order rotates)
#        DURATION=10                        seconds per wrk and per iperf3 run
#        WRK_THREADS=2 WRK_CONNS=50         wrk -t / -c
#        CONTENDERS="frun-fwd podman-dnat nft-dnat host"
#        FRUN_BIN=PATH                      measure this frun binary (e.g. an older build, for
#                                           a before/after) instead of building the checkout
#
# Everything runs inside scripts/with-test-registries.sh (a fresh network namespace with only
# loopback and the test registries; nothing on the host's network changes), in a private
# mount namespace with tmpfs over /run and /var/lib/containers (podman's rootful state,
# netns files, iptables lock). The image (busybox of the test images + Debian's iperf3 with
# its shared libraries, copied in by umoci, never built with frun) is pushed to the plain
# test registry and pulled by frun and podman.
# In the bench namespace (private): net.ipv4.tcp_tw_reuse=1 and ports 10000-65000 for
# ephemeral use (tens of thousands of short connections leave ports in TIME_WAIT), and
# route_localnet on the bridges (DNAT of 127.0.0.1, as netavark does).
# Cleanup, even on failure: containers removed (frun rm -f, podman rm -f), the nft table
# removed, the cgroup parent /frun-bench-fwd removed, temp dir removed; processes left in the
# namespace are killed by pid by scripts/in-netns.sh.
set -euo pipefail

MARK=__frun_bench_forward_inner__
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$here/../.." && pwd)
CG=/frun-bench-fwd
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY
unset FRUN_ROOT FRUN_RUN_ROOT FRUN_CGROUP_PARENT FRUN_BRIDGE FRUN_SUBNET RUST_LOG
unset CONTAINERS_CONF CONTAINERS_STORAGE_CONF CONTAINERS_REGISTRIES_CONF

die() { echo "forward.sh: $*" >&2; exit 1; }
log() { echo "forward.sh: $*" >&2; }

# shellcheck source=scripts/bench/lib.sh
. "$here/lib.sh"

# rm_cgroups: remove the cgroup parent (every v1 hierarchy and the v2 mount), deepest first.
rm_cgroups() {
    local d
    for d in /sys/fs/cgroup/*/"${CG#/}" /sys/fs/cgroup/"${CG#/}"; do
        [ -d "$d" ] || continue
        find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        [ ! -d "$d" ] || log "cgroup $d is not empty: $(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | tr '\n' ' ')"
    done
}

# ============================== outer: host namespace =========================================
if [ "${1:-}" != "$MARK" ]; then
    T0=$EPOCHREALTIME
    [ "$(id -u)" = 0 ] || die "must run as root"
    # its tools (wrk, iperf3, podman with netavark, runc, iptables, nft, ...) are in the lists
    "$REPO/scripts/install-packages.sh" "$REPO/scripts/packages/run.txt" "$REPO/scripts/packages/test.txt"

    if [ -z "${FRUN_BIN:-}" ]; then
        log "building frun (cargo build --release --locked)"
        (cd "$REPO" && cargo build --release --locked -q) || die "cargo build --release failed"
    else
        [ -x "$FRUN_BIN" ] || die "FRUN_BIN=$FRUN_BIN is not an executable"
    fi
    # the test images need the static checker (scripts/test-images/build.sh)
    (cd "$REPO/tests/checker" && cargo build --release --locked -q) || die "building tests/checker failed"

    T=$(mktemp -d /var/tmp/frun-bench-fwd.XXXXXX)
    CHILD=
    # stop_inner: on a signal, TERM the inner script (its pid file; it cleans up after itself,
    # within a wrk/iperf3 run's time) and wait for the whole chain to end (bounded).
    stop_inner() {
        local p i
        [ -n "$CHILD" ] || return 0
        p=$(cat "$T/inner.pid" 2>/dev/null || true)
        [ -z "$p" ] || kill -TERM "$p" 2>/dev/null || true
        for i in $(seq 900); do kill -0 "$CHILD" 2>/dev/null || break; sleep 0.1; done
        wait "$CHILD" 2>/dev/null || true
        CHILD=
    }
    cleanup() {
        local rc=$?
        trap '' INT TERM
        trap - EXIT
        stop_inner
        umount_under "$T"
        rm_cgroups
        rm -rf "$T"
        echo "whole script: $(awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }') s" >&2
        exit $rc
    }
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    # a private copy, so that a concurrent rebuild cannot swap the binary mid-benchmark
    mkdir -p "$T/bin"
    if [ -n "${FRUN_BIN:-}" ]; then
        cp "$FRUN_BIN" "$T/bin/frun"
        rev="$FRUN_BIN (sha256 $(sha256sum "$FRUN_BIN" | cut -c1-12))"
    else
        cp "$REPO/target/release/frun" "$T/bin/frun"
        rev=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')
        [ -z "$(cd "$REPO" && git status --porcelain -- src images runtime Cargo.toml Cargo.lock 2>/dev/null)" ] || rev="$rev+dirty"
    fi

    rc=0
    # in the background + wait, so that a signal to this script is handled at once
    FRUN_REV=$rev "$REPO/scripts/with-test-registries.sh" \
        unshare --mount --propagation private -- /bin/bash "${BASH_SOURCE[0]}" "$MARK" "$T" &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=
    [ $rc = 0 ] || log "failed (exit $rc)"
    exit $rc
fi

# ============================== inner: bench net namespace + private mounts ====================
T=$2
echo $$ >"$T/inner.pid"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNS=${WRK_CONNS:-50}
read -r -a NAMES <<<"${CONTENDERS:-frun-fwd podman-dnat nft-dnat host}"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a positive integer"
: "${FRUN_TEST_REGISTRY:?not inside scripts/with-test-registries.sh}"
export TMPDIR=$T/tmp
mkdir -p "$TMPDIR"

# This mount namespace is private: podman's rootful state (/run/libpod, /run/netns,
# /run/containers, runc's state), the iptables lock and its blob cache stay in here.
mount -t tmpfs -o mode=0755,size=256m frun-bench-fwd-run /run
[ -d /var/lib/containers ] && mount -t tmpfs -o mode=0700,size=64m frun-bench-fwd-vlc /var/lib/containers

# the bench namespace is private (with-test-registries.sh made it): short-connection load
sysctl -qw net.ipv4.tcp_tw_reuse=1
sysctl -qw net.ipv4.ip_local_port_range="10000 65000"

IMG=$FRUN_TEST_REGISTRY/bench/net:latest
F="$T/bin/frun --root $T/frun --run-root $T/frun-run --cgroup-parent $CG"
mkdir -p "$T/podman-net" "$T/podman-tmp"
cat >"$T/containers.conf" <<EOF
[containers]
# podman's defaults ask for rlimits above this host's hard limits (FACTS.md)
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
events_logger = "none"
runtime = "runc"
[network]
network_backend = "netavark"
network_config_dir = "$T/podman-net"
EOF
printf '[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "/run/frun-bench-podman"\n' "$T/podman" >"$T/storage.conf"
: >"$T/registries.conf"
export CONTAINERS_CONF=$T/containers.conf CONTAINERS_STORAGE_CONF=$T/storage.conf CONTAINERS_REGISTRIES_CONF=$T/registries.conf
P="podman --root $T/podman --runroot /run/frun-bench-podman --storage-driver overlay --cgroup-manager cgroupfs --events-backend none --tmpdir $T/podman-tmp"
NFT_TABLE=frun_bench_fwd

inner_cleanup() {
    local rc=$?
    trap '' INT TERM
    trap - EXIT
    [ ! -d "$ACCT" ] || echo $$ >"$ACCT_ROOT/cgroup.procs" 2>/dev/null || true
    $F rm -f bench-fwd bench-nat bench-host >/dev/null 2>&1 || true
    $P rm -f -t 0 bench-dnat >/dev/null 2>&1 || true
    nft delete table ip "$NFT_TABLE" 2>/dev/null || true
    umount_under "$T"
    rm_cgroups
    exit $rc
}
trap inner_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# CPU accounting: this shell (and so wrk, iperf3, frun's supervisors, podman's conmon) goes
# into the cpuacct cgroup CG/bench, the containers are under CG too; CPU used meanwhile by
# everything else on the machine (other jobs on a shared VM skew the numbers) is the root's
# usage minus CG's, minus ksoftirqd (softirq work the bench's own traffic may cause).
ACCT_ROOT=/sys/fs/cgroup/cpuacct
HZ=$(getconf CLK_TCK)
ACCT=
if [ -f "$ACCT_ROOT/cpuacct.usage" ]; then
    mkdir -p "$ACCT_ROOT$CG/bench" && echo $$ >"$ACCT_ROOT$CG/bench/cgroup.procs" && ACCT=$ACCT_ROOT$CG
fi
KSOFT=$(ps -eo pid=,comm= | awk '$2 ~ /^ksoftirqd/ { print $1 }' | tr '\n' ' ')
acct_now() { # "root_ns bench_ns ksoftirqd_ns"
    local k=0 p
    for p in $KSOFT; do k=$((k + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0))); done
    echo "$(cat "$ACCT_ROOT/cpuacct.usage") $(cat "$ACCT/cpuacct.usage") $((k * 1000000000 / HZ))"
}
others_cores() { # others_cores "START" "END" T0 T1: CPU of everything else, in cores
    [ -n "$ACCT" ] || { echo "?"; return; }
    awk -v s="$1" -v e="$2" -v t0="$3" -v t1="$4" 'BEGIN { split(s, a); split(e, b)
        o = (b[1] - a[1]) - (b[2] - a[2]) - (b[3] - a[3]); if (o < 0) o = 0
        printf "%.2f", o / 1e9 / (t1 - t0) }'
}

# --- the image: test/busybox + iperf3 (binary and shared libraries) + /www ------------------
log "building the image (umoci) and pushing it to $IMG"
L=$T/oci/net
mkdir -p "$T/oci"
cp -a "$FRUN_TEST_IMAGES/oci/test/busybox" "$L"
umoci unpack --image "$L:latest" "$T/bundle" >/dev/null
R=$T/bundle/rootfs
IPERF=$(command -v iperf3)
for f in "$IPERF" $(ldd "$IPERF" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
    install -D -m 0755 "$(readlink -f "$f")" "$R$f"
done
mkdir -p "$R/www"
# a small page (about nginx's default index.html size)
{ echo '<!DOCTYPE html><html><head><title>frun bench</title></head><body>'
  for i in $(seq 10); do echo "<p>line $i of a small static page served by busybox httpd</p>"; done
  echo '</body></html>'; } >"$R/www/index.html"
chmod -R a+rX "$R/www"
cp "$R/www/index.html" "$T/page.html"
umoci repack --refresh-bundle --image "$L:latest" --history.created_by "frun bench: iperf3, /www" "$T/bundle" >/dev/null
umoci gc --layout "$L"
for d in $(jq -r '.manifests[].digest' "$L/index.json"); do
    for l in $(jq -r '.layers[].digest' "$L/blobs/sha256/${d#sha256:}"); do
        tar -tzf "$L/blobs/sha256/${l#sha256:}" >/dev/null || die "layer $l does not list"
    done
done
skopeo copy --quiet --dest-tls-verify=false "oci:$L:latest" "docker://$IMG" >"$T/push.log" 2>&1 ||
    { cat "$T/push.log" >&2; die "skopeo copy to $IMG failed"; }
rm -rf "$T/bundle"

# --- servers --------------------------------------------------------------------------------
# httpd daemonizes (forks per connection), iperf3 -s stays in front as the container's process.
declare -A HPORT=([frun-fwd]=8081 [podman-dnat]=8082 [nft-dnat]=8083 [host]=8084)
declare -A IPORT=([frun-fwd]=5211 [podman-dnat]=5212 [nft-dnat]=5213 [host]=5214)
declare -A err=() rps=() gbps=() notes=()
want() { local n; for n in "${NAMES[@]}"; do [ "$n" = "$1" ] && return 0; done; return 1; }
srv='httpd -p 80 -h /www && exec iperf3 -s -p 5201'

$F pull -q "$IMG" >/dev/null
# frun_ip NAME: the bridge address of a frun container
frun_ip() {
    local id ip
    id=$($F ps --format json 2>/dev/null | jq -r --arg n "$1" '.[] | select(.name == $n) | .id')
    ip=$(jq -r '.network.ip // empty' "$T/frun/containers/$id/frun.json" 2>/dev/null || true)
    [ -n "$ip" ] || ip=$($F exec "$1" ip -4 -o addr show 2>/dev/null |
        awk '{ split($4, a, "/"); if (a[1] !~ /^127\./) { print a[1]; exit } }')
    echo "$ip"
}
FWD_IP=
if want frun-fwd; then
    $F run -d --name bench-fwd -p "127.0.0.1:${HPORT[frun-fwd]}:80" -p "127.0.0.1:${IPORT[frun-fwd]}:5201" \
        "$IMG" sh -c "$srv" >/dev/null 2>"$T/fwd.err" || err[frun-fwd]="frun run -p: $(tail -3 "$T/fwd.err" | tr '\n' ' ')"
    [ -n "${err[frun-fwd]:-}" ] || FWD_IP=$(frun_ip bench-fwd)
fi
# nft-dnat gets a frun container of its own: sharing frun-fwd's would make both send to the
# same 4-tuples (source 10.89.0.1 after the SNAT, the same port range) with different TCP
# timestamp clocks, and SYNs meeting the server's TIME_WAIT entries of the other one are
# dropped by PAWS (1 s SYN retransmits: measured, thousands per run).
if want nft-dnat; then
    if ! $F run -d --name bench-nat "$IMG" sh -c "$srv" >/dev/null 2>"$T/nat.err"; then
        err[nft-dnat]="frun run: $(tail -3 "$T/nat.err" | tr '\n' ' ')"
    elif ! NAT_IP=$(frun_ip bench-nat) || [ -z "$NAT_IP" ]; then
        err[nft-dnat]="no address for the frun container bench-nat"
    else
        # DNAT of locally generated packets to 127.0.0.1 (nat output), then SNAT to the bridge's
        # address so replies come back (nat postrouting); route_localnet lets a packet with a
        # 127.0.0.1 source be routed out of the bridge before that SNAT (what netavark does).
        br=$(ip -4 -o route get "$NAT_IP" | sed -n 's/.* dev \([^ ]*\).*/\1/p')
        sysctl -qw "net.ipv4.conf.$br.route_localnet=1"
        nft -f - <<EOF || err[nft-dnat]="nft rules failed"
table ip $NFT_TABLE {
    chain output {
        type nat hook output priority -100; policy accept;
        ip daddr 127.0.0.1 tcp dport ${HPORT[nft-dnat]} counter dnat to $NAT_IP:80
        ip daddr 127.0.0.1 tcp dport ${IPORT[nft-dnat]} counter dnat to $NAT_IP:5201
    }
    chain postrouting {
        type nat hook postrouting priority 100; policy accept;
        ip saddr 127.0.0.0/8 ip daddr $NAT_IP counter masquerade
    }
}
EOF
    fi
fi
if want podman-dnat; then
    if ! $P pull -q --tls-verify=false "$IMG" >/dev/null 2>"$T/podman.err" ||
        ! $P run -d --name bench-dnat --pull never --cgroup-parent "$CG/podman" \
            -p "127.0.0.1:${HPORT[podman-dnat]}:80" -p "127.0.0.1:${IPORT[podman-dnat]}:5201" \
            "$IMG" sh -c "$srv" >/dev/null 2>"$T/podman.err"; then
        err[podman-dnat]="podman: $(grep -v '^\s*$' "$T/podman.err" | tail -3 | tr '\n' ' ')"
    fi
fi
if want host; then
    $F run -d --name bench-host --network host "$IMG" \
        sh -c "httpd -p 127.0.0.1:${HPORT[host]} -h /www && exec iperf3 -s -B 127.0.0.1 -p ${IPORT[host]}" \
        >/dev/null 2>"$T/host.err" || err[host]="frun run --network host: $(tail -3 "$T/host.err" | tr '\n' ' ')"
fi

log "servers started; checking them"
# ready: the page comes back whole, and one short iperf3 run passes (also a warm-up)
page=$(md5sum <"$T/page.html")
for n in "${NAMES[@]}"; do
    [ -z "${err[$n]:-}" ] || continue
    ok=
    for i in $(seq 100); do
        got=$(curl -fsS --max-time 2 "http://127.0.0.1:${HPORT[$n]}/index.html" 2>/dev/null | md5sum) || true
        [ "$got" = "$page" ] && { ok=1; break; }
        sleep 0.1
    done
    [ -n "$ok" ] || { err[$n]="http://127.0.0.1:${HPORT[$n]}/ does not serve the page"; continue; }
    iperf3 -c 127.0.0.1 -p "${IPORT[$n]}" -t 1 >"$T/warm.$n" 2>&1 ||
        err[$n]="iperf3 warm-up: $(tail -2 "$T/warm.$n" | tr '\n' ' ')"
done

# The server's network namespace (through one of its pids): busybox httpd listens with a
# backlog of 9, so 50 connections overflow it; its TcpExt ListenOverflows count per run, and
# the SYN retransmits: wrk's in the bench namespace, frun's forwarder's upstream connects in
# the server's (the forwarder connects from inside the container's namespace).
declare -A SPID=()
for n in "${NAMES[@]}"; do
    case $n in
        frun-fwd) SPID[$n]=$($F ps --format json 2>/dev/null | jq -r '.[] | select(.name == "bench-fwd") | .pid // empty') ;;
        nft-dnat) SPID[$n]=$($F ps --format json 2>/dev/null | jq -r '.[] | select(.name == "bench-nat") | .pid // empty') ;;
        podman-dnat) SPID[$n]=$($P inspect -f '{{.State.Pid}}' bench-dnat 2>/dev/null || true) ;;
        host) SPID[$n]=$$ ;;
    esac
done
synretrans() { # synretrans NAME: SYN retransmits in the bench namespace and the server's
    local b s
    b=$(tcpext $$ TCPSynRetrans)
    s=0
    [ -z "${SPID[$1]:-}" ] || [ "$(readlink "/proc/${SPID[$1]}/ns/net")" = "$(readlink /proc/$$/ns/net)" ] ||
        s=$(tcpext "${SPID[$1]}" TCPSynRetrans)
    echo $((b + ${s:-0}))
}
tcpext() { # tcpext PID FIELD: a TcpExt counter of PID's network namespace (empty if unknown)
    [ -n "${1:-}" ] && [ -r "/proc/$1/net/netstat" ] || return 0
    awk -v f="$2" '$1 == "TcpExt:" { if (!h) { for (i = 2; i <= NF; i++) if ($i == f) c = i; h = 1 } else if (c) print $c }' "/proc/$1/net/netstat"
}

# frun's forwarder process (the holder holding the listening socket): CPU, fds, RSS
fwd_pid() { ss -ltnpH "sport = :${HPORT[frun-fwd]}" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
fwd_state() { # fds, RSS in MB, threads
    local p=$1
    echo "fds $(ls "/proc/$p/fd" 2>/dev/null | wc -l), rss $(awk '/VmRSS/ { printf "%.1f MB", $2 / 1024 }' "/proc/$p/status" 2>/dev/null), threads $(awk '/Threads/ { print $2 }' "/proc/$p/status" 2>/dev/null)"
}
FWD_PID=
if want frun-fwd && [ -z "${err[frun-fwd]:-}" ]; then
    FWD_PID=$(fwd_pid)
    [ -n "$FWD_PID" ] && notes[frun-fwd-before]="forwarder pid $FWD_PID before load: $(fwd_state "$FWD_PID")"
fi

# --- runs -------------------------------------------------------------------------------------
declare -A wrk_all=() ip_all=() wrk_err=() fwd_cpu=() others=() drops=()
run_wrk() { # run_wrk NAME ROUND
    local n=$1 out=$T/wrk.$1.$2 c0 c1 t0 t1 r e a0 a1 o0 o1 s0 s1
    [ -z "$FWD_PID" ] || [ "$n" != frun-fwd ] || c0=$(cpu_ticks "$FWD_PID")
    o0=$(tcpext "${SPID[$n]:-}" ListenOverflows)
    s0=$(synretrans "$n")
    a0=$(acct_now)
    t0=$EPOCHREALTIME
    if ! timeout $((DURATION + 30)) wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${DURATION}s" -H 'Connection: close' \
        "http://127.0.0.1:${HPORT[$n]}/index.html" >"$out" 2>&1; then
        err[$n]="wrk failed: $(tail -3 "$out" | tr '\n' ' ')"
        return
    fi
    t1=$EPOCHREALTIME
    a1=$(acct_now)
    others[$n]+="$(others_cores "$a0" "$a1" "$t0" "$t1") "
    r=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    [ -n "$r" ] || { err[$n]="wrk printed no Requests/sec: $(tail -3 "$out" | tr '\n' ' ')"; return; }
    wrk_all[$n]+="$r "
    o1=$(tcpext "${SPID[$n]:-}" ListenOverflows)
    s1=$(synretrans "$n")
    drops[$n]+="$([ -n "$o0" ] && [ -n "$o1" ] && echo $((o1 - o0)) || echo '?')/$((s1 - s0)) "
    e=$(grep -E 'Socket errors|Non-2xx' "$out" | sed 's/^ *//' | tr '\n' ' ' || true)
    [ -z "$e" ] || wrk_err[$n]+="round $2: $e; "
    if [ -n "${c0:-}" ]; then
        c1=$(cpu_ticks "$FWD_PID")
        fwd_cpu[wrk]+="$(awk -v a="$c0" -v b="$c1" -v h="$HZ" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.0f", 100 * (b - a) / h / (e - s) }')% "
    fi
}
run_iperf() { # run_iperf NAME ROUND
    local n=$1 out=$T/iperf.$1.$2 c0 c1 t0 t1 g a a0 a1
    [ -z "$FWD_PID" ] || [ "$n" != frun-fwd ] || c0=$(cpu_ticks "$FWD_PID")
    a0=$(acct_now)
    t0=$EPOCHREALTIME
    for a in 1 2 3; do # the server may still be closing the previous test ("busy")
        timeout $((DURATION + 30)) iperf3 -J -c 127.0.0.1 -p "${IPORT[$n]}" -t "$DURATION" >"$out" 2>&1 && break
        grep -q busy "$out" || break
        sleep 1
    done
    t1=$EPOCHREALTIME
    a1=$(acct_now)
    others[$n]+="$(others_cores "$a0" "$a1" "$t0" "$t1") "
    g=$(jq -r '.end.sum_received.bits_per_second // empty' "$out" 2>/dev/null || true)
    if [ -z "$g" ]; then
        err[$n]="iperf3 failed: $(jq -r '.error // empty' "$out" 2>/dev/null || tail -2 "$out" | tr '\n' ' ')"
        return
    fi
    ip_all[$n]+="$(awk -v b="$g" 'BEGIN { printf "%.2f", b / 1e9 }') "
    if [ -n "${c0:-}" ]; then
        c1=$(cpu_ticks "$FWD_PID")
        fwd_cpu[iperf]+="$(awk -v a="$c0" -v b="$c1" -v h="$HZ" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.0f", 100 * (b - a) / h / (e - s) }')% "
    fi
}

n=${#NAMES[@]}
for r in $(seq "$ROUNDS"); do
    line="round $r/$ROUNDS:"
    for k in $(seq 0 $((n - 1))); do
        name=${NAMES[$(((k + r - 1) % n))]}
        [ -z "${err[$name]:-}" ] || continue
        run_wrk "$name" "$r"
        sleep 1
        [ -z "${err[$name]:-}" ] && run_iperf "$name" "$r"
        sleep 1
        if [ -n "${err[$name]:-}" ]; then line+=" $name FAILED;"
        else line+=" $name $(echo ${wrk_all[$name]} | awk '{print $NF}') req/s $(echo ${ip_all[$name]} | awk '{print $NF}') Gbit/s (others $(echo ${others[$name]} | awk '{print $(NF-1) "+" $NF}'));"; fi
    done
    log "$line"
done

# --- after the load: the forwarder still answers, still holds what it held ---------------------
if [ -n "$FWD_PID" ]; then
    sleep 2
    notes[frun-fwd-after]="forwarder pid $FWD_PID after load (+2 s): $(fwd_state "$FWD_PID")"
    got=$(curl -fsS --max-time 5 "http://127.0.0.1:${HPORT[frun-fwd]}/index.html" 2>&1 | md5sum) || true
    [ "$got" = "$page" ] || notes[frun-fwd-check]="AFTER THE LOAD the page no longer comes back through the forwarder"
fi
if [ -z "${err[podman-dnat]:-}" ] && want podman-dnat; then
    # proof that podman's traffic took the kernel DNAT path (rule counters), not a proxy
    notes[podman-path]="podman DNAT rules, connections DNATed (first packets, bytes): $(iptables-save -c -t nat 2>/dev/null |
        grep -E -- "--dport (${HPORT[podman-dnat]}|${IPORT[podman-dnat]}) .*DNAT" | sed 's/^\[\([0-9]*\):\([0-9]*\)\].*--dport \([0-9]*\).*/:\3 \1 \2;/' | tr '\n' ' ')"
fi
if [ -z "${err[nft-dnat]:-}" ] && want nft-dnat; then
    notes[nft-path]="nft-dnat rule counters (connections DNATed): $(nft list chain ip "$NFT_TABLE" output 2>/dev/null | grep -o 'dport [0-9]* counter packets [0-9]*' | tr '\n' ';')"
fi

# --- report -----------------------------------------------------------------------------------
med() { echo "$1" | tr ' ' '\n' | grep -v '^$' | sort -g |
    awk '{ v[NR] = $1 } END { if (NR) printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for name in "${NAMES[@]}"; do
    [ -n "${err[$name]:-}" ] && continue
    rps[$name]=$(med "${wrk_all[$name]:-}")
    gbps[$name]=$(med "${ip_all[$name]:-}")
done
ratio() { # ratio A B -> A/B as a percentage, or n/a
    [ -n "${1:-}" ] && [ -n "${2:-}" ] || { echo n/a; return; }
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f%%", 100 * a / b }'
}

echo
echo "published-port benchmark: wrk -t$WRK_THREADS -c$WRK_CONNS -d${DURATION}s -H 'Connection: close' (busybox httpd, $(wc -c <"$T/page.html") B page); iperf3 -t $DURATION, 1 stream, client -> server; medians of $ROUNDS rounds"
echo "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r), Debian $(cat /etc/debian_version)"
echo "versions: frun $FRUN_REV, $(podman --version), netavark $(/usr/lib/podman/netavark --version | awk '{print $2}'), runc $(runc --version | awk 'NR==1 {print $3}'), $(iptables --version), nft $(nft --version | awk '{print $2}'), $(wrk -v 2>&1 | awk 'NR==1 {print $1, $2}'), iperf3 $(iperf3 --version | awk 'NR==1 {print $2}')"
echo
printf '%-12s %10s %10s   %s\n' contender req/s Gbit/s "raw (req/s | Gbit/s per round)"
for name in "${NAMES[@]}"; do
    if [ -n "${err[$name]:-}" ]; then
        printf '%-12s FAILED: %s\n' "$name" "${err[$name]}"
        continue
    fi
    printf '%-12s %10s %10s   %s| %s\n' "$name" "${rps[$name]}" "${gbps[$name]}" "${wrk_all[$name]}" "${ip_all[$name]}"
done
echo
dn=podman-dnat
[ -n "${rps[$dn]:-}" ] || dn=nft-dnat
f=frun-fwd
echo "frun/DNAT ($dn):  req/s $(ratio "${rps[$f]:-}" "${rps[$dn]:-}"), bulk $(ratio "${gbps[$f]:-}" "${gbps[$dn]:-}")   (issue 4 target: >= 95% and >= 90%)"
[ "$dn" = nft-dnat ] || [ -z "${rps[nft-dnat]:-}" ] ||
    echo "frun/DNAT (nft-dnat):     req/s $(ratio "${rps[$f]:-}" "${rps[nft-dnat]:-}"), bulk $(ratio "${gbps[$f]:-}" "${gbps[nft-dnat]:-}")"
echo "frun/host:                req/s $(ratio "${rps[$f]:-}" "${rps[host]:-}"), bulk $(ratio "${gbps[$f]:-}" "${gbps[host]:-}")"
echo
echo "per wrk run, server listen overflows / SYN retransmits in the bench and server namespaces (each one a 1 s stall of a connection): $(for name in "${NAMES[@]}"; do [ -z "${drops[$name]:-}" ] || printf '%s: %s; ' "$name" "${drops[$name]% }"; done)"
for name in "${NAMES[@]}"; do
    [ -z "${wrk_err[$name]:-}" ] || echo "wrk errors $name: ${wrk_err[$name]}"
done
if [ -n "$ACCT" ]; then
    all=$(for name in "${NAMES[@]}"; do echo ${others[$name]:-}; done | tr ' ' '\n' | grep -v '^$' | sort -g)
    echo "CPU used by other processes on this machine during the runs (cores of $(nproc)): median $(med "$all"), max $(echo "$all" | tail -1)$(awk -v m="$(echo "$all" | tail -1)" 'BEGIN { if (m > 0.1) print "  -- a busy machine: the numbers above are skewed by it" }')"
fi
[ -z "${fwd_cpu[wrk]:-}" ] || echo "frun forwarder CPU (of one core) during wrk: ${fwd_cpu[wrk]}; during iperf3: ${fwd_cpu[iperf]:-}"
for k in frun-fwd-before frun-fwd-after frun-fwd-check podman-path nft-path; do
    [ -z "${notes[$k]:-}" ] || echo "${notes[$k]}"
done
failed=0
for name in "${NAMES[@]}"; do [ -z "${err[$name]:-}" ] || failed=1; done
exit $failed
