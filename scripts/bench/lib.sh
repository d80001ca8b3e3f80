# Shell functions shared by the benchmark scripts (sourced; each script defines `log`).

# umount_under DIR: unmount every mount point at or below DIR, deepest first.
umount_under() {
    local d=$1 m
    [ -n "$d" ] && [ "$d" != / ] || return 0
    findmnt -rn -o TARGET | awk -v p="$d" '$0 == p || index($0, p "/") == 1' | sort -r |
        while read -r m; do
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
        done
}
