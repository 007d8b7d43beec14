"""Generic fault sweeps: fail each mutating backend call of an operation in turn and
prove what is left. N runs 0, 1, 2, ... until the operation succeeds without reaching
call N, so every mutating call is failed once and the sweep needs no list of steps."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
from sheep.runtime.v1 import runtime_pb2 as pb

from tests.fakes import INJECTED
from tests.ops.daemon import Daemon
from tests.ops.helpers import assert_no_orphans, changes, collect_leaks

MAX_CALLS = 100
Op = Callable[[], Awaitable[object]]


async def _fail_nth(d: Daemon, n: int, op: Op) -> grpc.aio.AioRpcError | None:
    """Run `op` with its `n`-th mutating call failing; its error, or None if it
    succeeded (the fault then stays armed if `op` made fewer calls)."""
    d.machine.calls.fail_nth(n)
    try:
        await op()
    except grpc.aio.AioRpcError as e:
        assert not d.machine.calls.armed, f"failed before the injected fault: {e.details()}"
        return e
    return None


def _check_injected(d: Daemon, e: grpc.aio.AioRpcError) -> str:
    failed = d.machine.calls.injected[-1]
    assert e.code() == grpc.StatusCode.INTERNAL, f"{failed}: {e.code()} {e.details()}"
    assert INJECTED in (e.details() or ""), f"{failed}: reported {e.details()!r}"
    return failed


async def _same(d: Daemon, expected: dict[str, object], what: str) -> None:
    await d.rt.firewall.settled()
    diff = changes(expected, await d.snapshot())
    assert not diff, what + ":\n" + "\n".join(diff)


async def _serves(d: Daemon) -> None:
    await d.api.Version(pb.VersionRequest())


async def all_or_nothing(d: Daemon, op: Op) -> list[str]:
    """Each failure of `op` is INTERNAL (the injected error) and leaves the state as
    it was; the daemon keeps serving. Returns the mutating calls of the run that
    succeeded."""
    before = await d.snapshot()
    for n in range(MAX_CALLS):
        mark = d.machine.calls.mark()
        e = await _fail_nth(d, n, op)
        if e is None:
            assert d.machine.calls.armed, (
                f"succeeded although {d.machine.calls.injected[-1]} failed")
            d.machine.calls.disarm()
            return d.machine.calls.since(mark, mutating_only=True)
        failed = _check_injected(d, e)
        await _same(d, before, f"failing {failed} left")
        await _serves(d)
    raise AssertionError(f"more than {MAX_CALLS} mutating calls")


async def teardown(d: Daemon, *, setup: Op, op: Op) -> list[str]:
    """Best-effort teardown: `setup` makes the object, `op` removes it with one call
    failing. Then nothing is orphaned that the daemon would not collect (see
    `assert_no_orphans`), the daemon serves, and one retry of `op` (OK, or NOT_FOUND
    if the failed run got rid of the record) plus one pass of the periodic leak
    collection bring the state back to exactly what it was before `setup`. Returns
    the mutating calls of the run that succeeded."""
    base = await d.snapshot()
    for n in range(MAX_CALLS):
        await setup()
        mark = d.machine.calls.mark()
        e = await _fail_nth(d, n, op)
        if e is None and d.machine.calls.armed:
            d.machine.calls.disarm()
            await _same(d, base, "the teardown left")
            return d.machine.calls.since(mark, mutating_only=True)
        failed = d.machine.calls.injected[-1]
        if e is not None:
            _check_injected(d, e)
            await _serves(d)
        try:
            await assert_no_orphans(d)
        except AssertionError as orphan:
            raise AssertionError(f"failing {failed}: {orphan}") from None
        if e is not None:
            try:
                await op()
            except grpc.aio.AioRpcError as retry:
                assert retry.code() == grpc.StatusCode.NOT_FOUND, (
                    f"retry after failing {failed}: {retry.code()} {retry.details()}")
        await collect_leaks(d)
        await _same(d, base, f"failing {failed} left")
    raise AssertionError(f"more than {MAX_CALLS} mutating calls")
