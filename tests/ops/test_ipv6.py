"""Dual-stack networks in the fakes' models and the store: IPv6 leases, addresses,
neighbours and routes, static addresses, restarts, and all-or-nothing creates."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from tests.ops import sweep
from tests.ops.daemon import Daemon
from tests.ops.helpers import changes, create, rpc_error

SUBNET6 = "fd00:30::/64"


async def dual(d: Daemon, name: str = "dual", subnet: str = "10.30.0.0/24",
               subnet6: str = SUBNET6, **kw: object) -> pb.Network:
    reply: pb.Network = await d.api.CreateNetwork(pb.CreateNetworkRequest(
        name=name, subnet=subnet, subnet6=subnet6, **kw))  # type: ignore[arg-type]
    return reply


def on(network: str, **kw: str) -> pb.NetworkAttachmentRequest:
    return pb.NetworkAttachmentRequest(network=network, **kw)


async def test_a_dual_stack_attachment_gets_both_families(daemon: Daemon) -> None:
    net = await dual(daemon)
    assert (net.subnet6, net.gateway6) == (SUBNET6, "fd00:30::1")
    bridge = daemon.machine.kernel.links[net.bridge]
    assert "fd00:30::1/64" in {str(a) for a in bridge.addresses}
    c = await create(daemon, "web", networks=[on("dual")])
    (a,) = c.networks
    assert (a.ip6_address, a.prefix6_length, a.gateway6) == ("fd00:30::2", 64, "fd00:30::1")
    ns = daemon.machine.kernel.netns[Path(c.netns_path)]
    eth0 = ns.links["eth0"]
    assert {"10.30.0.2/24", "fd00:30::2/64"} <= {str(x) for x in eth0.addresses}
    assert str(ns.default_route6[0] if ns.default_route6 else "") == "fd00:30::1"
    assert {str(k) for k in eth0.neighbours} == {"10.30.0.1", "fd00:30::1"}
    assert "fd00:30::2" in {str(k) for k in bridge.neighbours}
    listed = {n.name: n for n in (await daemon.api.ListNetworks(
        pb.ListNetworksRequest())).networks}
    assert listed["dual"].leases6_allocated == 1


async def test_an_ipv4_network_stays_ipv4_only(daemon: Daemon) -> None:
    c = await create(daemon, "web")
    assert c.networks[0].ip6_address == ""
    ns = daemon.machine.kernel.netns[Path(c.netns_path)]
    assert ns.default_route6 is None
    assert all(x.version == 4 for x in ns.links["eth0"].addresses)


async def test_static_ip6_and_its_conflicts(daemon: Daemon) -> None:
    await dual(daemon)
    c = await create(daemon, "a", networks=[on("dual", ip6="fd00:30::99")])
    assert c.networks[0].ip6_address == "fd00:30::99"
    before = await daemon.snapshot()
    for ip6, code in (("fd00:30::99", grpc.StatusCode.ALREADY_EXISTS),
                      ("fd00:31::5", grpc.StatusCode.INVALID_ARGUMENT),
                      ("fd00:30::1", grpc.StatusCode.INVALID_ARGUMENT),
                      ("not-an-address", grpc.StatusCode.INVALID_ARGUMENT)):
        e = await rpc_error(create(daemon, "b", networks=[on("dual", ip6=ip6)]))
        assert e.code() == code, (ip6, e.details())
    e = await rpc_error(create(daemon, "b", networks=[on("sheep0", ip6="fd00:30::7")]))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "no IPv6" in (e.details() or "")
    assert not changes(before, await daemon.snapshot())


async def test_overlapping_or_bad_subnet6_is_refused(daemon: Daemon) -> None:
    await dual(daemon)
    for name, subnet6 in (("over", "fd00:30::/80"), ("big", "fd00:40::/48"),
                          ("junk", "fd00:zz::/64")):
        e = await rpc_error(dual(daemon, name, subnet="10.40.0.0/24", subnet6=subnet6))
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, subnet6
    e = await rpc_error(daemon.api.CreateNetwork(pb.CreateNetworkRequest(
        name="gw", subnet="10.41.0.0/24", gateway6="fd00:41::1")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_ipv6_leases_survive_a_daemon_restart_and_go_at_removal(
        daemon: Daemon) -> None:
    await dual(daemon)
    made = [await create(daemon, f"c{i}", networks=[on("dual")]) for i in range(5)]
    await daemon.restart()
    listed = {n.name: n for n in (await daemon.api.ListNetworks(
        pb.ListNetworksRequest())).networks}
    assert listed["dual"].leases6_allocated == 5
    new = await create(daemon, "after", networks=[on("dual")])
    assert new.networks[0].ip6_address not in {c.networks[0].ip6_address for c in made}
    for c in [*made, new]:
        await daemon.api.RemoveContainer(pb.RemoveContainerRequest(id=c.id, force=True))
    listed = {n.name: n for n in (await daemon.api.ListNetworks(
        pb.ListNetworksRequest())).networks}
    assert listed["dual"].leases6_allocated == 0


async def test_a_restarted_container_gets_its_ipv6_address_back(daemon: Daemon) -> None:
    await dual(daemon)
    c = await create(daemon, "web", networks=[on("dual")])
    await daemon.api.StopContainer(pb.StopContainerRequest(id="web"))
    again = await daemon.api.StartContainer(pb.StartContainerRequest(id="web"))
    assert again.networks[0].ip6_address == c.networks[0].ip6_address


@pytest.mark.parametrize("second", [False, True], ids=["one-network", "ipv4-then-dual"])
async def test_dual_stack_create_is_all_or_nothing(daemon: Daemon, second: bool) -> None:
    await dual(daemon)
    nets = [on("sheep0"), on("dual")] if second else [on("dual", ip6="fd00:30::42")]
    await sweep.all_or_nothing(daemon, lambda: create(daemon, "web", networks=nets))
    c = await daemon.api.Inspect(pb.InspectRequest(id="web"))
    ns = daemon.machine.kernel.netns[Path(c.netns_path)]
    assert ns.default_route is not None and ns.default_route6 is not None  # one per family
