"""Container processes: a command in its own namespaces, supervised by a shim."""

from sheep_runtime.process.procfs import is_alive, process_start_time
from sheep_runtime.process.spawn import ProcessSpec, start
from sheep_runtime.process.watch import (
    EXIT_CODE_UNKNOWN,
    ExitStatus,
    ProcessHandle,
    adopt,
    kill,
    read_exit_status,
    stop,
    wait_exit,
)

__all__ = [
    "EXIT_CODE_UNKNOWN",
    "ExitStatus",
    "ProcessHandle",
    "ProcessSpec",
    "adopt",
    "is_alive",
    "kill",
    "process_start_time",
    "read_exit_status",
    "start",
    "stop",
    "wait_exit",
]
