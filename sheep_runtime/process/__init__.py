"""Container processes: runc containers, confined by default, each under a supervisor
that outlives the daemon (`OciProcesses`, the `Processes` backend)."""

from sheep_runtime.process.procfs import is_alive, process_start_time
from sheep_runtime.process.records import (
    EXIT_CODE_UNKNOWN,
    LOG_KEEP,
    LOG_MAX_BYTES,
    CorruptExitRecord,
    read_exit_status,
    rotate_log,
)
from sheep_runtime.process.runtime import OciProcesses

__all__ = [
    "EXIT_CODE_UNKNOWN",
    "LOG_KEEP",
    "LOG_MAX_BYTES",
    "CorruptExitRecord",
    "OciProcesses",
    "is_alive",
    "process_start_time",
    "read_exit_status",
    "rotate_log",
]
