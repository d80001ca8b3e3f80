#!/bin/bash
# Proves that the package lists (scripts/packages/run.txt, test.txt) are complete: on a
# fresh Debian 12 (a debootstrap --variant=minbase chroot, what a new droplet has before
# anything is installed), the README's install step alone must give every external
# command that frun's code, its tests and its scripts run. Not part of CI (it needs the
# Debian mirror and ~3 minutes); run it after changing a list or adding a tool:
#
#   scripts/check-install-lists.sh          (as root; FRUN_FIXTURES as for test-images)
#
# In the chroot, after `scripts/install-packages.sh run.txt test.txt` of a clean clone:
#   1. every word of the sources (scripts/, examples/, string literals of the Rust code,
#      .ci/) that is a command on this host must be one in the chroot too, except the
#      words listed in IGNORE below (each with why);
#   2. the Python modules the scripts and tests import load;
#   3. the crates that compile C (ring, zstd-sys, libsqlite3-sys) and the static checker
#      build, with this host's Rust toolchain bound in (the README asks for one);
#   4. scripts/test-registry-smoke.sh passes: the test images are built (umoci, skopeo,
#      busybox-static, python, Debian's nginx and sqlite3) and served by the registries.
# The chroot lives under $FRUN_FRESH_DIR (default /var/tmp) and is removed at the end
# (its mounts first), also on failure or Ctrl-C. Exit status 0 = complete.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() { echo "check-install-lists.sh: $*" >&2; exit 1; }
log() { echo "check-install-lists.sh: $*" >&2; }
[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot)"
command -v debootstrap >/dev/null || die "missing debootstrap (scripts/packages/test.txt)"
FIXTURES=${FRUN_FIXTURES:-$(cd "$top/.." && pwd)/shared/fixtures/real-images}
[ -d "$FIXTURES" ] || die "no fixtures in $FIXTURES (set FRUN_FIXTURES)"

# Words of the sources that are commands on a developer's host but not run as commands by
# the code (identifiers, English, Python builtins), or run only where they exist by
# design: the guest's systemd tools (scripts/vm/checks.sh runs in the guest, whose
# image adds systemd-sysv), and policy-rc.d (written by install-packages.sh itself).
IGNORE="col docker ex git init look make netstat node opt red route write zip
        journalctl systemctl systemd systemd-run poweroff reboot policy-rc.d"

# 0. A fresh Debian 12: debootstrap minbase from the mirror apt uses here.
mirror=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
    | awk '/^URIs:/ && $2 ~ /\/debian\/?$/ {print $2; exit} /^deb / && $3 == "bookworm" {print $2; exit}' || true)
mirror=${mirror:-http://deb.debian.org/debian}
work=$(mktemp -d "${FRUN_FRESH_DIR:-/var/tmp}/frun-fresh.XXXXXX")
root=$work/root
cleanup() {
    for m in root/.rustup root/.cargo dev/pts dev sys proc; do
        mountpoint -q "$root/$m" 2>/dev/null && umount -l "$root/$m"
    done
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
t0=$(date +%s)
log "debootstrap bookworm (minbase) from $mirror into $root"
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
in_root() { chroot "$root" /usr/bin/env -i HOME=/root PATH=/root/.cargo/bin:/usr/sbin:/usr/bin:/sbin:/bin /bin/bash -c "cd /root/frun && $1"; }

# A clean clone of this checkout's HEAD, and the fixtures beside it (as in CI).
git clone -q "$top" "$root/root/frun"
mkdir -p "$root/root/shared/fixtures"
cp -a "$FIXTURES" "$root/root/shared/fixtures/real-images"

# The README's install step, and nothing else.
log "scripts/install-packages.sh run.txt test.txt"
in_root "scripts/install-packages.sh scripts/packages/run.txt scripts/packages/test.txt" >"$work/install.log" 2>&1 \
    || { tail -20 "$work/install.log" >&2; die "install-packages.sh failed"; }
failed=0

# 1. Every command the sources name resolves.
words=$work/words
{
    find "$top/scripts" "$top/examples" -type f -not -name '*.md' -print0 | xargs -0 cat
    cat "$top/.ci/run" "$top"/.github/workflows/*.yml 2>/dev/null || true
    find "$top/src" "$top/runtime" "$top/images" "$top/tests" "$top/examples" -name '*.rs' \
        -not -path '*/target/*' -print0 | xargs -0 grep -ohE '"([^"\\]|\\.)*"'
} | grep -oE '[A-Za-z0-9_][A-Za-z0-9._+-]*' | sort -u >"$words.all"
ignore=" $(echo $IGNORE) "
while read -r w; do
    [ "$(type -t "$w" 2>/dev/null)" = file ] || continue
    case $ignore in *" $w "*) continue ;; esac
    case $(command -v "$w") in /usr/* | /bin/* | /sbin/*) echo "$w" ;; esac
done <"$words.all" >"$words"
cp "$words" "$root/tmp/frun-words"
missing=$(chroot "$root" /bin/bash -c 'while read -r w; do command -v "$w" >/dev/null || echo "$w"; done </tmp/frun-words')
if [ -n "$missing" ]; then
    log "FAIL: commands the sources name that the lists do not install: $(echo $missing)"
    log "      (add their packages to scripts/packages/*.txt, or to IGNORE here if not run)"
    failed=1
else
    log "ok: all $(wc -l <"$words") commands the sources name resolve"
fi

# 2. Python modules of the scripts and tests.
mods=$(grep -rhoE '^\s*(import|from) [A-Za-z_][A-Za-z0-9_.]*' "$top/scripts" "$top/tests/it" 2>/dev/null \
    | awk '{print $2}' | sort -u | paste -sd, -)
if in_root "python3 -c 'import $mods'" >"$work/python.log" 2>&1; then
    log "ok: python3 imports $mods"
else
    log "FAIL: python3 imports: $(tail -1 "$work/python.log")"
    failed=1
fi

# 3. The C parts of the build and the static checker, with this host's toolchain.
if [ -d "${RUSTUP_HOME:-$HOME/.rustup}" ] && [ -d "${CARGO_HOME:-$HOME/.cargo}" ]; then
    mkdir -p "$root/root/.rustup" "$root/root/.cargo"
    mount --bind "${RUSTUP_HOME:-$HOME/.rustup}" "$root/root/.rustup"
    mount -o remount,bind,ro "$root/root/.rustup"
    mount --bind "${CARGO_HOME:-$HOME/.cargo}" "$root/root/.cargo"
    if in_root "CARGO_TARGET_DIR=/var/tmp/target cargo build --offline --locked -q -p ring -p zstd-sys -p libsqlite3-sys \
            && cd tests/checker && cargo build --release --locked --offline -q" >"$work/build.log" 2>&1; then
        log "ok: ring, zstd-sys, libsqlite3-sys and the static checker build"
    else
        tail -20 "$work/build.log" >&2
        log "FAIL: the build's C parts or the checker"
        failed=1
    fi
else
    log "FAIL: no Rust toolchain here to bind into the chroot (\$HOME/.rustup, \$HOME/.cargo)"
    failed=1
fi

# 4. The test infrastructure: images built by the Debian tools, served by the registries.
if in_root "scripts/test-registry-smoke.sh" >"$work/smoke.log" 2>&1; then
    log "ok: scripts/test-registry-smoke.sh: $(tail -1 "$work/smoke.log")"
else
    tail -20 "$work/smoke.log" >&2
    log "FAIL: scripts/test-registry-smoke.sh"
    failed=1
fi

log "done in $(($(date +%s) - t0)) s: $([ $failed = 0 ] && echo complete || echo INCOMPLETE)"
exit $failed
