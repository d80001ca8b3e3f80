#!/bin/bash
# Builds the Debian 12 guest that scripts/vm-test.sh boots: what a fresh droplet plus frun's
# own install step has (systemd, the stock kernel, scripts/packages/run.txt), and the few
# packages the in-guest checks need (a registry on the guest's loopback, curl, jq).
#
# usage: scripts/vm/build-image.sh            (as root; prints the image directory)
#
# The image is built once and cached outside the checkout, keyed on a hash of run.txt,
# this script and scripts/vm/guest/ (the files put into the guest), so every run with
# the same inputs, CI included, reuses it:
#   $FRUN_VM_CACHE (default /var/cache/frun-vm)/<key>/disk.img     ext4, 2 GB sparse, root fs
#                                                   /<key>/vmlinuz, initrd.img  booted directly
#                                                   /<key>/glibc  the guest's glibc version
# Steps: debootstrap --variant=minbase into a temp dir, put the guest files in, then
# `mkfs.ext4 -d DIR` (no loop mount), and rename the finished directory into place.
# Packages come from the Debian mirror this machine's apt uses.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)
CACHE=${FRUN_VM_CACHE:-/var/cache/frun-vm}
SUITE=bookworm
# Besides run.txt: the kernel and init a droplet has, module loading (9p, nf_tables,
# overlay), and what scripts/vm/checks.sh uses.
GUEST_EXTRA=(systemd-sysv linux-image-amd64 kmod udev docker-registry curl jq)

die() { echo "vm/build-image.sh: $*" >&2; exit 1; }
log() { echo "vm/build-image.sh: $*" >&2; }
[ "$(id -u)" = 0 ] || die "run as root (debootstrap, file ownership in the image)"
for t in debootstrap mkfs.ext4 sha256sum; do command -v "$t" >/dev/null || die "missing tool: $t"; done

# 1. The cache key: everything that decides what the image holds.
key=$( { cat "$top/scripts/packages/run.txt" "${BASH_SOURCE[0]}"; find "$here/guest" -type f | sort | xargs cat; } | sha256sum | cut -c1-16)
out=$CACHE/$key
if [ -f "$out/disk.img" ] && [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.img" ] && [ -f "$out/glibc" ]; then
    echo "$out"
    exit 0
fi

# 2. The mirror: the one this machine's apt is configured with (deb822 or one-line sources).
mirror=${FRUN_VM_MIRROR:-$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
    | awk '/^URIs:/ && $2 ~ /\/debian\/?$/ {print $2; exit} /^deb / && $3 == "bookworm" {print $2; exit}' || true)}
mirror=${mirror:-http://deb.debian.org/debian}

mkdir -p "$CACHE"
work=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root

# 3. debootstrap: minbase + systemd, kernel, run.txt, the checks' tools.
pkgs=("${GUEST_EXTRA[@]}")
while read -r p _; do
    [ -n "$p" ] && [ "${p#\#}" = "$p" ] && pkgs+=("$p")
done <"$top/scripts/packages/run.txt"
log "debootstrap $SUITE from $mirror with: ${pkgs[*]} (a few minutes)"
t0=$(date +%s)
debootstrap --variant=minbase --include="$(IFS=,; echo "${pkgs[*]}")" "$SUITE" "$root" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }

# 4. The guest's own files (unit that runs the checks, its runner), then boot settings.
cp -a "$here/guest/." "$root/"
chmod 755 "$root/usr/local/sbin/frun-vm-run"
ln -sf /etc/systemd/system/frun-vm-checks.service "$root/etc/systemd/system/multi-user.target.wants/frun-vm-checks.service"
echo frun-vm >"$root/etc/hostname"
echo '127.0.1.1 frun-vm' >>"$root/etc/hosts"
echo '/dev/vda / ext4 rw,noatime 0 0' >"$root/etc/fstab"
# Nothing periodic or packaged runs on its own during the checks: the checks start the
# registry themselves.
for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
    fstrim.timer man-db.timer docker-registry.service getty@tty1.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$u"
done
cp -L "$root/vmlinuz" "$work/vmlinuz"
# The guest's glibc version: vm-test.sh checks that the frun binary can run there.
dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Version}' libc6 | cut -d- -f1 >"$work/glibc"
cp -L "$root/initrd.img" "$work/initrd.img"
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*

# 5. The disk: an ext4 image populated from the directory (no loop mount, no root mount).
mkfs.ext4 -q -F -L frun-vm -d "$root" "$work/disk.img" 2G >/dev/null
rm -rf "$root" "$work/debootstrap.log"
# 6. Into place: the directory appears whole or not at all; older keys go.
mv "$work" "$out.tmp" && mv -T "$out.tmp" "$out"
trap - EXIT
find "$CACHE" -mindepth 1 -maxdepth 1 -type d -regextype egrep -regex '.*/[0-9a-f]{16}' ! -name "$key" -exec rm -rf {} +
log "built $out in $(( $(date +%s) - t0 )) s"
echo "$out"
