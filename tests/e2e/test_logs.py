"""Logs through a real sheepd: stdout and stderr marked and timed, tail and since, a
follow that streams a running container's output and ends with it, rotation that
keeps a chatty container within its limits, and follows ended at shutdown."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sheep.runtime.v1 import runtime_pb2 as pb

from tests.e2e.test_containers import wait_state
from tests.sandbox import CONTAINER_PYTHON, Sandbox

pytestmark = pytest.mark.kernel

NONE = {"network_mode": "none"}
OUT, ERR = pb.LogEntry.STDOUT, pb.LogEntry.STDERR


def ns(e: pb.LogEntry) -> int:
    return e.time.seconds * 10**9 + e.time.nanos


def log_sizes(directory: Path) -> list[int]:
    """The sizes of the log files (one that the logger rotates away meanwhile is left
    out: it is counted under its new name, or was dropped)."""
    sizes = []
    for p in directory.glob("log*"):
        with contextlib.suppress(FileNotFoundError):
            sizes.append(p.stat().st_size)
    return sizes


def logs(box: Sandbox, ref: str, **fields: object) -> list[pb.LogEntry]:
    return list(box.api.Logs(pb.LogsRequest(id=ref, **fields), timeout=30))  # type: ignore[arg-type]


def test_stdout_and_stderr_are_marked_with_increasing_times(box: Sandbox) -> None:
    before = time.time_ns()
    c = box.run("/bin/sh", "-c", "echo out1; echo err1 >&2; echo out2; echo err2 >&2",
                name="both", **NONE)
    wait_state(box, c.id, pb.Container.EXITED)
    got = logs(box, "both")
    assert [e.data for e in got if e.stream == OUT] == [b"out1\n", b"out2\n"]
    assert [e.data for e in got if e.stream == ERR] == [b"err1\n", b"err2\n"]
    times = [ns(e) for e in got]
    assert before < times[0] and times == sorted(times) and times[-1] < time.time_ns()
    assert not any(e.partial for e in got)
    assert [e.data for e in logs(box, "both", streams=[ERR])] == [b"err1\n", b"err2\n"]


def test_tail_and_since(box: Sandbox) -> None:
    c = box.run("/bin/sh", "-c", "for i in 1 2 3 4 5; do echo line$i; sleep 0.05; done",
                name="lines", **NONE)
    wait_state(box, c.id, pb.Container.EXITED)
    every = logs(box, "lines")
    assert [e.data for e in every] == [b"line%d\n" % i for i in range(1, 6)]
    assert [e.data for e in logs(box, "lines", tail=2)] == [b"line4\n", b"line5\n"]
    third = every[2].time
    since = logs(box, "lines", since=Timestamp(seconds=third.seconds, nanos=third.nanos))
    assert [e.data for e in since] == [b"line3\n", b"line4\n", b"line5\n"]
    with pytest.raises(grpc.RpcError) as e:
        logs(box, "lines", tail=-1)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_follow_streams_a_running_container_and_ends_when_it_exits(box: Sandbox) -> None:
    c = box.run("/bin/sh", "-c", "trap 'echo bye >&2; exit 0' USR1; echo ready; "
                "while :; do sleep 0.05; done", name="talker", **NONE)
    stream = box.api.Logs(pb.LogsRequest(id="talker", follow=True), timeout=60)
    first = next(stream)
    assert (first.stream, first.data) == (OUT, b"ready\n")
    assert box.api.Inspect(pb.InspectRequest(id=c.id)).state == pb.Container.RUNNING
    os.kill(c.pid, signal.SIGUSR1)
    rest = list(stream)  # ends: the container exited
    assert [(e.stream, e.data) for e in rest] == [(ERR, b"bye\n")]
    assert wait_state(box, c.id, pb.Container.EXITED).exit_code == 0


def test_output_while_the_daemon_is_down_is_logged(box: Sandbox) -> None:
    c = box.run("/bin/sh", "-c", "trap 'echo while down; exit 3' USR1; echo before; "
                "while :; do sleep 0.05; done", name="survivor", **NONE)
    stream = box.api.Logs(pb.LogsRequest(id="survivor", follow=True), timeout=60)
    assert next(stream).data == b"before\n"  # its trap is set
    stream.cancel()
    box.kill()  # SIGKILL: the shim and the logger are no children of the daemon
    os.kill(c.pid, signal.SIGUSR1)
    box.start()
    assert wait_state(box, c.id, pb.Container.EXITED).exit_code == 3
    assert [e.data for e in logs(box, "survivor")] == [b"before\n", b"while down\n"]


def test_a_chatty_container_stays_within_its_log_limits(box: Sandbox) -> None:
    script = "for i in range(100000): print(f'chatty line {i:06d}')"
    c = box.run(CONTAINER_PYTHON, "-c", script, name="chatty",
                log=pb.LogConfig(max_bytes=8192, max_files=3), **NONE)
    assert (c.log.max_bytes, c.log.max_files) == (8192, 3)
    log_dir = Path(c.log_path).parent
    cap = 8192 * 3
    while box.api.Inspect(pb.InspectRequest(id=c.id)).state == pb.Container.RUNNING:
        sizes = log_sizes(log_dir)
        assert len(sizes) <= 3 and sum(sizes) <= cap, sizes
        time.sleep(0.01)
    assert sorted(p.name for p in log_dir.glob("log*")) == ["log", "log.1", "log.2"]
    assert sum(p.stat().st_size for p in log_dir.glob("log*")) <= cap
    got = [e.data for e in logs(box, "chatty")]
    assert got == [b"chatty line %06d\n" % i for i in range(100000 - len(got), 100000)]
    assert len(got) > 2 * 8192 // 60
    default = box.run("/bin/true", name="default", **NONE)
    assert (default.log.max_bytes, default.log.max_files) == (10 * 1024 * 1024, 4)


def test_sigterm_ends_a_follow_with_unavailable(box: Sandbox) -> None:
    box.run("/bin/sh", "-c", "echo ready; exec sleep 600", name="quiet", **NONE)
    stream = box.api.Logs(pb.LogsRequest(id="quiet", follow=True))
    assert next(stream).data == b"ready\n"  # the follow is open on the daemon's side
    ending: list[grpc.RpcError] = []

    def drain() -> None:
        try:
            for _ in stream:
                pass
        except grpc.RpcError as e:
            ending.append(e)

    reader = threading.Thread(target=drain)
    reader.start()
    assert box.proc is not None
    box.proc.send_signal(signal.SIGTERM)
    assert box.proc.wait(timeout=20) == 0
    box.proc = None
    reader.join(timeout=10)
    assert len(ending) == 1 and ending[0].code() == grpc.StatusCode.UNAVAILABLE, ending
