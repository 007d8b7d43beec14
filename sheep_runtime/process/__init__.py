"""Container processes: runc containers, confined by default, each under a supervisor
that outlives the daemon (`OciProcesses`, the `Processes` backend)."""

from sheep_runtime.process.procfs import is_alive, process_start_time
from sheep_runtime.process.records import (
    EXIT_CODE_UNKNOWN,
    CorruptExitRecord,
    read_exit_status,
)
from sheep_runtime.process.runtime import OciProcesses

__all__ = [
    "EXIT_CODE_UNKNOWN",
    "CorruptExitRecord",
    "OciProcesses",
    "is_alive",
    "process_start_time",
    "read_exit_status",
]
