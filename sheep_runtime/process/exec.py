"""Run a command in a running container: `runc exec`, its output captured.

runc builds the process from the container's own bundle (config.json: capabilities,
no_new_privs, rlimits, env) and joins it to the container's namespaces, cgroups and
seccomp filter, so it is confined exactly like the container's command; `--env` adds
to the container's environment (later entries win). Without a terminal runc copies
the process's output through pipes of its own to ours and exits with its status
(128+N if it was killed by signal N) once the output is drained.

runc (a Go program) is spawned with `subprocess.Popen` and awaited through a pidfd on
the event loop, like the container's supervisor (see spawn.py). Its own failures go
to a JSON log file: a command that cannot be found or run becomes 127 or 126 as from
a shell, a bad working dir InvalidArgument, a container that is gone
FailedPrecondition.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import secrets
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sheep_runtime.errors import FailedPrecondition, InvalidArgument, KernelError
from sheep_runtime.model import ExecResult, ExecSpec
from sheep_runtime.process import procfs
from sheep_runtime.process.bundle import DEFAULT_PATH
from sheep_runtime.process.spawn import Runc

KILL_TIMEOUT = 5.0  # for runc to exit once the process is killed
PID_FILE_POLL = 0.005  # while a kill waits for runc to name the process
_CHUNK = 65536
_RUNC_FAILED = 255  # `runc exec`'s own exit code when it fails
_START_FAILED = "unable to start container process: exec: "
_NOT_RUNNING = ("container does not exist", "cannot exec in a stopped container",
                "cannot exec in a paused container")


def validate(spec: ExecSpec) -> None:
    """InvalidArgument unless `spec` can be passed to runc and execve."""
    if not spec.argv or not spec.argv[0] or any("\0" in a for a in spec.argv):
        raise InvalidArgument("command must be non-empty, without NUL bytes",
                              field="command")
    for key, value in spec.env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise InvalidArgument(f"invalid environment variable name {key[:64]!r}",
                                  field="env")
    if spec.cwd and (not spec.cwd.startswith("/") or "\0" in spec.cwd):
        raise InvalidArgument(f"working dir {spec.cwd[:200]!r} is not an absolute path",
                              field="working_dir")
    if not (spec.timeout > 0 and math.isfinite(spec.timeout)):
        raise InvalidArgument("timeout must be positive", field="timeout_seconds")
    if spec.max_output < 0:
        raise InvalidArgument("max output cannot be negative", field="max_output_bytes")


@dataclass
class Capture:
    """One output stream: its first `limit` bytes, and how many more there were."""

    limit: int
    data: bytearray = field(default_factory=bytearray)
    dropped: int = 0

    def feed(self, chunk: bytes) -> None:
        keep = max(0, self.limit - len(self.data))
        self.data += chunk[:keep]
        self.dropped += len(chunk) - min(keep, len(chunk))


async def drain(fd: int, sink: Capture) -> None:
    """Read the non-blocking `fd` into `sink` until EOF, one chunk per wakeup."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        try:
            chunk = os.read(fd, _CHUNK)
        except BlockingIOError:
            return
        except OSError as e:
            if not done.done():
                done.set_exception(e)
            return
        if chunk:
            sink.feed(chunk)
        elif not done.done():
            done.set_result(None)

    loop.add_reader(fd, on_readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)


def _runc_children(runc_pid: int) -> list[int]:
    """Children of every thread of runc (a Go program forks from any of them)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{runc_pid}/task"):
            with (contextlib.suppress(OSError, ValueError),
                  open(f"/proc/{runc_pid}/task/{tid}/children") as f):
                found += [int(p) for p in f.read().split()]
    return found


def _kill_process(runc_pid: int, runc_fd: int, pid_file: Path) -> None:
    """SIGKILL the exec'd process and its process group (runc makes it a session
    leader; its children stay in its group unless they make their own).

    Killing runc would not kill it. runc is stopped meanwhile: it cannot reap its
    child then, so the pid it wrote to `pid_file` (or, before that, the pid of any
    child of it) names that child, alive or a zombie, and nothing else.
    """
    with contextlib.suppress(ProcessLookupError):
        signal.pidfd_send_signal(runc_fd, signal.SIGSTOP)
    try:
        pid = None
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text())
        targets = [pid] if pid and procfs.parent(pid) == runc_pid else _runc_children(runc_pid)
        for target in targets:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(target) == target:
                    os.killpg(target, signal.SIGKILL)
                else:
                    os.kill(target, signal.SIGKILL)
    finally:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(runc_fd, signal.SIGCONT)


def _runc_error(log_file: Path) -> str | None:
    """The last error runc logged (JSON lines), None if it logged none."""
    try:
        lines = log_file.read_text(errors="replace").splitlines()
    except OSError:
        return None
    message = None
    for line in lines:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            entry = json.loads(line)
            if entry.get("level") in ("error", "fatal"):
                message = str(entry.get("msg", ""))
    return message


def _failure_code(container_id: str, spec: ExecSpec, message: str) -> int:
    """The exit code for runc's own failure `message`, as a shell reports a command it
    cannot run (127 not found, 126 not executable); raises for anything else."""
    if _START_FAILED in message:
        detail = message.split(_START_FAILED, 1)[1]
        return 127 if "not found" in detail or "no such file" in detail else 126
    if "chdir to cwd" in message:
        raise InvalidArgument(f"working dir {spec.cwd!r} is not usable in the container: "
                              f"{message.rsplit(': ', 1)[-1]}", field="working_dir")
    if any(text in message for text in _NOT_RUNNING):
        raise FailedPrecondition(f"container {container_id[:12]} is not running",
                                 reason="CONTAINER_NOT_RUNNING", resource_type="container",
                                 resource_name=container_id)
    raise KernelError(f"exec in container {container_id[:12]}: {message}")


def _argv(runc: Runc, container_id: str, spec: ExecSpec, *, pid_file: Path,
          log_file: Path) -> list[str]:
    args = ["--log", str(log_file), "--log-format", "json", "exec", "--pid-file",
            str(pid_file)]
    for key, value in spec.env.items():
        args += ["--env", f"{key}={value}"]
    if spec.cwd:
        args += ["--cwd", spec.cwd]
    # runc parses no flags after the container id: argv goes through as it is.
    return runc.argv(*args, container_id, *spec.argv)


# Execs whose caller went away: they go on until their process is killed and reaped.
_ORPHANS: set[asyncio.Task[ExecResult]] = set()


def _forget(task: asyncio.Task[ExecResult]) -> None:
    _ORPHANS.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: nobody is left to see it


async def run(runc: Runc, container_id: str, container_dir: Path, spec: ExecSpec
              ) -> ExecResult:
    """Run `spec` in the running container `container_id` (its bundle in
    `container_dir`); return once it ended and its output is drained, or at
    `spec.timeout` once it is killed (timed_out, 137). A cancelled call kills it too
    (in the background: the cancellation is not held up)."""
    validate(spec)
    job = _Exec(runc, container_id, container_dir, spec)
    task = asyncio.ensure_future(job.run())
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        job.abort.set()
        _ORPHANS.add(task)
        task.add_done_callback(_forget)
        raise


class _Exec:
    """One `runc exec`: spawned, supervised, killed at its timeout, reaped; it owns
    its pipes, pidfd and files and releases them whatever happens."""

    def __init__(self, runc: Runc, container_id: str, container_dir: Path,
                 spec: ExecSpec) -> None:
        self._runc = runc
        self._id = container_id
        self._spec = spec
        token = secrets.token_hex(6)
        self._pid_file = container_dir / f"exec-{token}.pid"
        self._log_file = container_dir / f"exec-{token}.log"
        self.abort = asyncio.Event()  # set: kill it now

    async def run(self) -> ExecResult:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            try:
                proc = subprocess.Popen(
                    _argv(self._runc, self._id, self._spec, pid_file=self._pid_file,
                          log_file=self._log_file),
                    stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w,
                    env={"PATH": DEFAULT_PATH}, cwd="/", start_new_session=True)
            except OSError as e:
                raise KernelError(f"exec in container {self._id[:12]}: cannot run runc: "
                                  f"{e}") from e
            finally:
                os.close(out_w)
                os.close(err_w)
            runc_fd = os.pidfd_open(proc.pid)  # not reaped yet: the pid is still runc's
            try:
                return await self._supervise(proc, runc_fd, out_r, err_r)
            finally:
                os.close(runc_fd)
        finally:
            os.close(out_r)
            os.close(err_r)
            self._pid_file.unlink(missing_ok=True)
            self._log_file.unlink(missing_ok=True)

    async def _supervise(self, proc: subprocess.Popen[bytes], runc_fd: int, out_r: int,
                         err_r: int) -> ExecResult:
        spec = self._spec
        out, err = Capture(spec.max_output), Capture(spec.max_output)
        for fd in (out_r, err_r):
            os.set_blocking(fd, False)
        exited = asyncio.ensure_future(procfs.wait_readable(runc_fd))
        drains = [asyncio.ensure_future(drain(out_r, out)),
                  asyncio.ensure_future(drain(err_r, err))]
        aborted = asyncio.ensure_future(self.abort.wait())
        everything = asyncio.ensure_future(asyncio.wait([exited, *drains]))
        timed_out = False
        try:
            done, _ = await asyncio.wait([everything, aborted], timeout=spec.timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if everything not in done:
                timed_out = not self.abort.is_set()
                await self._kill(proc.pid, runc_fd, exited, everything)
        finally:
            aborted.cancel()
            everything.cancel()
            for t in drains:
                t.cancel()
        proc.wait()  # its pidfd was readable: it has exited, this does not block
        for t in drains:
            if t.done() and not t.cancelled() and (e := t.exception()) is not None:
                raise KernelError(f"exec in container {self._id[:12]}: cannot read its "
                                  f"output: {e}") from e
        code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
        if timed_out:
            code = 128 + signal.SIGKILL
        elif code == _RUNC_FAILED and (message := _runc_error(self._log_file)) is not None:
            code = _failure_code(self._id, spec, message)
        return ExecResult(exit_code=code, stdout=bytes(out.data), stderr=bytes(err.data),
                          stdout_truncated=out.dropped > 0, stderr_truncated=err.dropped > 0,
                          timed_out=timed_out)

    async def _kill(self, runc_pid: int, runc_fd: int, exited: asyncio.Future[None],
                    everything: asyncio.Future[Any]) -> None:
        """Kill the exec'd process; wait for runc to exit (SIGKILL it after
        KILL_TIMEOUT) and briefly for the rest of the output.

        Until runc has written the pid file, the process is still being made by runc
        init's short-lived stages, out of runc's reach: killing them would let it start
        on its own. So the kill waits for the pid file (or runc's exit) first."""
        deadline = asyncio.get_running_loop().time() + KILL_TIMEOUT
        while (not self._pid_file.exists() and not exited.done()
               and asyncio.get_running_loop().time() < deadline):
            await asyncio.sleep(PID_FILE_POLL)
        _kill_process(runc_pid, runc_fd, self._pid_file)
        await asyncio.wait([exited], timeout=KILL_TIMEOUT)
        if not exited.done():
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(runc_fd, signal.SIGKILL)
            await exited
        # Output still open after runc is gone: someone else holds the pipe.
        await asyncio.wait([everything], timeout=0.2)
