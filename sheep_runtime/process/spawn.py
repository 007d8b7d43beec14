"""Start a container: write its bundle and the fifos of its output, launch its
supervisor (`shim.sh`, which starts the container's logger, `logger.py`), wait until
its command runs.

Subprocesses are spawned with `subprocess.Popen` (vfork, no Python code in the child)
and awaited through pidfds on the event loop, never by forking the daemon: uvloop's
spawn forks, which blocks the loop in proportion to the daemon's RSS (~18 ms at 1 GiB)
and runs pthread_atfork handlers (gRPC's).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sheep_runtime.errors import InvalidArgument, KernelError
from sheep_runtime.model import ProcessHandle, ProcessSpec
from sheep_runtime.offload import in_thread
from sheep_runtime.process import cgroups, procfs
from sheep_runtime.process.bundle import DEFAULT_PATH, ENV_PATH, SHIM_PATH
from sheep_runtime.process.inotify import DirWatch
from sheep_runtime.process.records import log_tail, read_pid_file

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+.-]{0,127}")  # runc takes these (and more)
_HOSTNAME_MAX = 64  # bytes, kernel __NEW_UTS_LEN
_RUNC_INIT_COMM = "runc:[2:INIT]"  # the name runc's nsexec gives the container's init
_STALE = ("exit", "exit.tmp", "shim.pid", "init.pid")
_SAFETY_LOOK = 0.1  # s between looks at a start should a wake-up be missed
FIFOS = ("stdout.fifo", "stderr.fifo")  # the container's outputs, read by its logger
LOGGER_PATH = Path(__file__).resolve().with_name("logger.py")
MIN_LOG_BYTES = 1024


@dataclass(frozen=True)
class Runc:
    """The runc binary and the root dir of its state."""

    path: str
    root: Path

    def argv(self, *args: str) -> list[str]:
        return [self.path, "--root", str(self.root), *args]

    async def delete(self, container_id: str, *, cgroups_path: str) -> None:
        """Remove the container whatever its state (killing what still runs), and the
        cgroups runc could not know of. Already gone is success."""
        await run_quiet(self.argv("delete", "--force", container_id))
        await cgroups.sweep(cgroups_path)


def validate(spec: ProcessSpec) -> None:
    """InvalidArgument unless `spec` can be written as a bundle and run."""
    def bad(value: str) -> bool:
        return "\0" in value

    if not _ID_RE.fullmatch(spec.container_id):
        raise InvalidArgument("container id must be 1-128 of [A-Za-z0-9_+.-], starting "
                              "with a letter or digit", field="container_id")
    if not spec.argv or any(bad(a) for a in spec.argv):
        raise InvalidArgument("argv must be non-empty, without NUL bytes", field="argv")
    if "=" in spec.argv[0]:  # env(1) would take it for a variable assignment
        raise InvalidArgument("argv[0] must not contain '='", field="argv")
    for key, value in spec.env.items():
        if not key or "=" in key or bad(key) or bad(value):
            raise InvalidArgument(f"invalid environment variable {key!r}", field="env")
    if not 0 < len(spec.hostname.encode()) <= _HOSTNAME_MAX or bad(spec.hostname):
        raise InvalidArgument("hostname must be 1-64 bytes", field="hostname")
    if not all(p.is_absolute() for p in spec.hidden_paths):
        raise InvalidArgument("hidden paths must be absolute", field="hidden_paths")
    if spec.log.max_bytes < MIN_LOG_BYTES or spec.log.max_files < 1:
        raise InvalidArgument(f"log rotation needs max_bytes >= {MIN_LOG_BYTES} and "
                              "max_files >= 1", field="log")


async def run_quiet(argv: Sequence[str]) -> int:
    """Run a helper command (output discarded) without blocking the loop; its status."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={"PATH": DEFAULT_PATH}, cwd="/")
    await reap(proc)
    return proc.returncode


async def reap(proc: subprocess.Popen[bytes]) -> None:
    """Wait for a child of ours to exit (pidfd on the loop, no child watcher), reap it."""
    fd = os.pidfd_open(proc.pid)
    try:
        await procfs.wait_readable(fd)
    finally:
        os.close(fd)
    proc.wait()


async def _read_line(fd: int) -> bytes:
    """Read from a non-blocking fd until a newline or EOF; returns what was read."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()
    buf = bytearray()

    def on_readable() -> None:
        try:
            chunk = os.read(fd, 256)
        except BlockingIOError:
            return
        except OSError as e:
            if not done.done():
                done.set_exception(e)
            return
        buf.extend(chunk)
        if (not chunk or b"\n" in chunk) and not done.done():
            done.set_result(bytes(buf))

    loop.add_reader(fd, on_readable)
    try:
        return await done
    finally:
        loop.remove_reader(fd)


def _prepare(cdir: Path, config: Mapping[str, Any], container_id: str) -> None:
    """Lay out the bundle and the fifos in `cdir` (blocking)."""
    try:
        (cdir / "rootfs").mkdir(parents=True, exist_ok=True)
        for stale in (*_STALE, *FIFOS):
            (cdir / stale).unlink(missing_ok=True)
        for fifo in FIFOS:  # here, not in the shim: no mkfifo(1) to spawn
            os.mkfifo(cdir / fifo, 0o600)
        (cdir / "config.json").write_text(json.dumps(config))
    except OSError as e:
        raise KernelError(f"container {container_id}: cannot prepare {cdir}: {e}") from e


def _spawn_shim(launched: list[subprocess.Popen[bytes]], argv: list[str], ready_w: int,
                log: Path) -> None:
    """Start the launcher (blocking) into `launched`: its stdin the write end of the
    ready pipe (closed here, whatever happens), its output appended to `log`, where
    the supervisor's own errors go (the logger appends the container's output)."""
    try:
        log_fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            launched.append(subprocess.Popen(
                argv, stdin=ready_w, stdout=log_fd, stderr=log_fd, env={"PATH": DEFAULT_PATH},
                cwd="/", start_new_session=True))
        finally:
            os.close(log_fd)
    finally:
        os.close(ready_w)


async def start(spec: ProcessSpec, config: Mapping[str, Any], *, runc: Runc,
                timeout: float) -> ProcessHandle:
    """Write `config` as the bundle in `spec.container_dir` and run it under a new
    supervisor; return once the command runs. On any failure nothing is left: the
    launcher's process group is killed and runc's container deleted."""
    cdir = spec.container_dir.absolute()  # the shim runs in /
    # Off the loop: creating files can wait on the filesystem's journal for many ms,
    # and a vfork suspends the calling thread until the child's exec.
    await in_thread(_prepare, cdir, config, spec.container_id)
    ready_r, ready_w = os.pipe()
    os.set_blocking(ready_r, False)
    argv = ["/bin/sh", str(SHIM_PATH), spec.container_id, str(cdir), runc.path,
            str(runc.root), sys.executable, str(LOGGER_PATH), str(spec.log.max_bytes),
            str(spec.log.max_files)]
    launched: list[subprocess.Popen[bytes]] = []  # by the thread, even if we are cancelled
    try:
        await in_thread(_spawn_shim, launched, argv, ready_w, cdir / "log")
        handle = await asyncio.wait_for(_until_running(ready_r, cdir, spec.container_id),
                                        timeout)
    except BaseException as e:
        if not launched:
            if isinstance(e, OSError):
                raise KernelError(f"container {spec.container_id}: cannot spawn shim: "
                                  f"{e}") from e
            raise
        # The launcher is not reaped yet, so its pid, the pgid of the supervisor and
        # runc, cannot have been reused. The container's init has a session of its own:
        # runc deletes it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launched[0].pid, signal.SIGKILL)
        await asyncio.shield(reap(launched[0]))
        await asyncio.shield(runc.delete(spec.container_id,
                                         cgroups_path=config["linux"]["cgroupsPath"]))
        if isinstance(e, TimeoutError):
            raise KernelError(
                f"container {spec.container_id} did not start within {timeout}s") from e
        raise
    finally:
        os.close(ready_r)
    await reap(launched[0])  # it exited right after starting the supervisor
    return handle


async def _until_running(ready_r: int, cdir: Path, container_id: str) -> ProcessHandle:
    line = await _read_line(ready_r)
    if not line.endswith(b"\n"):  # EOF: the supervisor did not start
        raise KernelError(f"container {container_id} failed to start: "
                          f"{await in_thread(log_tail, cdir) or 'no output'}")
    shim_pid = int(line)
    shim_start = procfs.process_start_time(shim_pid) or 0
    loop = asyncio.get_running_loop()
    shim_fd = procfs.open_pidfd(shim_pid, shim_start)
    # Until runc has written init.pid nothing is polled: the pid file, the exit record
    # and the supervisor's end each wake this up. Then the command's exec follows
    # within ms; /proc of a process in the middle of one can block for as long, so
    # every look is off the loop.
    with DirWatch(cdir) as watch:
        if shim_fd is not None:
            loop.add_reader(shim_fd, _set_once, loop, shim_fd, watch.changed)
        try:
            delay = 0.0005
            while True:
                watch.changed.clear()
                seen = await in_thread(_look, cdir, container_id, shim_pid, shim_start)
                if isinstance(seen, ProcessHandle):
                    return seen
                if seen is None:
                    with contextlib.suppress(TimeoutError):  # a missed wake-up costs this
                        await asyncio.wait_for(watch.changed.wait(), _SAFETY_LOOK)
                else:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.005)
        finally:
            if shim_fd is not None:
                loop.remove_reader(shim_fd)
                os.close(shim_fd)


def _set_once(loop: asyncio.AbstractEventLoop, fd: int, event: asyncio.Event) -> None:
    loop.remove_reader(fd)  # a pidfd stays readable once its process has ended
    event.set()


def _look(cdir: Path, container_id: str, shim_pid: int, shim_start: int
          ) -> ProcessHandle | int | None:
    """One look at a start (blocking): the handle once the command runs (or has already
    ended), the pid of runc's init while it is on its way there, None before runc
    wrote it; KernelError if the start failed."""
    # The exit record comes after init.pid: no init.pid then means runc failed.
    supervised = procfs.is_alive(shim_pid, shim_start)
    ended = (cdir / "exit").exists()
    pid = read_pid_file(cdir / "init.pid")
    if (ended and pid is None) or not (ended or supervised):
        raise KernelError(f"container {container_id} failed to start: "
                          f"{log_tail(cdir) or 'no output'}")
    if pid is not None and (found := _command_started(pid)) is not None:
        return ProcessHandle(shim_pid, shim_start, *found, cdir)
    if ended:
        return ProcessHandle(shim_pid, shim_start, 0, 0, cdir)
    return pid


def _command_started(pid: int) -> tuple[int, int] | None:
    """(pid, start time) once `pid` runs the command itself, not runc's init or the
    env(1) step before it (only then is it in all of its namespaces and confined);
    (0, 0) if it is gone; None while it is still on its way."""
    start = procfs.process_start_time(pid)
    if start is None:
        return 0, 0
    if not procfs.is_alive(pid, start):  # exited, not yet reaped by runc
        return pid, start
    # An empty argv: in the middle of an execve (the new image's args not set up yet).
    argv = procfs.cmdline(pid)
    if not argv or argv[:2] == [ENV_PATH, "--"] or procfs.comm(pid) == _RUNC_INIT_COMM:
        return None
    return pid, start
