#!/bin/bash
# Benchmark (not a test): issue 13's. The family app (busybox httpd + sqlite3, as uid 1000)
# runs as a frun stack whose volume holds its database grown to SIZE_MB (WAL mode by
# default) and FILES_MB of plain files; a client asks GET /cgi-bin/visit (one INSERT per
# request, its own transaction, through the app's sqlite3) one request after the other for
# the whole run. Contenders, one after the other in the same run, each timed, with what
# the app's requests saw meanwhile:
#   cp        `cp` of the database file alone (the reference of the issue's target: frun
#             within twice a plain copy; in WAL mode it even misses what is in the -wal)
#   classic   the careful script: `sqlite3 DB '.timeout 10000' '.backup COPY'` on the host,
#             then tar of the volume (the copy instead of the live database) | zstd -1
#   exec      the same through the container: `frun exec APP sqlite3 ... '.backup'` into
#             the volume, then tar | zstd -1 on the host (what a user can do without
#             sqlite3 on the host)
#   frun      `frun backup` (online backup + integrity_check of the copy, the app frozen
#             while the other files are copied, tar + zstd -1 + sha256 + fsync)
# Per contender: its time, its archive's size, and the app's requests that overlapped it
# (count, failed, p50/p99/max latency: the stall the app's users saw) beside those of a
# quiet window of QUIET seconds just before it; for frun also how long it kept the app
# frozen. Then the ratios frun / each peer. (sqlite3's `.backup` copies 100 pages a step
# and starts over whenever another connection writes the database: under the app's writes
# the peers' copies take as long as it takes to get through between two writes. frun
# copies in one step, one read transaction, which writers in WAL mode do not wait for.)
#
# usage: scripts/bench/backup.sh      (as root)
# env:   SIZE_MB=200 FILES_MB=20 MODE=wal|delete QUIET=8  FRUN_BIN=PATH (default: builds
#        the checkout, release)  CONTENDERS="cp classic exec frun"
#        PEER_LIMIT=240 (seconds a sqlite3 .backup peer may take before it is told as unfinished)
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
    log "frun $rev; database ${SIZE_MB} MB ($MODE), files ${FILES_MB} MB"
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

declare -A took size during quiet
mkdir -p "$T/out"
# bench NAME CMD...: a quiet window (QUIET s, no backup), then CMD timed; the requests of
# both.
QUIET=${QUIET:-8}
bench() {
    local name=$1 t0 t1 q0
    shift
    sync
    q0=$(date +%s%N)
    sleep "$QUIET"
    quiet[$name]=$(window "$q0" "$(date +%s%N)")
    t0=$(date +%s%N)
    "$@" >"$T/out/$name.stdout"
    t1=$(date +%s%N)
    sleep 0.5
    took[$name]=$(((t1 - t0) / 1000000))
    during[$name]=$(window "$t0" "$t1")
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
c_cp() { cp "$db" "$T/out/cp.sqlite3"; }
# sqlite3's .backup copies in steps and starts over whenever the app writes: under a
# steady writer it may never end. Bounded by PEER_LIMIT seconds, then told as such.
dnf() { # dnf NAME: the peer did not finish
    log "$1 did not finish within ${PEER_LIMIT}s (sqlite's .backup starts over at every write of the app)"
    touch "$T/out/$1.dnf"
}
c_classic() {
    timeout "$PEER_LIMIT" sqlite3 "$db" ".timeout 10000" ".backup $T/out/classic.sqlite3" || { dnf classic; return 0; }
    tar_volume "$T/out/classic.sqlite3" "$T/out/classic.tar.zst"
    rm -f "$T/out/classic.sqlite3"
}
c_exec() {
    timeout "$PEER_LIMIT" "$F" --root "$T/root" --run-root "$T/run" --cgroup-parent "$CG" \
        exec bench-app.1 sqlite3 /var/db/production.sqlite3 ".timeout 10000" ".backup /var/db/.copy.sqlite3" || { dnf exec; return 0; }
    tar_volume "$vol/.copy.sqlite3" "$T/out/exec.tar.zst"
    rm -f "$vol/.copy.sqlite3"
}
c_frun() { frun backup -f "$T/stack/frun.toml" --format json; }

for c in $CONTENDERS; do
    log "measuring $c"
    bench "$c" "c_$c"
done
kill "$client_pid" 2>/dev/null || true
wait "$client_pid" 2>/dev/null || true
client_pid=

size[cp]=$(stat -c %s "$T/out/cp.sqlite3" 2>/dev/null || echo 0)
size[classic]=$(stat -c %s "$T/out/classic.tar.zst" 2>/dev/null || echo 0)
size[exec]=$(stat -c %s "$T/out/exec.tar.zst" 2>/dev/null || echo 0)
frozen=-
if [ -s "$T/out/frun.stdout" ]; then
    size[frun]=$(jq -r .size "$T/out/frun.stdout")
    frozen=$(jq -r .timings.frozen_ms "$T/out/frun.stdout")
    log "frun's own timings: $(jq -c .timings "$T/out/frun.stdout")"
fi

# A row: time, archive, and the requests during it (count, failed, p50/p99/max ms) beside
# those of the quiet window before it.
printf '%-8s %8s %8s | %-30s | %s\n' contender time_ms arch_MB \
    "during: req fail p50 p99 max" "quiet before: req fail p50 p99 max"
for c in $CONTENDERS; do
    printf '%-8s %8d %8.1f | %-30s | %s%s\n' "$c" "${took[$c]}" \
        "$(awk -v s="${size[$c]:-0}" 'BEGIN { print s / 1e6 }')" "${during[$c]}" "${quiet[$c]}" \
        "$([ ! -e "$T/out/$c.dnf" ] || echo "  DID NOT FINISH within ${PEER_LIMIT}s")"
done
echo "frun kept the app frozen ${frozen} ms"
if [ -n "${took[frun]:-}" ]; then
    for p in $CONTENDERS; do
        [ "$p" = frun ] && continue
        if [ -e "$T/out/$p.dnf" ]; then
            echo "frun/$p: $p did not finish within ${PEER_LIMIT}s; frun took ${took[frun]} ms"
            continue
        fi
        awk -v p="$p" -v ft="${took[frun]}" -v pt="${took[$p]}" -v fs="${size[frun]}" -v ps="${size[$p]}" \
            -v fd="${during[frun]}" -v pd="${during[$p]}" 'BEGIN {
            split(fd, f, " "); split(pd, q, " ")
            printf "frun/%-8s time %.2f   request p99 %.2f   longest request %.2f", p, ft / (pt ? pt : 1),
                f[4] / (q[4] ? q[4] : 1), f[5] / (q[5] ? q[5] : 1)
            if (p != "cp") printf "   archive size %.2f", fs / (ps ? ps : 1)
            printf "\n" }'
    done
fi
