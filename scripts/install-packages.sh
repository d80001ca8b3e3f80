#!/bin/bash
# Installs the Debian packages named in the given lists (scripts/packages/*.txt) that are
# not installed yet. The README's two commands and CI install from these lists only, so
# a fresh machine gets exactly what the code and the scripts run.
#
# Packages are installed but their services are not started: Debian's postinst of nginx
# and docker-registry would otherwise start nginx on 0.0.0.0:80 and a registry on :5000 on
# a systemd host. A temporary /usr/sbin/policy-rc.d that exits 101 ("action forbidden",
# see /usr/share/doc/init-system-helpers/README.policy-rc.d) stops invoke-rc.d and
# deb-systemd-invoke from starting them; it is only put there when none exists, and removed
# afterwards even when the installation fails. (The tests start their own nginx/registry.)
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
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ] && [ ! -L "$policy" ]; then
    trap 'rm -f "$policy"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    printf '#!/bin/sh\n# installed by frun scripts/install-packages.sh: start no services\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
