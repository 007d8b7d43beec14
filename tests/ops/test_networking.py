"""Networks and attachments through the API, checked in the fake kernel, the
firewall table and the pools."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

import grpc
import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from sheep_runtime.ops.attach import RETIRED_VETH_PREFIX
from sheep_runtime.ops.events import EventFilter
from tests.ops.daemon import Daemon
from tests.ops.helpers import changes, create, create_network, leases, net, port, rpc_error


@pytest.fixture
async def blue(daemon: Daemon) -> pb.Network:
    return await create_network(daemon, "blue", "10.30.0.0/24")


def _rules(d: Daemon) -> set[tuple[str, str, int, int]]:
    state = d.machine.firewall.state
    assert state is not None
    return {(r.network, str(r.container_ip), r.host_port, r.container_port) for r in state.ports}


async def test_create_plugs_the_container_into_the_default_network(daemon: Daemon) -> None:
    c = await create(daemon, "web", networks=[net("sheep0", ports=[port(8080, 80)])])
    (a,) = c.networks
    assert (a.network, a.interface_name, a.ip_address, a.gateway, a.link_state) == (
        "sheep0", "eth0", "10.20.0.2", "10.20.0.1", "up")
    k = daemon.machine.kernel
    host = k.links[a.host_interface]
    assert (host.kind, host.up, host.master) == ("veth", True, k.links["sheep0"].index)
    assert host.port_flags == {"proxyarp", "hairpin"} and host.fdb == {a.mac_address}
    assert k.links["sheep0"].neighbours == {IPv4Address("10.20.0.2"): a.mac_address}
    ns = k.netns[Path(c.netns_path)]
    eth0 = ns.links["eth0"]
    assert (eth0.up, eth0.mac, eth0.addresses) == (
        True, a.mac_address, {IPv4Interface("10.20.0.2/16")})
    assert eth0.neighbours == {IPv4Address("10.20.0.1"): k.links["sheep0"].mac}
    assert ns.links["lo"].up and ns.default_route == (IPv4Address("10.20.0.1"), "eth0")
    assert _rules(daemon) == {("sheep0", "10.20.0.2", 8080, 80)}
    assert (await leases(daemon))["sheep0"] == 1


async def test_attach_and_detach_a_running_container(daemon: Daemon, blue: pb.Network) -> None:
    c = await create(daemon, "web")
    before = await daemon.snapshot()
    a = await daemon.api.AttachNetwork(pb.AttachNetworkRequest(
        container_id="web", network="blue", ports=[port(9090, 90, count=2)]))
    assert (a.interface_name, a.ip_address, a.gateway) == ("eth1", "10.30.0.2", "10.30.0.1")
    k = daemon.machine.kernel
    assert k.links[a.host_interface].master == k.links[blue.bridge].index
    ns = k.netns[Path(c.netns_path)]
    assert ns.links["eth1"].addresses == {IPv4Interface("10.30.0.2/24")}
    assert ns.default_route == (IPv4Address("10.20.0.1"), "eth0"), "only eth0 routes"
    assert _rules(daemon) == {("blue", "10.30.0.2", 9090, 90)}
    state = daemon.machine.firewall.state
    assert state is not None and [r.count for r in state.ports] == [2]
    assert (await leases(daemon))["blue"] == 1
    shown = await daemon.api.Inspect(pb.InspectRequest(id="web"))
    assert [(x.network, x.link_state) for x in shown.networks] == [
        ("sheep0", "up"), ("blue", "up")]
    again = await daemon.api.AttachNetwork(pb.AttachNetworkRequest(
        container_id="web", network="blue"))
    assert again.ip_address == a.ip_address, "attach is idempotent"

    await daemon.api.DetachNetwork(pb.DetachNetworkRequest(container_id="web", network="blue"))
    assert not changes(before, await daemon.snapshot())
    e = await rpc_error(daemon.api.DetachNetwork(pb.DetachNetworkRequest(
        container_id="web", network="blue")))
    assert e.code() == grpc.StatusCode.NOT_FOUND


async def test_default_route_only_on_the_first_interface(daemon: Daemon,
                                                         blue: pb.Network) -> None:
    c = await create(daemon, "web", networks=[net("blue"), net("sheep0")])
    assert [(a.network, a.interface_name) for a in c.networks] == [
        ("blue", "eth0"), ("sheep0", "eth1")]
    ns = daemon.machine.kernel.netns[Path(c.netns_path)]
    assert ns.default_route == (IPv4Address("10.30.0.1"), "eth0")
    assert set(ns.links) == {"lo", "eth0", "eth1"}


async def test_every_lease_returns_after_removal(daemon: Daemon, blue: pb.Network) -> None:
    base = await daemon.snapshot()
    for i in range(3):
        await create(daemon, f"c{i}", networks=[net("sheep0", ports=[port(8000 + i)]),
                                                net("blue")])
    assert await leases(daemon) == {"sheep0": 3, "blue": 3}
    assert len(_rules(daemon)) == 3
    for i in range(3):
        await daemon.api.RemoveContainer(pb.RemoveContainerRequest(id=f"c{i}", force=True))
    assert await leases(daemon) == {"sheep0": 0, "blue": 0}
    assert not changes(base, await daemon.snapshot())


async def test_network_create_and_remove(daemon: Daemon) -> None:
    base = await daemon.snapshot()
    red = await create_network(daemon, "red", "10.40.0.0/24")
    k = daemon.machine.kernel
    bridge = k.links[red.bridge]
    assert (bridge.kind, bridge.up, bridge.addresses) == (
        "bridge", True, {IPv4Interface("10.40.0.1/24")})
    state = daemon.machine.firewall.state
    assert state is not None and "red" in {n.name for n in state.networks}
    await daemon.api.RemoveNetwork(pb.RemoveNetworkRequest(id="red"))
    assert not changes(base, await daemon.snapshot())


async def test_a_network_in_use_cannot_be_removed(daemon: Daemon, blue: pb.Network) -> None:
    await create(daemon, "web", networks=[net("blue")])
    before = await daemon.snapshot()
    e = await rpc_error(daemon.api.RemoveNetwork(pb.RemoveNetworkRequest(id="blue")))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert not changes(before, await daemon.snapshot())


async def test_a_tampered_firewall_table_is_restored(daemon: Daemon) -> None:
    await create(daemon, "web", networks=[net("sheep0", ports=[port(8080)])])
    fw = daemon.machine.firewall
    applied = fw.state
    fw.tamper()
    await daemon.rt.firewall.repair_if_broken()
    assert fw.state == applied
    assert [e.type for e in daemon.rt.events.recent(EventFilter(type_prefix="firewall."))] == [
        "firewall.repaired"]


async def test_the_healer_skips_only_veths_in_flight_or_retired(daemon: Daemon) -> None:
    (a,) = (await create(daemon, "web")).networks
    healer, in_flight = daemon.rt.healer, daemon.rt.attacher.in_flight
    assert not healer.ignores(a.host_interface)  # attached: a change of it is damage
    assert not healer.ignores("sheep0")
    assert healer.ignores(f"{RETIRED_VETH_PREFIX}0123456789ab")
    in_flight.add(a.host_interface)
    try:
        assert healer.ignores(a.host_interface)
    finally:
        in_flight.discard(a.host_interface)
