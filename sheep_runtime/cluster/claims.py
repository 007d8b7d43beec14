"""This node's records in etcd: the cluster config it agrees to, the subnet it holds
(create-if-absent over a random free subnet, or its own record taken over), and
releasing that subnet. Every request goes through `Counted` (metrics)."""

from __future__ import annotations

import contextlib
import logging
import random
from ipaddress import IPv4Network
from typing import Any

from aetcd.exceptions import ClientError  # type: ignore[import-untyped]

from sheep_runtime.cluster.etcd import Counted, EtcdClient
from sheep_runtime.cluster.model import (
    CONFIG_KEY,
    SUBNETS,
    ClusterConfig,
    NodeSettings,
    SubnetLease,
    vtep_mac,
)
from sheep_runtime.errors import FailedPrecondition, ResourceExhausted

log = logging.getLogger(__name__)

CLAIM_RETRIES = 10
CANDIDATES = 100

Listing = dict[IPv4Network, tuple[SubnetLease, Any]]
"""Every subnet lease with its etcd record (key, value, mod_revision, lease)."""


class Claims:
    """The config, subnet and lease records of one node."""

    def __init__(self, settings: NodeSettings, *, etcd: EtcdClient, call: Counted) -> None:
        self.settings = settings
        self._etcd = etcd
        self._call = call
        self._tx = etcd.transactions
        self.lease_id = 0

    def mine(self, subnet: IPv4Network) -> SubnetLease:
        """Our record for `subnet` (a VTEP MAC only with vxlan)."""
        s = self.settings
        vxlan = s.config.backend == "vxlan"
        return SubnetLease(subnet=subnet, node=s.name, public_ip=s.underlay,
                           backend=s.config.backend, vtep_mac=vtep_mac(s.name) if vxlan else "")

    async def agree_config(self) -> None:
        """Write /sheep/config if absent; FailedPrecondition if it differs from ours."""
        mine = self.settings.config
        ok, resp = await self._call("txn", self._etcd.transaction(
            compare=[self._tx.version(CONFIG_KEY) == 0],
            success=[self._tx.put(CONFIG_KEY, mine.encode())],
            failure=[self._tx.get(CONFIG_KEY)]))
        if ok:
            log.info("cluster: wrote the cluster config %s", mine.encode().decode())
            return
        stored = ClusterConfig.decode(resp[0][0][0])
        diffs = mine.differences(stored)
        if diffs:
            raise FailedPrecondition("this node's flags disagree with the cluster config "
                                     "in etcd: " + "; ".join(diffs))

    async def list_subnets(self) -> tuple[int, Listing]:
        """(revision, every subnet lease); records that do not parse are skipped."""
        found = await self._call("list", self._etcd.get_prefix(SUBNETS))
        leases = {}
        for kv in found:
            try:
                lease = SubnetLease.decode(kv.key, kv.value)
            except (ValueError, KeyError) as e:
                log.warning("cluster: ignoring bad record %r: %s", kv.key, e)
                continue
            leases[lease.subnet] = (lease, kv)
        return int(found.header.revision), leases

    async def acquire(self, previous: IPv4Network | None) -> SubnetLease:
        """Hold `previous` if etcd shows it as ours or free, else any subnet etcd
        records for this node, else a random free one (bounded retries)."""
        s = self.settings
        grant = await self._call("lease_grant", self._etcd.lease(s.lease_ttl))
        self.lease_id = grant.id
        _, taken = await self.list_subnets()
        own = [sub for sub, (lease, _) in taken.items() if lease.node == s.name]
        wanted = previous or (own[0] if own else None)
        if wanted is not None:
            held = taken.get(wanted)
            if held is not None and held[0].node != s.name:
                raise FailedPrecondition(
                    f"subnet {wanted}, recorded locally as this node's ({s.name}), is held "
                    f"in etcd by node {held[0].node} ({held[0].public_ip}); refusing to "
                    "move (running containers would be stranded)")
            if await self.claim(wanted, held[1] if held else None):
                for stale in own:
                    if stale != wanted:
                        log.warning("cluster: node %s also holds %s in etcd", s.name, stale)
                return self.mine(wanted)
        for _ in range(CLAIM_RETRIES):
            free = self._free(set(taken))
            if not free:
                break
            choice = random.choice(free)
            if await self.claim(choice, None):
                return self.mine(choice)
            _, taken = await self.list_subnets()
        raise ResourceExhausted(f"no free /{s.config.subnet_len} left in {s.config.network} "
                                f"after {CLAIM_RETRIES} tries")

    def _free(self, taken: set[IPv4Network]) -> list[IPv4Network]:
        cfg = self.settings.config
        subnets = cfg.network.subnets(new_prefix=cfg.subnet_len)
        next(subnets)  # like flannel's SubnetMin: not the one holding the network address
        out = []
        for sub in subnets:
            if sub not in taken:
                out.append(sub)
                if len(out) >= CANDIDATES:
                    break
        return out

    async def claim(self, subnet: IPv4Network, held: Any) -> bool:
        """Put our record on `subnet`: create-if-absent, or (our own record, `held`)
        take it over with a compare on its mod revision, moving it to our lease."""
        mine = self.mine(subnet)
        guard = (self._tx.version(mine.key) == 0 if held is None
                 else self._tx.mod(mine.key) == held.mod_revision)
        ok, _ = await self._call("txn", self._etcd.transaction(
            compare=[guard], success=[self._tx.put(mine.key, mine.encode(),
                                                   lease=self.lease_id)], failure=[]))
        if ok and held is not None and held.lease and held.lease != self.lease_id:
            with contextlib.suppress(ClientError):  # already expired
                await self._call("lease_revoke", self._etcd.revoke_lease(held.lease))
        return bool(ok)

    async def reclaim(self, subnet: IPv4Network) -> None:
        """Our record vanished (or its lease expired): create it again on a new lease."""
        grant = await self._call("lease_grant", self._etcd.lease(self.settings.lease_ttl))
        self.lease_id = grant.id
        if not await self.claim(subnet, None):
            log.error("cluster: another node took our subnet %s", subnet)

    async def renew(self) -> bool:
        """Refresh our lease; False if etcd says it expired."""
        reply = await self._call("lease_keepalive", self._etcd.refresh_lease(self.lease_id))
        return reply is not None and reply.TTL > 0

    async def release(self, subnet: IPv4Network) -> None:
        """Delete our record of `subnet` (only if it is still ours), then revoke our
        lease."""
        mine = self.mine(subnet)
        ok, _ = await self._call("txn", self._etcd.transaction(
            compare=[self._tx.value(mine.key) == mine.encode()],
            success=[self._tx.delete(mine.key)], failure=[]))
        if not ok:
            log.warning("cluster: the record of %s in etcd is not ours any more: left as is",
                        subnet)
        with contextlib.suppress(ClientError):  # expired already: nothing to revoke
            await self._call("lease_revoke", self._etcd.revoke_lease(self.lease_id))
