"""A stand-in for `ops.cni.CniService`, to test the CNI endpoint's own protocol
(decoding, locking, error mapping, the queue) without a kernel. The real service is
exercised through a real sheepd in test_daemon.py."""

from __future__ import annotations

import asyncio
from collections import Counter
from ipaddress import IPv4Address, IPv4Interface

from sheep_runtime.errors import AlreadyExists, NotFound, SheepError
from sheep_runtime.ops.cni import CniAdd, CniKey, CniResult


class FakeCni:
    """Records in a dict; addresses handed out in order. `gate`, when cleared, holds
    every operation at its start (to kill a plugin mid-call)."""

    def __init__(self, *, networks: tuple[str, ...] = ("sheep0",)) -> None:
        self.networks = networks
        self.records: dict[CniKey, CniResult] = {}
        self.calls: list[tuple[str, CniKey | str]] = []
        self.is_ready = True
        self.broken: SheepError | None = None  # what CHECK finds in the "kernel"
        self.gate = asyncio.Event()
        self.gate.set()
        self.active: Counter[CniKey] = Counter()
        self.most_active: Counter[CniKey] = Counter()
        self._next = 2

    async def _enter(self, op: str, key: CniKey) -> None:
        self.calls.append((op, key))
        self.active[key] += 1
        self.most_active[key] = max(self.most_active[key], self.active[key])
        try:
            await self.gate.wait()
            await asyncio.sleep(0.02)  # long enough for a concurrent call to overlap
        finally:
            self.active[key] -= 1

    async def add(self, req: CniAdd) -> CniResult:
        await self._enter("add", req.key)
        if req.network not in self.networks:
            raise NotFound(f"no network named {req.network!r}", reason="NETWORK_NOT_FOUND",
                           resource_type="network", resource_name=req.network)
        found = self.records.get(req.key)
        if found is not None:
            if found.netns == req.netns:
                return found
            raise AlreadyExists(f"CNI attachment {req.key} already exists",
                                reason="CNI_ATTACHMENT_EXISTS")
        n, self._next = self._next, self._next + 1
        r = CniResult(key=req.key, netns=req.netns, network=req.network,
                      host_interface=f"shp{n:010x}", host_mac=f"9a:00:00:00:00:{n:02x}",
                      container_interface=req.key.ifname,
                      container_mac=f"02:5e:0a:14:00:{n:02x}",
                      address=IPv4Interface(f"10.20.0.{n}/16"),
                      gateway=IPv4Address("10.20.0.1"), mtu=1500)
        self.records[req.key] = r
        return r

    async def delete(self, key: CniKey) -> None:
        await self._enter("delete", key)
        self.records.pop(key, None)

    async def check(self, key: CniKey) -> CniResult:
        await self._enter("check", key)
        if key not in self.records:
            raise NotFound(f"no CNI attachment {key}", resource_type="attachment")
        if self.broken is not None:
            raise self.broken
        return self.records[key]

    async def gc(self, network: str, valid: set[CniKey]) -> list[CniKey]:
        self.calls.append(("gc", network))
        stale = [k for k, r in self.records.items() if r.network == network and k not in valid]
        for k in stale:
            del self.records[k]
        return stale

    def ready(self) -> bool:
        return self.is_ready

