# sheep-runtime container shim (POSIX sh). Run by the daemon as
#   /bin/sh shim.sh ID DIR RUNC RUNC_ROOT
# with stdin = write end of a readiness pipe, stdout/stderr = DIR/log, env = PATH only.
# It re-executes itself as the supervisor (the "shim", a conmon-like waiter):
#   /bin/sh shim.sh --supervise ID DIR RUNC RUNC_ROOT
# which reports "SHIM_PID" on the pipe, runs `runc run` on the bundle DIR in the
# foreground (the container's init is runc's child; runc writes its host pid to
# DIR/init.pid and exits with its status, 128+N if killed by signal N), removes what
# runc left (`runc delete --force`: state, cgroups, a container that outlived runc) and
# then records "CODE UNIX_NS" in DIR/exit, durably (tmp file, fsync, rename, fsync dir).
#
# The launcher exits at once, so the supervisor is never the daemon's child: it outlives
# the daemon and nothing but init has to reap it. It ignores HUP, INT, TERM and PIPE (a
# write to the pipe of a daemon that died must not kill it); runc's init resets the
# container's signal dispositions.
#
# Third mode, the OCI createContainer hook of the bundle (see bundle.py):
#   /bin/sh shim.sh --unmount-under DIR...
# runs inside the container's mount namespace before pivot_root and unmounts every
# mount at or below the DIRs, deepest first (/proc/self/mountinfo lists parents first).

sheep_sys_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
PATH=$sheep_sys_path
export PATH

if [ "$#" -eq 4 ]; then
    trap '' HUP INT TERM PIPE
    exec 3>&0 </dev/null
    /bin/sh "$0" --supervise "$@" &
    exit 0
fi

if [ "$#" -eq 5 ] && [ "$1" = --supervise ]; then
    sheep_id=$2 sheep_dir=$3 sheep_runc=$4 sheep_root=$5
    printf '%s\n' "$$" >"$sheep_dir/shim.pid" || exit 125
    printf '%s\n' "$$" >&3 2>/dev/null
    exec 3>&-
    "$sheep_runc" --root "$sheep_root" run --bundle "$sheep_dir" \
        --pid-file "$sheep_dir/init.pid" "$sheep_id"
    sheep_rc=$?
    "$sheep_runc" --root "$sheep_root" delete --force "$sheep_id" 2>/dev/null
    date "+$sheep_rc %s%N" >"$sheep_dir/exit.tmp" && sync "$sheep_dir/exit.tmp" &&
        mv -f "$sheep_dir/exit.tmp" "$sheep_dir/exit" && sync "$sheep_dir"
    exit
fi

if [ "$#" -ge 1 ] && [ "$1" = --unmount-under ]; then
    shift
    sheep_nl='
'
    sheep_targets=
    while read -r _ _ _ _ sheep_mp _; do
        for sheep_d in "$@"; do
            case $sheep_mp in
                "$sheep_d" | "$sheep_d"/*) sheep_targets=$sheep_mp$sheep_nl$sheep_targets ;;
            esac
        done
    done </proc/self/mountinfo
    [ -z "$sheep_targets" ] && exit 0
    IFS=$sheep_nl
    set -f
    # shellcheck disable=SC2086 # split on newlines only
    exec umount -l $sheep_targets
fi

echo "usage: shim.sh ID DIR RUNC RUNC_ROOT" >&2
exit 2
