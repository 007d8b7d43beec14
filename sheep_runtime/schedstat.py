"""The kernel's scheduling statistics of the calling thread (CONFIG_SCHED_INFO)."""

from __future__ import annotations


def thread_cpu_wait() -> float | None:
    """Seconds the calling thread has been ready to run but waiting for a CPU since it
    started, or None where the kernel does not keep the statistic."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None
