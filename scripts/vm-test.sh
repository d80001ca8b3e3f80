#!/bin/bash
# frun's end-to-end checks in a Debian 12 guest: what a fresh droplet is (systemd, the
# stock 6.1 kernel, pure cgroup v2, swap) and what this project's test VMs are not. Run by
# scripts/test.sh after the cargo tests (so by .ci/run); as root.
#
#   1. the guest image: scripts/vm/build-image.sh (cached in /var/cache/frun-vm, keyed on
#      its inputs; debootstrap from this machine's Debian mirror when missing);
#   2. the test registry's content: this script runs inside scripts/with-test-registries.sh
#      (it re-executes itself there when FRUN_TEST_REGISTRY_STORAGE is not set) and hands
#      the guest the part of registry (a)'s storage the checks pull (test/busybox,
#      test/checker, and the family stack's library/nginx, family/app), which the guest
#      serves with docker-registry on its own loopback;
#   3. boots the image with qemu, TCG (KVM here is nested and hangs stock kernels), no NIC,
#      the disk in snapshot mode plus a swap disk, and a 9p share holding frun, the
#      checks (scripts/vm/checks.sh) and the registry; the guest's frun-vm-checks.service
#      runs them and powers off; results come back in the share (and on the serial log).
#      One check reboots the guest (checks.sh's boot_unit/reboot_serving): without
#      -no-reboot qemu restarts it in the same process, the snapshot disk keeps what the
#      first boot wrote, and the checks resume after the boot;
#   4. boots it again with systemd.unified_cgroup_hierarchy=0 (the hybrid layout).
# Each boot has a deadline: no checks started within FRUN_VM_BOOT_TIMEOUT (360 s), or not
# done within FRUN_VM_TIMEOUT (1200 s: a boot includes the reboot), kills qemu (by its pid) and fails with the serial
# log's tail.
#
# usage: scripts/vm-test.sh
# env:   FRUN_VM_BIN      frun binary to test (default target/debug/frun)
#        FRUN_VM_MODES    boots to make (default "v2 hybrid")
#        FRUN_VM_XFAIL    overrides the expected-to-fail list of scripts/vm/checks.sh
#        FRUN_VM_CHECKS   run only these checks, e.g. "boot_unit reboot_serving" (the
#                         others say `skip`; for work on one check, not for CI)
#        FRUN_VM_KEEP=1   keep the work directory (share, serial logs)
#        FRUN_VM_CACHE    where images are cached (default /var/cache/frun-vm)
#        FRUN_VM_MIRROR   Debian mirror for debootstrap (default: the one apt uses here)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
die() { echo "vm-test.sh: $*" >&2; exit 1; }
log() { echo "vm-test.sh: $*" >&2; }
[ "$(id -u)" = 0 ] || die "run as root (debootstrap, and the test registry's network namespace)"
command -v qemu-system-x86_64 >/dev/null || die "missing qemu-system-x86_64 (scripts/install-packages.sh scripts/packages/test.txt)"
t_start=${FRUN_VM_T0:-$(date +%s)}
export FRUN_VM_T0=$t_start

# 1. The image, built here (outside any network namespace: debootstrap needs the mirror).
if [ -z "${FRUN_VM_IMAGE:-}" ]; then
    FRUN_VM_IMAGE=$(scripts/vm/build-image.sh)
    export FRUN_VM_IMAGE
    log "image $FRUN_VM_IMAGE ready after $(( $(date +%s) - t_start )) s"
fi
# 2. The test registry's content.
if [ -z "${FRUN_TEST_REGISTRY_STORAGE:-}" ]; then
    exec scripts/with-test-registries.sh "$0" "$@"
fi

bin=${FRUN_VM_BIN:-target/debug/frun}
[ -x "$bin" ] || die "no frun binary at $bin (cargo build, or set FRUN_VM_BIN)"
# The guest has Debian 12's glibc: a binary linked against a newer one (built on a newer
# distribution, e.g. GitHub's ubuntu-24.04) cannot run there; build a static one then
# (the crates were fetched by the build before, so offline).
glibc_ok() {
    local need
    need=$(grep -ao 'GLIBC_2\.[0-9]*' "$1" | sort -uV | tail -1)
    [ "$(printf '%s\n%s\n' "${need#GLIBC_}" "$(cat "$FRUN_VM_IMAGE/glibc")" | sort -V | tail -1)" = "$(cat "$FRUN_VM_IMAGE/glibc")" ]
}
if ! glibc_ok "$bin"; then
    log "$bin needs a glibc newer than the guest's $(cat "$FRUN_VM_IMAGE/glibc"): building a static frun for the guest"
    RUSTFLAGS="-C target-feature=+crt-static" cargo build --offline --locked --bin frun \
        --target x86_64-unknown-linux-gnu --target-dir target/vm-static
    bin=target/vm-static/x86_64-unknown-linux-gnu/debug/frun
fi

# registry_subset STORAGE DEST REPO...: a copy of a docker-registry storage directory
# holding only REPOs and the blobs they link to (the whole test registry is ~60 MB, which
# 9p under TCG copies slowly; the checks need a few MB of it).
registry_subset() {
    local src=$1/docker/registry/v2 dst=$2/docker/registry/v2 repo hex
    shift 2
    for repo in "$@"; do
        [ -d "$src/repositories/$repo" ] || die "no $repo in the test registry ($src)"
        mkdir -p "$dst/repositories/$(dirname "$repo")"
        cp -a "$src/repositories/$repo" "$dst/repositories/$repo"
        for hex in $(ls "$src/repositories/$repo/_layers/sha256" "$src/repositories/$repo/_manifests/revisions/sha256" | grep -E '^[0-9a-f]{64}$'); do
            mkdir -p "$dst/blobs/sha256/${hex:0:2}"
            cp -a "$src/blobs/sha256/${hex:0:2}/$hex" "$dst/blobs/sha256/${hex:0:2}/"
        done
    done
}

work=$(mktemp -d /tmp/frun-vm.XXXXXX)
qpid=
cleanup() {
    [ -z "$qpid" ] || { kill -KILL "$qpid" 2>/dev/null; wait "$qpid" 2>/dev/null; } || true
    if [ "${FRUN_VM_KEEP:-}" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
share=$work/share
mkdir -p "$share"
# Without its debug info (a debug build is ~180 MB, ~30 MB stripped: 9p under TCG is slow).
strip -o "$share/frun" "$bin"
cp scripts/vm/checks.sh "$share/checks.sh"
mkdir -p "$share/family"
cp examples/family/frun.toml examples/family/proxy.conf.tmpl "$share/family/"
# One tar file: the guest reads one file over 9p rather than walking a tree there.
registry_subset "$FRUN_TEST_REGISTRY_STORAGE" "$work/registry" test/busybox test/checker \
    library/nginx family/app
tar -C "$work/registry" -cf "$share/registry.tar" .
[ -z "${FRUN_VM_XFAIL+x}" ] || printf 'FRUN_VM_XFAIL=%q\n' "$FRUN_VM_XFAIL" >>"$share/env"
[ -z "${FRUN_VM_CHECKS:-}" ] || printf 'FRUN_VM_CHECKS=%q\n' "$FRUN_VM_CHECKS" >>"$share/env"
truncate -s 512M "$work/swap.img"
mkswap -q "$work/swap.img"

# 3. One boot: MODE is v2 (the guest's default) or hybrid.
boot() {
    local mode=$1 append t0 now state=booting
    append="root=/dev/vda rw console=ttyS0 panic=-1 quiet systemd.show_status=error"
    [ "$mode" = hybrid ] && append+=" systemd.unified_cgroup_hierarchy=0"
    rm -rf "$share/out"
    t0=$(date +%s)
    # No -no-reboot: the reboot check needs the guest back in the same qemu (a panic
    # reboots it too: checks.sh then fails at once, seeing it did not ask for it).
    qemu-system-x86_64 -name "frun-vm-$mode" -accel tcg,thread=multi -cpu max -smp 2 -m 1024 \
        -display none -monitor none -serial "file:$work/serial-$mode.log" -nic none \
        -kernel "$FRUN_VM_IMAGE/vmlinuz" -initrd "$FRUN_VM_IMAGE/initrd.img" -append "$append" \
        -drive "file=$FRUN_VM_IMAGE/disk.img,format=raw,if=virtio,snapshot=on" \
        -drive "file=$work/swap.img,format=raw,if=virtio,snapshot=on" \
        -fsdev "local,id=share,path=$share,security_model=none" \
        -device virtio-9p-pci,fsdev=share,mount_tag=frun \
        </dev/null >"$work/qemu-$mode.log" 2>&1 &
    qpid=$!
    while kill -0 "$qpid" 2>/dev/null; do
        sleep 1
        now=$(( $(date +%s) - t0 ))
        if [ $state = booting ] && [ -d "$share/out" ]; then
            state=checking
            log "$mode: guest up, checks started after ${now} s"
        elif [ $state = checking ] && [ -f "$share/out/reboot.state" ]; then
            state=rebooting
            log "$mode: guest rebooting after ${now} s"
        elif [ $state = rebooting ] && [ ! -f "$share/out/reboot.state" ]; then
            state=resumed
            log "$mode: guest back, checks resumed after ${now} s"
        fi
        if { [ $state = booting ] && [ $now -ge "${FRUN_VM_BOOT_TIMEOUT:-360}" ]; } ||
            [ $now -ge "${FRUN_VM_TIMEOUT:-1200}" ]; then
            kill -KILL "$qpid" 2>/dev/null || true
            wait "$qpid" 2>/dev/null || true
            qpid=
            echo "vm-test.sh: $mode: timed out after ${now} s while $state; serial log tail:" >&2
            tail -40 "$work/serial-$mode.log" >&2
            return 1
        fi
    done
    wait "$qpid" || { log "$mode: qemu failed: $(tail -5 "$work/qemu-$mode.log")"; qpid=; return 1; }
    qpid=
    now=$(( $(date +%s) - t0 ))
    if [ ! -f "$share/out/status" ]; then
        echo "vm-test.sh: $mode: the guest powered off without finishing the checks after ${now} s; serial log tail:" >&2
        tail -40 "$work/serial-$mode.log" >&2
        [ ! -f "$share/out/checks.log" ] || { echo "--- checks so far:" >&2; cat "$share/out/checks.log" >&2; }
        return 1
    fi
    sed "s/^/[$mode] /" "$share/out/checks.log"
    [ ! -f "$share/out/serving-after-boot" ] || log "$mode: after the reboot, the stack served again $(cat "$share/out/serving-after-boot") s after the guest's kernel started"
    [ ! -f "$share/out/times" ] || log "$mode: seconds per check: $(sed 's/ s$//' "$share/out/times" | tr '\n' ',' | sed 's/,$//; s/,/, /g')"
    [ ! -f "$share/out/info.txt" ] || sed "s/^/[$mode] frun info: /" "$share/out/info.txt"
    log "$mode: boot + checks + power-off in ${now} s ($(cat "$share/out/status"))"
    [ "$(cat "$share/out/status")" = "exit 0" ]
}

failed=()
for mode in ${FRUN_VM_MODES:-v2 hybrid}; do
    boot "$mode" || failed+=("$mode")
done
log "done in $(( $(date +%s) - t_start )) s (image included)"
[ ${#failed[@]} = 0 ] || die "checks failed in: ${failed[*]}"
