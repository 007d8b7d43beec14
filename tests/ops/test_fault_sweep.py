"""Failure injection for every mutating operation: each mutating backend call of the
operation fails once in turn (see `sweep.py` for exactly what is proved)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from sheep_runtime.model import LinkEvent
from tests.ops import sweep
from tests.ops.daemon import Daemon
from tests.ops.helpers import changes, create, create_network, net, port, settle

BLUE = "10.30.0.0/24"


@pytest.fixture
async def blue(daemon: Daemon) -> pb.Network:
    return await create_network(daemon, "blue", BLUE)


CREATE_CASES: dict[str, tuple[str, Sequence[pb.NetworkAttachmentRequest]]] = {
    "no-network": ("none", ()),
    "default-network": ("", ()),
    "one-network-with-ports": ("", (net("sheep0", ports=[port(8080)]),)),
    "two-networks": ("", (net("sheep0"), net("blue", ip="10.30.0.50"))),
    "two-networks-with-ports": ("", (net("sheep0", ports=[port(8080)]),
                                     net("blue", ports=[port(9090, 90, count=3)]))),
}


@pytest.mark.parametrize("case", CREATE_CASES)
async def test_create_container_is_all_or_nothing(daemon: Daemon, blue: pb.Network,
                                                   case: str) -> None:
    mode, networks = CREATE_CASES[case]
    calls = await sweep.all_or_nothing(
        daemon, lambda: create(daemon, "web", network_mode=mode, networks=networks))
    n_nets = 0 if mode == "none" else max(len(networks), 1)
    assert {"store.add_container", "namespaces.create", "processes.start"} <= set(calls)
    assert calls.count("links.create_veth") == n_nets
    assert calls.count("netns.configure_interface") == n_nets
    assert calls.count("store.add_attachment") == n_nets
    if any(n.ports for n in networks):
        assert "firewall.update_ports" in calls


@pytest.mark.parametrize("ports", [(), (port(8080),)], ids=["no-ports", "ports"])
async def test_attach_network_is_all_or_nothing(daemon: Daemon, blue: pb.Network,
                                                ports: Sequence[pb.PortMapping]) -> None:
    await create(daemon, "web")
    calls = await sweep.all_or_nothing(daemon, lambda: daemon.api.AttachNetwork(
        pb.AttachNetworkRequest(container_id="web", network="blue", ports=list(ports))))
    assert {"links.create_veth", "netns.configure_interface", "store.add_attachment"} <= set(
        calls)
    assert ("firewall.update_ports" in calls) == bool(ports)


@pytest.mark.parametrize("ports", [(), (port(8080),)], ids=["no-ports", "ports"])
async def test_detach_network_leaks_nothing(daemon: Daemon, blue: pb.Network,
                                            ports: Sequence[pb.PortMapping]) -> None:
    await create(daemon, "web")
    calls = await sweep.teardown(
        daemon,
        setup=lambda: daemon.api.AttachNetwork(pb.AttachNetworkRequest(
            container_id="web", network="blue", ports=list(ports))),
        op=lambda: daemon.api.DetachNetwork(pb.DetachNetworkRequest(
            container_id="web", network="blue")))
    assert {"links.retire_veth", "store.remove_attachment"} <= set(calls)


async def test_remove_container_with_force_leaks_nothing(daemon: Daemon,
                                                         blue: pb.Network) -> None:
    calls = await sweep.teardown(
        daemon,
        setup=lambda: create(daemon, "web", networks=[
            net("sheep0", ports=[port(8080)]), net("blue", ports=[port(9090)])]),
        op=lambda: daemon.api.RemoveContainer(pb.RemoveContainerRequest(id="web", force=True)))
    assert calls.count("links.retire_veth") == 2
    assert {"namespaces.delete", "store.remove_container", "firewall.update_ports"} <= set(
        calls)


async def test_create_network_is_all_or_nothing(daemon: Daemon) -> None:
    calls = await sweep.all_or_nothing(daemon, lambda: create_network(daemon, "red",
                                                                      "10.40.0.0/24"))
    assert {"links.ensure_bridge", "store.add_network", "firewall.apply"} <= set(calls)


async def test_remove_network_leaks_nothing(daemon: Daemon) -> None:
    calls = await sweep.teardown(
        daemon, setup=lambda: create_network(daemon, "red", "10.40.0.0/24"),
        op=lambda: daemon.api.RemoveNetwork(pb.RemoveNetworkRequest(id="red")))
    assert {"links.delete_link", "store.remove_network", "firewall.apply"} <= set(calls)


async def _heal(d: Daemon, ev: LinkEvent) -> None:
    baseline = asyncio.all_tasks()
    await d.rt.healer.handle(ev)
    await settle(baseline)


@pytest.mark.parametrize("network", ["sheep0", "blue"])
async def test_replug_of_a_deleted_veth_is_all_or_nothing(daemon: Daemon, blue: pb.Network,
                                                          network: str) -> None:
    """Someone deletes a running container's veth (on sheep0 it carried the default
    route). With each mutating call of the repair failing in turn, the repair either
    completes or leaves the broken state as it was, which the next event repairs. The
    one change a failed repair may make: the bridge's neighbour entry of the address
    (it outlived the veth) goes with the undo of the bridge entries step."""
    c = await create(daemon, "web", networks=[net("sheep0", ports=[port(8080)]),
                                              net("blue")])
    a = next(a for a in c.networks if a.network == network)
    bridge = next(n.bridge for n in (await daemon.api.ListNetworks(
        pb.ListNetworksRequest())).networks if n.name == network)
    stale_neighbour = f"/kernel/links/{bridge}/neighbours/{a.ip_address}: gone"
    kernel, calls = daemon.machine.kernel, daemon.machine.calls
    healthy = await daemon.snapshot()
    for n in range(sweep.MAX_CALLS):
        link = kernel.link_info(a.host_interface)
        assert link is not None
        kernel.delete_host_link(a.host_interface)
        broken = await daemon.snapshot()
        ev = LinkEvent("del", link, received_at=time.monotonic())
        calls.fail_nth(n)
        await _heal(daemon, ev)
        state = await daemon.snapshot()
        if calls.armed:
            calls.disarm()
            assert not changes(healthy, state), changes(healthy, state)
            assert {"links.create_veth", "links.add_bridge_entries",
                    "netns.configure_interface"} <= set(calls.injected)
            return
        if changes(healthy, state):
            left = [c for c in changes(broken, state) if not c.startswith(stale_neighbour)]
            assert not left, f"failing {calls.injected[-1]} left a half repair: {left}"
            await _heal(daemon, ev)
            assert not changes(healthy, await daemon.snapshot()), "the next event did not repair"
    raise AssertionError(f"more than {sweep.MAX_CALLS} mutating calls")
