# sheep-runtime container shim (POSIX sh). Run by the daemon as
#   /bin/sh shim.sh ID DIR RUNC RUNC_ROOT PYTHON LOGGER MAX_BYTES MAX_FILES
# with stdin = write end of a readiness pipe, stdout/stderr = DIR/log, env = PATH only,
# the fifos DIR/stdout.fifo and DIR/stderr.fifo made (spawn.py). It re-executes itself
# as the supervisor (the "shim", a conmon-like waiter):
#   /bin/sh shim.sh --supervise ID DIR RUNC RUNC_ROOT PYTHON LOGGER MAX_BYTES MAX_FILES
# which reports "SHIM_PID" on the pipe, starts the container's logger (`PYTHON -I -S
# LOGGER DIR MAX_BYTES MAX_FILES`, see logger.py) in the background on the two fifos
# (niced, so that its interpreter's start leaves the CPU to runc's; it then resets that),
# runs `runc run` on the bundle DIR in the foreground with its stdout and stderr on
# them (the container's init is runc's child; runc writes its host pid to DIR/init.pid
# and exits with its status, 128+N if killed by signal N), removes what runc left
# (`runc delete --force`: state, cgroups, a container that outlived runc), waits until
# the logger has written everything (the exit record means the log is complete) and
# then records "CODE UNIX_NS" in DIR/exit, durably (tmp file, fsync, rename, fsync dir).
#
# The supervisor holds each fifo open read-write while runc runs: opening never blocks,
# and with a reader left the container gets no SIGPIPE even if the logger died. The
# logger gets read-only ends opened in its own process before it drops its copies of
# the supervisor's, so the fifos never lose their last holder (and what a container
# that exited at once wrote) before it reads them.
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

if [ "$#" -eq 8 ]; then
    trap '' HUP INT TERM PIPE
    exec 3>&0 </dev/null
    /bin/sh "$0" --supervise "$@" &
    exit 0
fi

if [ "$#" -eq 9 ] && [ "$1" = --supervise ]; then
    sheep_id=$2 sheep_dir=$3 sheep_runc=$4 sheep_root=$5
    sheep_python=$6 sheep_logger=$7 sheep_max_bytes=$8 sheep_max_files=$9
    printf '%s\n' "$$" >"$sheep_dir/shim.pid" || exit 125
    printf '%s\n' "$$" >&3 2>/dev/null
    exec 3>&- 5<>"$sheep_dir/stdout.fifo" 6<>"$sheep_dir/stderr.fifo"
    nice -n 19 "$sheep_python" -I -S "$sheep_logger" "$sheep_dir" "$sheep_max_bytes" \
        "$sheep_max_files" 3<"$sheep_dir/stdout.fifo" 4<"$sheep_dir/stderr.fifo" 5>&- 6>&- &
    sheep_logger_pid=$!
    "$sheep_runc" --root "$sheep_root" run --bundle "$sheep_dir" \
        --pid-file "$sheep_dir/init.pid" "$sheep_id" >&5 2>&6 5>&- 6>&-
    sheep_rc=$?
    "$sheep_runc" --root "$sheep_root" delete --force "$sheep_id" >/dev/null 2>&1
    exec 5>&- 6>&-
    wait "$sheep_logger_pid"
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

echo "usage: shim.sh ID DIR RUNC RUNC_ROOT PYTHON LOGGER MAX_BYTES MAX_FILES" >&2
exit 2
