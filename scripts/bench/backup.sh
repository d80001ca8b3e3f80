#!/bin/bash
# Benchmark (not a test): issue 13's. A sqlite database of SIZE_MB (default 200) on a
# stack's volume, a writer inserting one row per transaction as fast as it can (Python's
# sqlite3, on the host, in the database's journal MODE), and three copies in the same run,
# one after the other, each timed, with the longest time the writer waited for one commit
# during it:
#   cp        a plain `cp` of the database file (what the classic script did; in WAL mode
#             it even misses what is still in the -wal file)
#   sqlite3   `sqlite3 DB '.timeout 10000' '.backup COPY'` (the careful manual way)
#   frun      `frun backup` of the stack (online backup + integrity_check + tar + zstd +
#             sha256 + fsync; the stack's app is not running, so nothing is frozen: the
#             stall is what the database copy costs the writer)
# Output: one line per contender, then ratio lines (frun / cp, frun / sqlite3).
#
# usage: scripts/bench/backup.sh        (as root; sqlite3 and python3 from test.txt)
# env:   SIZE_MB=200  MODE=wal|delete  FRUN_BIN=PATH (default: builds the checkout, release)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$here/../.." && pwd)
SIZE_MB=${SIZE_MB:-200}
MODE=${MODE:-wal}
log() { echo "bench/backup: $*" >&2; }

if [ -z "${FRUN_BIN:-}" ]; then
    (cd "$REPO" && cargo build --release --locked -q)
    FRUN_BIN=$REPO/target/release/frun
fi
tmp=$(mktemp -d /tmp/frun-bench-backup.XXXXXX)
writer_pid=
cleanup() {
    [ -z "$writer_pid" ] || kill "$writer_pid" 2>/dev/null || true
    [ -z "$writer_pid" ] || wait "$writer_pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
export FRUN_ROOT=$tmp/root FRUN_RUN_ROOT=$tmp/run
frun() { "$FRUN_BIN" "$@"; }

# 1. The stack and its volume; the database filled in one transaction.
mkdir -p "$tmp/stack"
cat >"$tmp/stack/frun.toml" <<EOF
name = "bench"
[app]
image = "family/app:v1"
[data]
volumes = ["benchdb:/var/db"]
EOF
frun volume create benchdb >/dev/null
db=$FRUN_ROOT/volumes/benchdb/_data/app.sqlite3
rows=$((SIZE_MB * 1024 * 1024 / 230))
python3 - "$db" "$MODE" "$rows" <<'EOF'
import sqlite3, sys
db, mode, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = sqlite3.connect(db)
c.execute(f"PRAGMA journal_mode={mode}")
c.execute("CREATE TABLE visits(id INTEGER PRIMARY KEY, at REAL, who TEXT, payload BLOB)")
c.execute("BEGIN")
c.executemany("INSERT INTO visits(at, who, payload) VALUES (?, ?, randomblob(150))",
              ((i, f"visitor {i} from town {i % 977}") for i in range(rows)))
c.execute("COMMIT")
c.close()
EOF
log "database: $(du -m "$db" | cut -f1) MB, $rows rows, journal mode $MODE"

# 2. The writer: one INSERT per transaction, forever; logs every commit slower than 2 ms
#    as "END_NS DURATION_MS" (the clock is CLOCK_REALTIME, as date +%s%N).
python3 - "$db" "$tmp/stalls" <<'EOF' &
import sqlite3, sys, time
db, out = sys.argv[1], open(sys.argv[2], "w", buffering=1)
c = sqlite3.connect(db, timeout=30, isolation_level=None)
c.execute("PRAGMA synchronous=NORMAL")
n = 0
while True:
    t0 = time.time_ns()
    c.execute("INSERT INTO visits(at, who, payload) VALUES (?, 'writer', randomblob(150))", (t0,))
    t1 = time.time_ns()
    n += 1
    if t1 - t0 > 2_000_000:
        out.write(f"{t1} {(t1 - t0) / 1e6:.1f}\n")
EOF
writer_pid=$!
sleep 2

# longest_stall START_NS END_NS: the longest commit that ended in the window (ms).
longest_stall() {
    awk -v a="$1" -v b="$2" '$1 >= a && $1 <= b + 100000000 && $2 > m { m = $2 } END { printf "%.1f", m + 0 }' "$tmp/stalls"
}
# run NAME CMD...: times CMD (ms) and the writer's longest stall meanwhile.
declare -A took stall
run() {
    local name=$1 t0 t1
    shift
    sync
    sleep 1
    t0=$(date +%s%N)
    "$@" >/dev/null
    t1=$(date +%s%N)
    sleep 0.2
    took[$name]=$(((t1 - t0) / 1000000))
    stall[$name]=$(longest_stall "$t0" "$t1")
    printf '%-8s %7d ms   longest write stall %7s ms\n' "$name" "${took[$name]}" "${stall[$name]}"
}

run cp cp "$db" "$tmp/cp.sqlite3"
run sqlite3 sqlite3 "$db" ".timeout 10000" ".backup $tmp/backup.sqlite3"
run frun frun backup -f "$tmp/stack/frun.toml"
kill "$writer_pid"
wait "$writer_pid" 2>/dev/null || true
writer_pid=
frun backups -f "$tmp/stack/frun.toml" | tail -n +2 | awk '{ print "archive: " $1 ", " $3 " " $4 }'
awk -v f="${took[frun]}" -v c="${took[cp]}" -v s="${took[sqlite3]}" 'BEGIN {
    printf "ratio frun/cp      %.2f (target <= 2)\n", f / (c ? c : 1)
    printf "ratio frun/sqlite3 %.2f\n", f / (s ? s : 1)
}'
echo "longest stall during frun backup: ${stall[frun]} ms (target <= 50)"
