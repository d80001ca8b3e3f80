#!/bin/sh
# family/app:broken: starts, says why it cannot serve, and never listens (a swap to it must
# fail its health check and leave the running app serving).
trap 'exit 0' TERM INT
echo "family app broken: cannot open the database (this image never becomes healthy)" >&2
while :; do
    sleep 1 &
    wait $!
done
