"""Exec: a command run in a running container, validated here and run by the
`Processes` backend (its namespaces, root and confinement)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sheep_runtime.errors import FailedPrecondition, InvalidArgument
from sheep_runtime.model import ContainerState, ExecResult, ExecSpec
from sheep_runtime.ops.backends import Processes
from sheep_runtime.ops.lookup import ContainerLookup
from sheep_runtime.ops.specs import validate_exec

DEFAULT_TIMEOUT = 60
DEFAULT_MAX_OUTPUT = 1024 * 1024
# Both streams at their limit still fit in one reply under the 4 MiB (4,194,304 bytes)
# a gRPC client accepts by default.
MAX_OUTPUT = 2_000_000


def exec_spec(*, command: Sequence[str], env: Mapping[str, str], working_dir: str,
              timeout_seconds: int, max_output_bytes: int) -> ExecSpec:
    """A validated exec request: `timeout_seconds` 0 is DEFAULT_TIMEOUT,
    `max_output_bytes` 0 is DEFAULT_MAX_OUTPUT (at most MAX_OUTPUT)."""
    validate_exec(command, env)
    if working_dir and (not working_dir.startswith("/") or "\0" in working_dir):
        raise InvalidArgument(f"working_dir {working_dir[:200]!r} is not an absolute path",
                              field="working_dir")
    if timeout_seconds < 0:
        raise InvalidArgument("timeout_seconds cannot be negative", field="timeout_seconds")
    if not 0 <= max_output_bytes <= MAX_OUTPUT:
        raise InvalidArgument(f"max_output_bytes must be at most {MAX_OUTPUT}",
                              field="max_output_bytes")
    return ExecSpec(argv=tuple(command), env=dict(env), cwd=working_dir,
                    timeout=float(timeout_seconds or DEFAULT_TIMEOUT),
                    max_output=max_output_bytes or DEFAULT_MAX_OUTPUT)


class ContainerExec:
    """Runs commands in running containers. Takes no container lock: an exec may run
    for its whole timeout, and a stop or removal must not wait for it (the container's
    end ends it too)."""

    def __init__(self, lookup: ContainerLookup, processes: Processes) -> None:
        self._lookup = lookup
        self._processes = processes

    async def run(self, ref: str, spec: ExecSpec) -> ExecResult:
        """Run `spec` in the container `ref` and return how it ended; NotFound,
        FailedPrecondition (CONTAINER_NOT_RUNNING) unless it runs."""
        c = self._lookup.resolve(ref)
        if c.state != ContainerState.RUNNING:
            raise FailedPrecondition(
                f"container {c.name} is not running ({c.state.value}): start it first",
                reason="CONTAINER_NOT_RUNNING", resource_type="container",
                resource_name=c.name)
        return await self._processes.exec(c.id, self._lookup.container_dir(c.id), spec)
