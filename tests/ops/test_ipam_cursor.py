"""The next-fit cursor: dynamic addresses follow one sequence whether or not the
daemon restarts, a static lease never moves the (persisted) cursor, and a released
address is not handed out again before the pool wraps."""

from __future__ import annotations

import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from tests.ops.daemon import Daemon
from tests.ops.helpers import create, net


async def _dynamic(d: Daemon, name: str) -> str:
    c = await create(d, name)
    return c.networks[0].ip_address


@pytest.mark.parametrize("restart", [False, True], ids=["same-daemon", "restarted"])
async def test_dynamic_sequence_ignores_static_leases_and_restarts(daemon: Daemon,
                                                                   restart: bool) -> None:
    got = [await _dynamic(daemon, "a"), await _dynamic(daemon, "b")]
    static = await create(daemon, "s", networks=[net("sheep0", ip="10.20.0.100")])
    assert static.networks[0].ip_address == "10.20.0.100"
    await daemon.api.RemoveContainer(pb.RemoveContainerRequest(id="a", force=True))
    if restart:
        await daemon.restart()
    got += [await _dynamic(daemon, "c"), await _dynamic(daemon, "d")]
    assert got == ["10.20.0.2", "10.20.0.3", "10.20.0.4", "10.20.0.5"]
