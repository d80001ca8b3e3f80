#!/bin/bash
# Builds the family example's images as OCI image layouts, from this machine's Debian
# packages, with independent tools only (umoci, busybox-static, ldd; never frun):
#
#   library/nginx:stable   Debian's nginx (binary + its shared libraries, loader included)
#                          laid out as the official nginx image: /etc/nginx/nginx.conf
#                          including /etc/nginx/conf.d/*.conf inside http {}, a default
#                          conf.d/default.conf, /var/lib/nginx, logs to stdout/stderr,
#                          CMD nginx -g 'daemon off;', StopSignal SIGQUIT
#   family/app:v1, :v2     busybox httpd on :8080 as uid 1000; / names the version,
#                          /cgi-bin/visit adds a row to /var/db/production.sqlite3 through
#                          Debian's sqlite3 (binary + libraries) and answers the row count;
#                          /var/db owned 1000:1000 in the image
#   family/app:broken      starts, logs why, never listens (never healthy)
#
# All four share one busybox base layer (same blob); v1, v2 and broken share the sqlite3
# layer too and differ only in their small top layer (what a swap downloads).
#
# usage: examples/family/build.sh OUTDIR
#
# Output, in the format of scripts/test-images/build.sh (scripts/registry.sh pushes it):
#   OUTDIR/oci/library/nginx/   OCI layout, ref stable
#   OUTDIR/oci/family/app/      OCI layout, refs v1 v2 broken
#   OUTDIR/images.txt           "oci:oci/<repo>:<tag> <repo>:<tag>" lines, appended; lines of
#                               a previous run of this script are replaced
# Re-running rebuilds these from scratch; nothing else in OUTDIR is touched.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUSYBOX=${BUSYBOX:-/bin/busybox}
NGINX=${NGINX:-/usr/sbin/nginx}
SQLITE3=${SQLITE3:-/usr/bin/sqlite3}
PATH_ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
REFS=(library/nginx:stable family/app:v1 family/app:v2 family/app:broken)

die() { echo "examples/family/build.sh: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 OUTDIR"
[ "$(id -u)" = 0 ] || die "must run as root (umoci repack keeps file ownership)"
for t in umoci jq tar gzip ldd "$BUSYBOX" "$NGINX" "$SQLITE3"; do
    command -v "$t" >/dev/null || die "missing tool: $t (scripts/install-packages.sh scripts/packages/test.txt installs nginx, sqlite3, busybox-static, umoci, jq)"
done
case $(ldd "$BUSYBOX" 2>&1 || true) in *'not a dynamic'*) ;; *) die "$BUSYBOX is not static (apt-get install busybox-static)" ;; esac
[ -f /usr/share/nginx/html/index.html ] && [ -f /etc/nginx/mime.types ] || die "Debian's nginx is not fully installed (/etc/nginx/mime.types, /usr/share/nginx/html/index.html)"

mkdir -p "$1"
OUT=$(cd "$1" && pwd)
[ "$OUT" != / ] || die "refusing OUTDIR=/"
WORK=$(mktemp -d "$OUT/.family-work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
rm -rf "$OUT/oci/library/nginx" "$OUT/oci/family"
mkdir -p "$OUT/oci/library" "$OUT/oci/family"
start=$(date +%s%N)

# 1. images.txt: drop this script's lines of an earlier run, keep everyone else's.
IMAGES=$OUT/images.txt
touch "$IMAGES"
grep -v -E ' (library/nginx:stable|family/app:[a-z0-9]+)$' "$IMAGES" >"$WORK/images.txt" || true
cat "$WORK/images.txt" >"$IMAGES"

# Every layer of an umoci-built layout must list cleanly (umoci `insert` can truncate; we
# only use repack, and check anyway).
check_layers() {
    local layout=$1 m l
    for m in $(jq -r '.manifests[].digest' "$layout/index.json" | sort -u); do
        for l in $(jq -r '.layers[].digest' "$layout/blobs/sha256/${m#sha256:}"); do
            tar -tzf "$layout/blobs/sha256/${l#sha256:}" >/dev/null || die "$layout: layer $l does not list"
        done
    done
}

# top_layer_list LAYOUT TAG: `tar -tvzf` of the top layer of that tag
top_layer_list() {
    local m
    m=$(jq -r --arg t "$2" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' "$1/index.json")
    [ -n "$m" ] || die "$1: no ref $2"
    tar -tvzf "$1/blobs/sha256/$(jq -r '.layers[-1].digest' "$1/blobs/sha256/${m#sha256:}" | cut -d: -f2)"
}

# copy_elf ROOTFS BINARY...: copies binaries and every shared library they load (ldd),
# the loader included, to the same paths in ROOTFS, symlinks resolved.
copy_elf() {
    local r=$1 f lib; shift
    for f in "$@"; do
        install -D -m 0755 "$(readlink -f "$f")" "$r$f"
        for lib in $(ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
            [ -e "$r$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$r$lib"
        done
    done
}

# 2. The base layer every image shares: static busybox (a symlink per applet), users.
BASE=$WORK/base
umoci init --layout "$BASE"
umoci new --image "$BASE:base"
umoci unpack --image "$BASE:base" "$WORK/b" >/dev/null
R=$WORK/b/rootfs
mkdir -p "$R"/{bin,sbin,etc,tmp,root,run,dev,proc,sys,usr/bin,usr/sbin,var/log,var/lib,home/app}
install -m 0755 "$BUSYBOX" "$R/bin/busybox"
for a in $("$BUSYBOX" --list); do
    [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"
done
for a in sh cat id kill sleep tr cut httpd; do [ -L "$R/bin/$a" ] || die "busybox lacks applet $a"; done
ln -s ../run "$R/var/run"
cat >"$R/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
www-data:x:33:33:www-data:/var/www:/bin/false
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$R/etc/group" <<'EOF'
root:x:0:
www-data:x:33:
app:x:1000:
nogroup:x:65534:
EOF
chmod 0644 "$R/etc/passwd" "$R/etc/group"
chmod 1777 "$R/tmp"
chmod 0700 "$R/root"
chown 1000:1000 "$R/home/app"
umoci repack --refresh-bundle --image "$BASE:base" "$WORK/b"
rm -rf "$WORK/b"
umoci config --image "$BASE:base" --os linux --architecture amd64 \
    --config.env "$PATH_ENV" --config.cmd /bin/sh

# 3. library/nginx:stable = base + one layer of Debian's nginx.
L=$OUT/oci/library/nginx
cp -a "$BASE" "$L"
umoci unpack --image "$L:base" "$WORK/n" >/dev/null
R=$WORK/n/rootfs
copy_elf "$R" "$NGINX"
install -D -m 0644 "$here/proxy/nginx.conf" "$R/etc/nginx/nginx.conf"
install -D -m 0644 "$here/proxy/default.conf" "$R/etc/nginx/conf.d/default.conf"
install -m 0644 /etc/nginx/mime.types "$R/etc/nginx/mime.types"
for f in fastcgi_params scgi_params uwsgi_params; do
    [ ! -f "/etc/nginx/$f" ] || install -m 0644 "/etc/nginx/$f" "$R/etc/nginx/$f"
done
install -D -m 0644 /usr/share/nginx/html/index.html "$R/usr/share/nginx/html/index.html"
cat >"$R/usr/share/nginx/html/50x.html" <<'EOF'
<!DOCTYPE html>
<html><head><title>Error</title></head>
<body><h1>An error occurred.</h1><p>The page you are looking for is currently unavailable.</p></body>
</html>
EOF
mkdir -p "$R/var/lib/nginx" "$R/var/log/nginx" "$R/var/cache/nginx"
ln -s /dev/stdout "$R/var/log/nginx/access.log"
ln -s /dev/stderr "$R/var/log/nginx/error.log"
umoci repack --refresh-bundle --image "$L:stable" "$WORK/n"
rm -rf "$WORK/n"
umoci config --image "$L:stable" --os linux --architecture amd64 \
    --clear=config.cmd --config.cmd nginx --config.cmd=-g --config.cmd 'daemon off;' \
    --config.exposedports 80/tcp --config.stopsignal SIGQUIT \
    --config.label "org.opencontainers.image.title=nginx from Debian's nginx $(dpkg-query -W -f='${Version}' nginx 2>/dev/null || echo '?')"
umoci rm --image "$L:base"
umoci gc --layout "$L"
check_layers "$L"
top_layer_list "$L" stable >"$WORK/list"
for p in usr/sbin/nginx etc/nginx/nginx.conf etc/nginx/mime.types etc/nginx/conf.d/default.conf var/lib/nginx/ lib64/ld-linux-x86-64.so.2; do
    grep -q " $p\( ->.*\)\?$" "$WORK/list" || die "library/nginx:stable: top layer lacks $p"
done
echo "oci:oci/library/nginx:stable library/nginx:stable" >>"$IMAGES"

# 4. family/app: base + sqlite3 layer (shared) + one small layer per tag.
L=$OUT/oci/family/app
cp -a "$BASE" "$L"
umoci unpack --image "$L:base" "$WORK/s" >/dev/null
R=$WORK/s/rootfs
copy_elf "$R" "$SQLITE3"
install -d -o 1000 -g 1000 -m 0755 "$R/var/db"
umoci repack --refresh-bundle --image "$L:sqlite" "$WORK/s"
rm -rf "$WORK/s"

for tag in v1 v2 broken; do
    umoci unpack --image "$L:sqlite" "$WORK/$tag" >/dev/null
    R=$WORK/$tag/rootfs
    install -D -m 0644 /dev/null "$R/app/VERSION"
    echo "$tag" >"$R/app/VERSION"
    if [ "$tag" = broken ]; then
        install -m 0755 "$here/app/broken.sh" "$R/app/start.sh"
    else
        install -m 0755 "$here/app/start.sh" "$R/app/start.sh"
        install -D -m 0755 "$here/app/visit" "$R/www/cgi-bin/visit"
        echo "$tag" >"$R/www/version"
        cat >"$R/www/index.html" <<EOF
<!DOCTYPE html>
<html><head><title>family app $tag</title></head>
<body><h1>family app $tag</h1>
<p>Version <b>$tag</b>. <a href="/visit">/visit</a> records a visit in /var/db/production.sqlite3 and answers how many there were.</p>
</body></html>
EOF
        chmod 0644 "$R/www/version" "$R/www/index.html"
    fi
    umoci repack --refresh-bundle --image "$L:$tag" "$WORK/$tag"
    rm -rf "${WORK:?}/$tag"
    umoci config --image "$L:$tag" --os linux --architecture amd64 \
        --clear=config.cmd --config.cmd /app/start.sh --config.user 1000:1000 \
        --config.workingdir /www --config.exposedports 8080/tcp \
        --config.label "org.opencontainers.image.version=$tag"
    top_layer_list "$L" "$tag" >"$WORK/list"
    grep -q ' app/VERSION$' "$WORK/list" || die "family/app:$tag: top layer lacks app/VERSION"
    echo "oci:oci/family/app:$tag family/app:$tag" >>"$IMAGES"
done
umoci rm --image "$L:base"
umoci rm --image "$L:sqlite"
umoci gc --layout "$L"
check_layers "$L"
# the sqlite3 layer has the database directory owned by the app's user
m=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "v1") | .digest' "$L/index.json")
tar -tvzf "$L/blobs/sha256/$(jq -r '.layers[1].digest' "$L/blobs/sha256/${m#sha256:}" | cut -d: -f2)" |
    grep -Eq '^d.* 1000/1000 .* var/db/?$' || die "family/app: var/db is not a directory owned by 1000/1000"

ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "examples/family/build.sh: ${REFS[*]} in $OUT (${ms} ms)"
