"""`OciProcesses`: the `Processes` backend, containers run by an OCI runtime (runc)."""

from __future__ import annotations

import dataclasses
import os
import resource
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sheep_runtime.errors import KernelError
from sheep_runtime.model import (
    CgroupUsage,
    ExecResult,
    ExecSpec,
    ExitStatus,
    LogQuery,
    LogRecord,
    ProcessHandle,
    ProcessSpec,
)
from sheep_runtime.process import capabilities, logs, records, seccomp, spawn, watch
from sheep_runtime.process import exec as exec_
from sheep_runtime.process import stats as stats_
from sheep_runtime.process.bundle import DEFAULT_PATH, MAX_NOFILE, build_config
from sheep_runtime.process.limits import swap_limit_supported

START_TIMEOUT = 10.0


class OciProcesses:
    """Each container is a runc container under its own supervisor (`shim.sh`) that
    outlives the daemon: confined by default (read-only host root, own /proc, /dev and
    /tmp, `hidden_paths` masked, exactly the requested capabilities, seccomp, no new
    privileges), its network namespace the pre-pinned one.

    `root` holds runc's state (e.g. RUN_DIR/runc; hide it from containers). Cgroups are
    `cgroup_parent/ID`, relative to the daemon's own (runc removes each at the end).
    Each container's logger rotates its log (`ProcessSpec.log`). Construction fails
    (KernelError) without runc or the seccomp profile.
    """

    def __init__(self, root: Path, *, runc: str = "runc", cgroup_parent: str = "sheep",
                 seccomp_profile: Path = seccomp.DEFAULT_PROFILE,
                 start_timeout: float = START_TIMEOUT) -> None:
        runc_path = shutil.which(runc, path=DEFAULT_PATH)
        if runc_path is None:
            raise KernelError(f"OCI runtime {runc!r} not found (Debian package runc)")
        self._runc = spawn.Runc(os.path.abspath(runc_path), root.absolute())
        self._cgroup_parent = cgroup_parent
        self._profile = seccomp.load_profile(seccomp_profile)
        self._arch = seccomp.native_arch()
        self._absent_arches = seccomp.absent_architectures(self._arch)
        self.capabilities = frozenset(capabilities.bounding_set())
        # No CAP_SYS_RESOURCE is needed to lower a limit, only to raise the hard one.
        self._nofile = min(MAX_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
        self._seccomp: dict[tuple[str, ...], dict[str, Any]] = {}
        self._start_timeout = start_timeout

    def _seccomp_for(self, caps: tuple[str, ...]) -> dict[str, Any]:
        if caps not in self._seccomp:
            self._seccomp[caps] = seccomp.to_oci(self._profile, caps=caps, arch=self._arch,
                                                 absent=self._absent_arches)
        return self._seccomp[caps]

    def config(self, spec: ProcessSpec) -> dict[str, Any]:
        """The OCI config.json `start` writes for `spec` (InvalidArgument if bad)."""
        spawn.validate(spec)
        caps = capabilities.resolve(spec.capabilities, privileged=spec.privileged,
                                    available=self.capabilities)
        hidden = tuple(Path(os.path.realpath(p)) for p in spec.hidden_paths)
        return build_config(
            dataclasses.replace(spec, hidden_paths=hidden), capabilities=caps,
            seccomp=None if spec.privileged else self._seccomp_for(caps),
            nofile=self._nofile, cgroup_parent=self._cgroup_parent,
            swap_limit=swap_limit_supported())

    async def start(self, spec: ProcessSpec) -> ProcessHandle:
        """Start the command; return once it runs (its host pid known).

        It runs in / with exactly `spec.env` (plus PATH and HOSTNAME if absent), stdin
        /dev/null, stdout and stderr logged to `<dir>/log` by its logger (records
        marked with their stream and time, rotated by `spec.log`). Raises InvalidArgument
        for a bad spec and KernelError if runc cannot set the container up; then
        nothing is left. A command that cannot be executed is no error here: it exits
        127 (not found) or 126, as `wait_exit` reports. Costs ~50-90 ms (two Go
        starts of runc; libseccomp compiling the filter takes ~7 ms of it per
        architecture).
        """
        return await spawn.start(spec, self.config(spec), runc=self._runc,
                                 timeout=self._start_timeout)

    def adopt(self, container_id: str, container_dir: Path, *, shim_pid: int | None,
              shim_start_time: int | None) -> ProcessHandle | None:
        """Re-attach to a container after a daemon restart; None if it is gone."""
        return watch.adopt(container_id, container_dir, shim_pid=shim_pid,
                           shim_start_time=shim_start_time)

    def kill(self, handle: ProcessHandle) -> None:
        """SIGKILL the command now (no-op if it is gone)."""
        watch.kill(handle)

    async def stop(self, handle: ProcessHandle, *, timeout: float,
                   signal_number: int = signal.SIGTERM) -> None:
        """`signal_number`, then SIGKILL after `timeout` s; return once it exited."""
        await watch.stop(handle, timeout=timeout, signal_number=signal_number)

    async def wait_exit(self, handle: ProcessHandle) -> ExitStatus:
        """Wait for the exit and return its recorded status."""
        return await watch.wait_exit(handle, runc=self._runc)

    def read_exit_status(self, container_dir: Path) -> ExitStatus | None:
        """The recorded exit status, None if none yet; CorruptExitRecord (a
        KernelError) if it is unreadable."""
        return records.read_exit_status(container_dir)

    def read_logs(self, container_dir: Path, query: LogQuery) -> AsyncIterator[LogRecord]:
        """The container's log records matching `query`, oldest first over its rotated
        files; with `query.follow`, new ones until its exit is recorded."""
        return logs.read_logs(container_dir, query)

    async def exec(self, container_id: str, container_dir: Path, spec: ExecSpec
                   ) -> ExecResult:
        """Run `spec` in the running container through `runc exec`: its namespaces,
        cgroups, capabilities, seccomp filter and no_new_privs, as its command has.
        Killed (with its process group) at `spec.timeout`: timed_out, 137. A command
        that cannot be found or run exits 127 or 126; InvalidArgument for a bad spec
        or working dir, FailedPrecondition if the container is not running."""
        return await exec_.run(self._runc, container_id, container_dir.absolute(), spec)

    async def cgroup_usage(self, container_id: str) -> CgroupUsage | None:
        """The container's cgroup counters (`runc events --stats`, cgroup v1 or v2);
        None if they cannot be read."""
        return await stats_.cgroup_usage(self._runc, container_id)
