#!/bin/bash
# Builds (once) the benchmark image: a `debootstrap --variant=minbase bookworm` rootfs split
# into 5 gzip layers (~60 MB compressed, ~160 MB unpacked), with umoci only (never frun).
#
# usage: scripts/bench/build-image.sh [CACHE]      (CACHE defaults to $BENCH_CACHE or
#                                                  /var/tmp/frun-bench; needs root + the
#                                                  Debian mirror for debootstrap)
# Result: CACHE/image/ is an OCI layout with ref "bench"; CACHE/image/.complete marks it done.
# CACHE/rootfs/ (the debootstrap output, marked by CACHE/rootfs/.complete) is kept too, so a
# rebuild of the image does not download again. Delete CACHE/image to rebuild the image.
#
# Layers, in order (uncompressed / gzip, roughly):
#   1 base: /etc, top-level dirs and symlinks, /usr/{bin,sbin,libexec,...}, /var minus apt lists
#                                                                      ~32 MB / ~12 MB
#   2 /usr/lib                                                         ~39 MB / ~15 MB
#   3 /usr/share/locale                                                ~33 MB / ~12 MB
#   4 rest of /usr/share                                               ~12 MB /  ~8 MB
#   5 /var/lib/apt/lists                                               ~48 MB / ~11 MB
# /var/cache/apt/archives/*.deb (already compressed) and device nodes in /dev are left out.
set -euo pipefail

CACHE=${1:-${BENCH_CACHE:-/var/tmp/frun-bench}}
MIRROR=${BENCH_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
REF=bench
PATH_ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

die() { echo "build-image.sh: $*" >&2; exit 1; }
log() { echo "build-image.sh: $*" >&2; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap; umoci repack keeps ownership)"
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
[ "$CACHE" != / ] || die "refusing CACHE=/"

if [ -f "$CACHE/image/.complete" ]; then
    log "cached: $CACHE/image"
    exit 0
fi

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
"$top/scripts/install-packages.sh" "$top/scripts/packages/run.txt" "$top/scripts/packages/test.txt"

WORK=$(mktemp -d "$CACHE/.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)

# --- rootfs ---------------------------------------------------------------------------------
ROOTFS=$CACHE/rootfs
if [ ! -f "$ROOTFS/.complete" ]; then
    rm -rf "$ROOTFS" "$WORK/rootfs"
    log "debootstrap --variant=minbase $SUITE from $MIRROR (about a minute)"
    debootstrap --variant=minbase "$SUITE" "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
        tail -20 "$WORK/debootstrap.log" >&2
        die "debootstrap failed"
    }
    mv "$WORK/rootfs" "$ROOTFS"
    touch "$ROOTFS/.complete"
fi

# --- image ----------------------------------------------------------------------------------
L=$WORK/layout
B=$WORK/bundle
umoci init --layout "$L"
umoci new --image "$L:$REF"
umoci unpack --image "$L:$REF" "$B" >/dev/null
R=$B/rootfs

# copy_in PATH...: copy these paths (relative to the rootfs) with ownership, modes, links.
copy_in() {
    (cd "$ROOTFS" && tar --numeric-owner --xattrs -cf - "$@") | tar --numeric-owner --xattrs -xpf - -C "$R"
}
layer() { # layer NAME: commit what changed in the bundle as one new layer
    umoci repack --refresh-bundle --image "$L:$REF" \
        --history.created_by "frun bench: $1" "$B" >/dev/null
}

# 1 base: everything outside /usr/lib, /usr/share and the apt lists
base=()
for p in "$ROOTFS"/* "$ROOTFS"/.[!.]*; do
    n=${p#"$ROOTFS"/}
    case $n in usr|var|dev|.complete|'.[!.]*') ;; *) base+=("$n") ;; esac
done
copy_in "${base[@]}"
mkdir -p "$R/dev"
chmod 0755 "$R/dev"
usr_base=()
for p in "$ROOTFS"/usr/*; do
    n=${p#"$ROOTFS"/}
    case $n in usr/lib|usr/share) ;; *) usr_base+=("$n") ;; esac
done
copy_in "${usr_base[@]}"
copy_in --exclude=var/lib/apt/lists --exclude='var/cache/apt/archives/*.deb' var
layer base
# 2..5
copy_in usr/lib
layer usr/lib
copy_in usr/share/locale
layer usr/share/locale
copy_in --exclude=usr/share/locale usr/share
layer usr/share
copy_in var/lib/apt/lists
layer var/lib/apt/lists

umoci config --image "$L:$REF" --os linux --architecture amd64 \
    --config.cmd /bin/bash --config.env "$PATH_ENV" \
    --history.created_by "frun bench: config" >/dev/null
umoci gc --layout "$L"

# --- check: every layer lists, and together they hold the whole rootfs ------------------------
m=$(jq -r '.manifests[0].digest' "$L/index.json")
layers=$(jq -r '.layers[].digest' "$L/blobs/sha256/${m#sha256:}")
[ "$(echo "$layers" | wc -l)" = 5 ] || die "expected 5 layers, got $(echo "$layers" | wc -l)"
total_gz=0 total_raw=0 i=0
for d in $layers; do
    i=$((i + 1))
    f=$L/blobs/sha256/${d#sha256:}
    tar -tzf "$f" >"$WORK/list.$i" || die "layer $i ($d) does not list"
    gz=$(stat -c %s "$f")
    raw=$(gzip -dc "$f" | wc -c)
    total_gz=$((total_gz + gz)) total_raw=$((total_raw + raw))
    log "layer $i: $(wc -l <"$WORK/list.$i") entries, $((raw / 1048576)) MB raw, $((gz / 1048576)) MB gz"
done
norm() { sed 's#^\./##; s#/$##' | grep -v -e '^$' -e '^\.$' | sort -u; }
cat "$WORK"/list.* | norm >"$WORK/got"
(cd "$ROOTFS" && find . -mindepth 1 \
    ! -path './dev/*' ! -path './var/cache/apt/archives/*.deb' ! -path './.complete') | norm >"$WORK/want"
if ! cmp -s "$WORK/want" "$WORK/got"; then
    diff "$WORK/want" "$WORK/got" | head -20 >&2
    die "the layers do not hold exactly the rootfs"
fi
log "total: $((total_raw / 1048576)) MB raw, $((total_gz / 1048576)) MB gz"

rm -rf "$CACHE/image"
mv "$L" "$CACHE/image"
touch "$CACHE/image/.complete"
log "built $CACHE/image (ref $REF) in $(( $(date +%s) - start )) s"
