"""Live kernel state: what someone else breaks is noticed, repaired, counted and
streamed. Each outside action is done with the real tool (`ip`) in the sandbox."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator

import grpc
import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from tests.sandbox import Sandbox, in_netns

pytestmark = pytest.mark.kernel


class EventLog:
    """A live WatchEvents stream collected in the background."""

    def __init__(self, box: Sandbox, **filters: str) -> None:
        self.events: list[pb.Event] = []
        self._stream = box.api.WatchEvents(pb.WatchEventsRequest(filters=filters))
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for e in self._stream:
                self.events.append(e)
        except grpc.RpcError:
            pass

    def wait_for(self, type_: str, timeout: float = 5, **attrs: str) -> pb.Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in list(self.events):
                if e.type == type_ and all(getattr(e, k, None) == v or e.attributes.get(k) == v
                                           for k, v in attrs.items()):
                    return e
            time.sleep(0.02)
        raise AssertionError(f"no {type_} {attrs} in {[e.type for e in self.events]}")

    def close(self) -> None:
        self._stream.cancel()


@pytest.fixture
def events(box: Sandbox) -> Iterator[EventLog]:
    log = EventLog(box)
    time.sleep(0.1)  # the stream is subscribed before the test acts
    yield log
    log.close()


def metric(box: Sandbox, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in box.metrics().splitlines():
        m = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if m and m[1] == name and ",".join(sorted((m[2] or "").split(","))) == want:
            return float(m[3])
    return 0.0


def eventually(check: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def link(box: Sandbox, name: str) -> dict[str, object] | None:
    out = box.host("ip", "-j", "-d", "link", "show", "dev", name)
    return json.loads(out.stdout)[0] if out.returncode == 0 else None


def reaches_gateway(c: pb.Container) -> bool:
    return in_netns(c.netns_path, "ping", "-c1", "-W2", c.networks[0].gateway).returncode == 0


def test_deleted_host_veth_is_recreated_with_same_address(box: Sandbox,
                                                          events: EventLog) -> None:
    c = box.run("/bin/sleep", "300")
    a = c.networks[0]
    box.host("ip", "link", "del", a.host_interface, check=True)
    events.wait_for("link.missing", container_id=c.id)
    events.wait_for("link.repaired", container_id=c.id)
    again = box.api.Inspect(pb.InspectRequest(id=c.id)).networks[0]
    assert (again.ip_address, again.mac_address, again.link_state) == \
        (a.ip_address, a.mac_address, "up")
    assert link(box, a.host_interface)["master"] == box.bridge  # type: ignore[index]
    assert reaches_gateway(c)
    assert metric(box, "sheep_repairs_total", kind="link") >= 1


def test_an_unconfigured_container_side_is_replugged_at_start(box: Sandbox) -> None:
    """What a re-plug cut short by a SIGKILL leaves: the host veth on the bridge, the
    container's end without its address. The next start notices and plugs it again."""
    c = box.run("/bin/sleep", "300")
    in_netns(c.netns_path, "ip", "addr", "flush", "dev", "eth0", check=True)
    assert not reaches_gateway(c)
    box.restart()
    eventually(lambda: reaches_gateway(c), timeout=10)
    assert metric(box, "sheep_repairs_total", kind="link") >= 1
    again = box.api.Inspect(pb.InspectRequest(id=c.id)).networks[0]
    assert (again.ip_address, again.mac_address) == (c.networks[0].ip_address,
                                                     c.networks[0].mac_address)


def test_veth_taken_off_bridge_or_down_is_put_back(box: Sandbox, events: EventLog) -> None:
    c = box.run("/bin/sleep", "300")
    host_if = c.networks[0].host_interface
    box.host("ip", "link", "set", host_if, "nomaster", check=True)
    eventually(lambda: link(box, host_if).get("master") == box.bridge)  # type: ignore[union-attr]
    box.host("ip", "link", "set", host_if, "down", check=True)
    events.wait_for("link.down", container_id=c.id)
    eventually(lambda: "UP" in link(box, host_if)["flags"])  # type: ignore[index]
    events.wait_for("link.repaired", container_id=c.id)
    assert reaches_gateway(c)


@pytest.mark.parametrize("breakage", [
    ("ip", "link", "del", "{bridge}"),
    ("ip", "addr", "flush", "dev", "{bridge}"),
    ("ip", "link", "set", "{bridge}", "down"),
])
def test_broken_bridge_is_restored(box: Sandbox, events: EventLog,
                                   breakage: tuple[str, ...]) -> None:
    cs = [box.run("/bin/sleep", "300") for _ in range(2)]
    box.host(*(arg.format(bridge=box.bridge) for arg in breakage), check=True)
    events.wait_for("bridge.repaired")
    def healed() -> bool:
        b = link(box, box.bridge)
        return bool(b) and "UP" in b["flags"] and all(  # type: ignore[index,operator]
            (link(box, c.networks[0].host_interface) or {}).get("master") == box.bridge
            for c in cs)
    eventually(healed)
    addrs = box.host("ip", "-j", "addr", "show", "dev", box.bridge).stdout
    assert "10.20.0.1" in addrs
    assert all(reaches_gateway(c) for c in cs)
    assert in_netns(cs[0].netns_path, "ping", "-c1", "-W2",
                    cs[1].networks[0].ip_address).returncode == 0
    assert metric(box, "sheep_repairs_total", kind="bridge") >= 1


def test_event_stream_filters_and_replay(box: Sandbox) -> None:
    start = time.time()
    a = box.run("/bin/sleep", "300", name="ev-a")
    box.run("/bin/sleep", "300", name="ev-b")
    since = pb.WatchEventsRequest(filters={"container": "ev-a", "type": "container."})
    since.since.FromNanoseconds(int((start - 1) * 1e9))
    stream = box.api.WatchEvents(since, timeout=3)
    seen = []
    with pytest.raises(grpc.RpcError):  # DEADLINE_EXCEEDED ends the replayed stream
        for e in stream:
            seen.append((e.type, e.container_id))
    assert seen == [("container.created", a.id), ("container.started", a.id)]


def test_netlink_events_are_counted(box: Sandbox) -> None:
    box.run("/bin/sleep", "300")
    eventually(lambda: metric(box, "sheep_netlink_events_total", type="link.new") > 0)
