"""A container's logger (stdlib only, run on its own by `shim.sh`):

    python3 -I -S logger.py DIR MAX_BYTES MAX_FILES  3<STDOUT_FIFO 4<STDERR_FIFO

reads the container's stdout (fd 3) and stderr (fd 4) and appends each line to DIR/log
in the CRI log format, `TIME STREAM TAG DATA\\n`: TIME is RFC 3339 UTC with nanoseconds
(when the line was read), STREAM `stdout` or `stderr`, TAG `F` for a full line (DATA
without its newline) or `P` for a part of one (a line longer than LINE_MAX, or than a
file can hold, is split; an unterminated tail at EOF is written as P).

It rotates the log itself: before a record would take `log` past MAX_BYTES, log.N-1 is
renamed to log.N, ..., log to log.1 (the oldest dropped) and a new `log` begins, so at
most MAX_FILES files, the current one included, are kept. A record that cannot be
written (e.g. a full disk) is dropped: the container must never block on its log.

It ignores HUP, INT, TERM and PIPE (it outlives the daemon, like the shim) and exits
once both streams reached EOF, everything read written.
"""

from __future__ import annotations

# Only modules a bare interpreter has loaded or loads at once: `selectors`, `signal`
# and `contextlib` would add ~10 ms of imports to every container start.
import _signal as signal  # type: ignore[import-not-found]  # `signal` without its enums
import os
import select
import sys
import time

LINE_MAX = 16 * 1024
HEADER_MAX = 48  # "2026-12-02T10:00:00.123456789Z stdout P " and the newline, rounded up
READ_SIZE = 64 * 1024
STREAMS = ((3, b"stdout"), (4, b"stderr"))


_second: tuple[int, bytes] = (-1, b"")  # the last second formatted


def timestamp(ns: int) -> bytes:
    """RFC 3339 UTC with 9 fractional digits: b'2026-12-02T10:00:00.123456789Z'."""
    global _second
    seconds, fraction = divmod(ns, 1_000_000_000)
    if _second[0] != seconds:
        _second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)).encode())
    return b"%s.%09dZ" % (_second[1], fraction)


class Log:
    """DIR/log, appended to and rotated by size."""

    def __init__(self, directory: str, max_bytes: int, max_files: int) -> None:
        self.path = os.path.join(directory, "log")
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.fd = -1
        self.size = 0
        self._open()

    def _open(self) -> None:
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                              0o640)
            self.size = os.fstat(self.fd).st_size
        except OSError as e:
            self.fd, self.size = -1, 0
            print(f"sheep logger: cannot open {self.path}: {e}", file=sys.stderr)

    def write(self, records: list[bytes]) -> None:
        """Append `records` (whole lines), rotating before one would not fit."""
        batch = bytearray()
        for record in records:
            if self.size + len(batch) + len(record) > self.max_bytes and self.size + len(batch):
                self._flush(batch)
                batch.clear()
                self._rotate()
            batch += record
        self._flush(batch)

    def _flush(self, data: bytearray) -> None:
        if self.fd < 0:
            self._open()
        view = memoryview(data)
        while view and self.fd >= 0:
            try:
                n = os.write(self.fd, view)
            except OSError:
                return  # dropped: a full disk must not stop the container's output
            self.size += n
            view = view[n:]

    def _rotate(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        try:
            if self.max_files <= 1:
                os.unlink(self.path)  # nothing older is kept
            for n in range(self.max_files - 1, 0, -1):  # log.N-1 -> log.N ... log -> log.1
                older = f"{self.path}.{n - 1}" if n > 1 else self.path
                if os.path.exists(older):
                    os.replace(older, f"{self.path}.{n}")
        except OSError as e:
            print(f"sheep logger: cannot rotate {self.path}: {e}", file=sys.stderr)
        self._open()


class Stream:
    """One of the container's outputs, cut into records."""

    def __init__(self, name: bytes, limit: int) -> None:
        self.name = name
        self.limit = limit
        self.pending = bytearray()

    def feed(self, data: bytes | None, now: int) -> list[bytes]:
        """The records completed by `data` (None: EOF, the rest is flushed as P)."""
        buf = self.pending
        if data is not None:
            buf += data
        out: list[bytes] = []
        start, stamp = 0, timestamp(now)
        while True:
            newline = buf.find(b"\n", start, start + self.limit + 1)
            if newline >= 0:
                out.append(b"%s %s F %s\n" % (stamp, self.name, buf[start:newline]))
                start = newline + 1
            elif len(buf) - start > self.limit or (data is None and start < len(buf)):
                end = min(len(buf), start + self.limit)
                out.append(b"%s %s P %s\n" % (stamp, self.name, buf[start:end]))
                start = end
            else:
                break
        del buf[:start]
        return out


def run(directory: str, max_bytes: int, max_files: int) -> None:
    log = Log(directory, max_bytes, max_files)
    limit = max(1, min(LINE_MAX, max_bytes - HEADER_MAX))
    streams = {fd: Stream(name, limit) for fd, name in STREAMS}
    poller = select.epoll()
    for fd in streams:
        os.set_blocking(fd, False)
        poller.register(fd, select.EPOLLIN)
    while streams:
        for fd, _ in poller.poll():
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                continue
            stream = streams[fd]
            if not data:  # EOF: every writer (runc, the container, the shim) is gone
                poller.unregister(fd)
                os.close(fd)
                del streams[fd]
            log.write(stream.feed(data or None, time.time_ns()))


def main(argv: list[str]) -> int:
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    # Started niced, so that this interpreter's start left the CPU to runc's: now up.
    try:  # noqa: SIM105 - no contextlib, see the imports
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    except OSError:
        pass
    if len(argv) != 4:
        print("usage: logger.py DIR MAX_BYTES MAX_FILES 3<STDOUT 4<STDERR", file=sys.stderr)
        return 2
    run(argv[1], int(argv[2]), int(argv[3]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
