"""Incremental port changes in the real kernel: any sequence of `update_ports` gives
the table a rebuild of the resulting state gives (`nft -j list table`, normalized), a
refused change leaves the table as it was, and deleting what is gone is no error.

Runs in the nl_sandbox netns only; no packet is sent."""

from __future__ import annotations

import json
import random
import subprocess
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

import pytest

from sheep_runtime.errors import FirewallError
from sheep_runtime.firewall import Firewall, FirewallState, NetworkRules, PortRule
from tests.kernel.conftest import NlRun

pytestmark = pytest.mark.kernel

DUAL = NetworkRules(name="dual", bridge="br-dual", subnet=IPv4Network("10.60.0.0/24"),
                    gateway=IPv4Address("10.60.0.1"), internal=False, icc=True,
                    subnet6=IPv6Network("fd00:60::/64"), gateway6=IPv6Address("fd00:60::1"))
V4 = NetworkRules(name="v4", bridge="br-v4", subnet=IPv4Network("10.61.0.0/24"),
                  gateway=IPv4Address("10.61.0.1"), internal=False, icc=False)
HOST_IPS = ["", "", "127.0.0.1", "198.51.100.2", "0.0.0.0", "::", "2001:db8::2"]


def attachment_rules(rng: random.Random, k: int) -> tuple[PortRule, ...]:
    """One attachment's rules, on host ports of its own (10000 + 100k ...)."""
    dual = rng.random() < 0.7
    net = DUAL if dual else V4
    rules = []
    for i in range(rng.randint(1, 3)):
        count = rng.choice([1, 1, 3])
        host_port = 10000 + 100 * k + 10 * i
        host_ip = rng.choice(HOST_IPS if dual else HOST_IPS[:5])
        rules.append(PortRule(
            network=net.name, bridge=net.bridge,
            container_ip=net.subnet.network_address + 2 + k,
            protocol=rng.choice(["tcp", "udp"]), host_ip=host_ip, host_port=host_port,
            container_port=rng.choice([host_port, 80]), count=count,
            container_ip6=(DUAL.subnet6.network_address + 2 + k  # type: ignore[union-attr]
                           if dual else None)))
    return tuple(rules)


def state_of(published: dict[int, tuple[PortRule, ...]]) -> FirewallState:
    return FirewallState(networks=(DUAL, V4), ports=tuple(
        r for rules in published.values() for r in rules))


def listing(netns: Path) -> Any:
    """Our table without handles, each set's elements in one order."""
    out = subprocess.run(["nsenter", f"--net={netns}", "nft", "-j", "list", "table", "inet",
                          "sheep"], capture_output=True, text=True, check=True).stdout
    objects = [o for o in json.loads(out)["nftables"] if "metainfo" not in o]
    for obj in objects:
        for kind in ("set", "map", "chain", "rule", "table"):
            if kind in obj:
                obj[kind].pop("handle", None)
                if "elem" in obj[kind]:
                    obj[kind]["elem"] = sorted(obj[kind]["elem"], key=json.dumps)
    return objects


def test_any_sequence_of_changes_equals_a_rebuild(nl_sandbox: Path, nl_run: NlRun) -> None:
    async def body() -> None:
        fw = Firewall()
        await fw.start()
        try:
            for seed in range(12):
                rng = random.Random(seed)
                published: dict[int, tuple[PortRule, ...]] = {
                    k: attachment_rules(rng, k) for k in range(rng.randint(0, 4))}
                await fw.apply(state_of(published))
                for step in range(12):
                    k = rng.randrange(12)
                    if k in published and rng.random() < 0.6:
                        await fw.update_ports(remove=published.pop(k))
                    elif k in published:  # again: a no-op, as a re-published one is
                        await fw.update_ports(add=published[k])
                    else:
                        published[k] = attachment_rules(rng, k)
                        await fw.update_ports(add=published[k])
                    if step % 4 == 3:  # withdrawing what is gone is no error
                        await fw.update_ports(remove=attachment_rules(rng, 20 + step))
                changed = listing(nl_sandbox)
                assert await fw.is_intact(state_of(published))
                await fw.apply(state_of(published))
                assert listing(nl_sandbox) == changed, f"seed {seed}"
        finally:
            await fw.close()
    nl_run(body)


def test_a_refused_change_changes_nothing(nl_sandbox: Path, nl_run: NlRun) -> None:
    rng = random.Random(1)
    held = attachment_rules(rng, 0)
    first = held[0]
    other_container = replace(first, container_ip=first.container_ip + 90, container_ip6=(
        first.container_ip6 + 90 if first.container_ip6 else None))
    fresh = attachment_rules(rng, 5)

    async def body() -> None:
        fw = Firewall()
        await fw.start()
        try:
            with pytest.raises(FirewallError, match="No such file or directory"):
                await fw.update_ports(add=fresh)  # no table yet
            await fw.apply(FirewallState(networks=(DUAL, V4), ports=held))
            before = listing(nl_sandbox)
            for bad in ({"add": [*fresh, other_container]},  # a key taken with other data
                        {"remove": [other_container]}):  # someone else's element
                with pytest.raises(FirewallError):
                    await fw.update_ports(**bad)
                assert listing(nl_sandbox) == before, bad
        finally:
            await fw.close()
    nl_run(body)
