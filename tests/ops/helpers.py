"""Small helpers of the fast tier: requests, expected failures, waiting for the
daemon's own tasks, and the ownership check every leak test uses."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Sequence

import grpc
from sheep.runtime.v1 import runtime_pb2 as pb

from sheep_runtime.ops import recovery
from tests.ops.daemon import Daemon

HANG_GUARD = 5.0  # seconds: only against hangs, never a timing assertion


def net(network: str, *, ip: str = "", ports: Sequence[pb.PortMapping] = (),
        interface_name: str = "") -> pb.NetworkAttachmentRequest:
    return pb.NetworkAttachmentRequest(network=network, ip=ip, ports=list(ports),
                                       interface_name=interface_name)


def port(host_port: int, container_port: int = 80, *, protocol: str = "tcp",
         count: int = 0, host_ip: str = "") -> pb.PortMapping:
    return pb.PortMapping(protocol=protocol, host_ip=host_ip, host_port=host_port,
                          container_port=container_port, count=count)


async def create(d: Daemon, name: str = "", *,
                 networks: Sequence[pb.NetworkAttachmentRequest] = (), network_mode: str = "",
                 command: Sequence[str] = ("sleep", "inf"), env: dict[str, str] | None = None,
                 hostname: str = "", cap_add: Sequence[str] = ()) -> pb.Container:
    """CreateContainer with a harmless default command."""
    reply: pb.Container = await d.api.CreateContainer(pb.CreateContainerRequest(
        name=name, command=list(command), networks=list(networks), network_mode=network_mode,
        env=env or {}, hostname=hostname, cap_add=list(cap_add)))
    return reply


async def create_network(d: Daemon, name: str, subnet: str, *, bridge: str = "",
                         internal: bool = False) -> pb.Network:
    reply: pb.Network = await d.api.CreateNetwork(pb.CreateNetworkRequest(
        name=name, subnet=subnet, bridge=bridge, internal=internal))
    return reply


async def rpc_error(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    """The error `call` fails with; AssertionError if it succeeds."""
    try:
        async with asyncio.timeout(HANG_GUARD):
            await call
    except grpc.aio.AioRpcError as e:
        return e
    raise AssertionError("the call succeeded")


async def settle(baseline: set[asyncio.Task[object]]) -> None:
    """Wait until every task started since `baseline` was taken has finished (the
    repairs a handler scheduled, and those they scheduled in turn)."""
    me = asyncio.current_task()
    for _ in range(20):
        pending = [t for t in asyncio.all_tasks() if t not in baseline and t is not me
                   and not t.done()]
        if not pending:
            return
        _, still = await asyncio.wait(pending, timeout=HANG_GUARD)
        if still:
            raise AssertionError(f"tasks still running: {[t.get_name() for t in still]}")
    raise AssertionError("tasks keep starting tasks")


def changes(before: object, after: object, path: str = "") -> list[str]:
    """Where two snapshots differ, as "path: before -> after" lines."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for key in sorted(set(before) | set(after), key=str):
            sub = f"{path}/{key}"
            if key not in after:
                out.append(f"{sub}: gone (was {before[key]!r})")
            elif key not in before:
                out.append(f"{sub}: new {after[key]!r}")
            else:
                out += changes(before[key], after[key], sub)
        return out
    return [] if before == after else [f"{path}: {before!r} -> {after!r}"]


async def leases(d: Daemon) -> dict[str, int]:
    """leases_allocated of every network, through the API."""
    reply = await d.api.ListNetworks(pb.ListNetworksRequest())
    return {n.name: n.leases_allocated for n in reply.networks}


async def assert_no_orphans(d: Daemon) -> None:
    """Nothing is left that no record owns and the daemon would not collect: every
    lease, process, bridge neighbour, published port and address configured in a
    container belongs to a record in the store. (A record whose kernel objects are
    gone is fine: a retry or the healer finishes it. A veth, pin or container dir
    without a record is left to the leak collector.)"""
    await d.rt.firewall.settled()  # a failed teardown re-applies the table in the background
    store, kernel = d.store.inner, d.machine.kernel
    ids = {c.id for c in store.containers()}
    attachments = store.attachments()
    networks = {n.id: n for n in store.networks()}
    assert set(d.machine.processes.live()) <= ids, "process without a record"
    held = Counter(networks[a.network_id].name for a in attachments)
    assert {k: v for k, v in (await leases(d)).items() if v} == dict(held), "lease leak"
    # A bridge neighbour left by a failed removal is left to the leak collector (the
    # sweeps check the state after one collection pass), like a veth or a pin.
    published = {(str(a.address.ip), p.host_port) for a in attachments for p in a.ports}
    fw = d.machine.firewall.state
    rules = {(str(r.container_ip), r.host_port) for r in fw.ports} if fw else set()
    assert rules <= published, "port rule without a record"
    recorded = {(a.container_id, a.address) for a in attachments}
    for pin, ns in kernel.netns.items():
        used = {(pin.name, addr) for x in ns.links.values() for addr in x.addresses}
        assert used <= recorded, f"address in use in {pin.name[:12]} without a lease"


async def collect_leaks(d: Daemon) -> None:
    """One pass of the daemon's periodic leak collection."""
    await recovery.collect_leaks(recovery=d.rt.recovery, in_flight=d.rt.attacher.in_flight)


async def wait_state(d: Daemon, ref: str, state: int) -> pb.Container:
    """Inspect `ref` until it is in `state` (the exit watcher runs as its own task)."""
    async with asyncio.timeout(HANG_GUARD):
        while True:
            c: pb.Container = await d.api.Inspect(pb.InspectRequest(id=ref))
            if c.state == state:
                return c
            await asyncio.sleep(0)
