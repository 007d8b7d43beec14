"""Logs: a container's output as the `Processes` backend reads it from its log files."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

from sheep_runtime.errors import InvalidArgument
from sheep_runtime.model import ContainerState, LogQuery, LogRecord
from sheep_runtime.ops.backends import Processes
from sheep_runtime.ops.lookup import ContainerLookup


class ContainerLogs:
    """Streams containers' log records. Takes no container lock: a follow lasts as
    long as the container runs, and its end (exit record) ends the stream."""

    def __init__(self, lookup: ContainerLookup, processes: Processes) -> None:
        self._lookup = lookup
        self._processes = processes

    def stream(self, ref: str, query: LogQuery) -> AsyncIterator[LogRecord]:
        """The records of container `ref` matching `query`, oldest first; a follow
        only while it runs (otherwise what is there, then the end). NotFound, and
        InvalidArgument for a negative tail, at once."""
        if query.tail is not None and query.tail < 0:
            raise InvalidArgument("tail cannot be negative", field="tail")
        c = self._lookup.resolve(ref)
        if query.follow and c.state != ContainerState.RUNNING:
            query = dataclasses.replace(query, follow=False)
        return self._processes.read_logs(self._lookup.container_dir(c.id), query)
