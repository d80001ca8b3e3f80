#!/bin/bash
# Benchmark (not a test): issue 13's. The family app (busybox httpd + sqlite3, as uid 1000)
# runs as a frun stack whose volume holds its database grown to SIZE_MB (WAL mode by
# default) and FILES_MB of plain files; a client asks GET /cgi-bin/visit (one INSERT per
# request, its own transaction, through the app's sqlite3) one request after the other for
# the whole run. Contenders, one after the other in the same run, each timed, with what
# the app's requests saw meanwhile:
#   cp        `cp` of the database file alone (the reference of the issue's target: frun
#             within twice a plain copy; in WAL mode it even misses what is in the -wal)
#   cpsync    the same `cp`, then `sync FILE` (its fsync): a plain copy that survives a
#             power cut, as an archive must
#   classic   the careful script: `sqlite3 DB '.timeout 10000' '.backup COPY'` on the host,
#             then tar of the volume (the copy instead of the live database) | zstd -1
#   exec      the same through the container: `frun exec APP sqlite3 ... '.backup'` into
#             the volume, then tar | zstd -1 on the host (what a user can do without
#             sqlite3 on the host)
#   frun      `frun backup` (online backup + integrity_check of the copy, the app frozen
#             while the other files are copied, tar + zstd -1 + sha256 + fsync)
#   frun2     the same with another binary (FRUN_BIN2) and/or environment (FRUN_ENV2="K=V ..."),
#             for an A/B of two builds in one run (frun3, frun4...: FRUN_BIN2 with FRUN_ENV3...)
#   online    the floor of a consistent, checked copy: sqlite's own online backup in one
#             step (python3's sqlite3, `backup(pages=-1)`) + `PRAGMA integrity_check` of the
#             copy, nothing else
#   careful   `online`, then the archive as frun makes it with the command-line tools:
#             tar of the volume | zstd -1 | tee >(sha256sum) > file, fsync; no freeze
# Per contender: its time, its archive's size, and the app's requests that overlapped it
# (count, failed, p50/p99/max latency: the stall the app's users saw) beside those of a
# quiet window of QUIET seconds just before it; for frun also how long it kept the app
# frozen and the requests during each of its phases (from its log). Also the pressure
# stall information (/proc/pressure/{cpu,io}: ms some task waited) of each window and the
# load average. Then the ratios frun / each peer. (sqlite3's `.backup` copies 100 pages a step
# and starts over whenever another connection writes the database: under the app's writes
# the peers' copies take as long as it takes to get through between two writes. frun
# copies in one step, one read transaction, which writers in WAL mode do not wait for.)
#
# usage: scripts/bench/backup.sh      (as root)
# env:   SIZE_MB=200 FILES_MB=20 MODE=wal|delete QUIET=8  FRUN_BIN=PATH (default: builds
#        the checkout, release)  CONTENDERS="cp classic exec frun"
#        PEER_LIMIT=240 (seconds a sqlite3 .backup peer may take before it is told as unfinished)
#        FRUN_BIN2=PATH FRUN_ENV2="K=V ..." (contender frun2)  ROUNDS=1 (each contender again)
#        SAVE=DIR (keeps the request log and each contender's output there)
#        PERF=DIR (frun's contenders run under `perf record -g`, the data kept there)
#        BENCH_CPU_SHARES=N inside FRUN_ENV<N>: that frun in a cpu cgroup of its own (v1)
#
# Everything runs inside scripts/in-netns.sh (a fresh network namespace with only loopback)
# and a private mount namespace; the family images are built by examples/family/build.sh
# (umoci) and served by scripts/registry.sh start-hub. Own state root, run root and cgroup
# parent (/frun-bench-backup) under a temp dir in /var/tmp; all removed at the end, even on
# failure.
set -euo pipefail

MARK=__frun_bench_backup_inner__
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$here/../.." && pwd)
CG=/frun-bench-backup
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY
unset FRUN_ROOT FRUN_RUN_ROOT FRUN_CGROUP_PARENT FRUN_BRIDGE FRUN_SUBNET RUST_LOG FRUN_REGISTRY_MIRROR

die() { echo "bench/backup: $*" >&2; exit 1; }
log() { echo "bench/backup: $*" >&2; }

# shellcheck source=scripts/bench/lib.sh
. "$here/lib.sh"

SIZE_MB=${SIZE_MB:-200}
FILES_MB=${FILES_MB:-20}
MODE=${MODE:-wal}
CONTENDERS=${CONTENDERS:-cp classic exec frun}
PEER_LIMIT=${PEER_LIMIT:-240}
PORT=18081

# ============================== outer: host namespace =========================================
if [ "${1:-}" != "$MARK" ]; then
    [ "$(id -u)" = 0 ] || die "must run as root"
    for t in sqlite3 python3 zstd tar jq umoci; do
        command -v "$t" >/dev/null || die "$t missing: scripts/install-packages.sh scripts/packages/test.txt"
    done
    if [ -z "${FRUN_BIN:-}" ]; then
        log "building frun (cargo build --release --locked)"
        (cd "$REPO" && cargo build --release --locked -q) || die "cargo build --release failed"
        FRUN_BIN=$REPO/target/release/frun
        rev=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')
    else
        [ -x "$FRUN_BIN" ] || die "FRUN_BIN=$FRUN_BIN is not an executable"
        rev="$FRUN_BIN (sha256 $(sha256sum "$FRUN_BIN" | cut -c1-12))"
    fi
    T=$(mktemp -d /var/tmp/frun-bench-backup.XXXXXX)
    cleanup() {
        local rc=$?
        umount_under "$T"
        # What the bench's frun left running in its own cgroup parent (its supervisor
        # when the run was interrupted) ends by pid, then the cgroups go.
        for d in /sys/fs/cgroup/*/"${CG#/}" /sys/fs/cgroup/"${CG#/}"; do
            [ -d "$d" ] || continue
            for p in $(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        done
        sleep 0.2
        for d in /sys/fs/cgroup/*/"${CG#/}" /sys/fs/cgroup/"${CG#/}"; do
            [ -d "$d" ] || continue
            find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || log "cgroup $d is not empty"
        done
        rm -rf "$T"
        exit $rc
    }
    trap cleanup EXIT
    mkdir -p "$T/bin"
    cp "$FRUN_BIN" "$T/bin/frun"   # a private copy: a concurrent rebuild cannot change it mid-run
    cp "${FRUN_BIN2:-$FRUN_BIN}" "$T/bin/frun2"
    log "frun $rev; database ${SIZE_MB} MB ($MODE), files ${FILES_MB} MB"
    [ -z "${FRUN_BIN2:-}" ] || log "frun2...: $FRUN_BIN2 (sha256 $(sha256sum "$T/bin/frun2" | cut -c1-12))"
    for v in $(compgen -v FRUN_ENV); do log "$v: ${!v}"; done
    "$REPO/scripts/in-netns.sh" unshare --mount --propagation private -- \
        /bin/bash "${BASH_SOURCE[0]}" "$MARK" "$T"
    exit
fi

# ============================== inner: the bench namespace =====================================
T=$2
F=$T/bin/frun
frun() { "$F" --root "$T/root" --run-root "$T/run" --cgroup-parent "$CG" "$@"; }
export FRUN_REGISTRY_MIRROR=127.0.0.1:5002
client_pid=

inner_cleanup() {
    [ -z "$client_pid" ] || kill "$client_pid" 2>/dev/null || true
    frun down -f "$T/stack/frun.toml" >/dev/null 2>&1 || true
    local c
    for c in $(frun ps -a --format json 2>/dev/null | jq -r '.[].id' 2>/dev/null); do frun rm -f "$c" >/dev/null 2>&1 || true; done
    [ ! -f "$T/registry/pids" ] || "$REPO/scripts/registry.sh" stop "$T/registry" >/dev/null 2>&1 || true
}
trap inner_cleanup EXIT

log "building the family images and the registry"
"$REPO/examples/family/build.sh" "$T/images" >/dev/null
"$REPO/scripts/registry.sh" start-hub "$T/registry" "$T/images" 2>/dev/null

# 1. The stack: the app alone, its port published, one volume.
mkdir -p "$T/stack"
cat >"$T/stack/frun.toml" <<EOF
name = "bench"
[app]
image = "family/app:v1"
port = 8080
ports = ["127.0.0.1:$PORT:8080"]
memory = "256m"
[app.health]
http = "/"
interval = "2s"
[data]
volumes = ["benchdb:/var/db"]
EOF
frun up -f "$T/stack/frun.toml" >/dev/null
vol=$T/root/volumes/benchdb/_data
db=$vol/production.sqlite3
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/cgi-bin/visit" >/dev/null && break; sleep 0.2; done
[ -f "$db" ] || die "the app made no database at $db"

# 2. The data: the database grown (a ballast table, in one transaction, on the host: the
#    same file), the plain files beside it; owners as the app's.
python3 - "$db" "$MODE" "$SIZE_MB" <<'EOF'
import sqlite3, sys
db, mode, mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = sqlite3.connect(db, timeout=30)
c.execute(f"PRAGMA journal_mode={mode}")
c.execute("CREATE TABLE IF NOT EXISTS ballast(id INTEGER PRIMARY KEY, who TEXT, payload BLOB)")
rows = mb * 1024 * 1024 // 200
c.execute("BEGIN")
c.executemany("INSERT INTO ballast(who, payload) VALUES (?, randomblob(150))",
              ((f"visitor {i} from town {i % 977}",) for i in range(rows)))
c.execute("COMMIT")
c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
c.close()
EOF
mkdir -p "$vol/uploads"
for i in $(seq "$FILES_MB"); do head -c 1048576 /dev/urandom >"$vol/uploads/photo-$i.jpg"; done
chown -R 1000:1000 "$vol"
log "data: database $(du -m "$db" | cut -f1) MB ($MODE), files $(du -sm "$vol/uploads" | cut -f1) MB"

# 3. The app's client: one GET /cgi-bin/visit after the other, each logged as
#    "START_NS END_NS STATUS" (CLOCK_REALTIME, as date +%s%N).
python3 - "$PORT" "$T/requests" <<'EOF' &
import http.client, sys, time
port, out = int(sys.argv[1]), open(sys.argv[2], "w", buffering=1)
while True:
    t0 = time.time_ns()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", "/cgi-bin/visit")
        r = c.getresponse()
        r.read()
        status = r.status
        c.close()
    except Exception:
        status = 0
    out.write(f"{t0} {time.time_ns()} {status}\n")
EOF
client_pid=$!
sleep 3

# window START_NS END_NS -> "requests failed p50_ms p99_ms max_ms" of the requests that
# overlapped it
window() {
    awk -v a="$1" -v b="$2" '$2 >= a && $1 <= b { if ($3 != 200) f++; print ($2 - $1) / 1e6 }
        END { if (f) print "failed", f > "/dev/stderr" }' "$T/requests" 2>"$T/failed" | sort -n >"$T/lat"
    awk -v f="$(awk '{print $2}' "$T/failed")" '{ v[NR] = $1 } END {
        if (NR == 0) { printf "0 %d 0 0 0", f + 0; exit }
        i50 = int(NR * 0.5); if (i50 < 1) i50 = 1; i99 = int(NR * 0.99 + 0.999); if (i99 > NR) i99 = NR
        printf "%d %d %.1f %.1f %.1f", NR, f + 0, v[i50], v[i99], v[NR] }' "$T/lat"
}

# psi: "cpu_some io_some io_full mem_some" totals in microseconds (/proc/pressure), or zeros
psi() {
    local c i m
    c=$(awk '/^some/ { sub("total=", "", $5); print $5 }' /proc/pressure/cpu 2>/dev/null || echo 0)
    i=$(awk '{ sub("total=", "", $5); printf "%s ", $5 }' /proc/pressure/io 2>/dev/null || echo "0 0")
    m=$(awk '/^some/ { sub("total=", "", $5); print $5 }' /proc/pressure/memory 2>/dev/null || echo 0)
    echo "${c:-0} ${i:-0 0} ${m:-0}"
}
# psi_ms BEFORE AFTER -> "cpu_some io_some io_full mem_some" in ms between the two
psi_ms() {
    awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ")
        printf "%d %d %d %d", (y[1] - x[1]) / 1000, (y[2] - x[2]) / 1000, (y[3] - x[3]) / 1000, (y[4] - x[4]) / 1000 }'
}

declare -A took size during quiet pressure load ends
mkdir -p "$T/out"
# bench KEY CMD...: a quiet window (QUIET s, no backup), then CMD timed; the requests of
# both, the pressure stall and the load average during CMD.
QUIET=${QUIET:-8}
bench() {
    local key=$1 t0 t1 q0 p0
    shift
    sync
    q0=$(date +%s%N)
    sleep "$QUIET"
    quiet[$key]=$(window "$q0" "$(date +%s%N)")
    p0=$(psi)
    t0=$(date +%s%N)
    "$@" >"$T/out/$key.stdout" 2>"$T/out/$key.stderr" || { cat "$T/out/$key.stderr" >&2; die "$key failed"; }
    t1=$(date +%s%N)
    pressure[$key]=$(psi_ms "$p0" "$(psi)")
    load[$key]=$(cut -d' ' -f1 /proc/loadavg)
    sleep 0.5
    took[$key]=$(((t1 - t0) / 1000000))
    ends[$key]=$t1
    during[$key]=$(window "$t0" "$t1")
}

# The peers' archives: the volume as tar | zstd -1, the live database (and its -wal,
# -shm) replaced by the consistent copy COPY.
# (GNU tar exits 1 when a file changed as it read it: the live database's directory
# does, and it is left out anyway.)
tar_volume() { # tar_volume COPY OUT
    { tar -C "$vol" --warning=no-file-changed --exclude=./production.sqlite3 \
        --exclude=./production.sqlite3-wal --exclude=./production.sqlite3-shm \
        --exclude=./.copy.sqlite3 -cf - . \
        --transform "s|^|volume/|" -C "$(dirname "$1")" "$(basename "$1")" || [ $? -eq 1 ]; } |
        zstd -1 -q -c >"$2"
}
c_cp() { cp "$db" "$T/out/$1.sqlite3"; }
# The same copy made durable, as a backup must be (coreutils' sync FILE: its fsync).
c_cpsync() { cp "$db" "$T/out/$1.sqlite3" && sync "$T/out/$1.sqlite3"; }
# sqlite3's .backup copies in steps and starts over whenever the app writes: under a
# steady writer it may never end. Bounded by PEER_LIMIT seconds, then told as such.
dnf() { # dnf KEY: the peer did not finish
    log "$1 did not finish within ${PEER_LIMIT}s (sqlite's .backup starts over at every write of the app)"
    touch "$T/out/$1.dnf"
}
c_classic() {
    timeout "$PEER_LIMIT" sqlite3 "$db" ".timeout 10000" ".backup $T/out/$1.sqlite3" || { dnf "$1"; return 0; }
    tar_volume "$T/out/$1.sqlite3" "$T/out/$1.tar.zst"
    rm -f "$T/out/$1.sqlite3"
}
c_exec() {
    timeout "$PEER_LIMIT" "$F" --root "$T/root" --run-root "$T/run" --cgroup-parent "$CG" \
        exec bench-app.1 sqlite3 /var/db/production.sqlite3 ".timeout 10000" ".backup /var/db/.copy.sqlite3" || { dnf "$1"; return 0; }
    tar_volume "$vol/.copy.sqlite3" "$T/out/$1.tar.zst"
    rm -f "$vol/.copy.sqlite3"
}
# sqlite's online backup in one step (one read transaction: WAL writers do not wait),
# then integrity_check of the copy: the least a consistent, checked copy costs.
online_copy() { # online_copy COPY
    python3 - "$db" "$1" <<'PY'
import sqlite3, sys
src = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=10)
dst = sqlite3.connect(sys.argv[2])
src.backup(dst, pages=-1)
dst.close()
src.close()
c = sqlite3.connect(f"file:{sys.argv[2]}?immutable=1", uri=True)
r = c.execute("PRAGMA integrity_check").fetchall()
if r != [("ok",)]:
    sys.exit(f"integrity_check: {r[:5]}")
PY
}
c_online() { online_copy "$T/out/$1.sqlite3"; }
c_careful() {
    online_copy "$T/out/$1.sqlite3"
    tar_volume "$T/out/$1.sqlite3" /dev/stdout | tee "$T/out/$1.tar.zst" | sha256sum >"$T/out/$1.sha256"
    sync -d "$T/out/$1.tar.zst"
    rm -f "$T/out/$1.sqlite3"
}
# frun's log lines carry the phases' times (RUST_LOG below): "phase=NAME" at each start.
perf_() { # perf_ KEY CMD...: CMD, under perf record when PERF is set
    local key=$1
    shift
    if [ -n "${PERF:-}" ]; then
        perf record -q -g -o "$PERF/$key.data" -- "$@"
    else
        "$@"
    fi
}
c_frun() {
    RUST_LOG=warn,frun::backup=debug perf_ "$1" "$T/bin/frun" --root "$T/root" --run-root "$T/run" \
        --cgroup-parent "$CG" backup -f "$T/stack/frun.toml" --format json
}
# frun2, frun3...: the binary FRUN_BIN2 (default: the same), the environment FRUN_ENV<N>
c_frunv() { # c_frunv KEY N
    local envv=FRUN_ENV$2 kv
    (
        for kv in ${!envv:-}; do export "${kv?}"; done
        # BENCH_CPU_SHARES=N (in FRUN_ENV<N>): frun runs in a cpu cgroup of its own beside
        # the app's, with that weight (v1 cpu.shares), to see what a low weight does.
        if [ -n "${BENCH_CPU_SHARES:-}" ] && [ -d /sys/fs/cgroup/cpu ]; then
            mkdir -p "/sys/fs/cgroup/cpu/${CG#/}/bench-bg"
            echo "$BENCH_CPU_SHARES" >"/sys/fs/cgroup/cpu/${CG#/}/bench-bg/cpu.shares"
            echo "$BASHPID" >"/sys/fs/cgroup/cpu/${CG#/}/bench-bg/cgroup.procs"
        fi
        RUST_LOG=warn,frun::backup=debug perf_ "$1" "$T/bin/frun2" --root "$T/root" --run-root "$T/run" \
            --cgroup-parent "$CG" backup -f "$T/stack/frun.toml" --format json
    )
}

# phases KEY END_NS: frun's phases from its log ("<rfc3339> DEBUG ... phase=NAME"), each
# with the requests that overlapped it.
phases() {
    local key=$1 end=$2 name start prev_name= prev_start=
    while read -r start name; do
        [ -z "$prev_name" ] || printf '    %-14s %6d ms | %s\n' "$prev_name" $(((start - prev_start) / 1000000)) "$(window "$prev_start" "$start")"
        prev_name=$name prev_start=$start
    done < <(sed -n 's/^\([0-9T:.-]*Z\) .*backup phase.*phase="\{0,1\}\([a-z-]*\)"\{0,1\}.*/\1 \2/p' "$T/out/$key.stderr" |
        while read -r ts n; do echo "$(date -d "$ts" +%s%N) $n"; done)
    [ -z "$prev_name" ] || printf '    %-14s %6d ms | %s\n' "$prev_name" $(((end - prev_start) / 1000000)) "$(window "$prev_start" "$end")"
}

ROUNDS=${ROUNDS:-1}
keys=()
for r in $(seq "$ROUNDS"); do
    for c in $CONTENDERS; do
        key=$c
        [ "$ROUNDS" = 1 ] || key=$c.$r
        keys+=("$key")
        log "measuring $key"
        case $c in
        frun[0-9]*) bench "$key" c_frunv "$key" "${c#frun}" ;;
        *) bench "$key" "c_$c" "$key" ;;
        esac
    done
done
kill "$client_pid" 2>/dev/null || true
wait "$client_pid" 2>/dev/null || true
client_pid=
if [ -n "${SAVE:-}" ]; then
    mkdir -p "$SAVE" && cp "$T/requests" "$T"/out/*.std* "$SAVE/"
    frun logs bench-app.1 >"$SAVE/app.log" 2>&1 || true
fi
# A failed request is told with what the app said about it (its CGI writes to stderr).
if awk '$3 != 200 { f = 1 } END { exit !f }' "$T/requests"; then
    log "failed requests (start_ns end_ns status):"
    awk '$3 != 200' "$T/requests" | head -5 >&2
    frun logs bench-app.1 2>&1 | grep -i "visit:\|error\|fail" | tail -5 >&2 || true
fi

log "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A frozen
for k in "${keys[@]}"; do
    case $k in
    cp*) size[$k]=$(stat -c %s "$T/out/$k.sqlite3" 2>/dev/null || echo 0) ;; # cp, cpsync
    online*) size[$k]=$(stat -c %s "$T/out/$k.sqlite3" 2>/dev/null || echo 0) ;;
    frun*)
        if [ -s "$T/out/$k.stdout" ]; then
            size[$k]=$(jq -r .size "$T/out/$k.stdout")
            frozen[$k]=$(jq -r .timings.frozen_ms "$T/out/$k.stdout")
            log "$k's own timings: $(jq -c .timings "$T/out/$k.stdout")"
        fi
        ;;
    *) size[$k]=$(stat -c %s "$T/out/$k.tar.zst" 2>/dev/null || echo 0) ;;
    esac
done

# A row: time, archive, and the requests during it (count, failed, p50/p99/max ms) beside
# those of the quiet window before it; the pressure stalls during it (ms) and the load.
printf '%-10s %8s %8s | %-30s | %-30s | %s\n' contender time_ms arch_MB \
    "during: req fail p50 p99 max" "quiet before: req fail p50 p99 max" "psi ms: cpu io io-full mem | load"
for k in "${keys[@]}"; do
    printf '%-10s %8d %8.1f | %-30s | %-30s | %s | %s%s\n' "$k" "${took[$k]}" \
        "$(awk -v s="${size[$k]:-0}" 'BEGIN { print s / 1e6 }')" "${during[$k]}" "${quiet[$k]}" \
        "${pressure[$k]}" "${load[$k]}" \
        "$([ ! -e "$T/out/$k.dnf" ] || echo "  DID NOT FINISH within ${PEER_LIMIT}s")"
    case $k in
    frun*)
        echo "    (app frozen ${frozen[$k]:--} ms; phases: time | requests during: req fail p50 p99 max)"
        phases "$k" "${ends[$k]}"
        ;;
    esac
done
for k in "${keys[@]}"; do
    case $k in frun*) ;; *) continue ;; esac
    r=${k#*.}
    [ "$r" = "$k" ] && r=
    for p in "${keys[@]}"; do
        case $p in frun*) continue ;; esac
        pr=${p#*.}
        [ "$pr" = "$p" ] && pr=
        [ "$pr" = "$r" ] || continue
        if [ -e "$T/out/$p.dnf" ]; then
            echo "$k/$p: $p did not finish within ${PEER_LIMIT}s; $k took ${took[$k]} ms"
            continue
        fi
        awk -v p="$p" -v k="$k" -v ft="${took[$k]}" -v pt="${took[$p]}" -v fs="${size[$k]}" -v ps="${size[$p]}" \
            -v fd="${during[$k]}" -v pd="${during[$p]}" 'BEGIN {
            split(fd, f, " "); split(pd, q, " ")
            printf "%s/%-10s time %.2f   request p99 %.2f   longest request %.2f", k, p, ft / (pt ? pt : 1),
                f[4] / (q[4] ? q[4] : 1), f[5] / (q[5] ? q[5] : 1)
            if (p !~ /^(cp|online)/) printf "   archive size %.2f", fs / (ps ? ps : 1)
            printf "\n" }'
    done
done
