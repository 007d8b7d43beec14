"""Start container processes under a per-container shim (see `watch` for the rest).

A container is its command run as PID 1 of new pid, UTS, IPC and mount namespaces
(/proc remounted for it, hostname set) inside an existing, pinned network namespace.
It is supervised by `shim.sh` (see there): a tiny shell process, not a child of the
daemon, that waits for the command and writes its exit status to `<dir>/exit`. So the
container outlives the daemon, and its exit code is known after a daemon restart.

Files in the container dir: `log` (stdout+stderr, appended), `shim.pid`, `exit`
("CODE UNIX_NS\\n"; CODE is 128+N for a command killed by signal N).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sheep_runtime.errors import InvalidArgument, KernelError
from sheep_runtime.process import procfs
from sheep_runtime.process.procfs import cmdline, process_start_time
from sheep_runtime.process.watch import ProcessHandle

SHIM_PATH = Path(__file__).resolve().with_name("shim.sh")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
START_TIMEOUT = 5.0
_HOSTNAME_MAX = 64  # bytes, kernel __NEW_UTS_LEN


@dataclass(frozen=True)
class ProcessSpec:
    """What to run, and where."""

    container_id: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    hostname: str
    netns_path: Path
    container_dir: Path


def _validate(spec: ProcessSpec) -> None:
    def bad(value: str) -> bool:
        return "\0" in value

    if not spec.container_id or bad(spec.container_id):
        raise InvalidArgument("invalid container id", field="container_id")
    if not spec.argv or any(bad(a) for a in spec.argv):
        raise InvalidArgument("argv must be non-empty, without NUL bytes", field="argv")
    if "=" in spec.argv[0]:  # env(1) would take it for a variable assignment
        raise InvalidArgument("argv[0] must not contain '='", field="argv")
    for key, value in spec.env.items():
        if not key or "=" in key or bad(key) or bad(value):
            raise InvalidArgument(f"invalid environment variable {key!r}", field="env")
    if not 0 < len(spec.hostname.encode()) <= _HOSTNAME_MAX or bad(spec.hostname):
        raise InvalidArgument("hostname must be 1-64 bytes", field="hostname")


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


async def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Wait for a child of ours to exit (pidfd on the loop, no child watcher), reap it."""
    fd = os.pidfd_open(proc.pid)
    try:
        await procfs.wait_readable(fd)
    finally:
        os.close(fd)
    proc.wait()


def _log_tail(container_dir: Path, limit: int = 1024) -> str:
    try:
        with open(container_dir / "log", "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - limit))
            data = f.read()
    except OSError:
        return ""
    return data.decode(errors="replace").strip().replace("\n", "; ")


async def start(spec: ProcessSpec) -> ProcessHandle:
    """Start the container process and return once its host pid is known.

    The command runs in / with exactly `spec.env` (plus PATH and HOSTNAME if absent),
    stdin /dev/null, stdout and stderr appended to `<dir>/log`. Raises InvalidArgument
    for a bad spec and KernelError if the namespaces cannot be set up; then nothing is
    left running. A command that cannot be executed is not an error here: it exits
    127 (not found) or 126, as reported by `wait_exit`. Costs ~3 ms.
    """
    _validate(spec)
    cdir = spec.container_dir.absolute()  # the shim runs in /
    env = dict(spec.env)
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("HOSTNAME", spec.hostname)
    try:
        cdir.mkdir(parents=True, exist_ok=True)
        for stale in ("exit", "shim.pid"):
            (cdir / stale).unlink(missing_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        log_fd = os.open(cdir / "log", flags, 0o640)
    except OSError as e:
        raise KernelError(f"container {spec.container_id}: cannot prepare {cdir}: {e}") from e
    ready_r, ready_w = os.pipe()
    os.set_blocking(ready_r, False)
    try:
        # Not asyncio.create_subprocess_exec: uvloop spawns with fork(), which blocks
        # the loop in proportion to the daemon's RSS (~18 ms at 1 GiB) and runs
        # pthread_atfork handlers (gRPC's); CPython's Popen uses vfork (~0.2 ms) and
        # runs no Python code in the child. The launcher is reaped via a pidfd.
        launcher = subprocess.Popen(
            ["/bin/sh", str(SHIM_PATH), spec.container_id, str(cdir),
             str(spec.netns_path.absolute()), spec.hostname, "--", *spec.argv],
            stdin=ready_w, stdout=log_fd, stderr=log_fd, env=env, cwd="/",
            start_new_session=True,
        )  # fmt: skip
    except OSError as e:
        os.close(ready_r)
        raise KernelError(f"container {spec.container_id}: cannot spawn shim: {e}") from e
    finally:
        os.close(ready_w)
        os.close(log_fd)
    try:
        line = await asyncio.wait_for(_read_line(ready_r), START_TIMEOUT)
        await _reap(launcher)  # it exits right after forking the shim
    except BaseException as e:
        # Timeout or cancellation: the whole tree is still in the launcher's process
        # group (the launcher is not reaped yet, so its pgid cannot be reused): kill it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.pid, signal.SIGKILL)
        await asyncio.shield(_reap(launcher))
        if isinstance(e, TimeoutError):
            raise KernelError(
                f"container {spec.container_id} did not start within {START_TIMEOUT}s"
            ) from e
        raise
    finally:
        os.close(ready_r)
    if not line.endswith(b"\n"):  # EOF: the shim exited without starting the command
        tail = _log_tail(cdir) or "no output"
        raise KernelError(f"container {spec.container_id} failed to start: {tail}")
    shim_pid, pid = (int(f) for f in line.split())
    # The shim's start time may be unreadable if the command already exited and the
    # shim was reaped: wait_exit then goes straight to the exit record.
    shim_start = process_start_time(shim_pid) or 0
    pid_start = process_start_time(pid) or 0
    await _until_command_runs(pid)
    return ProcessHandle(shim_pid, shim_start, pid if pid_start else 0, pid_start, cdir)


async def _until_command_runs(pid: int) -> None:
    """Wait (~1 ms) until `pid` is the command itself, not a step of the shim's chain
    (fork, setpriv, unshare of the mount namespace, env): only then is it in all of
    its namespaces. A command that exits or fails to exec ends the wait too."""
    launchers = (["/bin/sh", str(SHIM_PATH)], ["setpriv", "--pdeathsig"],
                 ["unshare", "--mount-proc"], ["env", "--default-signal"])
    deadline = time.monotonic() + START_TIMEOUT
    delay = 0.0002
    while (argv := cmdline(pid)) and argv[:2] in launchers and time.monotonic() < deadline:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.01)
