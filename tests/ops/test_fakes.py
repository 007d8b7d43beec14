"""The fakes keep the kernel's rules the sweeps rely on: names unique per netns, a
veth's ends live and die together (also with their netns), the verbs' "already gone"
semantics, and one armed fault that fires once, before anything changes."""

from __future__ import annotations

import errno
from ipaddress import IPv4Interface
from pathlib import Path

import pytest

from sheep_runtime.errors import KernelError
from tests.fakes import FakeLinks, Machine
from tests.fakes.errors import FakeKernelError


async def _veth(m: Machine, links: FakeLinks, pin: Path, name: str = "shp1",
                peer: str = "eth0") -> int:
    bridge = await links.ensure_bridge(name="br0", mac="06:00:00:00:00:01",
                                       gateway=IPv4Interface("10.9.0.1/24"), mtu=1500)
    return await links.create_veth(host_ifname=name, bridge_index=bridge, mtu=1500,
                                   netns=pin, peer_ifname=peer, peer_mac="02:00:00:00:00:02")


@pytest.fixture
async def pinned(tmp_path: Path) -> tuple[Machine, FakeLinks, Path]:
    m = Machine()
    pin = tmp_path / "ns1"
    await m.namespaces.create(pin)
    return m, FakeLinks(m.kernel, m.calls), pin


async def test_veth_names_are_unique_on_each_side(pinned: tuple[Machine, FakeLinks, Path]
                                                  ) -> None:
    m, links, pin = pinned
    await _veth(m, links, pin)
    for host, peer in (("shp1", "eth1"), ("shp2", "eth0"), ("shp3", "lo")):
        with pytest.raises(FakeKernelError) as e:
            await _veth(m, links, pin, host, peer)
        assert e.value.errno == errno.EEXIST
    for bad in ("all", "default", "x" * 16, "a/b"):
        with pytest.raises(FakeKernelError) as e:
            await _veth(m, links, pin, "shp4", bad)
        assert e.value.errno == errno.EINVAL


async def test_a_veth_dies_with_either_end_or_its_netns(
        pinned: tuple[Machine, FakeLinks, Path]) -> None:
    m, links, pin = pinned
    await _veth(m, links, pin)
    assert await links.delete_link("shp1") and "eth0" not in m.kernel.netns[pin].links
    assert not await links.delete_link("shp1"), "already gone"
    await _veth(m, links, pin)
    assert m.kernel.delete_ns_link(pin, "eth0") and "shp1" not in m.kernel.links
    await _veth(m, links, pin)
    await m.namespaces.delete(pin)
    assert "shp1" not in m.kernel.links and not pin.exists()
    await m.namespaces.delete(pin)  # already gone is success
    assert "br0" in m.kernel.links


async def test_a_pin_cannot_be_made_twice(pinned: tuple[Machine, FakeLinks, Path]) -> None:
    m, _, pin = pinned
    with pytest.raises(FakeKernelError) as e:
        await m.namespaces.create(pin)
    assert e.value.errno == errno.EEXIST and m.namespaces.exists(pin)


async def test_the_armed_fault_fires_once_before_any_change(
        pinned: tuple[Machine, FakeLinks, Path]) -> None:
    m, links, pin = pinned
    before = m.kernel.snapshot()
    m.calls.fail_nth(1)  # ensure_bridge passes, create_veth fails
    with pytest.raises(KernelError, match=r"injected fault: links\.create_veth"):
        await _veth(m, links, pin)
    assert not m.calls.armed and m.calls.injected == ["links.create_veth"]
    assert set(m.kernel.snapshot()["links"]) == {*before["links"], "br0"}
    await _veth(m, links, pin)
