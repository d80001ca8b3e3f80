#!/bin/bash
# Builds frun's test images as OCI image layouts, with independent tools only
# (umoci, skopeo, busybox-static, Python's tarfile/hashlib/gzip/json via mkimage.py;
# never frun). Writes nothing into registries: scripts/registry.sh pushes them.
#
# usage: scripts/test-images/build.sh OUTDIR
#
# Needs the static checker binary (tests/checker) for the test/checker* images: build it first
# with `(cd tests/checker && cargo build --release)` (scripts/test.sh does), or point
# FRUN_CHECKER at one.
#
# OUTDIR/oci/<repo>/           one OCI layout per repository, refs = tags
#                              (e.g. oci/library/alpine holds refs 3.20.3 and latest)
# OUTDIR/archives/             docker-archive tarballs pushed as they are (hello-world)
# OUTDIR/images.txt            "<source> <repo:tag> [v2s2]" per line; <source> is a skopeo
#                              reference whose path is relative to OUTDIR
#                              (oci:oci/test/busybox:latest, docker-archive:archives/x.tar);
#                              a third field v2s2 means "push converted to Docker schema 2"
# OUTDIR/hostile.txt           names of the hostile/<name>:latest images, one per line
# OUTDIR/hostile.json          the same with a description and canary paths for each
#
# Re-running rebuilds everything from scratch (it deletes only the paths listed above).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=/usr/bin/python3
MKIMAGE="$PY $here/mkimage.py"
# shared/ sits beside the checkout (as in CI: a clone with a copy of shared/ next to it).
FIXTURES=${FRUN_FIXTURES:-$(cd "$here/../../.." && pwd)/shared/fixtures/real-images}
ALPINE_TGZ=$FIXTURES/alpine-minirootfs-3.20.3-x86_64.tar.gz
HELLO_TAR=$FIXTURES/hello-world-v25.tar
BUSYBOX=${BUSYBOX:-/bin/busybox}
CHECKER=${FRUN_CHECKER:-$(cd "$here/../.." && pwd)/tests/checker/target/release/checker}
PATH_ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

die() { echo "build.sh: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 OUTDIR"
for t in umoci zstd tar gzip "$PY" "$BUSYBOX"; do
    command -v "$t" >/dev/null || die "missing tool: $t"
done
fixture_hint() {
    if [ -n "${FRUN_FIXTURES:-}" ]; then
        echo "(looked in FRUN_FIXTURES=$FRUN_FIXTURES)"
    else
        echo "(looked in $FIXTURES: shared/ beside the checkout, as in CI; from a worktree elsewhere set FRUN_FIXTURES=/path/to/shared/fixtures/real-images)"
    fi
}
[ -f "$ALPINE_TGZ" ] || die "missing fixture $(basename "$ALPINE_TGZ") $(fixture_hint)"
[ -f "$HELLO_TAR" ] || die "missing fixture $(basename "$HELLO_TAR") $(fixture_hint)"
file -b "$BUSYBOX" 2>/dev/null | grep -q 'statically linked' || \
    ldd "$BUSYBOX" 2>&1 | grep -q 'not a dynamic' || die "$BUSYBOX is not static (apt-get install busybox-static)"
[ -x "$CHECKER" ] || die "missing $CHECKER (needed for the test/checker* images): build it first with
    (cd $(cd "$here/../.." && pwd)/tests/checker && cargo build --release)
or set FRUN_CHECKER=/path/to/a/static/checker"
file -b "$CHECKER" 2>/dev/null | grep -Eq 'statically linked|static-pie linked' || \
    ldd "$CHECKER" 2>&1 | grep -Eq 'not a dynamic|statically linked' || \
    die "$CHECKER is not static: build it from tests/checker (its .cargo/config.toml sets +crt-static)"
[ "$(id -u)" = 0 ] || die "must run as root (umoci repack keeps ownership, device nodes)"

mkdir -p "$1"
OUT=$(cd "$1" && pwd)
[ "$OUT" != / ] || die "refusing OUTDIR=/"
rm -rf "$OUT/oci" "$OUT/archives" "$OUT/.work" "$OUT/images.txt" "$OUT/hostile.txt" "$OUT/hostile.json"
mkdir -p "$OUT/oci" "$OUT/archives" "$OUT/.work"
WORK=$OUT/.work
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s%N)

IMAGES=$OUT/images.txt
: >"$IMAGES"
img() { echo "$*" >>"$IMAGES"; }

# Every layer of an umoci-built layout must list cleanly (umoci `insert` can truncate).
check_tgz_layers() {
    local layout=$1 d
    for d in $(jq -r '.manifests[].digest' "$layout/index.json" | sort -u); do
        for l in $(jq -r '.layers[].digest' "$layout/blobs/sha256/${d#sha256:}"); do
            tar -tzf "$layout/blobs/sha256/${l#sha256:}" >/dev/null || die "$layout: layer $l does not list"
        done
    done
}

# Path of the first layer blob of the first manifest of a layout.
first_layer() {
    local m
    m=$(jq -r '.manifests[0].digest' "$1/index.json")
    echo "$1/blobs/sha256/$(jq -r '.layers[0].digest' "$1/blobs/sha256/${m#sha256:}" | cut -d: -f2)"
}

# Path of the last (top) layer blob of the first manifest of a layout.
last_layer() {
    local m
    m=$(jq -r '.manifests[0].digest' "$1/index.json")
    echo "$1/blobs/sha256/$(jq -r '.layers[-1].digest' "$1/blobs/sha256/${m#sha256:}" | cut -d: -f2)"
}

# Path of the config blob of the first manifest of a layout.
config_blob() {
    local m
    m=$(jq -r '.manifests[0].digest' "$1/index.json")
    echo "$1/blobs/sha256/$(jq -r '.config.digest' "$1/blobs/sha256/${m#sha256:}" | cut -d: -f2)"
}

# --- test/busybox (umoci) -------------------------------------------------------------
L=$OUT/oci/test/busybox
B=$WORK/busybox
mkdir -p "$(dirname "$L")"
umoci init --layout "$L"
umoci new --image "$L:latest"
umoci unpack --image "$L:latest" "$B" >/dev/null
R=$B/rootfs
mkdir -p "$R"/{bin,etc,tmp,root,home/app,dev,proc,sys,var,usr/bin,usr/sbin,sbin}
install -m 0755 "$BUSYBOX" "$R/bin/busybox"
for a in $("$BUSYBOX" --list); do
    [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"
done
for a in sh ls cat echo true sleep id httpd; do [ -L "$R/bin/$a" ] || die "busybox lacks applet $a"; done
cat >"$R/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$R/etc/group" <<'EOF'
root:x:0:
app:x:1000:
nobody:x:65534:
EOF
chmod 0644 "$R/etc/passwd" "$R/etc/group"
chmod 1777 "$R/tmp"
chmod 0700 "$R/root"
chown 1000:1000 "$R/home/app"
umoci repack --refresh-bundle --image "$L:latest" "$B"
umoci config --image "$L:latest" --os linux --architecture amd64 \
    --config.cmd /bin/sh --config.env "$PATH_ENV"
umoci gc --layout "$L"
check_tgz_layers "$L"
tar -tzf "$(first_layer "$L")" >"$WORK/list"
grep -qx 'bin/busybox' "$WORK/list" || die "busybox layer lacks bin/busybox"
img "oci:oci/test/busybox:latest test/busybox:latest"
img "oci:oci/test/busybox:latest test/busybox:v2s2 v2s2"

# --- test/checker and the images derived from it (umoci, on top of test/busybox) ---------
# test/checker = a copy of test/busybox's layout (same busybox layer blob) + one layer with
# the static checker and /etc/group with `extra` (2000, app is a member); every other image
# here is a copy of test/checker's layout with a config change and/or one more layer.
derive() { # derive FROM TO: copy the layout of repo FROM (blobs included) to repo TO
    mkdir -p "$(dirname "$OUT/oci/$2")"
    cp -a "$OUT/oci/$1" "$OUT/oci/$2"
}
unpack() { # unpack REPO: bundle of REPO:latest in $B, its rootfs in $R
    B=$WORK/bundle-${1//\//-}
    umoci unpack --image "$OUT/oci/$1:latest" "$B" >/dev/null
    R=$B/rootfs
}
repack() { # repack REPO [umoci config args...]: what changed in $B becomes one new layer
    local repo=$1; shift
    umoci repack --image "$OUT/oci/$repo:latest" "$B"
    rm -rf "$B"
    reconfig "$repo" "$@"
}
reconfig() { # reconfig REPO [umoci config args...]: config change, gc, check, list in images.txt
    local repo=$1; shift
    [ $# -eq 0 ] || umoci config --image "$OUT/oci/$repo:latest" "$@"
    umoci gc --layout "$OUT/oci/$repo"
    check_tgz_layers "$OUT/oci/$repo"
    img "oci:oci/$repo:latest $repo:latest"
}
top_has() { # top_has REPO REGEX: a line of `tar -tvzf` of the top layer matches REGEX
    tar -tvzf "$(last_layer "$OUT/oci/$1")" | grep -E "$2" >/dev/null || die "$1: top layer has no entry matching '$2'"
}
config_is() { # config_is REPO JQ-EXPR WANT: `jq -c JQ-EXPR` of the image config is WANT
    local got
    got=$(jq -c "$2" "$(config_blob "$OUT/oci/$1")")
    [ "$got" = "$3" ] || die "$1: config $2 is $got, want $3"
}

derive test/busybox test/checker
unpack test/checker
install -D -m 0755 "$CHECKER" "$R/usr/local/bin/checker"
printf '%s\n' root:x:0: app:x:1000: extra:x:2000:app nobody:x:65534: >"$R/etc/group"
chmod 0644 "$R/etc/group"
repack test/checker --config.cmd /usr/local/bin/checker --config.workingdir /
top_has test/checker ' usr/local/bin/checker$'
top_has test/checker ' etc/group$'
config_is test/checker '[.config.Entrypoint, .config.Cmd, .config.Env, .config.User, .config.WorkingDir]' \
    '[null,["/usr/local/bin/checker"],["'"$PATH_ENV"'"],null,"/"]'

derive test/checker test/checker-user
reconfig test/checker-user --config.user app --config.workingdir /home/app
config_is test/checker-user '[.config.Cmd, .config.User, .config.WorkingDir]' '[["/usr/local/bin/checker"],"app","/home/app"]'

# CVE-2019-19921 style: /proc is a symlink (to a directory of the image, with a marker file)
derive test/checker test/proc-symlink
unpack test/proc-symlink
rmdir "$R/proc"
ln -s /tmp/fakeproc "$R/proc"
mkdir -m 0755 "$R/tmp/fakeproc"
echo "not procfs" >"$R/tmp/fakeproc/frun-fakeproc"
repack test/proc-symlink
top_has test/proc-symlink ' proc -> /tmp/fakeproc$'

# CVE-2025-31133 style: /dev/null is a symlink to /proc/sys/kernel/core_pattern
derive test/checker test/devnull-symlink
unpack test/devnull-symlink
ln -s /proc/sys/kernel/core_pattern "$R/dev/null"
repack test/devnull-symlink
top_has test/devnull-symlink ' dev/null -> /proc/sys/kernel/core_pattern$'

# CVE-2021-30465 style bind-mount targets: a relative escape and an absolute symlink
derive test/checker test/bindlink
unpack test/bindlink
ln -s /etc/../../../../../tmp "$R/data"
ln -s / "$R/abs"
repack test/bindlink
top_has test/bindlink ' data -> /etc/\.\./\.\./\.\./\.\./\.\./tmp$'
top_has test/bindlink ' abs -> /$'

derive test/checker test/stopsignal
reconfig test/stopsignal --config.stopsignal SIGUSR1 --config.cmd /bin/sh --config.cmd=-c \
    --config.cmd 'trap "echo got-usr1; exit 7" USR1; while true; do sleep 0.1; done'
config_is test/stopsignal '[.config.StopSignal, .config.Cmd]' \
    '["SIGUSR1",["/bin/sh","-c","trap \"echo got-usr1; exit 7\" USR1; while true; do sleep 0.1; done"]]'

# --- library/alpine (umoci, from the fixture rootfs) ---------------------------------------
L=$OUT/oci/library/alpine
B=$WORK/alpine
mkdir -p "$(dirname "$L")"
umoci init --layout "$L"
umoci new --image "$L:3.20.3"
umoci unpack --image "$L:3.20.3" "$B" >/dev/null
tar -xzpf "$ALPINE_TGZ" --numeric-owner -C "$B/rootfs"
umoci repack --refresh-bundle --image "$L:3.20.3" "$B"
umoci config --image "$L:3.20.3" --os linux --architecture amd64 \
    --config.cmd /bin/sh --config.env "$PATH_ENV"
umoci tag --image "$L:3.20.3" latest
umoci gc --layout "$L"
check_tgz_layers "$L"
norm() { sed 's#^\./##; s#/$##' | grep -v -e '^$' -e '^\.$' | sort -u; }
tar -tzf "$ALPINE_TGZ" | norm >"$WORK/want"
tar -tzf "$(first_layer "$L")" | norm >"$WORK/got"
want=$(wc -l <"$WORK/want"); got=$(wc -l <"$WORK/got")
[ "$want" = "$got" ] || die "alpine layer has $got entries, rootfs tarball $want"
img "oci:oci/library/alpine:3.20.3 library/alpine:3.20.3"
img "oci:oci/library/alpine:latest library/alpine:latest"

# --- library/hello-world (fixture docker-archive, pushed as is, arm64) ---------------------
cp "$HELLO_TAR" "$OUT/archives/hello-world-v25.tar"
chmod 0644 "$OUT/archives/hello-world-v25.tar"
img "docker-archive:archives/hello-world-v25.tar library/hello-world:latest"

# --- mkimage.py images (one Python process for all) -------------------------------------
pairs=()
mk() { # mk BUILTIN REPO
    pairs+=("$1" "$OUT/oci/$2")
    img "oci:oci/$2:latest $2:latest"
}
mk layers test/layers
mk multi test/multi
mk big test/big
mk bomb test/bomb
mk badiff test/badiff
mk corrupt test/corrupt
: >"$OUT/hostile.txt"
for h in $($MKIMAGE list | sed -n 's#^hostile/##p'); do
    mk "hostile/$h" "hostile/$h"
    echo "$h" >>"$OUT/hostile.txt"
done
$MKIMAGE builtin "${pairs[@]}" >/dev/null
$MKIMAGE hostile-json >"$OUT/hostile.json"

# --- the family example's images (library/nginx:stable, family/app:{v1,v2,broken}) ---------
# Built from this machine's Debian nginx and sqlite3 by examples/family/build.sh, which
# appends its lines to images.txt; the test registries always carry them.
BUSYBOX=$BUSYBOX "$here/../../examples/family/build.sh" "$OUT"

# --- verify every layout: blob digests and sizes, layers decompress, diff_ids ----------------
layouts=()
for idx in $(cd "$OUT/oci" && find . -name index.json | sort); do
    d=${idx%/index.json}; d=${d#./}
    [ "$d" = test/badiff ] || layouts+=("$OUT/oci/$d")
done
$MKIMAGE verify -q "${layouts[@]}"
$MKIMAGE verify -q --allow-bad-diff-id "$OUT/oci/test/badiff"
if $MKIMAGE verify -q "$OUT/oci/test/badiff" 2>/dev/null; then die "test/badiff: diff_id is not wrong"; fi

ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "build.sh: $(wc -l <"$IMAGES") images in $OUT (${ms} ms)"
