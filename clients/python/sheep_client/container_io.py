"""sheepctl logs and exec: a container's bytes to our stdout and stderr, unchanged."""

from __future__ import annotations

import argparse
import os
import sys
from typing import BinaryIO

from sheep.runtime.v1 import runtime_pb2 as pb

from sheep_client.client import DEFAULT_EXEC_SECONDS, SheepClient
from sheep_client.output import rfc3339_nano
from sheep_client.parsing import parse_env


class LogWriter:
    """Writes log entries as docker does: stdout's bytes to stdout, stderr's to
    stderr, raw; with `timestamps`, each line starts with its time and a space (a long
    line split over entries gets it once). `flush` after each entry (following)."""

    def __init__(self, *, timestamps: bool, flush: bool,
                 stdout: BinaryIO | None = None, stderr: BinaryIO | None = None) -> None:
        self._timestamps = timestamps
        self._flush = flush
        self._out = {pb.LogEntry.STDOUT: stdout or sys.stdout.buffer,
                     pb.LogEntry.STDERR: stderr or sys.stderr.buffer}
        self._line_start = {pb.LogEntry.STDOUT: True, pb.LogEntry.STDERR: True}

    def write(self, e: pb.LogEntry) -> None:
        stream = pb.LogEntry.STDERR if e.stream == pb.LogEntry.STDERR else pb.LogEntry.STDOUT
        out = self._out[stream]
        if self._timestamps and self._line_start[stream]:
            out.write(rfc3339_nano(e.time).encode() + b" ")
        out.write(e.data)
        self._line_start[stream] = not e.partial
        if self._flush:
            out.flush()

    def close(self) -> None:
        for out in self._out.values():
            out.flush()


def cmd_logs(api: SheepClient, a: argparse.Namespace) -> int:
    """Print a container's output; -f goes on until it exits (or Ctrl-C)."""
    sys.stdout.flush()
    writer = LogWriter(timestamps=a.timestamps, flush=a.follow)
    try:
        with api.logs(a.container, follow=a.follow, tail=a.tail, since=a.since,
                      until=a.until) as entries:
            for entry in entries:
                writer.write(entry)
    finally:
        writer.close()
    return 0


def cmd_exec(api: SheepClient, a: argparse.Namespace) -> int:
    """Run a command in a running container; print its stdout and stderr and return
    its exit status. Truncated output and a timeout are reported on stderr."""
    if not a.command:
        raise ValueError("exec needs a command: sheepctl exec [OPTIONS] CONTAINER COMMAND "
                         "[ARG...]")
    r = api.exec(a.container, a.command, env=parse_env(a.env, os.environ),
                 working_dir=a.workdir, timeout_seconds=a.timeout)
    sys.stdout.buffer.write(r.stdout)
    sys.stdout.buffer.flush()
    sys.stderr.buffer.write(r.stderr)
    sys.stderr.buffer.flush()
    for name, data, cut in (("stdout", r.stdout, r.stdout_truncated),
                            ("stderr", r.stderr, r.stderr_truncated)):
        if cut:
            print(f"sheepctl: exec: {name} truncated: only its first {len(data)} bytes "
                  "came back", file=sys.stderr)
    if r.timed_out:
        print(f"sheepctl: exec: {a.command[0]} was killed at its timeout "
              f"({a.timeout or DEFAULT_EXEC_SECONDS}s; --timeout to change it)",
              file=sys.stderr)
    return r.exit_code & 0xFF
