"""`Processes`: container processes that run until the test ends them.

`wait_exit` returns once the test calls `exit(container_id, code)`, or a `kill` (137)
or `stop` ends the process: a process exits 143 on SIGTERM unless `sigterm_exit_code`
was None when it started (then it ignores SIGTERM, like a PID 1 without a handler, and
`stop` kills it after the timeout: 137). The fake outlives a daemon restart, as shims
do: `adopt` finds live processes again. Exit records are kept per container dir.
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

from sheep_runtime.errors import FailedPrecondition, InvalidArgument, KernelError
from sheep_runtime.model import (
    ALL_CAPABILITIES,
    CgroupUsage,
    ExecResult,
    ExecSpec,
    ExitStatus,
    LogQuery,
    LogRecord,
    LogStream,
    ProcessHandle,
    ProcessSpec,
)
from tests.fakes.calls import CallLog
from tests.fakes.kernel import FakeKernel

MAX_ARG_STRLEN = 131072  # one argv or environ string, with its NUL
ARG_MAX = 2 * 1024 * 1024  # argv + environ together (8 MiB stack / 4)
EXIT_CODE_UNKNOWN = -1


@dataclass
class _Process:
    handle: ProcessHandle
    spec: ProcessSpec
    sigterm_exit_code: int | None
    status: ExitStatus | None = None
    exited: asyncio.Event = field(default_factory=asyncio.Event)


def _check_exec_limits(spec: ProcessSpec) -> None:
    """E2BIG where execve would refuse the command."""
    strings = [*spec.argv, *(f"{k}={v}" for k, v in spec.env.items())]
    sizes = [len(s.encode()) + 1 for s in strings]
    if max(sizes, default=0) > MAX_ARG_STRLEN or sum(sizes) > ARG_MAX:
        raise KernelError(f"container {spec.container_id}: cannot spawn shim: "
                          f"{os.strerror(errno.E2BIG)}")


class FakeProcesses:
    """Every process started, by shim pid."""

    def __init__(self, kernel: FakeKernel, calls: CallLog) -> None:
        self._kernel = kernel
        self._calls = calls
        self._pids = count(1000, 2)
        self._procs: dict[int, _Process] = {}
        self.exit_records: dict[Path, ExitStatus] = {}
        self.logs: dict[Path, list[LogRecord]] = {}  # by container dir, oldest first
        self.log_queries: list[LogQuery] = []  # as `read_logs` got them
        self.corrupt_records: set[Path] = set()  # read_exit_status raises for these
        self.sigterm_exit_code: int | None = 143
        self.stop_signals: dict[str, int] = {}  # the last one `stop` sent, by container
        # What the daemon's own bounding set allows; a test may narrow it.
        self.capabilities: frozenset[str] = frozenset(ALL_CAPABILITIES)
        self.execs: list[tuple[str, ExecSpec]] = []  # (container id, spec) of each exec
        self.exec_result: ExecResult | None = None  # what exec returns, if set
        self.cgroup_unreadable = False

    # -- the Protocol -------------------------------------------------------------

    async def start(self, spec: ProcessSpec) -> ProcessHandle:
        self._calls.record("processes.start", mutating=True, error=KernelError)
        if not spec.argv or any("\0" in a for a in spec.argv):
            raise InvalidArgument("argv must be non-empty, without NUL bytes", field="argv")
        _check_exec_limits(spec)
        if spec.netns_path not in self._kernel.netns:
            raise KernelError(f"container {spec.container_id} failed to start: nsenter: "
                              f"cannot open {spec.netns_path}: No such file or directory")
        spec.container_dir.mkdir(parents=True, exist_ok=True)
        self.exit_records.pop(spec.container_dir, None)
        shim = next(self._pids)
        handle = ProcessHandle(shim_pid=shim, shim_start_time=shim * 10, pid=shim + 1,
                               pid_start_time=shim * 10 + 1, container_dir=spec.container_dir)
        self._procs[shim] = _Process(handle, spec, self.sigterm_exit_code)
        return handle

    def adopt(self, container_id: str, container_dir: Path, *, shim_pid: int | None,
              shim_start_time: int | None) -> ProcessHandle | None:
        self._calls.record("processes.adopt", mutating=False)
        for p in self._live():
            h = p.handle
            if (p.spec.container_id == container_id and h.container_dir == container_dir
                    and shim_pid in (None, h.shim_pid)
                    and shim_start_time in (None, h.shim_start_time)):
                return h
        return None

    def kill(self, handle: ProcessHandle) -> None:
        # Not a fault point: the real kill signals a process that may be gone, no error.
        self._calls.record("processes.kill", mutating=False)
        self._end(handle.shim_pid, 137)

    async def stop(self, handle: ProcessHandle, *, timeout: float,
                   signal_number: int = 15) -> None:
        self._calls.record("processes.stop", mutating=True, error=KernelError)
        p = self._procs.get(handle.shim_pid)
        if p is None or p.status is not None:
            return
        self.stop_signals[p.spec.container_id] = signal_number
        if p.sigterm_exit_code is not None:
            self._end(handle.shim_pid, p.sigterm_exit_code)
            return
        try:
            await asyncio.wait_for(p.exited.wait(), timeout)
        except TimeoutError:
            self._end(handle.shim_pid, 137)

    async def wait_exit(self, handle: ProcessHandle) -> ExitStatus:
        self._calls.record("processes.wait_exit", mutating=False)
        p = self._procs.get(handle.shim_pid)
        if p is not None:
            await p.exited.wait()
        status = self.exit_records.get(handle.container_dir)
        if status is None:  # a shim gone without a record
            status = ExitStatus(EXIT_CODE_UNKNOWN, time.time_ns())
            self.exit_records[handle.container_dir] = status
        return status

    def read_exit_status(self, container_dir: Path) -> ExitStatus | None:
        self._calls.record("processes.read_exit_status", mutating=False)
        if container_dir in self.corrupt_records:
            raise KernelError(f"corrupt exit status in {container_dir}/exit")
        return self.exit_records.get(container_dir)

    async def read_logs(self, container_dir: Path, query: LogQuery
                        ) -> AsyncIterator[LogRecord]:
        """The records a test wrote (`write_log`) matching `query`; with follow, new
        ones until the container dir has an exit record."""
        self._calls.record("processes.read_logs", mutating=False)
        self.log_queries.append(query)
        records = self.logs.setdefault(container_dir, [])

        def matches(r: LogRecord) -> bool:
            return (r.stream in query.streams and r.time_ns >= query.since_ns
                    and not (query.until_ns and r.time_ns >= query.until_ns))

        found = [r for r in records if matches(r)]
        for r in found if query.tail is None else found[len(found) - query.tail:]:
            yield r
        sent = len(records)
        while query.follow:
            ended = container_dir in self.exit_records
            new, sent = records[sent:], len(records)
            for r in new:
                if matches(r):
                    yield r
            if ended:
                return
            await asyncio.sleep(0.005)

    async def exec(self, container_id: str, container_dir: Path, spec: ExecSpec
                   ) -> ExecResult:
        """Echoes argv (or returns `exec_result` if a test set one), kept to
        `spec.max_output` bytes; the specs run are in `execs`."""
        self._calls.record("processes.exec", mutating=False)
        if not spec.argv or any("\0" in a for a in spec.argv):
            raise InvalidArgument("command must be non-empty, without NUL bytes",
                                  field="command")
        if not any(p.spec.container_id == container_id for p in self._live()):
            raise FailedPrecondition(f"container {container_id[:12]} is not running",
                                     reason="CONTAINER_NOT_RUNNING")
        self.execs.append((container_id, spec))
        if self.exec_result is not None:
            return self.exec_result
        out = (" ".join(spec.argv) + "\n").encode()
        return ExecResult(exit_code=0, stdout=out[:spec.max_output],
                          stdout_truncated=len(out) > spec.max_output, stderr=b"")

    async def cgroup_usage(self, container_id: str) -> CgroupUsage | None:
        """One task, the container's limits; None unless it runs or if a test set
        `cgroup_unreadable`."""
        self._calls.record("processes.cgroup_usage", mutating=False)
        live = [p for p in self._live() if p.spec.container_id == container_id]
        if not live or self.cgroup_unreadable:
            return None
        limits = live[-1].spec.resources
        return CgroupUsage(cpu_usage_ns=1_000_000, memory_usage_bytes=1 << 20,
                           memory_limit_bytes=limits.memory_bytes, pids_current=1,
                           pids_limit=limits.pids_limit)

    # -- for tests ----------------------------------------------------------------

    def exit(self, container_id: str, code: int) -> None:
        """The container's command exits with `code`."""
        for p in self._live():
            if p.spec.container_id == container_id:
                self._end(p.handle.shim_pid, code)
                return
        raise LookupError(f"no live process of container {container_id}")

    def write_log(self, container_id: str, data: bytes, stream: LogStream = "stdout",
                  *, time_ns: int | None = None) -> None:
        """The container's command writes a line (or part of one, without newline)."""
        record = LogRecord(stream, time.time_ns() if time_ns is None else time_ns, data,
                           partial=not data.endswith(b"\n"))
        self.logs.setdefault(self.spec_of(container_id).container_dir, []).append(record)

    def live(self) -> list[str]:
        """Ids of the containers whose process runs."""
        return sorted(p.spec.container_id for p in self._live())

    def spec_of(self, container_id: str) -> ProcessSpec:
        """The spec the (last) process of the container was started with."""
        found = [p.spec for p in self._procs.values() if p.spec.container_id == container_id]
        if not found:
            raise LookupError(f"no process of container {container_id} was started")
        return found[-1]

    def _live(self) -> list[_Process]:
        return [p for p in self._procs.values() if p.status is None]

    def _end(self, shim_pid: int, code: int) -> None:
        p = self._procs.get(shim_pid)
        if p is None or p.status is not None:
            return
        p.status = ExitStatus(code, time.time_ns())
        self.exit_records[p.handle.container_dir] = p.status
        p.exited.set()
