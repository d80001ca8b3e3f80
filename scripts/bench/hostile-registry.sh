#!/bin/bash
# Measurement (not a test): what a hostile registry costs `frun pull`. A Python server on
# 127.0.0.1 in a fresh network namespace answers the manifest request with
#   huge:    a 1000 MB manifest (Content-Length 1000000000, sent as fast as it is read)
#   chunked: an endless chunked manifest (no length)
#   errbody: a 500 with a 20 MB body full of terminal escapes
# and the script prints, per case, frun's peak RSS (/usr/bin/time), the bytes the server
# got to send, how many requests it saw, and the first line of frun's error.
#
# usage: scripts/bench/hostile-registry.sh [FRUN ...]     (as root)
#   FRUN: binaries to compare (default: target/debug/frun), e.g. an older build first.
# env:   CASES="huge chunked errbody"   FRUN_RETRY_WINDOW=5 (seconds; older builds ignore it)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
[ "$(id -u)" = 0 ] || { echo "$0: run as root (network namespace)" >&2; exit 2; }
if [ "${1:-}" != __inner__ ]; then
    exec scripts/in-netns.sh "$0" __inner__ "$@"
fi
shift
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(target/debug/frun)
tmp=$(mktemp -d /tmp/frun-hostile.XXXXXX)
trap 'kill "$srv" 2>/dev/null || true; rm -rf "$tmp"' EXIT

cat >"$tmp/server.py" <<'EOF'
import socket, sys, threading
case, port_file, stats = sys.argv[1], sys.argv[2], sys.argv[3]
sent = 0; requests = 0; lock = threading.Lock()
def handle(c):
    global sent, requests
    f = c.makefile('rb')
    try:
        while True:
            head = b''
            while not head.endswith(b'\r\n\r\n'):
                line = f.readline()
                if not line: return
                head += line
            with lock: requests += 1
            if head.startswith(b'GET /v2/ '):
                c.sendall(b'HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n'); continue
            def out(b):
                global sent
                c.sendall(b)
                with lock: sent += len(b)
            if case == 'huge':
                out(b'HTTP/1.1 200 OK\r\ncontent-type: application/vnd.oci.image.manifest.v1+json\r\ncontent-length: 1000000000\r\n\r\n')
                block = b' ' * (1 << 20)
                for _ in range(1000000000 // len(block)): out(block)
            elif case == 'chunked':
                out(b'HTTP/1.1 200 OK\r\ncontent-type: application/vnd.oci.image.manifest.v1+json\r\ntransfer-encoding: chunked\r\n\r\n')
                block = b'%x\r\n%s\r\n' % (1 << 20, b' ' * (1 << 20))
                for _ in range(2000): out(block)
                out(b'0\r\n\r\n')
            else:
                body = (b'\x1b]0;pwned\x07\x1b[32m\nfrun: pulled OK\r\n' * 600000)[:20000000]
                out(b'HTTP/1.1 500 Internal Server Error\r\ncontent-length: %d\r\n\r\n' % len(body))
                out(body)
    except OSError:
        pass
    finally:
        with open(stats, 'w') as s: s.write('%d %d\n' % (sent, requests))
        c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', 0)); s.listen(16)
open(port_file, 'w').write(str(s.getsockname()[1]))
while True:
    c, _ = s.accept(); threading.Thread(target=handle, args=(c,), daemon=True).start()
EOF

printf '%-8s %-34s %10s %14s %8s  %s\n' CASE FRUN MAX_RSS SERVER_SENT REQUESTS ERROR
for case in ${CASES:-huge chunked errbody}; do
    for bin in "${bins[@]}"; do
        rm -f "$tmp/port" "$tmp/stats"
        python3 "$tmp/server.py" "$case" "$tmp/port" "$tmp/stats" & srv=$!
        for _ in $(seq 50); do [ -s "$tmp/port" ] && break; sleep 0.1; done
        port=$(cat "$tmp/port")
        rm -rf "$tmp/root"
        FRUN_RETRY_WINDOW=${FRUN_RETRY_WINDOW:-5} /usr/bin/time -f '%M' -o "$tmp/rss" \
            timeout 300 "$bin" --root "$tmp/root" pull -q "127.0.0.1:$port/test/x:1" \
            >/dev/null 2>"$tmp/err" || true
        sleep 0.5
        kill "$srv" 2>/dev/null || true; wait "$srv" 2>/dev/null || true
        read -r sent reqs <"$tmp/stats" 2>/dev/null || { sent=?; reqs=?; }
        err=$(head -c 300 "$tmp/err" | head -1 | cat -v)
        printf '%-8s %-34s %8sKB %14s %8s  %s\n' "$case" "$bin" "$(tail -1 "$tmp/rss")" "$sent" "$reqs" "$err"
    done
done
