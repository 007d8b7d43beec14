"""Logs through the API over the fakes: the conversions both ways, what reaches the
backend (a follow only while the container runs), and the status of each refusal."""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sheep.runtime.v1 import runtime_pb2 as pb

from tests.ops.daemon import Daemon
from tests.ops.helpers import HANG_GUARD, create, rpc_error, wait_state

S = 10**9
OUT, ERR = pb.LogEntry.STDOUT, pb.LogEntry.STDERR


async def entries(d: Daemon, **fields: object) -> list[tuple[int, int, bytes, bool]]:
    """(stream, time ns, data, partial) of every entry of a Logs call."""
    out = []
    async with asyncio.timeout(HANG_GUARD):
        async for e in d.api.Logs(pb.LogsRequest(**fields)):  # type: ignore[arg-type]
            out.append((e.stream, e.time.seconds * S + e.time.nanos, e.data, e.partial))
    return out


async def test_logs_marks_streams_and_times(daemon: Daemon) -> None:
    c = await create(daemon, "web", network_mode="none")
    procs = daemon.machine.processes
    procs.write_log(c.id, b"hello\n", time_ns=1 * S + 5)
    procs.write_log(c.id, b"oops\n", "stderr", time_ns=2 * S)
    procs.write_log(c.id, b"no newline", time_ns=3 * S)
    assert await entries(daemon, id="web") == [
        (OUT, S + 5, b"hello\n", False), (ERR, 2 * S, b"oops\n", False),
        (OUT, 3 * S, b"no newline", True)]
    assert procs.log_queries[-1].follow is False and procs.log_queries[-1].tail is None


async def test_tail_since_until_and_streams(daemon: Daemon) -> None:
    c = await create(daemon, "web", network_mode="none")
    for t in range(1, 11):
        daemon.machine.processes.write_log(c.id, b"%d\n" % t, "stdout" if t % 2 else "stderr",
                                           time_ns=t * S)

    async def times(**fields: object) -> list[int]:
        return [t // S for _, t, _, _ in await entries(daemon, id=c.id, **fields)]

    assert await times(tail=3) == [8, 9, 10]
    assert await times(tail=0) == []
    assert await times(since=Timestamp(seconds=4), until=Timestamp(seconds=7)) == [4, 5, 6]
    assert await times(streams=[ERR], tail=2) == [8, 10]
    assert await times(streams=[OUT, ERR], since=Timestamp(seconds=9)) == [9, 10]


async def test_refusals(daemon: Daemon) -> None:
    await create(daemon, "web", network_mode="none")
    for fields, code in [
        ({"id": "web", "tail": -1}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"id": "web", "streams": [pb.LogEntry.STREAM_UNSPECIFIED]},
         grpc.StatusCode.INVALID_ARGUMENT),
        ({"id": "web", "since": Timestamp(seconds=-5)}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"id": "nope"}, grpc.StatusCode.NOT_FOUND),
        ({"id": ""}, grpc.StatusCode.INVALID_ARGUMENT),
    ]:
        e = await rpc_error(entries(daemon, **fields))
        assert e.code() == code, (fields, e)


async def test_follow_streams_new_lines_until_the_container_exits(daemon: Daemon) -> None:
    c = await create(daemon, "web", network_mode="none")
    procs = daemon.machine.processes
    procs.write_log(c.id, b"old\n")
    call = daemon.api.Logs(pb.LogsRequest(id="web", follow=True))
    async with asyncio.timeout(HANG_GUARD):
        assert (await call.read()).data == b"old\n"
        procs.write_log(c.id, b"new\n", "stderr")
        e = await call.read()
        assert (e.stream, e.data) == (ERR, b"new\n")
        procs.write_log(c.id, b"last\n")
        procs.exit(c.id, 0)
        assert (await call.read()).data == b"last\n"
        assert await call.read() is grpc.aio.EOF
    assert procs.log_queries[-1].follow is True


async def test_follow_of_a_container_that_is_not_running_ends(daemon: Daemon) -> None:
    c = await create(daemon, "web", network_mode="none")
    daemon.machine.processes.write_log(c.id, b"bye\n")
    daemon.machine.processes.exit(c.id, 3)
    await wait_state(daemon, "web", pb.Container.EXITED)
    assert [data for _, _, data, _ in await entries(daemon, id="web", follow=True)] == [
        b"bye\n"]
    assert daemon.machine.processes.log_queries[-1].follow is False
