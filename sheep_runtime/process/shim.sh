# sheep-runtime container shim (POSIX sh). Run by the daemon as
#   /bin/sh shim.sh ID DIR NETNS HOSTNAME -- CMD [ARG...]
# with stdin = write end of a readiness pipe and stdout/stderr = DIR/log.
# It re-executes itself as the supervisor (the "shim", a conmon-like waiter):
#   nsenter --net=NETNS unshare --pid --uts --ipc /bin/sh shim.sh ID DIR NETNS HOSTNAME \
#       --supervise USER_PATH -- CMD...
# The supervisor forks the command as PID 1 of the new pid namespace, reports
# "SHIM_PID CMD_PID" on the pipe, waits for it and writes "CODE UNIX_NS" to DIR/exit
# (CODE = exit code, or 128+N when killed by signal N).
#
# Kernel details this relies on:
# - The launcher exits at once, so the supervisor is never the daemon's child: it
#   outlives the daemon and nothing but init has to reap it, whether the daemon that
#   started it still runs or not. (Were it an asyncio subprocess, its transport would
#   SIGKILL it when garbage-collected, e.g. at daemon exit.)
# - After unshare(CLONE_NEWPID) the supervisor's FIRST fork becomes PID 1, and once
#   PID 1 is gone the supervisor can never fork again ("Cannot fork"). So it forks
#   nothing but the command, and writes the exit record by exec'ing date (no tmp+mv:
#   readers take the record only once it ends with a newline; date writes it at once).
# - The supervisor waits itself: `unshare --fork` (util-linux 2.38) reports a child
#   killed by SIGKILL as exit 1 ("sigprocmask unblock failed"), not 137.
# - Ignored signals are inherited across exec and a shell cannot un-ignore them, so
#   the command gets default dispositions back via `env --default-signal`.

sheep_sys_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

if [ "$#" -ge 5 ] && [ "$5" = -- ]; then
    trap '' HUP INT TERM PIPE
    exec 3>&0 </dev/null
    sheep_user_path=${PATH-$sheep_sys_path}
    PATH=$sheep_sys_path
    export PATH
    sheep_id=$1 sheep_dir=$2 sheep_netns=$3 sheep_host=$4
    shift 5
    nsenter --net="$sheep_netns" -- unshare --pid --uts --ipc -- \
        /bin/sh "$0" "$sheep_id" "$sheep_dir" "$sheep_netns" "$sheep_host" \
        --supervise "$sheep_user_path" -- "$@" &
    exit 0
fi

if [ "$#" -ge 8 ] && [ "$5" = --supervise ] && [ "$7" = -- ]; then
    sheep_dir=$2 sheep_host=$4 sheep_user_path=$6
    shift 7
    printf '%s\n' "$$" >"$sheep_dir/shim.pid" || exit 125
    printf '%s' "$sheep_host" >/proc/sys/kernel/hostname || exit 125
    setpriv --pdeathsig KILL -- unshare --mount-proc -- \
        env --default-signal -- PATH="$sheep_user_path" "$@" 3>&- &
    sheep_child=$!
    printf '%s %s\n' "$$" "$sheep_child" >&3 2>/dev/null
    exec 3>&-
    wait "$sheep_child" 2>/dev/null
    sheep_rc=$?
    exec date "+$sheep_rc %s%N" >"$sheep_dir/exit"
fi

echo "usage: shim.sh ID DIR NETNS HOSTNAME -- CMD [ARG...]" >&2
exit 2
