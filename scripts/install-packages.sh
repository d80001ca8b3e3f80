#!/bin/bash
# Installs the Debian packages named in the given lists (scripts/packages/*.txt) that are
# not installed yet. The README's two commands and CI install from these lists only, so
# a fresh machine gets exactly what the code and the scripts run.
#
# usage: scripts/install-packages.sh LIST...    (as root; e.g. scripts/packages/run.txt)
set -euo pipefail
missing=()
for list in "$@"; do
    while read -r p _; do
        [ -n "$p" ] && [ "${p#\#}" = "$p" ] || continue
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done < "$list"
done
[ ${#missing[@]} -gt 0 ] || exit 0
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
