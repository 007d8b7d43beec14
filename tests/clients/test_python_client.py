"""The Python client library (sync and asyncio) against a real sheepd in a sandbox."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from sheep.runtime.v1 import runtime_pb2 as pb
from sheep_client import (
    AlreadyExists,
    AsyncSheepClient,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SheepClient,
    SheepClientError,
    Unavailable,
)

from tests.sandbox import Sandbox

pytestmark = pytest.mark.kernel

SLEEP = ["/bin/sleep", "300"]
NONE = "none"


# -- sync ---------------------------------------------------------------------------------

def test_container_lifecycle(client: SheepClient) -> None:
    c = client.create_container(SLEEP, name="web", env={"GREETING": "hi"},
                                hostname="web-host")
    assert isinstance(c, pb.Container)
    assert c.state == pb.Container.RUNNING and c.pid > 0 and len(c.id) == 64
    assert c.hostname == "web-host" and dict(c.env)["GREETING"] == "hi"
    assert c.networks[0].network == "sheep0" and c.networks[0].ip_address

    for ref in (c.id, c.id[:12], "web"):
        assert client.inspect(ref).id == c.id
    assert [x.id for x in client.list_containers()] == [c.id]
    assert [x.id for x in client.list_containers(filters={"name": "web"})] == [c.id]

    stopped = client.stop_container("web", timeout_seconds=1)
    assert stopped.state == pb.Container.EXITED and stopped.exit_code in (137, 143)
    assert client.list_containers() == []
    assert [x.id for x in client.list_containers(all=True)] == [c.id]

    assert client.remove_container("web") == c.id
    assert client.list_containers(all=True) == []


def test_networks_attach_and_detach(client: SheepClient) -> None:
    net = client.create_network("backend", "10.30.0.0/24")
    assert isinstance(net, pb.Network)
    assert (net.name, net.subnet, net.gateway) == ("backend", "10.30.0.0/24", "10.30.0.1")
    assert {n.name for n in client.list_networks()} == {"sheep0", "backend"}
    assert client.inspect_network("backend").id == net.id

    c = client.create_container(SLEEP, name="app", network_mode=NONE)
    att = client.attach_network("app", "backend", ip="10.30.0.10")
    assert isinstance(att, pb.NetworkAttachment)
    assert (att.network, att.ip_address, att.prefix_length, att.interface_name) == \
        ("backend", "10.30.0.10", 24, "eth0")
    # Idempotent: the same attachment comes back.
    assert client.attach_network("app", "backend").ip_address == "10.30.0.10"
    assert [a.network for a in client.inspect("app").networks] == ["backend"]
    assert list(client.inspect_network("backend").containers) == [c.id]

    client.detach_network("app", "backend")
    assert list(client.inspect("app").networks) == []
    assert client.remove_network("backend") == net.id
    assert {n.name for n in client.list_networks()} == {"sheep0"}
    client.remove_container("app", force=True)


def test_attach_with_ports_publishes_them(client: SheepClient) -> None:
    client.create_container(SLEEP, name="pub", network_mode=NONE)
    att = client.attach_network("pub", "sheep0", ports=["18080:80/tcp"])
    assert [(p.host_port, p.container_port) for p in att.ports] == [(18080, 80)]
    client.remove_container("pub", force=True)


def test_watch_events_yields_typed_events(client: SheepClient) -> None:
    since = time.time()
    c = client.create_container(SLEEP, name="watched")
    client.remove_container("watched", force=True)
    seen: list[pb.Event] = []
    with client.watch_events({"container": c.id}, since=since, duration=15) as events:
        for e in events:
            assert isinstance(e, pb.Event)
            seen.append(e)
            if e.type == "container.removed":
                break
    types = [e.type for e in seen]
    for t in ("container.created", "container.started", "network.attached",
              "container.exited", "container.removed"):
        assert t in types, types
    assert all(e.container_id == c.id for e in seen)
    assert [e.id for e in seen] == sorted(e.id for e in seen)
    assert seen[types.index("container.started")].attributes["pid"] == str(c.pid)


def test_watch_events_live_then_cancel(client: SheepClient) -> None:
    events = client.watch_events({"type": "network."})
    time.sleep(0.3)  # let the daemon subscribe before the event happens
    client.create_network("live", "10.31.0.0/24")
    first = next(events)
    assert (first.type, first.network) == ("network.created", "live")
    events.cancel()
    assert list(events) == []  # ends quietly after a cancel


def test_watch_events_duration_ends_quietly(client: SheepClient) -> None:
    t0 = time.monotonic()
    assert list(client.watch_events({"type": "nothing.ever"}, duration=0.5)) == []
    assert time.monotonic() - t0 < 5


def test_typed_errors(client: SheepClient) -> None:
    with pytest.raises(NotFound) as nf:
        client.inspect("no-such-container")
    assert nf.value.code == grpc.StatusCode.NOT_FOUND
    assert "no-such-container" in nf.value.details
    assert isinstance(nf.value, SheepClientError)

    client.create_container(SLEEP, name="dup", network_mode=NONE)
    with pytest.raises(AlreadyExists) as ae:
        client.create_container(SLEEP, name="dup", network_mode=NONE)
    assert ae.value.code == grpc.StatusCode.ALREADY_EXISTS and "dup" in ae.value.details

    with pytest.raises(InvalidArgument) as ia:
        client.create_container([])
    assert ia.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "command is required" in ia.value.details

    with pytest.raises(FailedPrecondition) as fp:
        client.remove_container("dup")
    assert fp.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "running" in fp.value.details
    client.remove_container("dup", force=True)

    with pytest.raises(NotFound):
        client.remove_network("no-such-network")
    with pytest.raises(TypeError):
        client.create_container("/bin/sleep 30")  # type: ignore[arg-type]


def test_errors_carry_rich_details(client: SheepClient) -> None:
    with pytest.raises(NotFound) as nf:
        client.inspect("ghost")
    assert nf.value.reason == "CONTAINER_NOT_FOUND"
    assert nf.value.domain == "sheep.runtime.v1"
    assert nf.value.resource is not None
    assert (nf.value.resource.type, nf.value.resource.name) == ("container", "ghost")

    with pytest.raises(InvalidArgument) as ia:
        client.create_container([])
    assert ia.value.field == "command"
    assert [v.field for v in ia.value.field_violations] == ["command"]
    assert ia.value.field_violations[0].description == ia.value.details
    assert ia.value.reason == "INVALID_COMMAND"

    client.create_container(SLEEP, name="busy", network_mode=NONE)
    with pytest.raises(AlreadyExists) as ae:
        client.create_container(SLEEP, name="busy", network_mode=NONE)
    assert ae.value.resource is not None
    assert (ae.value.resource.type, ae.value.resource.name) == ("container", "busy")
    assert ae.value.reason == "NAME_TAKEN"

    with pytest.raises(FailedPrecondition) as fp:
        client.remove_container("busy")
    assert fp.value.reason == "CONTAINER_RUNNING"
    assert [(v.type, v.subject) for v in fp.value.precondition_violations] == \
        [("CONTAINER_RUNNING", "container/busy")]
    client.remove_container("busy", force=True)

    with pytest.raises(NotFound) as nn:
        client.inspect_network("nowhere")
    assert nn.value.resource is not None
    assert (nn.value.resource.type, nn.value.resource.name) == ("network", "nowhere")


def test_unavailable_when_no_daemon_listens(tmp_path: Path) -> None:
    with SheepClient(socket=str(tmp_path / "absent.sock"), timeout=5) as c:
        with pytest.raises(Unavailable) as e:
            c.version()
        assert e.value.code == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(Unavailable):
            c.wait_ready(timeout=0.2)


def test_socket_from_environment(box: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHEEP_SOCKET", str(box.socket))
    with SheepClient() as c:
        c.wait_ready(timeout=5)
        v = c.version()
    assert isinstance(v, pb.VersionResponse) and v.api_version == "v1"


def test_shared_channel_is_not_closed_by_client(box: Sandbox) -> None:
    with SheepClient(channel=box.channel()) as c:
        assert c.version().api_version == "v1"
    assert box.api.Version(pb.VersionRequest()).api_version == "v1"


# -- asyncio ------------------------------------------------------------------------------

async def test_async_lifecycle_events_and_errors(box: Sandbox) -> None:
    async with AsyncSheepClient(socket=str(box.socket), timeout=30) as c:
        await c.wait_ready(timeout=5)
        assert (await c.version()).api_version == "v1"
        since = time.time()
        ct = await c.create_container(SLEEP, name="aweb")
        assert ct.state == pb.Container.RUNNING
        assert (await c.inspect("aweb")).id == ct.id
        assert [x.id for x in await c.list_containers()] == [ct.id]

        net = await c.create_network("aback", "10.32.0.0/24")
        att = await c.attach_network("aweb", "aback")
        assert att.network == "aback" and att.ip_address.startswith("10.32.0.")
        assert {n.name for n in await c.list_networks()} == {"sheep0", "aback"}
        assert (await c.inspect_network("aback")).id == net.id
        await c.detach_network("aweb", "aback")
        assert await c.remove_network("aback") == net.id

        with pytest.raises(FailedPrecondition):
            await c.remove_container("aweb")
        stopped = await c.stop_container("aweb", timeout_seconds=1)
        assert stopped.state == pb.Container.EXITED
        assert await c.remove_container("aweb") == ct.id

        with pytest.raises(NotFound):
            await c.inspect("aweb")
        with pytest.raises(InvalidArgument):
            await c.create_container([])
        await c.create_container(SLEEP, name="adup", network_mode=NONE)
        with pytest.raises(AlreadyExists):
            await c.create_container(SLEEP, name="adup", network_mode=NONE)
        await c.remove_container("adup", force=True)

        types = []
        async with c.watch_events({"container": ct.id}, since=since, duration=15) as events:
            async for e in events:
                assert isinstance(e, pb.Event)
                types.append(e.type)
                if e.type == "container.removed":
                    break
        for t in ("container.created", "container.started", "network.attached",
                  "network.detached", "container.exited"):
            assert t in types, types
        assert types.index("container.created") < types.index("container.started")
        assert types[-1] == "container.removed"


async def test_async_watch_cancel_ends_iteration(box: Sandbox) -> None:
    async with AsyncSheepClient(socket=str(box.socket)) as c:
        stream = c.watch_events({"type": "network."})
        await asyncio.sleep(0.3)  # let the daemon subscribe before the event happens
        await c.create_network("anet", "10.33.0.0/24")
        first = await anext(stream)
        assert (first.type, first.network) == ("network.created", "anet")
        stream.cancel()
        assert [e async for e in stream] == []


async def test_async_unavailable(tmp_path: Path) -> None:
    async with AsyncSheepClient(socket=str(tmp_path / "absent.sock"), timeout=5) as c:
        with pytest.raises(Unavailable):
            await c.version()


# -- sheepctl on the wrapper ----------------------------------------------------------------

