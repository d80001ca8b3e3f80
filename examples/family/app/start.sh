#!/bin/sh
# The app's pid 1: busybox httpd serving /www (CGI under /www/cgi-bin) on port 8080.
# httpd runs as a child: as pid 1 it would ignore SIGTERM and every stop would wait for
# the grace period and SIGKILL. On TERM/INT the app ends at once (the stack drains
# requests before it stops an app).
trap 'kill -TERM "$pid" 2>/dev/null; exit 0' TERM INT
echo "family app $(cat /app/VERSION) listening on :8080 as uid $(id -u)"
httpd -f -v -p 8080 -h /www &
pid=$!
wait "$pid"
