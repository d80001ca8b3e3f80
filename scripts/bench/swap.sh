#!/bin/bash
# Benchmark (not a test): replacing the family app (v1 -> v2 -> v1 ...) under a steady wrk
# load on the proxy's published port, issue 12's Benchmark. Contenders:
#   naive     the seed's replacement with `frun run`: start the new app container, stop and
#             remove the old one, no proxy work (nginx keeps the old address: every request
#             after the stop fails; this is the number frun swap has to beat)
#   by-hand   the careful replacement with `frun run`: start the new app under another name,
#             rewrite nginx's conf.d, `nginx -s reload`, wait DRAIN, stop and remove the old
#             one (what `frun swap` automates)
#   frun-swap `frun up` of the family stack (examples/family/frun.toml on the same port, its
#             health interval 200ms), then `frun swap family/app:vN` under the same load;
#             the step times are frun's own (`frun swap --format json`)
#   frun-swap-ports  the family app alone, no proxy, publishing its own port (the same
#             port, to its 8080): `frun swap` hands the listening socket over from the old
#             app's holder to the new one's (wrk talks to the app's busybox httpd directly)
# Per swap: the time from the first command to the old container removed, split into
# pull, start, (health wait,) switch, drain, stop; failed requests (wrk's non-2xx + socket
# errors); the p99 latency of the window with the swap against the p99 of a window of the
# same length without one (measured just before, same stack). At the end, per contender:
# failed requests over all its swaps, the worst p99 ratio (during/base), and for frun-swap
# its own time (total - health wait - drain).
#
# usage: scripts/bench/swap.sh          (as root)
# env:   ROUNDS=3                  swaps per contender (alternating v1/v2)
#        WINDOW=8                  seconds of wrk per window; the swap starts 2 s into it
#        WRK_THREADS=2 WRK_CONNS=8    (busybox httpd listens with a backlog of 9: more
#                                   connections overflow it and some wait 1 s for a SYN retransmit)
#        DRAIN=1                   seconds between switching the proxy and stopping the old app
#        CONTENDERS="by-hand naive frun-swap frun-swap-ports"
#        FRUN_BIN=PATH             measure this frun binary instead of building the checkout
#        WRK_OUT=DIR               keep wrk's output of the last swap (and its times) in DIR
#
# Everything runs inside scripts/in-netns.sh (a fresh network namespace with only loopback;
# nothing on the host's network changes) and a private mount namespace (the containers'
# overlay mounts are not seen, nor left, in the host's mount table): the family images (examples/family/build.sh,
# umoci, never frun) are served by scripts/registry.sh start-hub and pulled by frun as
# Docker Hub names through FRUN_REGISTRY_MIRROR. The load is GET /version (a static file of
# the app, through nginx). wrk comes from scripts/packages/test.txt, installed first.
# Cleanup, even on failure: containers removed, cgroup parent /frun-bench-swap removed, temp
# dir removed; processes left in the namespace are killed by pid by scripts/in-netns.sh.
set -euo pipefail

MARK=__frun_bench_swap_inner__
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$here/../.." && pwd)
CG=/frun-bench-swap
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY
unset FRUN_ROOT FRUN_RUN_ROOT FRUN_CGROUP_PARENT FRUN_BRIDGE FRUN_SUBNET RUST_LOG FRUN_REGISTRY_MIRROR

die() { echo "swap.sh: $*" >&2; exit 1; }
log() { echo "swap.sh: $*" >&2; }

# shellcheck source=scripts/bench/lib.sh
. "$here/lib.sh"

ROUNDS=${ROUNDS:-3}
WINDOW=${WINDOW:-8}
WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNS=${WRK_CONNS:-8}
DRAIN=${DRAIN:-1}
CONTENDERS=${CONTENDERS:-by-hand naive frun-swap frun-swap-ports}
PORT=18080

# ============================== outer: host namespace =========================================
if [ "${1:-}" != "$MARK" ]; then
    [ "$(id -u)" = 0 ] || die "must run as root"
    "$REPO/scripts/install-packages.sh" "$REPO/scripts/packages/run.txt" "$REPO/scripts/packages/test.txt"
    if [ -z "${FRUN_BIN:-}" ]; then
        log "building frun (cargo build --release --locked)"
        (cd "$REPO" && cargo build --release --locked -q) || die "cargo build --release failed"
        FRUN_BIN=$REPO/target/release/frun
        rev=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')
        [ -z "$(cd "$REPO" && git status --porcelain -- src images runtime Cargo.toml Cargo.lock 2>/dev/null)" ] || rev="$rev+dirty"
    else
        [ -x "$FRUN_BIN" ] || die "FRUN_BIN=$FRUN_BIN is not an executable"
        rev="$FRUN_BIN (sha256 $(sha256sum "$FRUN_BIN" | cut -c1-12))"
    fi
    T=$(mktemp -d /var/tmp/frun-bench-swap.XXXXXX)
    cleanup() {
        local rc=$?
        umount_under "$T"
        for d in /sys/fs/cgroup/*/"${CG#/}" /sys/fs/cgroup/"${CG#/}"; do
            [ -d "$d" ] || continue
            find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || log "cgroup $d is not empty"
        done
        rm -rf "$T"
        exit $rc
    }
    trap cleanup EXIT
    mkdir -p "$T/bin"
    cp "$FRUN_BIN" "$T/bin/frun"   # a private copy: a concurrent rebuild cannot swap it mid-run
    # a private mount namespace too: the containers' mounts stay out of the host's mount table
    FRUN_REV=$rev "$REPO/scripts/in-netns.sh" unshare --mount --propagation private -- \
        /bin/bash "${BASH_SOURCE[0]}" "$MARK" "$T"
    exit
fi

# ============================== inner: the bench namespace =====================================
T=$2
F=$T/bin/frun
frun() { "$F" --root "$T/root" --run-root "$T/run" --cgroup-parent "$CG" "$@"; }
export FRUN_REGISTRY_MIRROR=127.0.0.1:5002
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

inner_cleanup() {
    local c
    for c in $(frun ps -a --format json 2>/dev/null | jq -r '.[].id' 2>/dev/null); do frun rm -f "$c" >/dev/null 2>&1 || true; done
    [ ! -f "$T/registry/pids" ] || "$REPO/scripts/registry.sh" stop "$T/registry" >/dev/null 2>&1 || true
}
trap inner_cleanup EXIT

log "building the family images and the registry"
"$REPO/examples/family/build.sh" "$T/images" >/dev/null
"$REPO/scripts/registry.sh" start-hub "$T/registry" "$T/images" 2>/dev/null
# busybox httpd closes every connection: tens of thousands of short connections from nginx
# to the app leave ports in TIME_WAIT (in the proxy container); the bench's own ones are here
echo 1 >/proc/sys/net/ipv4/tcp_tw_reuse
echo "10000 65000" >/proc/sys/net/ipv4/ip_local_port_range

# wrk's script: counts 2xx ("ok") and other ("bad") responses per second of the clock, so
# that what happened after the swap shows (a failing request can take seconds to fail, so
# the failed count alone understates an outage). Printed as "bucket ok|bad EPOCH N" lines.
cat >"$T/buckets.lua" <<'EOF'
b = {}
function response(status, headers, body)
  local ok = status >= 200 and status < 300 and (body == "v1\n" or body == "v2\n")
  local k = (ok and "ok" or "bad") .. os.time()
  b[k] = (b[k] or 0) + 1
end
local threads = {}
function setup(thread) table.insert(threads, thread) end
function done(summary, latency, requests)
  local all = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("b")) do all[k] = (all[k] or 0) + v end
  end
  for k, v in pairs(all) do io.write("bucket ", k:match("^%a+"), " ", k:match("%d+$"), " ", v, "\n") end
end
EOF
# wrk_window OUT: a WINDOW-second wrk run on the published port, output in OUT.
wrk_window() {
    timeout $((WINDOW + 30)) wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WINDOW}s" --timeout 5s --latency \
        -s "$T/buckets.lua" "http://127.0.0.1:$PORT/version" >"$1" 2>&1 || echo "wrk failed" >>"$1"
}
# after OUT EPOCH_MS: "ok bad" responses counted in the clock seconds after EPOCH_MS's second
after() { awk -v s=$(( $2 / 1000 )) '$1 == "bucket" && $3 > s { n[$2] += $4 } END { printf "%d %d", n["ok"], n["bad"] }' "$1"; }
# dead OUT START_MS: whole clock seconds of the window (started at START_MS) in which not one
# request succeeded: an outage, even where requests hang instead of failing
dead() { awk -v a=$(( $2 / 1000 + 1 )) -v b=$(( $2 / 1000 + WINDOW - 1 )) '$1 == "bucket" && $2 == "ok" { ok[$3] += $4 }
    END { n = 0; for (s = a; s <= b; s++) if (!(s in ok)) n++; print n }' "$1"; }
# to_ms VALUE-WITH-UNIT (wrk's 812.00us / 3.41ms / 1.02s) -> ms
to_ms() { awk -v v="$1" 'BEGIN { u = v; sub(/[0-9.]+/, "", u); n = v + 0;
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000; printf "%.2f", n }'; }
# wrk_stats OUT -> "requests failed p99ms"
wrk_stats() {
    local req non2xx sock p99 wrongbody
    req=$(awk '/requests in/ { print $1; exit }' "$1")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF; exit }' "$1")
    sock=$(awk '/Socket errors:/ { gsub(/,/, ""); print $4 + $6 + $8 + $10; exit }' "$1")
    # a 2xx with a body other than v1/v2 counts as failed too
    wrongbody=$(awk '$1 == "bucket" && $2 == "bad" { n += $4 } END { print n + 0 }' "$1")
    p99=$(awk '$1 == "99%" { print $2; exit }' "$1")
    [ -n "$req" ] && [ -n "$p99" ] || { echo "? ? ?"; return; }
    # non-2xx responses are in both wrk's count and the buckets: take the larger
    [ "${wrongbody:-0}" -gt "${non2xx:-0}" ] && non2xx=$wrongbody
    echo "$req $(( ${non2xx:-0} + ${sock:-0} )) $(to_ms "$p99")"
}

# render ADDR: the proxy's conf.d/default.conf pointing at ADDR:8080, as frun renders it
render() {
    mkdir -p "$T/conf.d"
    cat >"$T/conf.d/default.conf.tmp" <<EOF
server {
    listen 80;
    location / {
        proxy_pass http://$1:8080;
        proxy_set_header Host \$host;
        proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
}
EOF
    mv "$T/conf.d/default.conf.tmp" "$T/conf.d/default.conf"
}
# The container's address from its record. (Not `hostname -i` inside it: the family
# images have no /etc/nsswitch.conf, so glibc asks DNS before /etc/hosts, and a resolver
# that times out in this closed namespace makes it fail with "Unknown host".)
addr_of() { frun inspect "$1" | jq -er '.[0].record.network.ip'; }
wait_body() { # wait_body WANT: the published port answers /version with WANT
    local got=''
    for _ in $(seq 100); do
        got=$(curl -s --max-time 2 "http://127.0.0.1:$PORT/version" || true)
        [ "$got" = "$1" ] && return 0
        sleep 0.1
    done
    die "the proxy does not answer /version with $1 (last: $got)"
}
reload_proxy() { frun exec proxy nginx -s reload 2>/dev/null; }

# ---- the stack by hand: proxy + app-1 (v1), both pulled first ----------------------------------
t=$(now_ms); frun pull -q nginx:stable >/dev/null; frun pull -q family/app:v1 >/dev/null
log "pulled nginx:stable and family/app:v1 in $(( $(now_ms) - t )) ms"
gen=1; cur=v1
frun run -d --name app-1 -v db:/var/db family/app:v1 >/dev/null
render "$(addr_of app-1)"
frun run -d --name proxy -v "$T/conf.d:/etc/nginx/conf.d:ro" -p "127.0.0.1:$PORT:80" nginx:stable >/dev/null
wait_body v1

declare -a rows=()
# one_swap CONTENDER: baseline window, then a window with one swap of CONTENDER in it
one_swap() {
    local how=$1 next old new t0 t1 t2 t3 t4 t5 pull start sw drain stop total base during
    next=$([ "$cur" = v1 ] && echo v2 || echo v1)
    old=app-$gen; new=app-$((gen + 1))
    wrk_window "$T/wrk.base"
    base=$(wrk_stats "$T/wrk.base")
    local ws; ws=$(now_ms)
    wrk_window "$T/wrk.swap" &
    local wp=$!
    sleep 2
    t0=$(now_ms)
    frun pull -q "family/app:$next" >/dev/null
    t1=$(now_ms)
    frun run -d --name "$new" -v db:/var/db "family/app:$next" >/dev/null
    t2=$(now_ms)
    if [ "$how" = by-hand ]; then
        # health: the new app answers on its own address
        local a; a=$(addr_of "$new")
        for _ in $(seq 100); do curl -fs --max-time 1 "http://$a:8080/version" >/dev/null && break; sleep 0.05; done
        t3=$(now_ms)
        render "$a"
        reload_proxy
        t4=$(now_ms)
        sleep "$DRAIN"
    else
        t3=$t2; t4=$t2
    fi
    t5=$(now_ms)
    frun stop "$old" >/dev/null
    frun rm "$old" >/dev/null
    local t6; t6=$(now_ms)
    wait "$wp" || true
    during=$(wrk_stats "$T/wrk.swap")
    [ -z "${WRK_OUT:-}" ] || cp "$T/wrk.base" "$T/wrk.swap" "$WRK_OUT/" 2>/dev/null || true
    [ -z "${WRK_OUT:-}" ] || { echo "t0=$t0 t6=$t6"; } >>"$WRK_OUT/times"
    log "$how $cur>$next: $(grep -E 'Socket errors|Non-2xx' "$T/wrk.swap" | tr -s ' \n' ' ')"
    pull=$((t1 - t0)); start=$((t2 - t1)); health=$((t3 - t2)); sw=$((t4 - t3)); drain=$((t5 - t4)); stop=$((t6 - t5)); total=$((t6 - t0))
    rows+=("$(printf '%-9s %-7s %6s %6s %6s %6s %6s %6s %7s | %7s %6s %8s %10s %4s | %8s %6s' \
        "$how" "$cur>$next" "$pull" "$start" "$health" "$sw" "$drain" "$stop" "$total" \
        $during "$(after "$T/wrk.swap" "$t6" | tr ' ' /)" "$(dead "$T/wrk.swap" "$ws")" \
        $(echo "$base" | awk '{print $3, $2}'))")
    gen=$((gen + 1)); cur=$next
    # naive left nginx pointing at the removed app, its requests hanging (proxy_connect_timeout
    # 60 s) in workers a reload would keep: a new proxy for the next swap (not measured)
    if [ "$how" = naive ]; then
        frun rm -f proxy >/dev/null
        render "$(addr_of "$new")"
        frun run -d --name proxy -v "$T/conf.d:/etc/nginx/conf.d:ro" -p "127.0.0.1:$PORT:80" nginx:stable >/dev/null
    fi
    wait_body "$cur"
}

# frun_swap_round NAME FILE: as one_swap, with the stack FILE under frun up and one `frun swap`
frun_swap_round() {
    local how=$1 file=$2 next base during ws wp t0 t6 j
    next=$([ "$cur" = v1 ] && echo v2 || echo v1)
    wrk_window "$T/wrk.base"
    base=$(wrk_stats "$T/wrk.base")
    ws=$(now_ms)
    wrk_window "$T/wrk.swap" &
    wp=$!
    sleep 2
    t0=$(now_ms)
    frun swap "family/app:$next" -f "$file" --drain-timeout 10s --format json \
        >"$T/swap.out" 2>"$T/swap.err" || { cat "$T/swap.err" >&2; die "frun swap failed"; }
    t6=$(now_ms)
    wait "$wp" || true
    during=$(wrk_stats "$T/wrk.swap")
    [ -z "${WRK_OUT:-}" ] || cp "$T/wrk.base" "$T/wrk.swap" "$T/swap.out" "$WRK_OUT/" 2>/dev/null || true
    log "$how $cur>$next: $(grep -E 'Socket errors|Non-2xx' "$T/wrk.swap" | tr -s ' \n' ' ')"
    j=$T/swap.out
    st() { jq -r --arg s "$1" '[.steps[] | select(.step == $s) | .ms] | add // 0' "$j"; }
    local pull start health sw drain stop total own
    pull=$(st pull); start=$(( $(st memory) + $(st start) )); health=$(st health); sw=$(st switch)
    drain=$(st drain); stop=$(st stop); total=$((t6 - t0))
    own=$((total - health - drain))
    owns+=("$how=$own")
    rows+=("$(printf '%-9s %-7s %6s %6s %6s %6s %6s %6s %7s | %7s %6s %8s %10s %4s | %8s %6s' \
        "$how" "$cur>$next" "$pull" "$start" "$health" "$sw" "$drain" "$stop" "$total" \
        $during "$(after "$T/wrk.swap" "$t6" | tr ' ' /)" "$(dead "$T/wrk.swap" "$ws")" \
        $(echo "$base" | awk '{print $3, $2}'))")
    cur=$next
    wait_body "$cur"
}

# the family stack under frun up, on the port the by-hand stack used (which goes first)
frun_up_family() {
    local c
    for c in $(frun ps -a --format json | jq -r '.[].id'); do frun rm -f "$c" >/dev/null; done
    mkdir -p "$T/family"
    cp "$REPO/examples/family/proxy.conf.tmpl" "$T/family/"
    sed -e "s/127.0.0.1:8080:80/127.0.0.1:$PORT:80/" -e "s/family\/app:v1/family\/app:$cur/" \
        -e 's/^interval = "2s"/interval = "200ms"/' "$REPO/examples/family/frun.toml" >"$T/family/frun.toml"
    frun up -f "$T/family/frun.toml" >/dev/null
    wait_body "$cur"
}

# the family app alone under frun up, publishing its own port (no proxy): a swap hands
# the listening socket over between the holders
frun_up_solo() {
    local c
    for c in $(frun ps -a --format json | jq -r '.[].id'); do frun rm -f "$c" >/dev/null; done
    mkdir -p "$T/solo"
    cat >"$T/solo/frun.toml" <<EOF
name = "solo"

[app]
image = "family/app:$cur"
port = 8080
ports = ["127.0.0.1:$PORT:8080"]
memory = "64m"
stop_grace = "5s"

[app.health]
http = "/"
interval = "200ms"
timeout = "1s"
retries = 3
start_period = "10s"
EOF
    frun up -f "$T/solo/frun.toml" >/dev/null
    wait_body "$cur"
}

declare -a owns=()
for c in $CONTENDERS; do
    case $c in
        naive | by-hand)
            for r in $(seq "$ROUNDS"); do log "$c: swap $r of $ROUNDS"; one_swap "$c"; done ;;
        frun-swap)
            if "$F" swap --help >/dev/null 2>&1; then
                frun_up_family
                for r in $(seq "$ROUNDS"); do log "$c: swap $r of $ROUNDS"; frun_swap_round frun-swap "$T/family/frun.toml"; done
            else
                rows+=("frun-swap: not measured: this frun has no \`swap\` yet (issue 12)")
            fi ;;
        frun-swap-ports)
            frun_up_solo
            for r in $(seq "$ROUNDS"); do log "$c: swap $r of $ROUNDS"; frun_swap_round frun-swap-ports "$T/solo/frun.toml"; done ;;
        *) die "unknown contender $c" ;;
    esac
done

echo
echo "frun swap benchmark: $ROUNDS swaps per contender, wrk -t$WRK_THREADS -c$WRK_CONNS ${WINDOW}s windows on GET /version through nginx (frun-swap-ports: on the app's own published port); frun ${FRUN_REV:-?}; $(nproc) CPUs, $(uname -r)"
echo "times in ms; 'during' = the window with the swap in it, 'base' = the same window length just before, without a swap"
echo "'after ok/bad' = responses (2xx with a v1/v2 body / other) in the whole clock seconds after the old app was removed"
echo "  (0/0: nothing answered at all, requests hung); 'dead' = whole seconds of the window without one successful response"
echo "'failed' = wrk's non-2xx + socket errors (timeouts included); requests still hanging when the window ends are not counted"
printf '%-9s %-7s %6s %6s %6s %6s %6s %6s %7s | %7s %6s %8s %10s %4s | %8s %6s\n' \
    contender swap pull start health switch drain stop total "req" failed p99ms "after" dead "base-p99" failed
for r in "${rows[@]}"; do echo "$r"; done
echo
# per contender: failed requests over its swaps, worst p99 during / base
for c in $CONTENDERS; do
    printf '%s\n' "${rows[@]}" | awk -v c="$c" '$1 == c && $2 ~ />/ {
        split($0, part, "|"); split(part[2], d, " "); split(part[3], b, " ");
        failed += d[2]; if (b[1] > 0) { r = d[3] / b[1]; if (r > worst) worst = r } n++ }
        END { if (n) printf "%-9s %d swaps: %d failed requests; worst p99 during/base %.2fx\n", c, n, failed, worst }'
done
if [ ${#owns[@]} -gt 0 ]; then
    echo "frun's own time per swap (total - health wait - drain), ms: ${owns[*]} (target: < 300; the drain includes a fixed 200 ms wait for connections the proxy opened just before the switch)"
fi
