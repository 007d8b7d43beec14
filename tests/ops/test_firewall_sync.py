"""FirewallSync over the fake firewall: ports go in and out incrementally, anything
else (and a refused incremental change) rebuilds the table, and both ways give the
same table. IPv6 addresses of dual-stack attachments reach the rules."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv6Address

import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from sheep_runtime.errors import InvalidArgument
from sheep_runtime.firewall.rules import PortRule
from tests.fakes.firewall import normalized
from tests.ops.daemon import Daemon
from tests.ops.helpers import HANG_GUARD, changes, create, net, port


def firewall_calls(d: Daemon, mark: int) -> list[str]:
    return [c for c in d.machine.calls.since(mark) if c.startswith("firewall.")]


def in_sync(d: Daemon) -> bool:
    fw = d.machine.firewall.state
    return fw is not None and fw == normalized(d.rt.firewall.desired())


async def test_ports_change_incrementally_and_match_a_rebuild(daemon: Daemon) -> None:
    base = await daemon.snapshot()
    mark = daemon.machine.calls.mark()
    await create(daemon, "a", networks=[net("sheep0", ports=[port(8080), port(9000, count=3)])])
    await create(daemon, "b", networks=[net("sheep0", ports=[port(8081, host_ip="127.0.0.1")])])
    assert firewall_calls(daemon, mark) == ["firewall.update_ports"] * 2
    assert in_sync(daemon)
    state = daemon.machine.firewall.state
    assert state is not None and {r.host_port for r in state.ports} == {8080, 9000, 8081}
    mark = daemon.machine.calls.mark()
    await daemon.api.RemoveContainer(pb.RemoveContainerRequest(id="a", force=True))
    assert firewall_calls(daemon, mark) == ["firewall.update_ports"]
    assert in_sync(daemon)
    await daemon.api.RemoveContainer(pb.RemoveContainerRequest(id="b", force=True))
    assert not changes(base, await daemon.snapshot())


async def test_a_missing_table_makes_the_change_a_rebuild(daemon: Daemon) -> None:
    daemon.machine.firewall.delete()
    mark = daemon.machine.calls.mark()
    await create(daemon, "a", networks=[net("sheep0", ports=[port(8080)])])
    assert firewall_calls(daemon, mark) == ["firewall.update_ports", "firewall.apply"]
    assert in_sync(daemon)
    mark = daemon.machine.calls.mark()
    await daemon.api.RemoveContainer(pb.RemoveContainerRequest(id="a", force=True))
    assert firewall_calls(daemon, mark) == ["firewall.update_ports"]  # known again
    assert in_sync(daemon)


async def test_an_overlap_is_refused_before_the_kernel(daemon: Daemon) -> None:
    """The kernel's overlap check of concatenated intervals only compares range ends:
    FirewallSync checks each new rule against the ports the table holds."""
    await create(daemon, "a", networks=[net("sheep0", ports=[port(8070, count=20)])])
    held = daemon.machine.firewall.state
    clash = PortRule(network="sheep0", bridge="sheep0", container_ip=IPv4Address("10.20.0.9"),
                     protocol="tcp", host_ip="127.0.0.1", host_port=8080, container_port=80)
    mark = daemon.machine.calls.mark()
    with pytest.raises(InvalidArgument, match="overlaps"):
        await daemon.rt.firewall.publish("shpx", [clash])
    assert firewall_calls(daemon, mark) == []
    assert daemon.machine.firewall.state == held and in_sync(daemon)


async def test_a_cancelled_change_is_followed_by_a_rebuild(
        daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    fw = daemon.machine.firewall
    entered, release = asyncio.Event(), asyncio.Event()
    real = fw.update_ports

    async def slow(**kw: list[PortRule]) -> None:
        entered.set()
        await release.wait()
        await real(**kw)

    monkeypatch.setattr(fw, "update_ports", slow)
    rule = PortRule(network="sheep0", bridge="sheep0", container_ip=IPv4Address("10.20.0.9"),
                    protocol="tcp", host_ip="", host_port=8080, container_port=80)
    task = asyncio.create_task(daemon.rt.firewall.publish("shpx", [rule]))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    async with asyncio.timeout(HANG_GUARD):
        await daemon.rt.firewall.settled()
    assert in_sync(daemon)
    assert fw.state is not None and rule not in fw.state.ports


async def test_dual_stack_ports_publish_over_both_families(daemon: Daemon) -> None:
    await daemon.api.CreateNetwork(pb.CreateNetworkRequest(
        name="dual", subnet="10.30.0.0/24", subnet6="fd00:30::/64"))
    c = await create(daemon, "a", networks=[net("dual", ports=[
        port(8080), port(8443, 443, host_ip="2001:db8::2"), port(8081, host_ip="127.0.0.1")])])
    state = daemon.machine.firewall.state
    assert state is not None and in_sync(daemon)
    ip6 = IPv6Address(c.networks[0].ip6_address)
    assert {(r.host_ip, r.host_port, r.container_ip6) for r in state.ports} == {
        ("", 8080, ip6), ("2001:db8::2", 8443, ip6), ("127.0.0.1", 8081, ip6)}
    (dual,) = [n for n in state.networks if n.name == "dual"]
    assert dual.subnet6 is not None and str(dual.subnet6) == "fd00:30::/64"


async def test_an_ipv6_host_address_needs_an_ipv6_container(daemon: Daemon) -> None:
    with pytest.raises(Exception, match="IPv6") as e:
        await create(daemon, "a", networks=[net("sheep0", ports=[
            port(8443, 443, host_ip="2001:db8::2")])])
    assert "INVALID_ARGUMENT" in str(e.value)
    assert in_sync(daemon)
