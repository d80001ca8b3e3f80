#!/bin/bash
# Measurement (not a test): what verifying reused layer blobs costs a pull. Each frun binary
# pulls test/big (49 MB of incompressible layers) from the test registry into a fresh store,
# then pulls it again N times: the second and later pulls reuse every blob (a binary that
# hashes reused blobs reads all 49 MB each time; one that only checks sizes does not).
# Prints each again-pull's wall time and the median per binary.
#
# usage: FRUN_TEST_IMAGES_DIR=DIR scripts/with-test-registries.sh scripts/bench/reused-pull.sh [FRUN ...]
#   FRUN: binaries to compare (default: target/release/frun), e.g. an older build first.
# env:   N=9 (again-pulls per binary)   IMAGE=test/big
set -euo pipefail
: "${FRUN_TEST_REGISTRY:?run under scripts/with-test-registries.sh}"
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(target/release/frun)
n=${N:-9}
image=$FRUN_TEST_REGISTRY/${IMAGE:-test/big}
for bin in "${bins[@]}"; do
    root=$(mktemp -d /tmp/frun-reused-pull.XXXXXX)
    frun=("$bin" --root "$root/r" --run-root "$root/run")
    "${frun[@]}" pull -q "$image"
    times=()
    for _ in $(seq "$n"); do
        s=$(date +%s%N)
        "${frun[@]}" pull -q "$image"
        times+=($(( ($(date +%s%N) - s) / 1000000 )))
    done
    sorted=$(printf '%s\n' "${times[@]}" | sort -n)
    median=$(echo "$sorted" | sed -n "$(( (n + 1) / 2 ))p")
    echo "$bin: blobs $(du -sb "$root/r/blobs" | cut -f1) bytes; again-pull ms: ${times[*]}; median $median ms"
    rm -rf "$root"
done
