"""Restart policies: whether an exited container starts again, and after how long.

Docker's rules: the delay starts at 100 ms and doubles at each restart in a row, up to
a minute; a run of 10 s or more starts the series over. `on-failure` restarts after a
non-zero exit code (an unknown one counts as a failure) at most `max_retries` times;
`always` and `unless-stopped` restart after any exit, but not after StopContainer;
a daemon start brings `always` containers back even then, never `unless-stopped` ones.
"""

from __future__ import annotations

from sheep_runtime.model import Container

FIRST_DELAY = 0.1
MAX_DELAY = 60.0
STABLE_RUN = 10.0


def restart_delay(c: Container, *, daemon_start: bool = False) -> float | None:
    """Seconds to wait before starting exited `c` again; None: leave it exited."""
    policy = c.restart_policy
    if policy.name == "no":
        return None
    if c.stopped_by_user and not (daemon_start and policy.name == "always"):
        return None
    if policy.name == "on-failure" and (
            c.exit_code == 0
            or (policy.max_retries and c.restart_count >= policy.max_retries)):
        return None
    ran = (c.finished_at or 0.0) - (c.started_at or 0.0)
    if ran >= STABLE_RUN or not c.restart_backoff:
        return FIRST_DELAY
    return min(c.restart_backoff * 2, MAX_DELAY)
