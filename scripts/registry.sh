#!/bin/bash
# Test registries for frun, on loopback only. Run inside a network namespace
# (scripts/in-netns.sh): `start` refuses when any interface other than lo exists.
#
# usage: scripts/registry.sh start STATEDIR IMAGEDIR   (IMAGEDIR = output of test-images/build.sh)
#        scripts/registry.sh start-hub STATEDIR IMAGEDIR
#        scripts/registry.sh stop STATEDIR
#
# start runs (distribution 2.8 `docker-registry`, storage and logs under STATEDIR):
#   127.0.0.1:5000  (a) plain HTTP, no auth: every image of IMAGEDIR/images.txt,
#                       plus test/corrupt:latest whose layer blob is corrupted on disk
#   127.0.0.1:5001  (b) htpasswd basic auth frun:secret: test/busybox:latest
#   127.0.0.1:5002  (c) token auth, realm http://127.0.0.1:5003/token, service registry.test:
#                       library/alpine:{3.20.3,latest}, library/hello-world:latest,
#                       test/busybox:latest, private/busybox:latest, and the family
#                       example's library/nginx:stable, family/app:{v1,v2,broken}
#   127.0.0.1:5003      scripts/token-issuer.py (anonymous: pull, not private/*; frun:secret: all)
# start-hub runs only (c) and the token issuer (the Docker-Hub-like pair), with every image of
# IMAGEDIR/images.txt pushed to (c): what scripts/demo.sh serves (IMAGEDIR = the output of
# examples/family/build.sh is enough). env.sh then exports FRUN_TEST_REGISTRY_TOKEN and
# FRUN_TEST_TOKEN_ISSUER, not the others.
# and writes STATEDIR/env.sh (source it), STATEDIR/pids, STATEDIR/*.log.
# stop kills exactly the recorded pids.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=/usr/bin/python3
REGISTRY_BIN=${REGISTRY_BIN:-docker-registry}
USER_NAME=frun
USER_PASSWORD=secret
SERVICE=registry.test
ISSUER=frun-test-issuer
A=127.0.0.1:5000
B=127.0.0.1:5001
C=127.0.0.1:5002
T=127.0.0.1:5003
started_ok=1
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

die() { echo "registry.sh: $*" >&2; exit 1; }
log() { echo "registry.sh: $*" >&2; }
usage() { die "usage: $0 start STATEDIR IMAGEDIR | start-hub STATEDIR IMAGEDIR | stop STATEDIR"; }

curl_() { curl --noproxy '*' -sS --max-time 10 "$@"; }

require_netns() {
    local ifs bad
    ifs=$(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//')
    bad=$(echo "$ifs" | grep -vx lo || true)
    if [ -n "$bad" ]; then
        die "refusing to start: this network namespace has interfaces other than lo ($(echo $bad)); run me inside scripts/in-netns.sh so registries only ever see loopback"
    fi
    ip link show lo | grep -q 'UP' || ip link set lo up
}

starttime() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null; }

# pid_ok PID STARTTIME: PID is alive (not a zombie) and is the process we started (guards
# against pid reuse)
pid_ok() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }   # fields after "(comm) ": state is field 3, starttime field 22
    set -- "$2" $stat
    [ "$2" != Z ] && [ "${21}" = "$1" ]
}

stop() {
    local state=$1 pid name st left
    [ -f "$state/pids" ] || { log "nothing to stop ($state/pids missing)"; return 0; }
    while read -r pid name st; do
        [ -n "$pid" ] || continue
        if pid_ok "$pid" "$st"; then kill -TERM "$pid" 2>/dev/null || true; fi
    done <"$state/pids"
    for _ in $(seq 50); do
        left=0
        while read -r pid name st; do
            [ -n "$pid" ] && pid_ok "$pid" "$st" && left=1
        done <"$state/pids"
        [ $left = 0 ] && break
        sleep 0.1
    done
    while read -r pid name st; do
        if [ -n "$pid" ] && pid_ok "$pid" "$st"; then
            log "pid $pid ($name) ignored SIGTERM, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done <"$state/pids"
    # reap if they are our children (they are not when started by another invocation)
    while read -r pid name st; do wait "$pid" 2>/dev/null || true; done <"$state/pids"
    rm -f "$state/pids"
}

registry_config() { # NAME ADDR AUTH_YAML
    local name=$1 addr=$2 auth=$3
    mkdir -p "$STATE/$name/storage"
    cat >"$STATE/$name/config.yml" <<EOF
version: 0.1
log:
  level: info
  fields:
    service: registry-$name
storage:
  filesystem:
    rootdirectory: $STATE/$name/storage
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $addr
  secret: frun-test-http-secret-$name
  headers:
    X-Content-Type-Options: [nosniff]
$auth
EOF
}

spawn() { # NAME CMD... : start in background, record "pid name starttime" in STATE/pids
    local name=$1 pid; shift
    "$@" </dev/null >"$STATE/$name.log" 2>&1 &
    pid=$!
    echo "$pid $name $(starttime "$pid")" >>"$STATE/pids"
}

wait_http() { # URL PID NAME
    local url=$1 pid=$2 name=$3 code
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || { tail -20 "$STATE/$name.log" >&2; die "$name (pid $pid) died; see $STATE/$name.log"; }
        code=$(curl --noproxy '*' -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)
        case $code in 200|401) return 0 ;; esac
        sleep 0.1
    done
    die "$name did not answer $url (last code $code)"
}

# push SRC(skopeo ref relative to IMAGEDIR) DEST(host/repo:tag) FORMAT [skopeo args...]
push() {
    local src=$1 dest=$2 fmt=$3; shift 3
    local args=(--insecure-policy copy -q --all --dest-tls-verify=false --dest-authfile "$STATE/auth.json")
    case $fmt in
        v2s2) args+=(--format v2s2) ;;
        "" | oci) case $src in oci:*) args+=(--preserve-digests) ;; esac ;;
        *) die "unknown format $fmt for $dest" ;;
    esac
    (cd "$IMG" && skopeo "${args[@]}" "$@" "$src" "docker://$dest") \
        || die "skopeo copy $src docker://$dest failed"
}

source_of() { # repo:tag -> source field of images.txt
    local s
    s=$(awk -v r="$1" '$2 == r && NF == 2 { print $1; exit }' "$IMG/images.txt")
    [ -n "$s" ] || die "$1 not in $IMG/images.txt"
    echo "$s"
}

corrupt_blob() { # repo:tag on (a): overwrite bytes in the middle of its (single, unique) layer
    local ref=$1 repo=${1%%:*} tag=${1##*:} digest hex data size got
    digest=$(curl_ -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        "http://$A/v2/$repo/manifests/$tag" | jq -r '.layers[-1].digest')
    hex=${digest#sha256:}
    # blobs are shared between repositories by digest: make sure no other image has it
    if find "$IMG/oci" -path "*/blobs/sha256/$hex" | grep -v "/oci/$repo/" | grep -q .; then
        die "layer $digest of $ref is shared with another image; refusing to corrupt it"
    fi
    data=$STATE/a/storage/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data
    [ -f "$data" ] || die "blob data $data missing"
    size=$(stat -c %s "$data")
    printf 'FRUN-CORRUPTED-THIS-BLOB' | dd of="$data" bs=1 seek=$((size / 2)) conv=notrunc status=none
    [ "$(stat -c %s "$data")" = "$size" ] || die "corrupting changed the size"
    got=$(curl_ "http://$A/v2/$repo/blobs/$digest" | sha256sum | cut -d' ' -f1)
    [ "$got" != "$hex" ] || die "registry still serves the right bytes for $digest"
    log "corrupted $ref layer $digest (served sha256 is now $got)"
}

start() { # STATEDIR IMAGEDIR [hub]
    local hub=${3:-}
    require_netns
    [ -f "$2/images.txt" ] || die "$2/images.txt missing: run scripts/test-images/build.sh $2 first"
    for t in "$REGISTRY_BIN" skopeo htpasswd openssl curl jq "$PY"; do
        command -v "$t" >/dev/null || die "missing tool: $t"
    done
    mkdir -p "$1"
    STATE=$(cd "$1" && pwd)
    IMG=$(cd "$2" && pwd)
    if [ -f "$STATE/pids" ]; then
        while read -r pid name st; do
            pid_ok "$pid" "$st" && die "already running ($name pid $pid); run: $0 stop $STATE"
        done <"$STATE/pids"
        rm -f "$STATE/pids"
    fi
    if ss -Hltn 2>/dev/null | awk '{print $4}' | grep -Eq '^(127\.0\.0\.1|0\.0\.0\.0|\*|\[::\]):500[0-3]$'; then
        die "a port in 5000-5003 is already in use in this namespace"
    fi
    local t0
    started_ok=0
    t0=$(date +%s%N)
    trap '[ $started_ok = 1 ] || { log "start failed, stopping what was started"; stop "$STATE"; }' EXIT
    rm -rf "$STATE/a" "$STATE/b" "$STATE/c" "$STATE/token" "$STATE"/*.log "$STATE/env.sh"
    : >"$STATE/pids"
    echo '{}' >"$STATE/auth.json"

    htpasswd -Bbn "$USER_NAME" "$USER_PASSWORD" >"$STATE/htpasswd"
    mkdir -p "$STATE/token"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=$ISSUER" \
        -keyout "$STATE/token/key.pem" -out "$STATE/token/cert.pem" 2>/dev/null

    if [ -z "$hub" ]; then
        registry_config a "$A" ""
        registry_config b "$B" "auth:
  htpasswd:
    realm: frun-basic-realm
    path: $STATE/htpasswd"
    fi
    registry_config c "$C" "auth:
  token:
    realm: http://$T/token
    service: $SERVICE
    issuer: $ISSUER
    rootcertbundle: $STATE/token/cert.pem"

    if [ -z "$hub" ]; then
        spawn registry-a "$REGISTRY_BIN" serve "$STATE/a/config.yml"
        spawn registry-b "$REGISTRY_BIN" serve "$STATE/b/config.yml"
    fi
    spawn registry-c "$REGISTRY_BIN" serve "$STATE/c/config.yml"
    spawn token-issuer "$PY" "$here/token-issuer.py" --listen "$T" \
        --key "$STATE/token/key.pem" --cert "$STATE/token/cert.pem" \
        --issuer "$ISSUER" --service "$SERVICE" --user "$USER_NAME" --password "$USER_PASSWORD"
    local pid name st url
    while read -r pid name st; do
        case $name in
            registry-a) url=http://$A/v2/ ;;
            registry-b) url=http://$B/v2/ ;;
            registry-c) url=http://$C/v2/ ;;
            token-issuer) url="http://$T/token?service=$SERVICE" ;;
        esac
        wait_http "$url" "$pid" "$name"
    done <"$STATE/pids"

    local src ref fmt
    if [ -n "$hub" ]; then
        # (c) alone: everything in images.txt
        while read -r src ref fmt; do
            [ -n "$src" ] || continue
            push "$src" "$C/$ref" "${fmt:-}" --dest-creds "$USER_NAME:$USER_PASSWORD"
        done <"$IMG/images.txt"
        cat >"$STATE/env.sh" <<EOF
# written by scripts/registry.sh start-hub; source it
export FRUN_TEST_REGISTRY_TOKEN=$C
export FRUN_TEST_TOKEN_ISSUER=$T
export FRUN_TEST_REGISTRY_USER=$USER_NAME
export FRUN_TEST_REGISTRY_PASSWORD=$USER_PASSWORD
export FRUN_TEST_IMAGES=$IMG
export FRUN_TEST_REGISTRY_STATE=$STATE
EOF
        started_ok=1
        log "Docker-Hub-like registry up in $(( ($(date +%s%N) - t0) / 1000000 )) ms at $C (tokens from $T); stop with: $0 stop $STATE"
        return 0
    fi

    # (a): everything in images.txt
    while read -r src ref fmt; do
        [ -n "$src" ] || continue
        push "$src" "$A/$ref" "${fmt:-}"
    done <"$IMG/images.txt"
    corrupt_blob test/corrupt:latest

    # (b): basic auth
    push "$(source_of test/busybox:latest)" "$B/test/busybox:latest" "" --dest-creds "$USER_NAME:$USER_PASSWORD"

    # (c): token auth (pushing needs the push scope, which only frun:secret gets)
    for ref in library/alpine:3.20.3 library/alpine:latest library/hello-world:latest test/busybox:latest \
        library/nginx:stable family/app:v1 family/app:v2 family/app:broken; do
        push "$(source_of "$ref")" "$C/$ref" "" --dest-creds "$USER_NAME:$USER_PASSWORD"
    done
    push "$(source_of test/busybox:latest)" "$C/private/busybox:latest" "" --dest-creds "$USER_NAME:$USER_PASSWORD"

    cat >"$STATE/env.sh" <<EOF
# written by scripts/registry.sh start; source it
export FRUN_TEST_REGISTRY=$A
export FRUN_TEST_REGISTRY_BASIC=$B
export FRUN_TEST_REGISTRY_TOKEN=$C
export FRUN_TEST_TOKEN_ISSUER=$T
export FRUN_TEST_REGISTRY_USER=$USER_NAME
export FRUN_TEST_REGISTRY_PASSWORD=$USER_PASSWORD
export FRUN_TEST_IMAGES=$IMG
export FRUN_TEST_REGISTRY_STORAGE=$STATE/a/storage
export FRUN_TEST_REGISTRY_CONFIG=$STATE/a/config.yml
export FRUN_TEST_REGISTRY_STATE=$STATE
EOF
    started_ok=1
    log "registries up in $(( ($(date +%s%N) - t0) / 1000000 )) ms; source $STATE/env.sh; stop with: $0 stop $STATE"
}

case ${1:-} in
    start) [ $# -eq 3 ] || usage; start "$2" "$3" ;;
    start-hub) [ $# -eq 3 ] || usage; start "$2" "$3" hub ;;
    stop) [ $# -eq 2 ] || usage; stop "$2" ;;
    *) usage ;;
esac
