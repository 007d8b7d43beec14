"""SIGTERM with event streams open: the streams end with a status the client can read,
and the daemon does not sit out the drain period for them."""

from __future__ import annotations

import signal
import threading
import time

import grpc
import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from sheep_runtime.daemon import DRAIN_SECONDS
from tests.sandbox import Sandbox

pytestmark = pytest.mark.kernel


def test_sigterm_ends_event_streams_and_does_not_wait_the_drain(box: Sandbox) -> None:
    streams = [box.api.WatchEvents(pb.WatchEventsRequest()) for _ in range(3)]
    box.run("/bin/sleep", "600", name="busy")  # the streams are live: they see this
    endings: list[grpc.RpcError] = []

    def drain(stream: grpc.Future) -> None:
        try:
            for _ in stream:
                pass
        except grpc.RpcError as e:
            endings.append(e)

    readers = [threading.Thread(target=drain, args=(s,)) for s in streams]
    for r in readers:
        r.start()
    assert box.proc is not None
    t0 = time.monotonic()
    box.proc.send_signal(signal.SIGTERM)
    # Waiting the drain out would take DRAIN_SECONDS; the daemon must be gone before.
    assert box.proc.wait(timeout=DRAIN_SECONDS - 1) == 0
    print(f"sheepd exited {time.monotonic() - t0:.2f}s after SIGTERM with 3 streams open")
    box.proc = None
    for r in readers:
        r.join(timeout=10)
    assert len(endings) == 3
    for e in endings:
        assert e.code() == grpc.StatusCode.UNAVAILABLE, e
        assert "shutting down" in (e.details() or ""), e.details()
