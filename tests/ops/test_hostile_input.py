"""Hostile input to every RPC: each bad request gets its precise status code (never
UNKNOWN or INTERNAL), creates nothing (containers, networks, links, ports, leases,
records and dirs compared before and after), and the daemon keeps answering. A
request refused as INVALID_ARGUMENT makes no mutating backend call at all: it is
refused while it is still being planned."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from google.protobuf.timestamp_pb2 import Timestamp
from sheep.runtime.v1 import runtime_pb2 as pb

from tests.ops.daemon import Daemon, running_daemon
from tests.ops.helpers import (
    HANG_GUARD,
    changes,
    create,
    create_network,
    net,
    port,
    rpc_error,
    wait_state,
)

IA = grpc.StatusCode.INVALID_ARGUMENT
NF = grpc.StatusCode.NOT_FOUND
AE = grpc.StatusCode.ALREADY_EXISTS
FP = grpc.StatusCode.FAILED_PRECONDITION
RE = grpc.StatusCode.RESOURCE_EXHAUSTED
KB10, MB1 = "x" * 10240, "x" * (1 << 20)
MAX_ARG_STRLEN = 131072


pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass
class World:
    """What the hostile requests aim at: blue (10.30.0.0/24), the internal priv, tiny
    (one address, held by "full"), "web" on sheep0 (port 8080) and blue (10.30.0.10),
    and "done", exited. `reusable` once a case left it as it found it."""

    d: Daemon
    blue: pb.Network
    reusable: bool = False


async def _build_world(d: Daemon) -> World:
    blue = await create_network(d, "blue", "10.30.0.0/24")
    await create_network(d, "priv", "10.60.0.0/24", internal=True)
    await create_network(d, "tiny", "10.50.0.0/30")
    await create(d, "web", networks=[net("sheep0", ports=[port(8080)]),
                                     net("blue", ip="10.30.0.10")])
    await create(d, "full", networks=[net("tiny")])
    done = await create(d, "done", network_mode="none")
    d.machine.processes.exit(done.id, 0)
    await wait_state(d, "done", pb.Container.EXITED)
    return World(d, blue)


@dataclass
class _Shared:
    world: World | None = None
    owner: AsyncExitStack | None = None


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def _shared() -> AsyncIterator[_Shared]:
    shared = _Shared()
    yield shared
    if shared.owner is not None:
        await shared.owner.aclose()


@pytest_asyncio.fixture(loop_scope="module")
async def world(_shared: _Shared, tmp_path: Path) -> World:
    """One world for the cases (each proves it changed nothing), made anew after a
    case that failed."""
    if _shared.world is None or not _shared.world.reusable:
        if _shared.owner is not None:
            await _shared.owner.aclose()
        _shared.owner = AsyncExitStack()
        d = await _shared.owner.enter_async_context(running_daemon(tmp_path / "state"))
        _shared.world = await _build_world(d)
    _shared.world.reusable = False
    return _shared.world


@pytest_asyncio.fixture(loop_scope="module")
async def fresh(tmp_path: Path) -> AsyncIterator[World]:
    """A world of the test's own, for tests that change it."""
    async with running_daemon(tmp_path / "state") as d:
        yield await _build_world(d)


Call = Callable[[World], Awaitable[object]]
Nets = Callable[[World], list[pb.NetworkAttachmentRequest]]


def cc(*, name: str = "", command: tuple[str, ...] = ("sleep", "inf"),
       env: dict[str, str] | None = None, hostname: str = "", network_mode: str = "",
       networks: Nets = lambda w: [],
       cap_add: tuple[str, ...] = ()) -> Call:
    return lambda w: w.d.api.CreateContainer(pb.CreateContainerRequest(
        name=name, command=list(command), env=env or {}, hostname=hostname,
        network_mode=network_mode, networks=networks(w), cap_add=list(cap_add)))


def on(*nets: pb.NetworkAttachmentRequest) -> Nets:
    return lambda w: list(nets)


def attach(container: str = "web", network: str = "blue", **kw: object) -> Call:
    return lambda w: w.d.api.AttachNetwork(pb.AttachNetworkRequest(
        container_id=container, network=network, **kw))  # type: ignore[arg-type]


def cn(name: str = "red", subnet: str = "10.40.0.0/24", **kw: object) -> Call:
    return lambda w: w.d.api.CreateNetwork(pb.CreateNetworkRequest(
        name=name, subnet=subnet, **kw))  # type: ignore[arg-type]


async def _first_event(w: World, req: pb.WatchEventsRequest) -> object:
    return await w.d.api.WatchEvents(req).read()


def watch(*, filters: dict[str, str] | None = None, seconds: int | None = None,
          nanos: int = 0) -> Call:
    since = None if seconds is None else Timestamp(seconds=seconds, nanos=nanos)
    return lambda w: _first_event(w, pb.WatchEventsRequest(filters=filters or {}, since=since))


def api(method: str, request: object) -> Call:
    return lambda w: getattr(w.d.api, method)(request)


CREATE: dict[str, tuple[Call, grpc.StatusCode]] = {
    "no-command": (cc(command=()), IA),
    "empty-argv0": (cc(command=("",)), IA),
    "arg-with-nul": (cc(command=("echo", "a\0b")), IA),
    "arg-over-max-arg-strlen": (cc(command=("echo", "x" * MAX_ARG_STRLEN)), IA),
    "args-over-arg-max": (cc(command=("echo", *["x" * 100_000] * 22)), IA),
    "env-over-max-arg-strlen": (cc(env={"A": "x" * MAX_ARG_STRLEN}), IA),
    "env-empty-key": (cc(env={"": "v"}), IA),
    "env-key-with-equals": (cc(env={"A=B": "v"}), IA),
    "env-value-with-nul": (cc(env={"A": "a\0"}), IA),
    "name-trailing-newline": (cc(name="web2\n"), IA),
    "name-10kb": (cc(name=KB10), IA),
    "name-1mb": (cc(name=MB1), IA),
    "name-nul": (cc(name="a\0b"), IA),
    "name-unicode": (cc(name="ünïcødé"), IA),
    "name-leading-dash": (cc(name="-x"), IA),
    "name-taken": (cc(name="web"), AE),
    "hostname-trailing-newline": (cc(hostname="host\n"), IA),
    "hostname-65-chars": (cc(hostname="h" * 65), IA),
    "hostname-unicode": (cc(hostname="hôst"), IA),
    "hostname-10kb": (cc(hostname=KB10), IA),
    "network-mode-host": (cc(network_mode="host"), IA),
    "network-mode-none-with-networks": (cc(network_mode="none", networks=on(net("blue"))), IA),
    "network-unknown": (cc(networks=on(net("nope"))), NF),
    "network-empty": (cc(networks=on(net(""))), IA),
    "network-twice": (cc(networks=on(net("blue"), net("blue"))), IA),
    "network-by-name-and-id": (cc(networks=lambda w: [net("blue"), net(w.blue.id)]), IA),
    "network-by-name-and-id-prefix": (
        cc(networks=lambda w: [net("blue"), net(w.blue.id[:12])]), IA),
    "ip-outside-subnet": (cc(networks=on(net("blue", ip="10.99.0.5"))), IA),
    "ip-gateway": (cc(networks=on(net("blue", ip="10.30.0.1"))), IA),
    "ip-network-address": (cc(networks=on(net("blue", ip="10.30.0.0"))), IA),
    "ip-broadcast": (cc(networks=on(net("blue", ip="10.30.0.255"))), IA),
    "ip-trailing-newline": (cc(networks=on(net("blue", ip="10.30.0.5\n"))), IA),
    "ip-v6": (cc(networks=on(net("blue", ip="::1"))), IA),
    "ip-garbage": (cc(networks=on(net("blue", ip="999.1.1.1"))), IA),
    "ip-taken": (cc(networks=on(net("blue", ip="10.30.0.10"))), AE),
    "ifname-lo": (cc(networks=on(net("blue", interface_name="lo"))), IA),
    "ifname-all": (cc(networks=on(net("blue", interface_name="all"))), IA),
    "ifname-default": (cc(networks=on(net("blue", interface_name="default"))), IA),
    "ifname-slash": (cc(networks=on(net("blue", interface_name="eth/0"))), IA),
    "ifname-16-chars": (cc(networks=on(net("blue", interface_name="e" * 16))), IA),
    "ifname-trailing-newline": (cc(networks=on(net("blue", interface_name="eth0\n"))), IA),
    "ifname-dot": (cc(networks=on(net("blue", interface_name="."))), IA),
    "ifname-unicode": (cc(networks=on(net("blue", interface_name="ëth0"))), IA),
    "ifname-twice": (cc(networks=on(net("sheep0", interface_name="eth5"),
                                    net("blue", interface_name="eth5"))), IA),
    "port-zero": (cc(networks=on(net("sheep0", ports=[port(0)]))), IA),
    "port-65536": (cc(networks=on(net("sheep0", ports=[port(65536)]))), IA),
    "container-port-zero": (cc(networks=on(net("sheep0", ports=[port(8081, 0)]))), IA),
    "port-range-past-65535": (cc(networks=on(net("sheep0", ports=[port(65000, count=1000)]))),
                              IA),
    "port-count-2**32-1": (cc(networks=on(net("sheep0", ports=[port(8081, count=2**32 - 1)]))),
                           IA),
    "port-protocol-sctp": (cc(networks=on(net("sheep0", ports=[port(8081, protocol="sctp")]))),
                           IA),
    "port-host-ip-garbage": (
        cc(networks=on(net("sheep0", ports=[port(8081, host_ip="not-an-ip")]))), IA),
    "port-host-ip-v6": (cc(networks=on(net("sheep0", ports=[port(8081, host_ip="::1")]))), IA),
    "port-twice": (cc(networks=on(net("sheep0", ports=[port(8081), port(8081, 81)]))), IA),
    "port-taken": (cc(networks=on(net("sheep0", ports=[port(8080)]))), AE),
    "port-on-internal-network": (cc(networks=on(net("priv", ports=[port(8081)]))), IA),
    "cap-unknown": (cc(cap_add=("NOT_A_CAP",)), IA),
    "cap-empty": (cc(cap_add=("",)), IA),
    "pool-exhausted": (cc(networks=on(net("tiny"))), RE),
}

LOOKUPS: dict[str, tuple[Call, grpc.StatusCode]] = {
    f"{method}-{what}": (api(method, make(ref)), code)
    for method, make in (
        ("Inspect", lambda r: pb.InspectRequest(id=r)),
        ("StopContainer", lambda r: pb.StopContainerRequest(id=r)),
        ("RemoveContainer", lambda r: pb.RemoveContainerRequest(id=r, force=True)),
        ("DetachNetwork", lambda r: pb.DetachNetworkRequest(container_id=r, network="blue")),
        ("InspectNetwork", lambda r: pb.InspectNetworkRequest(id=r)),
        ("RemoveNetwork", lambda r: pb.RemoveNetworkRequest(id=r)))
    for what, ref, code in (("empty", "", IA), ("unknown", "nope", NF),
                            ("trailing-newline", "web\n", NF), ("nul", "web\0", NF),
                            ("unicode", "wéb", NF), ("10kb", KB10, NF), ("1mb", MB1, NF))
}

OTHERS: dict[str, tuple[Call, grpc.StatusCode]] = {
    "stop-timeout-2**32-1": (api("StopContainer", pb.StopContainerRequest(
        id="web", timeout_seconds=2**32 - 1)), IA),
    "stop-timeout-3601": (api("StopContainer", pb.StopContainerRequest(
        id="web", timeout_seconds=3601)), IA),
    "remove-running-without-force": (api("RemoveContainer", pb.RemoveContainerRequest(
        id="web")), FP),
    "list-unknown-filter": (api("ListContainers", pb.ListContainersRequest(
        filters={"bogus": "1"})), IA),
    "attach-container-empty": (attach(container=""), IA),
    "attach-container-unknown": (attach(container="nope"), NF),
    "attach-network-empty": (attach(network=""), IA),
    "attach-network-unknown": (attach(network="nope"), NF),
    "attach-ifname-lo": (attach(network="priv", interface_name="lo"), IA),
    "attach-ifname-all": (attach(network="priv", interface_name="all"), IA),
    "attach-ifname-default": (attach(network="priv", interface_name="default"), IA),
    "attach-ifname-taken": (attach(network="priv", interface_name="eth0"), IA),
    "attach-ip-taken": (attach(container="full", network="blue", ip="10.30.0.10"), AE),
    "attach-other-address": (attach(network="blue", ip="10.30.0.20"), FP),
    "attach-exited": (attach(container="done", network="blue"), FP),
    "attach-port-on-internal-network": (attach(network="priv", ports=[port(8081)]), IA),
    "attach-port-taken-elsewhere": (attach(container="full", network="sheep0",
                                           ports=[port(8080)]), AE),
    "attach-pool-exhausted": (attach(network="tiny"), RE),
    "detach-not-attached": (api("DetachNetwork", pb.DetachNetworkRequest(
        container_id="web", network="priv")), NF),
    "detach-network-empty": (api("DetachNetwork", pb.DetachNetworkRequest(
        container_id="web", network="")), IA),
    "detach-network-unknown": (api("DetachNetwork", pb.DetachNetworkRequest(
        container_id="web", network="nope")), NF),
    "network-name-empty": (cn(name=""), IA),
    "network-name-trailing-newline": (cn(name="red\n"), IA),
    "network-name-1mb": (cn(name=MB1), IA),
    "network-name-unicode": (cn(name="réd"), IA),
    "network-name-taken": (cn(name="blue", subnet="10.41.0.0/24"), AE),
    "subnet-empty": (cn(subnet=""), IA),
    "subnet-garbage": (cn(subnet="banana"), IA),
    "subnet-trailing-newline": (cn(subnet="10.40.0.0/24\n"), IA),
    "subnet-v6": (cn(subnet="fd00::/64"), IA),
    "subnet-31": (cn(subnet="10.40.0.0/31"), IA),
    "subnet-7": (cn(subnet="10.0.0.0/7"), IA),
    "subnet-overlaps-network": (cn(subnet="10.30.0.128/25"), IA),
    "subnet-overlaps-host-route": (cn(subnet="192.168.77.0/24"), IA),
    "subnet-loopback": (cn(subnet="127.1.0.0/16"), IA),
    "subnet-this-network": (cn(subnet="0.1.0.0/16"), IA),
    "subnet-multicast": (cn(subnet="224.1.0.0/16"), IA),
    "subnet-reserved": (cn(subnet="240.1.0.0/16"), IA),
    "subnet-link-local": (cn(subnet="169.254.1.0/24"), IA),
    "gateway-outside": (cn(gateway="10.41.0.1"), IA),
    "gateway-broadcast": (cn(gateway="10.40.0.255"), IA),
    "gateway-garbage": (cn(gateway="gw"), IA),
    "bridge-all": (cn(bridge="all"), IA),
    "bridge-default": (cn(bridge="default"), IA),
    "bridge-veth-prefix": (cn(bridge="shp0123456789ab"), IA),
    "bridge-bridge-prefix": (cn(bridge="shpbr0123456789"), IA),
    "bridge-16-chars": (cn(bridge="b" * 16), IA),
    "bridge-slash": (cn(bridge="br/0"), IA),
    "bridge-trailing-newline": (cn(bridge="br0\n"), IA),
    "bridge-host-interface": (cn(bridge="eth0"), AE),
    "bridge-of-another-network": (cn(bridge="sheep0"), AE),
    "mtu-67": (cn(mtu=67), IA),
    "mtu-65536": (cn(mtu=65536), IA),
    "mtu-2**32-1": (cn(mtu=2**32 - 1), IA),
    "remove-default-network": (api("RemoveNetwork", pb.RemoveNetworkRequest(id="sheep0")), FP),
    "remove-network-in-use": (api("RemoveNetwork", pb.RemoveNetworkRequest(id="blue")), FP),
    "watch-unknown-filter": (watch(filters={"bogus": "1"}), IA),
    "watch-since-far-past": (watch(seconds=-10**12), IA),
    "watch-since-far-future": (watch(seconds=10**15), IA),
    "watch-since-negative-nanos": (watch(seconds=1, nanos=-1), IA),
}

CASES = {**CREATE, **LOOKUPS, **OTHERS}


@pytest.mark.parametrize("case", CASES)
async def test_hostile_request_gets_its_code_and_changes_nothing(world: World,
                                                                 case: str) -> None:
    call, code = CASES[case]
    d = world.d
    before = await d.snapshot()
    mark = d.machine.calls.mark()
    e = await rpc_error(call(world))
    assert e.code() == code, f"{e.code()}: {(e.details() or '')[:300]}"
    if code == IA:
        made = d.machine.calls.since(mark, mutating_only=True)
        assert not made, f"refused only after {made}"
    assert not changes(before, await d.snapshot())
    await d.api.Version(pb.VersionRequest())
    world.reusable = True


async def _share_a_prefix(make: Callable[[int], Awaitable[str]]) -> str:
    """Make objects until two ids share their first character; return it."""
    seen: set[str] = set()
    for i in range(17):
        first = (await make(i))[0]
        if first in seen:
            return first
        seen.add(first)
    raise AssertionError("17 ids with 16 first characters")


async def test_ambiguous_id_prefixes_are_invalid_argument(fresh: World) -> None:
    daemon = fresh.d

    async def container(i: int) -> str:
        return (await create(daemon, f"c{i}")).id

    async def network(i: int) -> str:
        return (await create_network(daemon, f"n{i}", f"10.{100 + i}.0.0/24")).id

    c, n = await _share_a_prefix(container), await _share_a_prefix(network)
    before = await daemon.snapshot()
    for call in (daemon.api.Inspect(pb.InspectRequest(id=c)),
                 daemon.api.StopContainer(pb.StopContainerRequest(id=c)),
                 daemon.api.RemoveContainer(pb.RemoveContainerRequest(id=c, force=True)),
                 daemon.api.AttachNetwork(pb.AttachNetworkRequest(container_id=c,
                                                                  network="sheep0")),
                 daemon.api.AttachNetwork(pb.AttachNetworkRequest(container_id="c0",
                                                                  network=n)),
                 daemon.api.InspectNetwork(pb.InspectNetworkRequest(id=n)),
                 daemon.api.RemoveNetwork(pb.RemoveNetworkRequest(id=n))):
        assert (await rpc_error(call)).code() == IA
    assert not changes(before, await daemon.snapshot())


async def test_explicit_and_automatic_interface_names_do_not_collide(fresh: World) -> None:
    c = await fresh.d.api.CreateContainer(pb.CreateContainerRequest(
        name="two", command=["sleep", "inf"],
        networks=[net("sheep0", interface_name="eth1"), net("blue")]))
    names = [a.interface_name for a in c.networks]
    assert names[0] == "eth1" and len(set(names)) == 2


async def test_stop_timeout_of_an_hour_is_accepted(fresh: World) -> None:
    c = await fresh.d.api.StopContainer(pb.StopContainerRequest(id="web",
                                                                timeout_seconds=3600))
    assert (c.state, c.exit_code) == (pb.Container.EXITED, 143)


async def test_forced_remove_does_not_wait_for_a_long_stop(fresh: World) -> None:
    """A StopContainer with a timeout of an hour is running (the process ignores
    SIGTERM): RemoveContainer with force still kills and removes it at once."""
    d = fresh.d
    d.machine.processes.sigterm_exit_code = None
    await create(d, "stubborn")
    stop = asyncio.ensure_future(d.api.StopContainer(pb.StopContainerRequest(
        id="stubborn", timeout_seconds=3600)))
    while "processes.stop" not in d.machine.calls.since(0):
        await asyncio.sleep(0)
    try:
        async with asyncio.timeout(HANG_GUARD):
            await d.api.RemoveContainer(pb.RemoveContainerRequest(id="stubborn", force=True))
    finally:
        stop.cancel()
    assert "stubborn" not in {c.name for c in d.store.inner.containers()}
