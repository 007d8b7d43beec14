"""The etcd v3 client: `aetcd` over a grpc.aio channel to every endpoint (one
target, grpc's pick_first moves to the next endpoint when one fails), with TLS."""

from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Sequence
from typing import TypeVar
from urllib.parse import urlsplit

import aetcd  # type: ignore[import-untyped]
import aetcd.rpc  # type: ignore[import-untyped]
import aetcd.watcher  # type: ignore[import-untyped]
import grpc

from sheep_runtime.cluster.model import EtcdTLS
from sheep_runtime.errors import InvalidArgument
from sheep_runtime.metrics import Metrics

T = TypeVar("T")

#: The operations `Counted` labels its metrics with (exported at 0 from the start).
OPS = ("txn", "list", "lease_grant", "lease_revoke", "lease_keepalive", "watch")


def grpc_target(endpoints: Sequence[str]) -> str:
    """`http://10.0.0.1:2379,http://10.0.0.2:2379` -> `ipv4:10.0.0.1:2379,10.0.0.2:2379`
    (a single host name is passed on as it is)."""
    hosts = []
    for url in endpoints:
        parts = urlsplit(url if "//" in url else f"http://{url}")
        if not parts.hostname:
            raise InvalidArgument(f"bad etcd endpoint {url!r}", field="cluster_etcd")
        hosts.append(f"{parts.hostname}:{parts.port or 2379}")
    if len(hosts) == 1:
        return hosts[0]
    return "ipv4:" + ",".join(hosts)


class EtcdClient(aetcd.Client):  # type: ignore[misc]
    """aetcd's client, connecting to `target` with optional TLS (aetcd 1.0.0 itself
    only dials one insecure host:port)."""

    def __init__(self, target: str, *, tls: EtcdTLS | None, timeout: int = 5) -> None:
        super().__init__(timeout=timeout)
        self._target = target
        self._tls = tls

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        if self._tls is None:
            self.channel = aetcd.rpc.insecure_channel(self._target)
        else:
            t = self._tls
            creds = grpc.ssl_channel_credentials(
                root_certificates=t.cacert.read_bytes() if t.cacert else None,
                private_key=t.key.read_bytes() if t.key else None,
                certificate_chain=t.cert.read_bytes() if t.cert else None)
            self.channel = aetcd.rpc.secure_channel(self._target, creds)
        self.kvstub = aetcd.rpc.KVStub(self.channel)
        self.clusterstub = aetcd.rpc.ClusterStub(self.channel)
        self.leasestub = aetcd.rpc.LeaseStub(self.channel)
        self.maintenancestub = aetcd.rpc.MaintenanceStub(self.channel)
        self._watcher = aetcd.watcher.Watcher(aetcd.rpc.WatchStub(self.channel),
                                              timeout=self._timeout, metadata=self.metadata)
        self._connected.set()


def client(endpoints: Sequence[str], *, tls: EtcdTLS | None) -> EtcdClient:
    return EtcdClient(grpc_target(endpoints), tls=tls)


def route_source(endpoint: str) -> str:
    """The source address this host would use to reach `endpoint` (a connected UDP
    socket sends nothing)."""
    parts = urlsplit(endpoint if "//" in endpoint else f"http://{endpoint}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((parts.hostname or "", parts.port or 2379))
        return str(s.getsockname()[0])


class Counted:
    """Counts and times every etcd request: `sheep_etcd_requests_total{op}`,
    `sheep_etcd_errors_total{op}` and `sheep_etcd_request_duration_seconds{op}`."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics
        for op in OPS:
            metrics.etcd_requests.labels(op)
            metrics.etcd_errors.labels(op)

    async def __call__(self, op: str, request: Awaitable[T]) -> T:
        self._m.etcd_requests.labels(op).inc()
        t0 = time.perf_counter()
        try:
            return await request
        except aetcd.ClientError:
            self._m.etcd_errors.labels(op).inc()
            raise
        finally:
            self._m.etcd_seconds.labels(op).observe(time.perf_counter() - t0)

    def error(self, op: str) -> None:
        """Count a failure seen outside a request (a watch stream that broke)."""
        self._m.etcd_errors.labels(op).inc()
