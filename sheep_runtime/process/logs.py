"""Reading a container's log: the CRI-format records its logger (`logger.py`) appends to
`DIR/log`, after those of the rotated files `DIR/log.N` ... `DIR/log.1` (oldest first).

Files are read through fds opened once (newest first, skipping an inode seen already,
so a rotation meanwhile neither repeats nor reorders records) in bounded chunks, off
the event loop. A tail is found reading backwards from the end. Following polls the
current file; when the logger rotates it (`log` is another inode), the old one is read
to its end and the next one taken up. It ends once the exit record exists (the shim
writes it after the logger exited) and everything before it was read, or when the
container dir is gone. Lines that are not records (the shim's own errors) are skipped.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import functools
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sheep_runtime.model import LogQuery, LogRecord, LogStream

CHUNK = 256 * 1024  # read at a time: many records, but never a whole file in memory
SMALL_CHUNK = 32 * 1024  # to find the last record: more than the longest one (16 KiB)
MAX_LINE = 64 * 1024  # anything longer is no record
POLL_SECONDS = 0.05
UNTIL_GRACE_NS = 1_000_000_000  # a record read before `until` is written soon after
_STREAMS: dict[bytes, LogStream] = {b"stdout": "stdout", b"stderr": "stderr"}
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC
T = TypeVar("T")


@functools.lru_cache(maxsize=64)
def _utc_seconds(text: bytes) -> int | None:
    try:
        return calendar.timegm(time.strptime(text.decode(), "%Y-%m-%dT%H:%M:%S"))
    except (ValueError, UnicodeDecodeError):
        return None


def parse_time(stamp: bytes) -> int | None:
    """Unix ns of an RFC 3339 UTC time such as b'2026-12-02T10:00:00.123456789Z'."""
    if len(stamp) == 20 and stamp.endswith(b"Z"):  # no fraction
        fraction = b"0"
    elif len(stamp) > 21 and stamp[19:20] == b"." and stamp.endswith(b"Z"):
        fraction = stamp[20:-1]
    else:
        return None
    seconds = _utc_seconds(stamp[:19])
    if seconds is None or not fraction.isdigit() or len(fraction) > 9:
        return None
    return seconds * 1_000_000_000 + int(fraction.ljust(9, b"0"))


def parse_record(line: bytes) -> LogRecord | None:
    """The record of one log line (without its newline); None if it is not one."""
    parts = line.split(b" ", 3)
    if len(parts) != 4 or parts[2] not in (b"F", b"P") or parts[1] not in _STREAMS:
        return None
    stamp, stream, tag, data = parts
    ns = parse_time(stamp)
    if ns is None:
        return None
    partial = tag == b"P"
    return LogRecord(_STREAMS[stream], ns, data if partial else data + b"\n", partial)


def log_files(container_dir: Path) -> list[Path]:
    """The log file names, newest first: log, log.1, log.2, ..."""
    try:
        names = os.listdir(container_dir)
    except OSError:
        return []
    rotated = sorted(int(n[4:]) for n in names if n.startswith("log.") and n[4:].isdigit())
    return [container_dir / "log", *(container_dir / f"log.{n}" for n in rotated)]


def lines_backward(fd: int, end: int, chunk: int = CHUNK) -> Iterator[tuple[int, bytes]]:
    """The whole lines (without newline) of a file's first `end` bytes, last first,
    each with the offset it starts at; read backwards `chunk` bytes at a time."""
    pos, carry, tail = end, b"", True
    while pos > 0:
        start = max(0, pos - chunk)
        block = os.pread(fd, pos - start, start) + carry
        if tail:  # what follows the last newline is no whole line (yet)
            cut = block.rfind(b"\n") + 1
            block, tail = block[:cut], cut == 0
        lines = block.split(b"\n")[:-1]  # the block is empty or ends with a newline
        carry = lines.pop(0) + b"\n" if start and lines else b""  # begins before start
        if len(carry) > MAX_LINE:  # drop what cannot be a record
            carry = b"\n"
        offsets: list[int] = []
        offset = start + len(carry)
        for line in lines:
            offsets.append(offset)
            offset += len(line) + 1
        yield from zip(reversed(offsets), reversed(lines), strict=True)
        pos = start


def _read_lines(fd: int, pos: int, end: int | None) -> tuple[list[bytes], int]:
    """The whole lines from `pos` to `end` (None: EOF), at most CHUNK bytes, and the
    position after them."""
    data = os.pread(fd, CHUNK if end is None else min(CHUNK, end - pos), pos)
    cut = data.rfind(b"\n") + 1
    if not cut and len(data) == CHUNK:  # no record is that long: skip what cannot be one
        cut = CHUNK
    return data[:cut].split(b"\n")[:-1], pos + cut


@dataclass
class _File:
    fd: int
    ino: int
    end: int  # after its last whole line when it was opened


def _open(path: Path) -> _File | None:
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        return None
    st = os.fstat(fd)
    lines = lines_backward(fd, st.st_size, SMALL_CHUNK)
    end = next((offset + len(line) + 1 for offset, line in lines), 0)
    return _File(fd, st.st_ino, end)


class _Reader:
    """The blocking half of `read_logs`: each method does a bounded amount of I/O (run
    it in a thread). `close` may come from the loop while a method runs: the fds are
    then closed by that method when it is done, never under it."""

    def __init__(self, container_dir: Path, query: LogQuery) -> None:
        self._dir = container_dir
        self._query = query
        self._files: list[_File] = []  # oldest first; while following only the current
        self._index = 0  # in `_files`
        self._pos = 0  # in `_files[_index]`, at the start of a line
        self._rotated = False  # the current file is no longer `log`: read it to its end
        self._lock = threading.Lock()
        self._closed = False
        self.done = False

    def run(self, step: Callable[[], T]) -> T | None:
        """`step()` unless closed; closes the fds after it if `close` came meanwhile."""
        with self._lock:
            result = None if self._closed else step()
        self._close_if_closed()
        return result

    def close(self) -> None:
        self._closed = True
        self._close_if_closed()

    def _close_if_closed(self) -> None:
        if self._closed and self._lock.acquire(blocking=False):
            try:
                for f in self._files:
                    os.close(f.fd)
                self._files.clear()
            finally:
                self._lock.release()

    def open(self) -> None:
        """Open the files and find where the query's records begin."""
        seen: set[int] = set()
        for path in log_files(self._dir):  # newest first: a rotation meanwhile shows up
            f = _open(path)  # as an inode seen already
            if f is not None and f.ino in seen:
                os.close(f.fd)
            elif f is not None:
                seen.add(f.ino)
                self._files.insert(0, f)
        if self._files:
            self._index, self._pos = self._start()

    def _start(self) -> tuple[int, int]:
        q, last = self._query, len(self._files) - 1
        start = (last, self._files[last].end)  # nothing of what is there
        if q.tail is not None:
            need = q.tail
            for i in range(last, -1, -1):
                for offset, line in lines_backward(self._files[i].fd, self._files[i].end):
                    if need <= 0:
                        return start
                    r = parse_record(line)
                    if r is not None and r.time_ns < q.since_ns:  # the log is in time order
                        return start
                    if r is not None and self._matches(r):
                        start, need = (i, offset), need - 1
            return start
        for i, f in enumerate(self._files):
            if not q.since_ns or self._last_time(f) >= q.since_ns:
                return i, 0
        return start

    @staticmethod
    def _last_time(f: _File) -> int:
        for _, line in lines_backward(f.fd, f.end, SMALL_CHUNK):
            if (r := parse_record(line)) is not None:
                return r.time_ns
        return -1

    def _matches(self, r: LogRecord) -> bool:
        q = self._query
        return (r.stream in q.streams and r.time_ns >= q.since_ns
                and not (q.until_ns and r.time_ns >= q.until_ns))

    def _select(self, lines: list[bytes], *, following: bool) -> list[LogRecord]:
        out: list[LogRecord] = []
        for line in lines:
            r = parse_record(line)
            if r is None:
                continue
            if following and self._query.until_ns and r.time_ns >= self._query.until_ns:
                self.done = True  # in time order: nothing after it is before `until`
                break
            if self._matches(r):
                out.append(r)
        return out

    def read_existing(self) -> list[LogRecord] | None:
        """The next records of what was there when opened; None once all are read
        (then the newest file is the current one, to follow)."""
        while self._index < len(self._files):
            f = self._files[self._index]
            if self._pos < f.end:
                lines, pos = _read_lines(f.fd, self._pos, f.end)
                self._pos = pos if pos > self._pos else f.end  # not what it was: give up
                return self._select(lines, following=False)
            if self._index == len(self._files) - 1:
                break
            self._index, self._pos = self._index + 1, 0
        for f in self._files[:-1]:
            os.close(f.fd)
        del self._files[:-1]
        self._index = 0
        return None

    def follow(self) -> tuple[list[LogRecord], bool]:
        """New records and whether to wait before calling again (there were none);
        sets `done` at the exit record, `until` or the container dir's removal."""
        ended = not self._dir.exists() or (self._dir / "exit").exists()  # before reading
        if self._files:
            lines, pos = _read_lines(self._files[0].fd, self._pos, None)
            if pos > self._pos:
                self._pos = pos
                return self._select(lines, following=True), False
        if self._rotated or not self._files:
            if self._take_next():
                return [], False
        elif self._is_rotated():
            self._rotated = True
            return [], False  # read what was written before the rotation first
        until = self._query.until_ns
        self.done = ended or bool(until and time.time_ns() > until + UNTIL_GRACE_NS)
        return [], True

    def _is_rotated(self) -> bool:
        try:
            return os.stat(self._dir / "log").st_ino != self._files[0].ino
        except FileNotFoundError:
            return True

    def _take_next(self) -> bool:
        """Move on to the file written after the current one; False if none is yet."""
        current = self._files[0].ino if self._files else None
        for _ in range(3):  # the logger rotated again while we looked: look again
            found: list[tuple[int, Path]] = []
            for path in reversed(log_files(self._dir)):  # oldest first
                with contextlib.suppress(FileNotFoundError):
                    found.append((os.stat(path).st_ino, path))
            inodes = [ino for ino, _ in found]
            after = inodes.index(current) + 1 if current in inodes else 0
            if after >= len(found):
                return False
            ino, path = found[after]
            try:
                fd = os.open(path, _OPEN_FLAGS)
            except FileNotFoundError:
                continue
            if os.fstat(fd).st_ino != ino:
                os.close(fd)
                continue
            for f in self._files:
                os.close(f.fd)
            self._files, self._pos, self._rotated = [_File(fd, ino, 0)], 0, False
            return True
        return False


async def read_logs(container_dir: Path, query: LogQuery) -> AsyncIterator[LogRecord]:
    """The container's log records matching `query`, oldest first over its rotated
    files; with `query.follow`, then new ones as they are written, until its exit is
    recorded (or its dir removed) and everything before it was sent."""
    reader = _Reader(container_dir, query)
    try:
        await asyncio.to_thread(reader.run, reader.open)
        while (batch := await asyncio.to_thread(reader.run, reader.read_existing)) is not None:
            for record in batch:
                yield record
        while query.follow and not reader.done:
            step = await asyncio.to_thread(reader.run, reader.follow)
            if step is None:
                return
            records, idle = step
            for record in records:
                yield record
            if idle and not reader.done:
                await asyncio.sleep(POLL_SECONDS)
    finally:
        reader.close()
