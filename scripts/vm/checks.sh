#!/bin/bash
# frun's end-to-end checks inside the Debian 12 guest of scripts/vm-test.sh (systemd, the
# stock kernel, pure cgroup v2 or hybrid, swap on a second disk, no NIC: only the guest's
# own loopback and the bridges frun makes). Run by the guest's frun-vm-checks.service from
# the 9p share at $SHARE, as root, with frun's default roots, as on a fresh droplet.
#
# One check, reboot_serving, reboots the guest: boot_unit (the last check before it) records
# the run so far in the share (out/run.log, out/reboot.state) and asks systemd for a
# reboot; qemu restarts the guest in the same process (the snapshot disk keeps what the first
# boot wrote), frun-vm-checks.service runs this script again, and it resumes there: prints
# the first boot's lines (so out/checks.log holds the whole run), then the checks left.
#
# Prints one line per check: `ok NAME`, `FAIL NAME: why`, `xfail NAME: why (expected: ...)`
# for a check listed in XFAIL that failed, `XPASS NAME: ...` for one listed that passed
# (counted as a failure: take it off the list), then `N passed, N failed, N expected
# failures`. Exit status 0 when nothing failed.
set -uo pipefail
SHARE=${SHARE:-/mnt/frun}
REG=127.0.0.1:5000
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# Checks that fail until the fix named here lands: listed so that the failure shows
# (as xfail, with the reason) without failing the job. When the fix is merged, take the
# name off this list (the check then says XPASS until you do). The share's `env` file
# (FRUN_VM_XFAIL in scripts/vm-test.sh's environment) overrides the list.
XFAIL=""
declare -A XFAIL_WHY=()
# shellcheck disable=SC1091
[ -f "$SHARE/env" ] && . "$SHARE/env"
XFAIL=${FRUN_VM_XFAIL-$XFAIL}
# FRUN_VM_CHECKS (from the share's env too): run only these checks (names as printed),
# e.g. "boot_unit reboot_serving" while working on one; the others print `skip NAME`.
ONLY=${FRUN_VM_CHECKS:-}

passed=0 failed=0 xfailed=0
work=$(mktemp -d /tmp/checks.XXXXXX)
# Every line of the report also goes to the share's run.log, written before the next
# command runs (a reboot may come next), from which the second boot reprints the first's.
RUNLOG=$SHARE/out/run.log
say() { printf '%s\n' "$*" >>"$RUNLOG"; printf '%s\n' "$*"; }

# check NAME FUNCTION: runs FUNCTION (set -e, at most 180 s) and reports it; its last
# line of output is the reason when it fails.
check() {
    local name=$1 fn=$2 rc listed=0 ticks=0 why started=$SECONDS
    if [ -n "$ONLY" ]; then
        case " $ONLY " in *" $name "*) ;; *) say "skip $name (not in FRUN_VM_CHECKS)"; return 0 ;; esac
    fi
    case " $XFAIL " in *" $name "*) listed=1 ;; esac
    (set -e; "$fn") >"$work/$name.out" 2>&1 </dev/null &
    local pid=$!
    while kill -0 $pid 2>/dev/null && [ $ticks -lt 900 ]; do sleep 0.2; ticks=$((ticks + 1)); done
    kill -KILL $pid 2>/dev/null && echo "timed out after 180 s" >>"$work/$name.out"
    wait $pid; rc=$?
    echo "$name $((SECONDS - started)) s" >>"$SHARE/out/times"
    why=$(grep -v -e '^$' -e '^note: run with `RUST_BACKTRACE' "$work/$name.out" | tail -1)
    if [ $rc = 0 ] && [ $listed = 0 ]; then
        say "ok $name"; passed=$((passed + 1))
    elif [ $rc = 0 ]; then
        say "XPASS $name: passes now; take it off XFAIL in scripts/vm/checks.sh"; failed=$((failed + 1))
    elif [ $listed = 1 ]; then
        say "xfail $name: $why (expected: ${XFAIL_WHY[$name]:-listed in XFAIL})"; xfailed=$((xfailed + 1))
    else
        say "FAIL $name: $why"; failed=$((failed + 1))
        say "$(tail -15 "$work/$name.out" | sed 's/^/    | /')"
    fi
}

die() { echo "$*" >&2; return 1; }
# expect WHAT GOT WANT
expect() { [ "$2" = "$3" ] || die "$1: got '$2', want '$3'"; }

layout=$(stat -fc %T /sys/fs/cgroup)
case $layout in
    cgroup2fs) layout=v2 ;;
    tmpfs) [ "$(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ] && layout=hybrid || layout=v1 ;;
esac
# cgdir CONTROLLER ID: the container's cgroup directory holding CONTROLLER's files.
cgdir() { if [ $layout = v2 ]; then echo "/sys/fs/cgroup/frun/$2"; else echo "/sys/fs/cgroup/$1/frun/$2"; fi; }
id_of() { frun ps -a --format json | jq -r --arg n "$1" '.[] | select(.name == $n) | .id'; }
wait_for() { # SECONDS CMD...: until CMD succeeds
    local n=$(($1 * 10)); shift
    while ! "$@" >/dev/null 2>&1; do n=$((n - 1)); [ $n -gt 0 ] || return 1; sleep 0.1; done
}

# After the reboot boot_unit asked for: the first boot's output, its counts, and on to
# reboot_serving (the functions below are defined first: this runs at the end).
resumed=0
if [ -f "$SHARE/out/reboot.state" ]; then
    cat "$RUNLOG"
    # shellcheck disable=SC1091
    . "$SHARE/out/reboot.state"
    rm -f "$SHARE/out/reboot.state"
    resumed=1
elif [ -f "$SHARE/out/started" ]; then
    echo "FAIL the guest rebooted unexpectedly (a panic?) during the checks; serial log: see vm-test.sh's output"
    exit 1
fi
touch "$SHARE/out/started"
say "guest: kernel $(uname -r), cgroup layout $layout, systemd $(systemctl --version | head -1 | cut -d' ' -f2), swap $(awk '/SwapTotal/ {print $2 " kB"}' /proc/meminfo)"
[ $resumed = 0 ] || say "guest: rebooted (boot $(cut -c1-8 /proc/sys/kernel/random/boot_id), up $(cut -d' ' -f1 /proc/uptime) s)"
t0=$SECONDS
if [ $resumed = 0 ]; then
install -m 755 "$SHARE/frun" /usr/local/bin/frun
say "setup: frun installed ($((SECONDS - t0)) s)"

# The registry on the guest's loopback, serving a copy of the host's test registry (a).
mkdir -p /var/lib/frun-vm-registry
tar -C /var/lib/frun-vm-registry -xf "$SHARE/registry.tar"
say "setup: registry storage copied ($((SECONDS - t0)) s)"
cat >"$work/registry.yml" <<EOF
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: /var/lib/frun-vm-registry}}
http: {addr: $REG}
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
if wait_for 60 curl -sf "http://$REG/v2/"; then
    say "setup: registry up on $REG ($((SECONDS - t0)) s)"
else
    say "setup: the registry did not answer; its log: $(tail -3 "$work/registry.log")"
fi
fi

# --- the checks -------------------------------------------------------------------------

c_info() {
    frun info --format json >"$work/info.json"
    expect "kernel" "$(jq -r .kernel.release "$work/info.json")" "$(uname -r)"
    expect "layout" "$(jq -r .cgroup.layout "$work/info.json")" "$layout"
    expect "systemd" "$(jq -r .systemd "$work/info.json")" true
    expect "nft" "$(jq -r '.features[] | select(.name == "nft") | .ok' "$work/info.json")" true
    for c in memory pids cpu; do
        expect "$c controller" "$(jq -r --arg n "cgroup $c controller" '.features[] | select(.name == $n) | .ok' "$work/info.json")" true
    done
    frun info >"$SHARE/out/info.txt"
    grep -q "^Cgroups:         $layout" "$SHARE/out/info.txt" || die "table: no 'Cgroups: $layout' line"
}

c_pull() {
    frun pull -q "$REG/test/busybox"
    frun pull -q "$REG/test/checker"
    frun images --format json | jq -e --arg r "$REG/test/checker" 'any(.[]; .reference | startswith($r))' >/dev/null \
        || die "pulled image not listed"
}

c_limits() {
    frun run -d --name lim --network none --memory 48m --pids-limit 33 --cpus 0.5 "$REG/test/busybox" sleep 600 >/dev/null
    local id; id=$(id_of lim)
    if [ $layout = v2 ]; then
        expect memory.max "$(cat "$(cgdir memory "$id")/memory.max")" $((48 << 20))
        expect pids.max "$(cat "$(cgdir pids "$id")/pids.max")" 33
        expect cpu.max "$(cat "$(cgdir cpu "$id")/cpu.max")" "50000 100000"
    else
        expect memory.limit_in_bytes "$(cat "$(cgdir memory "$id")/memory.limit_in_bytes")" $((48 << 20))
        expect pids.max "$(cat "$(cgdir pids "$id")/pids.max")" 33
        expect cpu.cfs_quota_us "$(cat "$(cgdir cpu "$id")/cpu.cfs_quota_us")" 50000
    fi
    frun rm -f lim >/dev/null
}

c_pids_limit() {
    # The checker forks until the kernel says no: EAGAIN before 20 processes.
    local r
    r=$(frun run --rm --network none --pids-limit 20 "$REG/test/checker" checker fork-bomb 2000)
    expect "errno" "$(echo "$r" | jq -r .errno)" EAGAIN
    [ "$(echo "$r" | jq -r .forked)" -lt 20 ] || die "forked $(echo "$r" | jq -r .forked) under --pids-limit 20"
}

c_oom_report() {
    # Swap is still off here: 200 MiB under --memory 48m is killed, and frun says so.
    local rc=0 err
    err=$(frun run --name hog --network none --memory 48m "$REG/test/checker" checker alloc 200 2>&1 >/dev/null) || rc=$?
    expect "exit code" "$rc" 137
    printf '%s' "$err" | grep -q "out of memory" || die "no OOM message: $err"
    expect "oom_killed" "$(frun ps -a --format json | jq -r '.[] | select(.name == "hog") | .oom_killed')" true
    frun rm hog >/dev/null
}

c_swap_limit() {
    # Swap on (the second disk): --memory alone must cap swap too (Docker: memory+swap =
    # twice the limit), or the container swaps the box.
    [ "$(awk '/SwapTotal/ {print $2}' /proc/meminfo)" -gt 0 ] || die "swap is off in the guest"
    frun run -d --name sw --network none --memory 32m "$REG/test/busybox" sleep 600 >/dev/null
    local id; id=$(id_of sw)
    local got
    if [ $layout = v2 ]; then
        got=$(cat "$(cgdir memory "$id")/memory.swap.max")
        frun rm -f sw >/dev/null
        expect memory.swap.max "$got" $((32 << 20))
    else
        got=$(cat "$(cgdir memory "$id")/memory.memsw.limit_in_bytes")
        frun rm -f sw >/dev/null
        expect memory.memsw.limit_in_bytes "$got" $((64 << 20))
    fi
}

c_bridge_publish() {
    mkdir -p "$work/www" && echo "served by frun in the guest" >"$work/www/index.html"
    frun run -d --name web -v "$work/www:/www:ro" -p 127.0.0.1:8080:80 "$REG/test/busybox" httpd -f -p 80 -h /www >/dev/null
    wait_for 30 curl -sf http://127.0.0.1:8080/ || die "nothing on 127.0.0.1:8080"
    expect "page" "$(curl -sf http://127.0.0.1:8080/)" "served by frun in the guest"
    ip link show frun0 >/dev/null || die "no frun0 bridge"
}

c_names() {
    # A second container on the bridge reaches the first by its name.
    local out
    out=$(frun run --rm --name client "$REG/test/busybox" sh -c 'timeout 10 wget -qO- http://web/')
    expect "by name" "$out" "served by frun in the guest"
}

c_exec() {
    expect "exec" "$(frun exec web cat /www/index.html)" "served by frun in the guest"
    expect "exec exit code" "$(frun exec web sh -c 'exit 7'; echo $?)" 7
}

c_logs() {
    frun run -d --name talker --network none "$REG/test/busybox" sh -c 'echo line-one; echo line-two >&2' >/dev/null
    wait_for 30 sh -c '[ "$(frun ps -a --format json | jq -r ".[] | select(.name == \"talker\") | .status")" = exited ]' \
        || die "talker did not exit"
    local out; out=$(frun logs talker 2>&1)
    printf '%s' "$out" | grep -q line-one || die "logs lack stdout: $out"
    printf '%s' "$out" | grep -q line-two || die "logs lack stderr: $out"
    frun rm talker >/dev/null
}

c_stop_rm_cleanup() {
    local id; id=$(id_of web)
    frun stop -t 2 web >/dev/null
    expect "status after stop" "$(frun ps -a --format json | jq -r '.[] | select(.name == "web") | .status')" exited
    frun rm web >/dev/null
    [ -z "$(frun ps -a --format json | jq -r '.[].name')" ] || die "containers left: $(frun ps -a)"
    local left
    # frun's own cgroup for its holders (PARENT/supervisor) stays, but nothing may be in it.
    left=$(find /sys/fs/cgroup -path '*/frun/*' -type d ! -path '*/frun/supervisor' 2>/dev/null)
    [ -z "$left" ] || die "cgroups left: $left"
    left=$(cat $(find /sys/fs/cgroup -path '*/frun/supervisor' -name cgroup.procs 2>/dev/null) /dev/null)
    [ -z "$left" ] || die "processes left in frun's supervisor cgroup: $left"
    left=$(grep -E 'overlay|/var/lib/frun' /proc/self/mountinfo || true)
    [ -z "$left" ] || die "mounts left: $left"
    ! nft list tables 2>/dev/null | grep -q frun || die "nftables table left: $(nft list tables)"
    [ -z "$(curl -s --max-time 2 http://127.0.0.1:8080/ || true)" ] || die "port 8080 still answers"
}

c_uidmap() {
    local out
    out=$(frun run --rm --network none --uidmap 0:100000:65536 "$REG/test/busybox" sh -c 'id -u; cat /proc/self/uid_map')
    expect "uid inside" "$(echo "$out" | head -1)" 0
    echo "$out" | tail -1 | grep -Eq '^ *0 +100000 +65536$' || die "uid_map: $out"
    # frun info's probe, made with the same code, says so too.
    expect "frun info: overlayfs over idmapped layers" "$(frun info --format json \
        | jq -r '.features[] | select(.name == "overlayfs over idmapped layers") | .ok')" true
}

# refused_as_info_says ERR FEATURE: a refusal's stderr quotes what `frun info --format
# json` says of FEATURE (its JSON), missing: name, what was found, disables, how.
refused_as_info_says() {
    local name detail disables how
    name=$(jq -r .name <<<"$2") detail=$(jq -r .detail <<<"$2")
    disables=$(jq -r .disables <<<"$2") how=$(jq -r .how <<<"$2")
    expect "frun info: $name ok" "$(jq -r .ok <<<"$2")" false
    for part in "this host lacks $name ($detail)" "$disables" "$how"; do
        grep -qF -- "$part" <<<"$1" || die "the refusal lacks '$part': $1"
    done
}

c_refusals() {
    # What the host lacks is refused in frun info's words (tests/it/refusals.rs does
    # the same on the test host). 1. nft off the PATH, a bridged run.
    local empty=$work/empty-path feat err
    mkdir -p "$empty"
    feat=$(PATH=$empty /usr/local/bin/frun info --format json | jq -c '.features[] | select(.name == "nft")')
    if err=$(PATH=$empty /usr/local/bin/frun run --rm "$REG/test/busybox" true 2>&1); then die "ran without nft"; fi
    refused_as_info_says "$err" "$feat"
    # 2. The pids controller out of frun's mount namespace: on v2 a cgroup namespace
    #    rooted where pids is not delegated, cgroup2 mounted afresh; on hybrid the pids
    #    hierarchy unmounted.
    cat >"$work/nopids" <<'NOPIDS'
#!/bin/sh
P=/sys/fs/cgroup/frun-vm-nopids
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
    mkdir -p "$P/ns"
    for c in memory cpu; do
        if grep -qw "$c" /sys/fs/cgroup/cgroup.subtree_control; then echo "+$c" >"$P/cgroup.subtree_control"; fi
    done
    echo $$ >"$P/ns/cgroup.procs"
    exec unshare --cgroup --mount --propagation private sh -c 'umount -l /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$@"' sh "$@"
fi
exec unshare --mount --propagation private sh -c 'umount /sys/fs/cgroup/pids && exec "$@"' sh "$@"
NOPIDS
    chmod +x "$work/nopids"
    feat=$("$work/nopids" frun info --format json | jq -c '.features[] | select(.name == "cgroup pids controller")')
    if err=$("$work/nopids" frun run --rm --network none --pids-limit 10 "$REG/test/busybox" true 2>&1); then
        die "ran with --pids-limit and no pids controller"
    fi
    rmdir /sys/fs/cgroup/frun-vm-nopids/ns /sys/fs/cgroup/frun-vm-nopids 2>/dev/null || true
    refused_as_info_says "$err" "$feat"
    expect "containers left" "$(frun ps -a --format json | jq length)" 0
}

c_unit_outlives_unit() {
    # A container started from a systemd unit that ends at once must keep running. (Not
    # `systemd-run --wait`: that needs D-Bus, which the guest does not have; without it
    # systemd-run talks to systemd's private socket and still returns only once the
    # oneshot's process has exited.)
    local out
    out=$(systemd-run --quiet --unit frun-vm-unitc -p Type=oneshot /usr/local/bin/frun run -d \
        --name unitc --network none "$REG/test/busybox" sleep 600 2>&1) \
        || die "the unit failed: $out $(journalctl -q -u frun-vm-unitc --no-pager 2>/dev/null | tail -3 | tr '\n' ' ')"
    # The unit is over (inactive, or gone) once systemd has stopped what was left in it.
    wait_for 60 sh -c '[ "$(systemctl show -P ActiveState frun-vm-unitc.service)" = inactive ]' \
        || die "the unit is still $(systemctl show -P ActiveState frun-vm-unitc.service)"
    local st; st=$(frun ps -a --format json | jq -r '.[] | select(.name == "unitc") | .status')
    local ok=0
    [ "$st" = running ] && frun exec unitc true && ok=1
    frun rm -f unitc >/dev/null 2>&1 || true
    [ $ok = 1 ] || die "the container died with its unit (status: ${st:-gone})"
}

c_up() {
    # `frun up` on a systemd host: an app role with a published port, a health check and a
    # named volume; up twice restarts nothing; a kill -9 of the app is undone by the
    # restart policy; down stops it and keeps the volume.
    mkdir -p "$work/stack"
    cat >"$work/stack/frun.toml" <<EOF
name = "vmstack"
[app]
image = "$REG/test/busybox"
port = 80
ports = ["127.0.0.1:8082:80"]
command = ["sh", "-c", "echo up in the guest > /www/index.html; exec httpd -f -p 80 -h /www"]
restart = "always"
[app.health]
http = "/"
interval = "1s"
[data]
volumes = ["vmwww:/www"]
EOF
    (cd "$work/stack" && frun up) || die "frun up failed"
    wait_for 60 curl -sf http://127.0.0.1:8082/ || die "nothing on 127.0.0.1:8082 after up"
    expect "page" "$(curl -sf http://127.0.0.1:8082/)" "up in the guest"
    local id1 id2 pid
    id1=$(id_of vmstack-app.1)
    [ -n "$id1" ] || die "no container vmstack-app.1: $(frun ps -a)"
    (cd "$work/stack" && frun up) || die "second frun up failed"
    id2=$(id_of vmstack-app.1)
    expect "container after a second up" "$id2" "$id1"
    pid=$(app_pid)
    [ -n "$pid" ] || die "no pid for the app: $(frun inspect vmstack-app.1)"
    kill -9 "$pid"
    wait_for 60 restarted "$pid" || die "the app was not restarted after kill -9"
    (cd "$work/stack" && frun down) || die "frun down failed"
    ! curl -sf http://127.0.0.1:8082/ >/dev/null 2>&1 || die "port still served after down"
    frun volume ls -q | grep -qx vmwww || die "down removed the volume"
}
app_pid() { frun inspect vmstack-app.1 2>/dev/null | jq -r '.[0] | (.state.pid // .State.Pid // .pid // empty)'; }
restarted() { # OLD_PID: the app answers again, from another process
    local p; p=$(app_pid)
    [ -n "$p" ] && [ "$p" != "$1" ] && [ "$p" != 0 ] && curl -sf http://127.0.0.1:8082/ >/dev/null
}

# The family stack (examples/family) under the unit `frun systemd-unit` prints, then a
# reboot: boot_unit sets it up, reboot_serving (after the reboot) finds it serving again.
FAMILY=/srv/family
FAMILY_URL=http://127.0.0.1:8080
# lock_holder: the pid holding the supervisor's lock (/proc/locks names it by inode).
lock_holder() {
    local ino; ino=$(stat -c %i /run/frun/supervise.lock) || return 1
    awk -v i=":$ino\$" '$2 == "FLOCK" && $4 == "WRITE" && $6 ~ i {print $5; exit}' /proc/locks
}
# The supervisor's lines of this boot: by identifier, not by unit (-u): once it has moved
# itself into frun's own cgroup, journald no longer counts its lines as the unit's.
frun_journal() { journalctl -q -b -t frun --no-pager 2>/dev/null; }
unit_journal() { frun_journal | tail -"${1:-5}" | tr '\n' ' '; }

c_boot_unit() {
    # 1. The unit, installed as its header says (a supervisor that `frun up` started in
    #    the `up` check runs already: the unit's waits for it, and is active meanwhile).
    frun systemd-unit >/etc/systemd/system/frun.service
    grep -q '^ExecStart=/usr/local/bin/frun .*supervise --boot$' /etc/systemd/system/frun.service \
        || die "unexpected unit: $(grep ExecStart /etc/systemd/system/frun.service)"
    systemctl daemon-reload
    systemctl enable --now frun.service
    wait_for 30 systemctl is-active --quiet frun.service || die "frun.service is $(systemctl is-active frun.service): $(unit_journal)"
    # `frun info` tells it: installed in /etc, enabled, and what `frun systemd-unit` prints.
    expect "frun info's boot unit" "$(frun info --format json | jq -c '.boot_unit')" \
        '{"path":"/etc/systemd/system/frun.service","enabled":true,"current":true}'
    # 2. The family stack, its images from the guest's registry, in a directory of the
    #    disk (the stack's record points at its file; the disk outlives the reboot).
    mkdir -p "$FAMILY"
    sed -e "s|\"nginx:stable\"|\"$REG/library/nginx:stable\"|" -e "s|\"family/app:v1\"|\"$REG/family/app:v1\"|" \
        "$SHARE/family/frun.toml" >"$FAMILY/frun.toml"
    cp "$SHARE/family/proxy.conf.tmpl" "$FAMILY/"
    grep -q "\"$REG/family/app:v1\"" "$FAMILY/frun.toml" || die "the image references were not replaced"
    (cd "$FAMILY" && frun up) || die "frun up of the family stack failed"
    wait_for 60 sh -c "curl -sf $FAMILY_URL/ | grep -q 'family app v1'" || die "the family stack does not serve on $FAMILY_URL"
    expect "first visit" "$(curl -sf $FAMILY_URL/visit)" 1
}

c_reboot_serving() {
    # No user action since the boot: the unit's supervisor brought the stack back.
    wait_for 150 sh -c "curl -sf $FAMILY_URL/ | grep -q 'family app v1'" \
        || die "nothing on $FAMILY_URL $(cut -d' ' -f1 /proc/uptime) s after the boot; frun.service $(systemctl is-active frun.service): $(unit_journal)"
    cut -d' ' -f1 /proc/uptime >"$SHARE/out/serving-after-boot"
    expect "visit after the reboot (the volume kept the first)" "$(curl -sf $FAMILY_URL/visit)" 2
    local st; st=$(frun status -f "$FAMILY/frun.toml" --format json)
    expect "frun status" "$(echo "$st" | jq -r '[.[] | "\(.name) \(.status)"] | sort | join(", ")')" \
        "family-app.1 running, family-proxy running"
    frun_journal >"$SHARE/out/journal-frun.txt"
    grep -q 'stack back up after the boot' "$SHARE/out/journal-frun.txt" \
        || die "the supervisor's journal does not say the stack is back: $(unit_journal)"
    expect "the supervisor (the lock's holder)" "$(lock_holder)" "$(systemctl show -P MainPID frun.service)"
    (cd "$FAMILY" && frun down --volumes) >/dev/null || die "frun down failed"
}

c_swap_load() {
    # `frun swap` on a systemd host: the family stack (nginx + app), two swaps v1 -> v2 ->
    # v1 (each way once) while curl keeps requesting /version over keep-alive connections
    # (50 requests per connection): every answer is a 200, the last swap's body serves
    # after, one app generation is left, the history has the three deployments. (Ten
    # swaps under load, with new and with keep-alive connections, are the host-side
    # tests' job: tests/it/swap.rs; each swap here costs seconds of an emulated CPU.)
    mkdir -p "$work/family"
    cat >"$work/family/frun.toml" <<EOF
name = "vmfamily"
[proxy]
image = "$REG/library/nginx:stable"
ports = ["127.0.0.1:8083:80"]
[app]
image = "$REG/family/app:v1"
port = 8080
stop_grace = "2s"
[app.health]
http = "/"
interval = "200ms"
[data]
volumes = ["vmfamilydb:/var/db"]
EOF
    # Its parts' times go beside the checks' (out/times): up, each swap (the first with
    # the second of load before it), after (the last second of load, the checks, down).
    local lap=$SECONDS
    laps() { echo "swap_under_load.$1 $((SECONDS - lap)) s" >>"$SHARE/out/times"; lap=$SECONDS; }
    frun up -f "$work/family/frun.toml" || die "frun up of the family stack failed"
    wait_for 60 curl -sf http://127.0.0.1:8083/version || die "nothing on 127.0.0.1:8083 after up"
    laps up
    local urls=() i v load n bad
    for i in $(seq 50); do urls+=(-o /dev/null http://127.0.0.1:8083/version); done
    : >"$work/codes"
    (while [ ! -f "$work/swaps-done" ]; do
        curl -s --max-time 10 -w '%{http_code}\n' "${urls[@]}" >>"$work/codes" 2>/dev/null
    done) &
    load=$!
    sleep 1
    for v in v2 v1; do
        if ! frun swap "$REG/family/app:$v" -f "$work/family/frun.toml" --drain-timeout 10s; then
            touch "$work/swaps-done"; wait $load
            die "frun swap to $v failed"
        fi
        laps "swap-$v"
    done
    sleep 1
    touch "$work/swaps-done"; wait $load
    n=$(grep -c . "$work/codes")
    bad=$(grep -vc '^200$' "$work/codes" || true)
    [ "$n" -gt 100 ] || die "too little load: $n requests"
    expect "failed requests of $n during two swaps" "$bad" 0
    expect "body after the swaps" "$(curl -sf http://127.0.0.1:8083/version)" "v1"
    expect "app generations" "$(frun status -f "$work/family/frun.toml" --format json | jq '[.[] | select(.role == "app")] | length')" 1
    expect "history entries" "$(frun history -f "$work/family/frun.toml" --format json | jq length)" 3
    frun down --volumes -f "$work/family/frun.toml" || die "frun down failed"
    laps after
}

# ---------------------------------------------------------------------------------------
if [ $resumed = 1 ]; then
    check reboot_serving c_reboot_serving
    say "$passed passed, $failed failed, $xfailed expected failures"
    [ $failed = 0 ]
    exit
fi
check info c_info
check pull c_pull
check limits c_limits
check pids_limit c_pids_limit
check oom_report c_oom_report
swapon /dev/vdb 2>/dev/null || say "(no swap disk /dev/vdb)"
check swap_limit c_swap_limit
check bridge_publish c_bridge_publish
check names c_names
check exec c_exec
check logs c_logs
check stop_rm_cleanup c_stop_rm_cleanup
check uidmap c_uidmap
check refusals c_refusals
check unit_outlives_unit c_unit_outlives_unit
check up c_up
check swap_under_load c_swap_load
# (Checks go above this line: boot_unit and the reboot come last.)
# ---------------------------------------------------------------------------------------
before=$passed
check boot_unit c_boot_unit
if [ -n "$ONLY" ] && [[ " $ONLY " != *" boot_unit "* ]]; then
    say "skip reboot_serving (boot_unit was skipped)"
elif [ $passed != "$before" ]; then
    # The reboot: the counts and the report so far are in the share; systemd stops this
    # unit (and so this script) on the way down; the next boot resumes above.
    say "reboot: rebooting the guest (reboot_serving follows after the boot)"
    printf 'passed=%d failed=%d xfailed=%d\n' $passed $failed $xfailed >"$SHARE/out/reboot.state.tmp"
    mv "$SHARE/out/reboot.state.tmp" "$SHARE/out/reboot.state"
    sync
    systemctl --check-inhibitors=no reboot
    sleep 120
    rm -f "$SHARE/out/reboot.state"
    say "FAIL reboot_serving: the guest did not reboot within 120 s of systemctl reboot"
    failed=$((failed + 1))
else
    say "FAIL reboot_serving: not tried (boot_unit failed)"
    failed=$((failed + 1))
fi

say "$passed passed, $failed failed, $xfailed expected failures"
[ $failed = 0 ]
