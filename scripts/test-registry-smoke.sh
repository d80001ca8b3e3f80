#!/bin/bash
# Self-check of the test infrastructure: in a fresh network namespace, build the test images
# into a temp dir, start the registries, check with curl and skopeo that each one serves
# what it should, then stop everything. Exit status 0 = all checks passed.
#
# usage: scripts/test-registry-smoke.sh         (as root; KEEP=1 keeps the temp dir)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -n "$(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -vx lo || true)" ]; then
    exec "$here/in-netns.sh" "${BASH_SOURCE[0]}" "$@"
fi
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY
PY=/usr/bin/python3

WORK=$(mktemp -d /tmp/frun-smoke.XXXXXX)
IMG=$WORK/images
STATE=$WORK/state
cleanup() {
    [ ! -f "$STATE/pids" ] || "$here/registry.sh" stop "$STATE" || true
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "  ok   $*"; }
bad() { fail=$((fail + 1)); echo "  FAIL $*"; }
check() { # check DESCRIPTION CMD...
    local d=$1; shift
    if "$@" >"$WORK/last.out" 2>&1; then ok "$d"; else bad "$d"; sed 's/^/         /' "$WORK/last.out" | tail -5; fi
}
check_not() { # the command must fail
    local d=$1; shift
    if "$@" >"$WORK/last.out" 2>&1; then bad "$d (unexpectedly succeeded)"; else ok "$d"; fi
}
eq() { [ "$1" = "$2" ] || { echo "got '$1', want '$2'"; return 1; }; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

curl_() { curl --noproxy '*' -sS --max-time 20 "$@"; }
code() { curl --noproxy '*' -s -o /dev/null -w '%{http_code}' --max-time 20 "$@"; }
ACCEPT=(-H 'Accept: application/vnd.oci.image.index.v1+json'
        -H 'Accept: application/vnd.oci.image.manifest.v1+json'
        -H 'Accept: application/vnd.docker.distribution.manifest.list.v2+json'
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json')
sk() { skopeo --insecure-policy "$@"; }
inspect() { sk inspect --tls-verify=false --authfile "$WORK/auth.json" "$@"; }
echo '{}' >"$WORK/auth.json"

echo "== build images"
t=$(date +%s%N)
"$here/test-images/build.sh" "$IMG"
build_ms=$(ms_since "$t")

echo "== start registries"
t=$(date +%s%N)
"$here/registry.sh" start "$STATE" "$IMG"
start_ms=$(ms_since "$t")
# shellcheck disable=SC1091
. "$STATE/env.sh"
A=$FRUN_TEST_REGISTRY
B=$FRUN_TEST_REGISTRY_BASIC
C=$FRUN_TEST_REGISTRY_TOKEN
T=$FRUN_TEST_TOKEN_ISSUER
U=$FRUN_TEST_REGISTRY_USER:$FRUN_TEST_REGISTRY_PASSWORD

echo "== env.sh"
for v in FRUN_TEST_REGISTRY FRUN_TEST_REGISTRY_BASIC FRUN_TEST_REGISTRY_TOKEN FRUN_TEST_REGISTRY_USER \
         FRUN_TEST_REGISTRY_PASSWORD FRUN_TEST_IMAGES FRUN_TEST_REGISTRY_STORAGE FRUN_TEST_REGISTRY_CONFIG; do
    check "$v=${!v}" test -n "${!v}"
done
check "FRUN_TEST_REGISTRY_STORAGE is a directory" test -d "$FRUN_TEST_REGISTRY_STORAGE/docker/registry/v2"
check "FRUN_TEST_REGISTRY_CONFIG is a file" test -f "$FRUN_TEST_REGISTRY_CONFIG"

echo "== (a) $A plain, no auth"
check "GET /v2/ -> 200" eq "$(code "http://$A/v2/")" 200
layout_digest() { # oci:oci/REPO:TAG -> manifest digest in the layout
    local s=${1#oci:} ; local dir=${s%:*} tag=${s##*:}
    jq -r --arg t "$tag" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' "$IMG/$dir/index.json"
}
while read -r src ref fmt; do
    raw=$WORK/raw.json
    if inspect --raw "docker://$A/$ref" >"$raw" 2>"$WORK/err"; then
        got="sha256:$(sha256sum <"$raw" | cut -d' ' -f1)"
        case "$src:${fmt:-}" in
            oci:*:) check "$ref: same manifest digest as the layout" eq "$got" "$(layout_digest "$src")" ;;
            *) ok "$ref: served ($(jq -r .mediaType "$raw"))" ;;
        esac
    else
        bad "$ref: skopeo inspect failed: $(tail -1 "$WORK/err")"
    fi
done <"$IMG/images.txt"
check "test/busybox:v2s2 is Docker schema 2" eq "$(inspect --raw "docker://$A/test/busybox:v2s2" | jq -r .mediaType)" \
    application/vnd.docker.distribution.manifest.v2+json
check "test/busybox: cmd, env, arch" eq "$(inspect --config "docker://$A/test/busybox:latest" | jq -c '[.config.Cmd, .config.Env, .os, .architecture]')" \
    '[["/bin/sh"],["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"linux","amd64"]'
check "test/layers: layer media types gzip,gzip,zstd,tar" eq "$(inspect --raw "docker://$A/test/layers:latest" | jq -r '[.layers[].mediaType | sub(".*\\."; "")] | join(",")')" \
    "tar+gzip,tar+gzip,tar+zstd,tar"
check "test/multi: index of 3 platforms" eq "$(inspect --raw "docker://$A/test/multi:latest" | jq -r '[.manifests[].platform | [.os, .architecture, .variant // empty] | join("/")] | join(" ")')" \
    "linux/amd64 linux/arm64/v8 linux/arm/v7"
for p in amd64: arm64:v8 arm:v7; do
    arch=${p%:*} var=${p#*:}
    args=(--override-arch "$arch"); [ -z "$var" ] || args+=(--override-variant "$var")
    cfg=$(inspect "${args[@]}" --config "docker://$A/test/multi:latest" 2>/dev/null | jq -r '[.os, .architecture, .variant // empty] | join("/")' || true)
    md=$(inspect --raw "docker://$A/test/multi:latest" | jq -r --arg a "$arch" --arg v "$var" \
        '.manifests[] | select(.platform.architecture == $a and (.platform.variant // "") == $v) | .digest')
    layer=$(curl_ "${ACCEPT[@]}" "http://$A/v2/test/multi/manifests/$md" | jq -r '.layers[0].digest')
    content=$(curl_ "http://$A/v2/test/multi/blobs/$layer" | tar -xzO platform 2>/dev/null || true)
    want="linux/$arch${var:+/$var}"
    check "test/multi $want: config and /platform" eq "$cfg|$content" "$want|$want"
done
cfg_of() { inspect --config "docker://$A/$1" | jq -c "$2"; }
check "test/checker: cmd, entrypoint, user, workdir" eq "$(cfg_of test/checker:latest '[.config.Cmd, .config.Entrypoint, .config.User, .config.WorkingDir]')" \
    '[["/usr/local/bin/checker"],null,null,"/"]'
check "test/checker-user: user app, workdir /home/app" eq "$(cfg_of test/checker-user:latest '[.config.User, .config.WorkingDir]')" '["app","/home/app"]'
check "test/stopsignal: StopSignal SIGUSR1" eq "$(cfg_of test/stopsignal:latest '.config.StopSignal')" '"SIGUSR1"'
check "test/checker: first layer is test/busybox's" eq "$(inspect --raw "docker://$A/test/checker:latest" | jq -r '.layers[0].digest')" \
    "$(inspect --raw "docker://$A/test/busybox:latest" | jq -r '.layers[0].digest')"
ck_layer=$(inspect --raw "docker://$A/test/checker:latest" | jq -r '.layers[1].digest')
check "test/checker: layer 2 has group extra and a static checker that runs" bash -c \
    "curl --noproxy '*' -sS http://$A/v2/test/checker/blobs/$ck_layer | tar -xzf - -C $WORK usr/local/bin/checker etc/group &&
     grep -qx extra:x:2000:app $WORK/etc/group && ldd $WORK/usr/local/bin/checker 2>&1 | grep -q 'statically linked' &&
     $WORK/usr/local/bin/checker report | jq -e '.pid > 0 and (.caps | has(\"CapEff\"))' >/dev/null"
for r in proc-symlink:'proc -> /tmp/fakeproc' devnull-symlink:'dev/null -> /proc/sys/kernel/core_pattern' bindlink:'abs -> /'; do
    top=$(inspect --raw "docker://$A/test/${r%%:*}:latest" | jq -r '.layers[-1].digest')
    check "test/${r%%:*}: top layer has ${r#*:}" bash -c "curl --noproxy '*' -sS http://$A/v2/test/${r%%:*}/blobs/$top | tar -tvzf - | grep -q ' ${r#*:}\$'"
done
check "library/hello-world: arm64" eq "$(inspect --config "docker://$A/library/hello-world:latest" | jq -r .architecture)" arm64
check "library/alpine:3.20.3: amd64, cmd /bin/sh" eq "$(inspect --config "docker://$A/library/alpine:3.20.3" | jq -c '[.architecture, .config.Cmd]')" '["amd64",["/bin/sh"]]'
alpine_layer=$(inspect --raw "docker://$A/library/alpine:latest" | jq -r '.layers[0].digest')
check "library/alpine:latest layer lists, has etc/alpine-release" \
    bash -c "curl --noproxy '*' -sS http://$A/v2/library/alpine/blobs/$alpine_layer | tar -tzf - > $WORK/alpine.lst && grep -q '^etc/alpine-release$' $WORK/alpine.lst"
bomb=$(inspect --raw "docker://$A/test/bomb:latest" | jq -r '.layers[0] | "\(.digest) \(.size)"')
check "test/bomb: layer < 1 MiB compressed" test "${bomb#* }" -lt 1048576
check "test/bomb: >= 256 MiB uncompressed" test "$(curl_ "http://$A/v2/test/bomb/blobs/${bomb% *}" | gzip -dc | wc -c)" -ge $((256 << 20))
big=$(inspect --raw "docker://$A/test/big:latest" | jq -r '.layers[0].size')
check "test/big: layer >= 48 MiB compressed" test "$big" -ge $((48 << 20))
bd_layer=$(inspect --raw "docker://$A/test/badiff:latest" | jq -r '.layers[0].digest')
bd_want=$(inspect --config "docker://$A/test/badiff:latest" | jq -r '.rootfs.diff_ids[0]')
bd_got=sha256:$(curl_ "http://$A/v2/test/badiff/blobs/$bd_layer" | gzip -dc | sha256sum | cut -d' ' -f1)
check "test/badiff: layer blob digest is right" eq "sha256:$(curl_ "http://$A/v2/test/badiff/blobs/$bd_layer" | sha256sum | cut -d' ' -f1)" "$bd_layer"
check_not "test/badiff: config diff_id is wrong" eq "$bd_got" "$bd_want"
cr=$(inspect --raw "docker://$A/test/corrupt:latest" | jq -r '.layers[-1] | "\(.digest) \(.size)"')
cr_digest=${cr% *} cr_size=${cr#* }
check "test/corrupt: layer served with the right size" eq "$(curl_ "http://$A/v2/test/corrupt/blobs/$cr_digest" | wc -c)" "$cr_size"
check_not "test/corrupt: layer fails the digest check" eq \
    "sha256:$(curl_ "http://$A/v2/test/corrupt/blobs/$cr_digest" | sha256sum | cut -d' ' -f1)" "$cr_digest"
check_not "test/corrupt: skopeo copy refuses it" sk copy -q --src-tls-verify=false "docker://$A/test/corrupt:latest" "oci:$WORK/corrupt:latest"
check_not "unknown repo -> error" inspect --raw "docker://$A/no/such:latest"

echo "== (b) $B basic auth"
check "GET /v2/ without creds -> 401" eq "$(code "http://$B/v2/")" 401
check "challenge is Basic" bash -c "curl --noproxy '*' -sSI http://$B/v2/ | grep -i '^www-authenticate: basic'"
check "GET /v2/ with frun:secret -> 200" eq "$(code -u "$U" "http://$B/v2/")" 200
check "GET /v2/ with a wrong password -> 401" eq "$(code -u frun:wrong "http://$B/v2/")" 401
check "manifest with creds -> 200" eq "$(code -u "$U" "${ACCEPT[@]}" "http://$B/v2/test/busybox/manifests/latest")" 200
check "skopeo inspect --creds" inspect --creds "$U" "docker://$B/test/busybox:latest"
check_not "skopeo inspect without creds fails" inspect --no-creds "docker://$B/test/busybox:latest"

echo "== (c) $C token auth via $T"
check "GET /v2/ anonymous -> 401" eq "$(code "http://$C/v2/")" 401
check "challenge is Bearer realm=http://$T/token service=registry.test" bash -c \
    "curl --noproxy '*' -sSI http://$C/v2/library/alpine/manifests/latest | grep -i '^www-authenticate: bearer realm=\"http://$T/token\",service=\"registry.test\"'"
tok() { # tok SCOPE [curl args] -> token
    local s=$1; shift
    curl_ "$@" "http://$T/token?service=registry.test&scope=$s" | jq -r .token
}
claims() { $PY -c 'import sys,json,base64; p=sys.argv[1].split(".")[1]; print(json.dumps(json.loads(base64.urlsafe_b64decode(p+"="*(-len(p)%4)))))' "$1"; }
resp=$(curl_ "http://$T/token?service=registry.test&scope=repository:library/alpine:pull")
check "issuer answer has token, access_token, expires_in=300, issued_at" eq \
    "$(echo "$resp" | jq -c '[(.token|length>0), (.access_token==.token), .expires_in, (.issued_at|test("^[0-9]{4}-"))]')" '[true,true,300,true]'
check "token claims iss/aud/access" eq "$(claims "$(echo "$resp" | jq -r .token)" | jq -c '[.iss, .aud, .access, (.exp-.iat), (.jti|length>0), has("nbf")]')" \
    '["frun-test-issuer","registry.test",[{"type":"repository","name":"library/alpine","actions":["pull"]}],300,true,true]'
check "token header has alg RS256 and x5c" eq "$($PY -c 'import sys,jwt; h=jwt.get_unverified_header(sys.argv[1]); print(h["alg"], len(h["x5c"]))' "$(echo "$resp" | jq -r .token)")" "RS256 1"
for r in library/alpine:3.20.3 library/alpine:latest library/hello-world:latest test/busybox:latest; do
    t_=$(tok "repository:${r%%:*}:pull")
    check "anonymous token pulls $r (curl)" eq "$(code -H "Authorization: Bearer $t_" "${ACCEPT[@]}" "http://$C/v2/${r%%:*}/manifests/${r##*:}")" 200
    check "anonymous skopeo inspect $r" inspect --no-creds "docker://$C/$r"
done
check "anonymous push scope is not granted" eq "$(claims "$(tok "repository:test/busybox:pull,push")" | jq -c .access)" \
    '[{"type":"repository","name":"test/busybox","actions":["pull"]}]'
check "several scope params are honoured" eq "$(claims "$(curl_ "http://$T/token?service=registry.test&scope=repository:a/b:pull&scope=repository:c/d:pull" | jq -r .token)" | jq -r '[.access[].name] | join(",")')" "a/b,c/d"
t_=$(tok "repository:private/busybox:pull")
check "anonymous token for private/* grants nothing" eq "$(claims "$t_" | jq -c .access)" '[]'
check "anonymous pull of private/busybox -> 401" eq "$(code -H "Authorization: Bearer $t_" "${ACCEPT[@]}" "http://$C/v2/private/busybox/manifests/latest")" 401
check_not "anonymous skopeo inspect private/busybox fails" inspect --no-creds "docker://$C/private/busybox:latest"
t_=$(tok "repository:private/busybox:pull" -u "$U")
check "frun:secret token pulls private/busybox (curl)" eq "$(code -H "Authorization: Bearer $t_" "${ACCEPT[@]}" "http://$C/v2/private/busybox/manifests/latest")" 200
check "skopeo inspect --creds private/busybox" inspect --creds "$U" "docker://$C/private/busybox:latest"
check "issuer: wrong password -> 401" eq "$(code -u frun:wrong "http://$T/token?service=registry.test&scope=repository:private/busybox:pull")" 401
check "issuer: POST password grant works" eq "$(curl_ -d grant_type=password -d username=frun -d password=secret -d service=registry.test \
    -d scope=repository:private/busybox:pull "http://$T/token" | jq -r '.access_token | length > 0')" true
t_=$(curl_ "http://$T/token?service=other.service&scope=repository:library/alpine:pull" | jq -r .token)
check "token for another service (aud) is refused by the registry" eq "$(code -H "Authorization: Bearer $t_" "${ACCEPT[@]}" "http://$C/v2/library/alpine/manifests/latest")" 401
check_not "(c) does not hold test/layers" inspect --creds "$U" "docker://$C/test/layers:latest"

echo "== hostile images: skopeo copy from (a) to an oci: layout"
mkdir -p "$WORK/pulled"
while read -r h; do
    check "hostile/$h" bash -c "skopeo --insecure-policy copy -q --src-tls-verify=false docker://$A/hostile/$h:latest oci:$WORK/pulled/$h:latest && $PY $here/test-images/mkimage.py verify -q $WORK/pulled/$h"
done <"$IMG/hostile.txt"
check "hostile.json lists the same names" eq "$(jq -r '.[].name' "$IMG/hostile.json")" "$(cat "$IMG/hostile.txt")"

echo "== stop"
"$here/registry.sh" stop "$STATE"
check "registries stopped" bash -c "! curl --noproxy '*' -s --max-time 2 http://$A/v2/"

echo
echo "build ${build_ms} ms, start+push ${start_ms} ms; $pass passed, $fail failed"
[ "$fail" = 0 ]
