"""Container logs without runc: the logger (`process/logger.py`, run as a real process
on fifos, set up the way `shim.sh` does) and the reader (`process/logs.py`) over log
files, those the logger writes and hand-made ones."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sheep_runtime.model import LogQuery, LogRecord, LogStream
from sheep_runtime.process import logs
from sheep_runtime.process.logger import LINE_MAX, timestamp
from sheep_runtime.process.logs import parse_record, parse_time, read_logs
from sheep_runtime.process.records import log_tail
from sheep_runtime.process.spawn import LOGGER_PATH

# What shim.sh does around `runc run`, with "$@" as the container.
HARNESS = r"""
d=$1 py=$2 logger=$3 max_bytes=$4 max_files=$5; shift 5
exec 5<>"$d/stdout.fifo" 6<>"$d/stderr.fifo"
"$py" -I -S "$logger" "$d" "$max_bytes" "$max_files" \
    3<"$d/stdout.fifo" 4<"$d/stderr.fifo" 5>&- 6>&- &
echo $! >"$d/pid.logger"
"$@" >&5 2>&6 5>&- 6>&-
exec 5>&- 6>&-
wait $!
echo "0 1" >"$d/exit"
"""
# The "container": writes each [fd, text] JSON line of its stdin to fd 1 or 2.
WRITER = r"""
import json, os, sys
for line in sys.stdin:
    fd, text = json.loads(line)
    os.write(fd, text.encode())
"""
RECORD = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) [FP] ")


class Container:
    """A writer process whose output a real logger logs into `dir`."""

    def __init__(self, directory: Path, *, max_bytes: int = 1 << 20, max_files: int = 4
                 ) -> None:
        self.dir = directory
        directory.mkdir(exist_ok=True)
        for fifo in ("stdout.fifo", "stderr.fifo"):
            os.mkfifo(directory / fifo)
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", HARNESS, "sh", str(directory), sys.executable,
             str(LOGGER_PATH), str(max_bytes), str(max_files), sys.executable, "-c", WRITER],
            stdin=subprocess.PIPE)

    def write(self, fd: int, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps([fd, text]).encode() + b"\n")
        self.proc.stdin.flush()

    def exit(self) -> None:
        """The command exits; returns once the logger has written everything."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    c = Container(tmp_path / "c")
    yield c
    c.kill()


def records(directory: Path) -> list[LogRecord]:
    """Every record of the log files, oldest first, checking each line's format."""
    files = sorted(directory.glob("log.*"), key=lambda p: -int(p.suffix[1:]))
    out = []
    for path in [*files, directory / "log"]:
        for line in path.read_bytes().splitlines():
            assert RECORD.match(line), line
            r = parse_record(line)
            assert r is not None
            out.append(r)
    return out


def wait_logged(directory: Path, data: bytes) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (directory / "log").exists() and data in (directory / "log").read_bytes():
            return
        time.sleep(0.01)
    raise AssertionError(f"{data!r} was never logged")


def collect(directory: Path, query: LogQuery) -> list[LogRecord]:
    async def run() -> list[LogRecord]:
        return [r async for r in read_logs(directory, query)]
    return asyncio.run(run())


# -- the logger ---------------------------------------------------------------------


def test_marks_each_line_with_its_stream_and_time(container: Container) -> None:
    before = time.time_ns()
    container.write(1, "one\n")
    container.write(2, "oops\n")
    container.write(1, "two\nthree\n")
    container.write(2, "\n")
    container.exit()
    got = records(container.dir)
    assert [(r.stream, r.data, r.partial) for r in got if r.stream == "stdout"] == [
        ("stdout", b"one\n", False), ("stdout", b"two\n", False),
        ("stdout", b"three\n", False)]
    assert [r.data for r in got if r.stream == "stderr"] == [b"oops\n", b"\n"]
    times = [r.time_ns for r in got]
    assert before <= times[0] and times == sorted(times) and times[-1] <= time.time_ns()


def test_long_lines_are_split_and_an_unterminated_tail_is_partial(
        container: Container) -> None:
    container.write(1, "x" * (2 * LINE_MAX + 100) + "\n")
    container.write(1, "y" * LINE_MAX + "\n")  # exactly the limit: one full line
    container.write(2, "no newline")
    container.exit()
    got = records(container.dir)
    out = [(len(r.data), r.partial) for r in got if r.stream == "stdout"]
    assert out == [(LINE_MAX, True), (LINE_MAX, True), (101, False), (LINE_MAX + 1, False)]
    assert b"".join(r.data for r in got if r.stream == "stdout") == (
        b"x" * (2 * LINE_MAX + 100) + b"\n" + b"y" * LINE_MAX + b"\n")
    assert [(r.data, r.partial) for r in got if r.stream == "stderr"] == [
        (b"no newline", True)]


@pytest.mark.parametrize("max_files", [1, 3])
def test_rotation_caps_the_files_and_their_size(tmp_path: Path, max_files: int) -> None:
    c = Container(tmp_path / "c", max_bytes=1024, max_files=max_files)
    try:
        lines = [f"line {i:04d} {'z' * 30}\n" for i in range(400)]
        for i in range(0, len(lines), 20):
            c.write(1, "".join(lines[i:i + 20]))
        c.exit()
    finally:
        c.kill()
    names = sorted(p.name for p in c.dir.glob("log*"))
    assert names == ["log", *(f"log.{n}" for n in range(1, max_files))]
    assert all(0 < (c.dir / n).stat().st_size <= 1024 for n in names)
    # What is kept is the newest output, nothing missing in between.
    kept = [r.data.decode() for r in records(c.dir)]
    assert kept == lines[-len(kept):]
    assert len(kept) >= (max_files - 1) * (1024 // 80)


def test_max_bytes_bounds_a_file_even_for_long_lines(tmp_path: Path) -> None:
    c = Container(tmp_path / "c", max_bytes=1024, max_files=2)
    try:
        c.write(1, "w" * 5000 + "\n")
        c.exit()
    finally:
        c.kill()
    assert all(p.stat().st_size <= 1024 for p in c.dir.glob("log*"))
    got = records(c.dir)
    assert got[-1].data.endswith(b"w\n") and all(r.partial for r in got[:-1])


def test_ignores_hup_int_term_and_pipe(container: Container) -> None:
    container.write(1, "before\n")
    wait_logged(container.dir, b"before")  # then it runs, its dispositions set
    pid = int((container.dir / "pid.logger").read_text())
    ignored = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            ignored = int(line.split()[1], 16)
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
        assert ignored & (1 << (sig - 1)), sig
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        os.kill(pid, sig)
    container.write(1, "after\n")
    container.exit()
    assert [r.data for r in records(container.dir)] == [b"before\n", b"after\n"]


def test_output_of_a_command_that_exited_at_once_is_kept(tmp_path: Path) -> None:
    # The command is gone before the logger (a Python start) has opened anything.
    d = tmp_path / "c"
    d.mkdir()
    for fifo in ("stdout.fifo", "stderr.fifo"):
        os.mkfifo(d / fifo)
    subprocess.run(["/bin/sh", "-c", HARNESS, "sh", str(d), sys.executable,
                    str(LOGGER_PATH), "4096", "2", "/bin/sh", "-c", "echo quick; echo err >&2"],
                   check=True, timeout=30)
    assert sorted((r.stream, r.data) for r in records(d)) == [
        ("stderr", b"err\n"), ("stdout", b"quick\n")]


# -- the format -----------------------------------------------------------------------


def test_parse_record() -> None:
    ns = 1_796_205_600_123_456_789
    assert timestamp(ns) == b"2026-12-02T10:00:00.123456789Z"
    assert parse_time(timestamp(ns)) == ns
    assert parse_time(b"2026-12-02T10:00:00Z") == ns - 123_456_789
    assert parse_time(b"2026-12-02T10:00:00.5Z") == ns - 123_456_789 + 500_000_000
    assert parse_record(timestamp(ns) + b" stderr F hi there") == LogRecord(
        "stderr", ns, b"hi there\n")
    assert parse_record(timestamp(ns) + b" stdout P ") == LogRecord("stdout", ns, b"", True)
    for bad in (b"", b"plain text", timestamp(ns) + b" stdin F x",
                timestamp(ns) + b" stdout X x", b"2026-13-02T10:00:00Z stdout F x",
                b"yesterday stdout F x", timestamp(ns) + b" stdout F"):
        assert parse_record(bad) is None, bad


def test_log_tail_shows_the_data_and_lines_of_the_shim(tmp_path: Path) -> None:
    (tmp_path / "log").write_bytes(
        b"sh: 1: cannot open fifo\n" + timestamp(1) + b" stderr F runc run failed: boom\n")
    assert log_tail(tmp_path) == "sh: 1: cannot open fifo; runc run failed: boom"
    (tmp_path / "log").write_bytes(b"".join(
        timestamp(i) + b" stdout F " + b"%04d" % i + b"\n" for i in range(1000)))
    tail = log_tail(tmp_path, limit=50)
    assert tail.endswith("0998; 0999") and "stdout" not in tail and len(tail) <= 50
    assert log_tail(tmp_path / "missing") == ""


# -- the reader -----------------------------------------------------------------------

STREAMS: tuple[LogStream, LogStream] = ("stdout", "stderr")


def write_files(directory: Path, counts: list[int]) -> list[LogRecord]:
    """Log files log.N ... log holding counts[0] ... counts[-1] records at times 1, 2,
    ... s (streams alternating); those records, oldest first."""
    made, t = [], 0
    names = [f"log.{n}" for n in range(len(counts) - 1, 0, -1)] + ["log"]
    for name, count in zip(names, counts, strict=True):
        with open(directory / name, "wb") as f:
            for _ in range(count):
                t += 1
                r = LogRecord(STREAMS[t % 2], t * 10**9, b"r%d\n" % t)
                f.write(b"%s %s F r%d\n" % (timestamp(r.time_ns), r.stream.encode(), t))
                made.append(r)
    return made


def test_reads_the_rotated_files_oldest_first(tmp_path: Path) -> None:
    made = write_files(tmp_path, [10, 10, 10])
    with open(tmp_path / "log", "ab") as f:  # what the shim itself may have written
        f.write(b"sh: something went wrong\n" + timestamp(31 * 10**9) + b" stdout P half")
    assert collect(tmp_path, LogQuery()) == made  # a line being written is not there yet


@pytest.mark.parametrize("tail", [0, 1, 5, 10, 11, 25, 30, 100])
def test_tail_across_rotated_files(tmp_path: Path, tail: int) -> None:
    made = write_files(tmp_path, [10, 10, 10])
    assert collect(tmp_path, LogQuery(tail=tail)) == made[len(made) - tail:][:tail]


def test_since_until_streams_and_tail_together(tmp_path: Path) -> None:
    made = write_files(tmp_path, [10, 10, 10])
    s = 10**9
    assert collect(tmp_path, LogQuery(since_ns=12 * s)) == made[11:]
    assert collect(tmp_path, LogQuery(since_ns=12 * s, until_ns=15 * s)) == made[11:14]
    assert collect(tmp_path, LogQuery(until_ns=3 * s)) == made[:2]
    stderr = [r for r in made if r.stream == "stderr"]
    assert collect(tmp_path, LogQuery(streams=frozenset({"stderr"}))) == stderr
    assert collect(tmp_path, LogQuery(streams=frozenset({"stderr"}), tail=3)) == stderr[-3:]
    assert collect(tmp_path, LogQuery(since_ns=28 * s, tail=10)) == made[27:]
    assert collect(tmp_path, LogQuery(until_ns=20 * s, tail=2)) == made[17:19]
    assert collect(tmp_path, LogQuery(since_ns=99 * s)) == []


def test_no_log_at_all(tmp_path: Path) -> None:
    assert collect(tmp_path, LogQuery(tail=3)) == []
    assert collect(tmp_path / "gone", LogQuery(follow=True)) == []  # no dir: nothing to wait for


def test_a_tail_reads_backwards_not_the_whole_log(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    line = timestamp(10**18) + b" stdout F " + b"q" * 60 + b"\n"
    with open(tmp_path / "log", "wb") as f:
        for _ in range(40):  # 40 MB
            f.write(line * (1_000_000 // len(line)))
    read = 0
    pread = os.pread

    def counting(fd: int, n: int, offset: int) -> bytes:
        nonlocal read
        read += n
        return pread(fd, n, offset)

    monkeypatch.setattr(logs.os, "pread", counting)
    assert collect(tmp_path, LogQuery(tail=10)) == [parse_record(line[:-1])] * 10
    assert read < 1_000_000


# -- following --------------------------------------------------------------------------


async def next_records(stream: AsyncIterator[LogRecord], n: int) -> list[LogRecord]:
    return [await asyncio.wait_for(anext(stream), 30) for _ in range(n)]


async def test_follow_gets_new_lines_across_rotations_and_ends_at_the_exit(
        tmp_path: Path) -> None:
    c = Container(tmp_path / "c", max_bytes=1024, max_files=2)
    try:
        c.write(1, "first\n")
        await asyncio.to_thread(wait_logged, c.dir, b"first")
        stream = read_logs(c.dir, LogQuery(follow=True, tail=1))
        assert [r.data for r in await next_records(stream, 1)] == [b"first\n"]
        sent = []
        for batch in range(30):  # ~50 bytes a record: a rotation every ~20 records
            lines = [f"batch {batch:02d} line {i} {'-' * 8}\n" for i in range(5)]
            c.write(1 + batch % 2, "".join(lines))
            sent += lines
            got = await next_records(stream, len(lines))
            assert [r.data.decode() for r in got] == lines
            assert {r.stream for r in got} == {STREAMS[batch % 2]}
        assert len(list(c.dir.glob("log*"))) == 2  # it did rotate (and drop)
        c.write(1, "last\n")
        c.exit()
        rest = [r.data async for r in stream]  # ends: the exit record is there
        assert rest == [b"last\n"]
    finally:
        c.kill()


async def test_follow_waits_for_the_log_and_ends_when_the_dir_is_removed(
        tmp_path: Path) -> None:
    d = tmp_path / "c"
    d.mkdir()
    stream = read_logs(d, LogQuery(follow=True))
    reader = asyncio.ensure_future(next_records(stream, 1))
    await asyncio.sleep(0.1)
    assert not reader.done()
    (d / "log").write_bytes(timestamp(5) + b" stdout F hello\n")
    assert [r.data for r in await reader] == [b"hello\n"]
    shutil.rmtree(d)
    assert [r async for r in stream] == []


async def test_follow_stops_at_until(tmp_path: Path) -> None:
    write_files(tmp_path, [3])
    got = [r async for r in read_logs(tmp_path, LogQuery(follow=True, until_ns=2 * 10**9))]
    assert [r.time_ns for r in got] == [10**9]  # no exit record: `until` ended it


async def test_closing_a_follow_closes_its_files(tmp_path: Path) -> None:
    write_files(tmp_path, [3, 3])
    before = len(os.listdir("/proc/self/fd"))
    stream = read_logs(tmp_path, LogQuery(follow=True))
    assert len(await next_records(stream, 6)) == 6
    assert len(os.listdir("/proc/self/fd")) > before
    await stream.aclose()
    assert len(os.listdir("/proc/self/fd")) == before
